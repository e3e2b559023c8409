"""Procfile process types as services (issue 17): each replica's service (web, or a type such as worker) and each
environment's `scale worker=N` counts (JSON; web's count stays in replicas_override).

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant server default keeps these plain ALTER TABLE ADD COLUMNs (see 0010 and 0013): every existing replica
    # is a web replica.
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("service", sa.String(64), nullable=False, server_default="web"))
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("services_scale", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("services_scale")
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("service")
