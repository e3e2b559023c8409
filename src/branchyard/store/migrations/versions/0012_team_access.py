"""Team access (issue 15): users and their API tokens (hashed), protected environments, and who did what — the
authenticated actor of events, deployments, promotions and approvals.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(39), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("created_by", sa.String(39), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("removed_at", sa.DateTime, nullable=True),
    )
    # a name is unique among the users who are not removed (a removed user's events keep their name and id)
    op.create_index("ux_users_active_name", "users", ["name"], unique=True, sqlite_where=sa.text("removed_at IS NULL"))
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.Column("last_used_at", sa.DateTime, nullable=True),
    )
    # A constant default keeps this a plain ALTER TABLE ADD COLUMN (see 0010: an expression made batch mode recreate
    # the table, and dropping the old one deleted every deployment through ON DELETE CASCADE).
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("protected", sa.Boolean, nullable=False, server_default="0"))
    op.execute("UPDATE environments SET protected = production")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("actor_id", sa.Integer, nullable=True))
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("actor", sa.String(64), nullable=True))
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(sa.Column("requested_by_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("confirmed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("start_after", sa.DateTime, nullable=True))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("user_id")
    with op.batch_alter_table("promotions") as batch:
        for column in ("start_after", "confirmed_at", "confirmed_by", "requested_by_id"):
            batch.drop_column(column)
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("actor_id")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("protected")
    op.drop_table("api_tokens")
    op.drop_index("ux_users_active_name", "users")
    op.drop_table("users")
