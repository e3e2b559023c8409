"""Alembic environment: the database is DATABASE_URL (Railway style), never a URL in alembic.ini."""

import os
import sys
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine, pool, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the app root, whatever the cwd

import db  # noqa: E402

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name)

target_metadata = db.Base.metadata
MIGRATION_LOCK = 0x796F746E  # pg_advisory_xact_lock key: concurrent `migrate` runs wait, then find nothing to do


def _url() -> str:
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        raise SystemExit("alembic: DATABASE_URL is not set")
    try:
        return db.sqlalchemy_url(raw)  # postgresql:// → postgresql+psycopg://
    except db.BadDatabaseURL as exc:
        raise SystemExit(f"alembic: {exc}") from None


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool,
                           connect_args={"connect_timeout": 10, "application_name": "yoto-smart-stream-migrate"})
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
