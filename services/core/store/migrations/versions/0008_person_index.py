"""Subject access: the keyed pseudonyms of every identifier a message carried

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # messages stored before this revision have no rows here: they are still found through
    # the pseudonym they are keyed by (audit.person)
    op.create_table(
        "person_index",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        # the key leads with the pseudonym: it is the index a search by pseudonym uses
        sa.PrimaryKeyConstraint("pseudonym", "message_id"),
    )


def downgrade() -> None:
    op.drop_table("person_index")
