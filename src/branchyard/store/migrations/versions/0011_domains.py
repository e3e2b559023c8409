"""Custom domains per environment (`branchyard domain add`, branchyard.toml `domains`) and their certificate state.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment_id", sa.Integer, sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("host", sa.String(253), nullable=False, unique=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("cert_state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("cert_not_after", sa.DateTime, nullable=True),
        sa.Column("cert_error", sa.Text, nullable=True),
        sa.Column("cert_checked_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_domains_environment_id", "domains", ["environment_id"])


def downgrade() -> None:
    op.drop_index("ix_domains_environment_id", "domains")
    op.drop_table("domains")
