"""Security: shared client-assertion replay cache, external subjects, webhook secret
rotation and asymmetric signing, inbox scopes for existing clients

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "client_assertions",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("client_assertions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_client_assertions_expires_at"), ["expires_at"], unique=False
        )

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_subject", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint("clients_external_subject_key", ["external_subject"])

    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("signature_scheme", sa.String(length=8), server_default="v1", nullable=False)
        )
        batch_op.add_column(sa.Column("previous_secret", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("previous_secret_until", TS, nullable=True))

    # Reading and acknowledging the inbox became scopes of their own: clients that could
    # read deliveries keep the access they had.
    clients = sa.table("clients", sa.column("client_id", sa.String), sa.column("scopes", sa.JSON))
    conn = op.get_bind()
    for client_id, scopes in conn.execute(sa.select(clients.c.client_id, clients.c.scopes)):
        if "deliveries:read" in scopes:
            new = sorted(set(scopes) | {"inbox:read", "inbox:ack"})
            conn.execute(
                clients.update().where(clients.c.client_id == client_id).values(scopes=new)
            )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("previous_secret_until")
        batch_op.drop_column("previous_secret")
        batch_op.drop_column("signature_scheme")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_constraint("clients_external_subject_key", type_="unique")
        batch_op.drop_column("external_subject")
    with op.batch_alter_table("client_assertions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_assertions_expires_at"))
    op.drop_table("client_assertions")
