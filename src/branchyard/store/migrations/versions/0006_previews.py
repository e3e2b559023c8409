"""Previews: the project's GitHub repository, webhook secret and preview policy; webhook deliveries (replay
protection); the desired set of previews (open pull requests and live branches).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("github_repository", sa.Text, nullable=True))
        batch.add_column(sa.Column("webhook_secret", sa.Text, nullable=True))
        batch.add_column(sa.Column("preview_policy", sa.Text, nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "previews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("number", sa.Integer, nullable=True),
        sa.Column("branch", sa.Text, nullable=True),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("base_sha", sa.String(64), nullable=True),
        sa.Column("head_repo", sa.Text, nullable=True),
        sa.Column("fork", sa.Boolean, nullable=False),
        sa.Column("bot", sa.Boolean, nullable=False),
        sa.Column("draft", sa.Boolean, nullable=False),
        sa.Column("author", sa.Text, nullable=True),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("approved_sha", sa.String(64), nullable=True),
        sa.Column("decision", sa.String(24), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("last_activity_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("project_id", "environment"),
    )


def downgrade() -> None:
    op.drop_table("previews")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("preview_policy")
        batch.drop_column("webhook_secret")
        batch.drop_column("github_repository")
