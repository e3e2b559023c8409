"""Desired state for deployments: an environment's target deployment, and each deployment's work and attempts.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("target_deployment_id", sa.String(36), nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("work", sa.String(16), nullable=False, server_default="build"))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("retry_at", sa.Float, nullable=True))
    # What each existing deployment was: a redeploy or rollback reuses a release, a promotion copies one.
    op.execute("UPDATE deployments SET work = CASE WHEN \"trigger\" = 'promote' THEN 'promote' "
               "WHEN \"trigger\" IN ('redeploy', 'rollback', 'variables') THEN 'rollout' "
               "WHEN \"trigger\" = 'up' AND config_json IS NOT NULL THEN 'rollout' ELSE 'build' END")
    # Every environment wants what it runs now; one mid-deploy wants its newest unfinished deployment.
    op.execute("UPDATE environments SET target_deployment_id = COALESCE("
               "(SELECT d.id FROM deployments d WHERE d.environment_id = environments.id "
               "AND d.status IN ('QUEUED', 'BUILDING', 'DEPLOYING') ORDER BY d.created_at DESC LIMIT 1), "
               "current_deployment_id)")


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("retry_at")
        batch.drop_column("attempts")
        batch.drop_column("work")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("target_deployment_id")
