"""Cron services (issue 17): each slot of an environment's cronSchedule, run or skipped, with its exit code and log.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cron_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment_id", sa.Integer, sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("deployment_id", sa.String(36), nullable=False),
        sa.Column("scheduled_for", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.Column("log_lines", sa.Integer, nullable=True),
        sa.Column("log_tail", sa.Text, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("start_time", sa.Integer, nullable=True),
    )
    op.create_index("ix_cron_runs_environment_id_slot", "cron_runs", ["environment_id", "scheduled_for"])


def downgrade() -> None:
    op.drop_index("ix_cron_runs_environment_id_slot", "cron_runs")
    op.drop_table("cron_runs")
