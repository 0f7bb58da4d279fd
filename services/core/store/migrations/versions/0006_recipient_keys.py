"""Per-recipient encryption: each party's registered public encryption keys, and a
subscription's request for encrypted webhook bodies; room for webhook signing keys sealed at
rest

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("encrypt", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        # webhook signing keys are stored sealed (services.core.crypto.at_rest): longer
        for column in ("secret", "previous_secret"):
            batch_op.alter_column(
                column, type_=sa.String(length=500), existing_type=sa.String(length=200)
            )
    op.create_table(
        "party_keys",
        sa.Column("party", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("thumbprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("retired_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("party", "kid"),
    )


def downgrade() -> None:
    op.drop_table("party_keys")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("encrypt")
        for column in ("secret", "previous_secret"):
            batch_op.alter_column(
                column, type_=sa.String(length=200), existing_type=sa.String(length=500)
            )
