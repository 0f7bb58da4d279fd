"""Timeliness: release-notice lifecycle, notice periods, the priority lane, narrowing
subscription filters and cohorts, acknowledgement duties and the durable scheduler

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
CLIENTS = sa.table("clients", sa.column("client_id", sa.String), sa.column("scopes", sa.JSON))
NEW_SCOPES = {"messages:read", "reports:read", "duties:read", "duties:ack"}


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refers_to", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("lifecycle", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("timeliness", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(batch_op.f("ix_messages_refers_to"), ["refers_to"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("delivered_at", TS, nullable=True))

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filters", sa.JSON(), nullable=True))

    op.create_table(
        "cohort_members",
        sa.Column("subscription_id", sa.String(length=36), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "person"),
    )

    op.create_table(
        "duties",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("message_type", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("agreement", sa.String(length=64), nullable=False),
        sa.Column("agreement_version", sa.String(length=16), nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("escalate_to", sa.JSON(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=True),
        sa.Column("escalated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "recipient", "agreement", "flow", name="uq_duty"),
    )
    with op.batch_alter_table("duties", schema=None) as batch_op:
        batch_op.create_index("ix_duties_status_due", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_duties_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_duties_sender"), ["sender"], unique=False)
        batch_op.create_index(batch_op.f("ix_duties_recipient"), ["recipient"], unique=False)

    op.create_table(
        "timers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("fired_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", name="uq_timer"),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_due", ["status", "due_at"], unique=False)

    # Existing clients keep working with the new endpoints: every client may read the state
    # of what it sent or received; senders read their timeliness report and follow the
    # duties on their messages; recipients read and acknowledge their duties (a party that
    # has none is shown none). New clients get exactly what the agreements call for.
    conn = op.get_bind()
    for client_id, scopes in conn.execute(sa.select(CLIENTS.c.client_id, CLIENTS.c.scopes)):
        new = set(scopes) | {"messages:read"}
        if "decisions:read" in scopes:
            new |= {"reports:read", "duties:read"}
        if "deliveries:read" in scopes:
            new |= {"duties:read", "duties:ack"}
        if new != set(scopes):
            conn.execute(
                CLIENTS.update().where(CLIENTS.c.client_id == client_id).values(scopes=sorted(new))
            )


def downgrade() -> None:
    conn = op.get_bind()
    for client_id, scopes in conn.execute(sa.select(CLIENTS.c.client_id, CLIENTS.c.scopes)):
        kept = sorted(set(scopes) - NEW_SCOPES)
        if kept != sorted(scopes):
            conn.execute(
                CLIENTS.update().where(CLIENTS.c.client_id == client_id).values(scopes=kept)
            )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_due")
    op.drop_table("timers")
    with op.batch_alter_table("duties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duties_recipient"))
        batch_op.drop_index(batch_op.f("ix_duties_sender"))
        batch_op.drop_index(batch_op.f("ix_duties_message_id"))
        batch_op.drop_index("ix_duties_status_due")
    op.drop_table("duties")
    op.drop_table("cohort_members")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("filters")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("priority")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_refers_to"))
        batch_op.drop_column("priority")
        batch_op.drop_column("timeliness")
        batch_op.drop_column("version")
        batch_op.drop_column("state")
        batch_op.drop_column("lifecycle")
        batch_op.drop_column("refers_to")
