"""Metric samples (issue 16): one row per (series, labels, resolution, bucket), downsampled 10 s → 1 min → 1 h.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table of its own: no foreign key (samples of a deleted environment age out with their tier), constant
    # server defaults only.
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False, server_default=""),
        sa.Column("replica", sa.String(128), nullable=False, server_default=""),
        sa.Column("resolution", sa.Integer, nullable=False),
        sa.Column("ts", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("ix_metric_samples_env", "metric_samples", ["project", "environment", "resolution", "ts"])
    op.create_index("ix_metric_samples_age", "metric_samples", ["resolution", "ts"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_age", table_name="metric_samples")
    op.drop_index("ix_metric_samples_env", table_name="metric_samples")
    op.drop_table("metric_samples")
