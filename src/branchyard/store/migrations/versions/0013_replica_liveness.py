"""Liveness of running replicas (issue 16): consecutive failed health checks, when the last check ran, and why it failed.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default keeps this a plain ALTER TABLE ADD COLUMN (see 0010: an expression made batch mode recreate
    # the table, and dropping the old one deleted every deployment through ON DELETE CASCADE).
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("health_failures", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("health_checked_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("health_detail", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("health_detail")
        batch.drop_column("health_checked_at")
        batch.drop_column("health_failures")
