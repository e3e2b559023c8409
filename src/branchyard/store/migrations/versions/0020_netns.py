"""Network isolation (issue 17): the address a replica is reached at (its environment's namespace address, or
loopback), so a restarted control plane routes and probes the replicas it adopts where they are.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant server default: a plain ALTER TABLE ADD COLUMN; replicas started before ran on loopback.
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("host", sa.String(64), nullable=False, server_default="127.0.0.1"))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("host")
