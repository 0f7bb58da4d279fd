"""Retention: each disclosure's retention period and end, and the deletion notices sent

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("retain_until", TS, nullable=True))
        batch_op.add_column(sa.Column("deletion_notified_at", TS, nullable=True))
        batch_op.create_index(
            batch_op.f("ix_deliveries_retain_until"), ["retain_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_retain_until"))
        batch_op.drop_column("deletion_notified_at")
        batch_op.drop_column("retain_until")
        batch_op.drop_column("retention")
