"""watchPatterns on previews (issue 17): the head commit a preview's watchPatterns skipped, so that the preview loop
does not try to deploy it again.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("previews") as batch:
        batch.add_column(sa.Column("unwatched_sha", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("previews") as batch:
        batch.drop_column("unwatched_sha")
