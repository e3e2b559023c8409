"""Promotions (source release → target environment behind gates) and their approvals.

Revision ID: 0007
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("source_deployment_id", sa.String(36), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("previous_deployment_id", sa.String(36), nullable=True),
        sa.Column("target_deployment_id", sa.String(36), nullable=True),
        sa.Column("rollback_deployment_id", sa.String(36), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("plan_json", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_promotions_project", "promotions", ["project", "target", "created_at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("promotion_id", sa.String(36), sa.ForeignKey("promotions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("approver", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("promotion_id", "approver"),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_table("promotions")
