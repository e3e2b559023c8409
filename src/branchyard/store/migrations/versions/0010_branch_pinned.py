"""An environment's branch set by the user (`environment add NAME --branch B`): never overwritten by a deploy.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default keeps this a plain ALTER TABLE ADD COLUMN: with an expression (sa.false()) batch mode
    # recreated the table, and dropping the old one deleted every deployment through ON DELETE CASCADE.
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("branch_pinned", sa.Boolean, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("branch_pinned")
