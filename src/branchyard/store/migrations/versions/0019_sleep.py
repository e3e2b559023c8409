"""Sleep and wake (issue 17): when an environment went to sleep, and how (`idle`: woken by its next request; `down`:
`branchyard down`, until `up`). NULL on an environment that sleeps from before: an explicit `down`.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns with no expression default: a plain ALTER TABLE ADD COLUMN (see 0010 and 0013).
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("slept_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("sleep_kind", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("sleep_kind")
        batch.drop_column("slept_at")
