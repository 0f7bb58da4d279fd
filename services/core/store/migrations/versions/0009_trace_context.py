"""Traces: the W3C traceparent a message was sent under and a delivery was routed under

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable and without a default: additive, so processes of the previous version keep
    # working against the new schema during a rolling upgrade; rows written before (or with
    # traces off) have none, and their spans start traces of their own
    op.add_column("messages", sa.Column("trace_context", sa.String(length=64), nullable=True))
    op.add_column("deliveries", sa.Column("trace_context", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("trace_context")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("trace_context")
