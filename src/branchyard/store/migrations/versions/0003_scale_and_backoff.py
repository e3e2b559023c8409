"""Replica count set by `branchyard scale`, and the earliest time a crashed replica may restart.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("replicas_override", sa.Integer, nullable=True))
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("restart_after", sa.Float, nullable=True))
        batch.add_column(sa.Column("last_exit", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("last_exit")
        batch.drop_column("restart_after")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("replicas_override")
