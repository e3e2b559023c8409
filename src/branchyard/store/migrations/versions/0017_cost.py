"""Cost (issue 17): each environment's measured usage (allocation × running time), advanced by housekeeping.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environment_usage",
        sa.Column("environment_id", sa.Integer, sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("counted_until", sa.Float, nullable=False),
        sa.Column("running", sa.Boolean, nullable=False),
        sa.Column("memory_gb", sa.Float, nullable=False, server_default="0"),
        sa.Column("vcpu", sa.Float, nullable=False, server_default="0"),
        sa.Column("storage_gb", sa.Float, nullable=False, server_default="0"),
        sa.Column("running_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("memory_gb_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("vcpu_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("storage_gb_seconds", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("environment_usage")
