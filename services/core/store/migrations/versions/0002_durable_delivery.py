"""Durable delivery queue, reconciliation, subscription channels and the pull inbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routed_at", TS, nullable=True))
        batch_op.create_index(
            "ix_messages_unrouted", ["person", "routed_at", "accepted_at"], unique=False
        )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("republished", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=16), server_default="webhook", nullable=False)
        )
        batch_op.add_column(sa.Column("status_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("failing_since", TS, nullable=True))
        batch_op.alter_column("url", existing_type=sa.String(length=2000), nullable=True)
        batch_op.alter_column("secret", existing_type=sa.String(length=200), nullable=True)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("accepted_at", TS, nullable=True))
        batch_op.add_column(sa.Column("message_type", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", TS, nullable=True))
        batch_op.add_column(
            sa.Column("retry_index", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", TS, nullable=True))
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_deliveries_order", ["subscription_id", "person", "status"], unique=False
        )

    op.create_table(
        "inbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("party", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_party_seq", ["party", "seq"], unique=False)

    op.create_table(
        "inbox_cursors",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("party", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )

    # deliveries recorded before this revision: fill the copied columns from their message
    op.execute(
        "UPDATE deliveries SET person = (SELECT person FROM messages m WHERE m.id = "
        "deliveries.message_id), accepted_at = (SELECT accepted_at FROM messages m WHERE "
        "m.id = deliveries.message_id), message_type = (SELECT message_type FROM messages m "
        "WHERE m.id = deliveries.message_id), next_attempt_at = updated_at"
    )
    op.execute(
        "UPDATE messages SET routed_at = accepted_at WHERE status = 'complete' OR id IN "
        "(SELECT DISTINCT message_id FROM deliveries)"
    )


def downgrade() -> None:
    op.drop_table("inbox_cursors")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_party_seq")
    op.drop_table("inbox")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_order")
        batch_op.drop_index("ix_deliveries_due")
        for name in (
            "lease_until",
            "lease_owner",
            "retry_index",
            "next_attempt_at",
            "message_type",
            "accepted_at",
            "person",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column("url", existing_type=sa.String(length=2000), nullable=False)
        batch_op.drop_column("failing_since")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("channel")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("republished")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unrouted")
        batch_op.drop_column("routed_at")
