"""Post-deploy tests (issue 16): each deployment's test result (passed / failed / running / skipped), its one-line
detail, and when it was recorded.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns with no expression default: a plain ALTER TABLE ADD COLUMN (see 0010 and 0013).
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("tests_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("tests_detail", sa.Text, nullable=True))
        batch.add_column(sa.Column("tests_at", sa.DateTime, nullable=True))
    # Deployments that finished before post-deploy tests existed were never tested: say so, rather than have the
    # first start test every one of them.
    op.execute("UPDATE deployments SET tests_status = 'skipped' WHERE status NOT IN ('QUEUED', 'BUILDING', 'DEPLOYING')")


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("tests_at")
        batch.drop_column("tests_detail")
        batch.drop_column("tests_status")
