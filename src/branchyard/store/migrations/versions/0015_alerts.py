"""Alerts and uptime (issue 16): each environment's open and recent alerts, and its uptime checks.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment_id", sa.Integer, sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=True),
        sa.Column("clear_since", sa.Float, nullable=True),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
    )
    op.create_index("ix_alerts_environment_id", "alerts", ["environment_id"])
    op.create_table(
        "uptime_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment_id", sa.Integer, sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_uptime_checks_environment_id_at", "uptime_checks", ["environment_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_uptime_checks_environment_id_at", "uptime_checks")
    op.drop_table("uptime_checks")
    op.drop_index("ix_alerts_environment_id", "alerts")
    op.drop_table("alerts")
