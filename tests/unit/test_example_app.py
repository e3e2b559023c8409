"""The example app (examples/yoto-smart-stream) without PostgreSQL or Redis: self-contained and fast.

Its real database behaviour (migrations, seeding, caching, 503 when PostgreSQL stops) needs running
servers; here: /health's shape and values, config.py per environment, manage.py's refusal without
DATABASE_URL, the migrations as SQL (offline), and the railway.toml the platform reads.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
APP_MODULES = ("main", "config", "db", "cache")
APP_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "ENVIRONMENT",
    "DEBUG",
    "LOG_LEVEL",
    "BRANCHYARD_GIT_COMMIT_SHA",
    "RAILWAY_GIT_COMMIT_SHA",
    "BRANCHYARD_REPLICA_ID",
)


@pytest.fixture
def app(monkeypatch):
    """A clean slate: none of the app's variables set, the app dir importable, its modules freshly imported."""
    for name in APP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(APP))
    saved = {name: sys.modules.pop(name) for name in APP_MODULES if name in sys.modules}
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # main.py calls logging.basicConfig
    try:
        yield monkeypatch
    finally:
        if "db" in sys.modules:
            sys.modules["db"].dispose_all()
        for name in APP_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        root.setLevel(level)
        root.handlers[:] = handlers


def client():
    import main
    from fastapi.testclient import TestClient

    return TestClient(main.app)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed: connection refused


# --- /health ------------------------------------------------------------------------------------------


def test_health_without_database_or_redis(app) -> None:
    response = client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "environment", "commit", "replica", "uptime_seconds", "database", "redis"}
    assert body["status"] == "ok"
    assert body["environment"] == "development"
    assert body["commit"] == "unknown"
    assert body["replica"] == ""
    assert isinstance(body["uptime_seconds"], float) and body["uptime_seconds"] >= 0
    assert body["database"] == "not configured"
    assert body["redis"] == "not configured"


def test_health_reports_the_platforms_variables(app) -> None:
    app.setenv("ENVIRONMENT", "staging")
    app.setenv("BRANCHYARD_GIT_COMMIT_SHA", "0123abc")
    app.setenv("RAILWAY_GIT_COMMIT_SHA", "ignored-when-branchyard-sets-it")
    app.setenv("BRANCHYARD_REPLICA_ID", "web-2")
    body = client().get("/health").json()
    assert (body["environment"], body["commit"], body["replica"]) == ("staging", "0123abc", "web-2")


def test_health_is_503_when_the_database_is_unreachable_and_never_echoes_credentials(app) -> None:
    pytest.importorskip("psycopg")
    port = closed_port()
    app.setenv("DATABASE_URL", f"postgresql://yoto:pg-s3cret@127.0.0.1:{port}/yoto")
    response = client().get("/health")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["redis"]) == ("degraded", "error: connection refused", "not configured")
    assert "s3cret" not in response.text and str(port) not in response.text and "yoto@" not in response.text


def test_redis_down_is_degraded_but_healthy(app) -> None:
    pytest.importorskip("redis")
    app.setenv("REDIS_URL", f"redis://default:redis-s3cret@127.0.0.1:{closed_port()}")
    response = client().get("/health")
    assert response.status_code == 200  # the app works without its cache: not a reason to fail a deploy
    body = response.json()
    assert (body["status"], body["database"], body["redis"]) == ("degraded", "not configured", "error: connection refused")
    assert "s3cret" not in response.text


def test_a_bad_database_url_is_an_error_without_the_url(app) -> None:
    app.setenv("DATABASE_URL", "mysql://root:my-s3cret@db:3306/yoto")
    response = client().get("/health")
    assert response.status_code == 503
    assert response.json()["database"].startswith("error: DATABASE_URL has an unsupported scheme")
    assert "s3cret" not in response.text


def test_data_endpoints_answer_503_without_a_database(app) -> None:
    c = client()
    for response in (c.get("/users"), c.get("/streams"), c.post("/users", json={"email": "a@example.com", "name": "A"})):
        assert response.status_code == 503
        assert response.json() == {"detail": "database not configured"}
    assert c.post("/users", json={"email": "not-an-email", "name": "A"}).status_code == 422


def test_index_still_shows_the_environment_settings(app) -> None:
    app.setenv("ENVIRONMENT", "production")
    assert client().get("/").json() == {
        "app": "yoto-smart-stream",
        "environment": "production",
        "debug": False,
        "log_level": "warning",
        "workers": 4,
        "timeout": 60,
    }


# --- config.py ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "workers", "timeout", "log_level"),
    [
        ("production", 4, 60, "warning"),
        ("staging", 2, 120, "info"),
        ("preview", 1, 300, "debug"),
        (None, 1, 300, "debug"),  # development
    ],
)
def test_config_per_environment(app, environment, workers, timeout, log_level) -> None:
    if environment:
        app.setenv("ENVIRONMENT", environment)
    app.setenv("LOG_LEVEL", "error")  # the environment's level wins, as in the guide's config.py
    import config

    config = importlib.reload(config)
    c = config.config
    assert (c.ENVIRONMENT, c.WORKERS, c.TIMEOUT, c.LOG_LEVEL) == (environment or "development", workers, timeout, log_level)
    assert c.DEBUG is False and c.DATABASE_URL is None and c.REDIS_URL is None


def test_config_workers_is_the_workers_variable_the_start_command_uses(app) -> None:
    app.setenv("ENVIRONMENT", "production")
    app.setenv("WORKERS", "3")  # what `uvicorn --workers ${WORKERS:-1}` was given
    import config

    assert importlib.reload(config).config.WORKERS == 3


def test_config_debug_and_urls(app) -> None:
    app.setenv("DEBUG", "True")
    app.setenv("DATABASE_URL", "postgresql://u:p@h:5432/d")
    app.setenv("REDIS_URL", "redis://default:p@h:6379")
    import config

    c = importlib.reload(config).config
    assert c.DEBUG is True
    assert (c.DATABASE_URL, c.REDIS_URL) == ("postgresql://u:p@h:5432/d", "redis://default:p@h:6379")


def test_importing_the_app_does_not_connect(app) -> None:
    app.setenv("DATABASE_URL", f"postgresql://u:p@127.0.0.1:{closed_port()}/d")
    app.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}")
    import db
    import main  # noqa: F401 - an unreachable database must not break (or slow) the import

    assert db._engines == {}


def test_database_url_scheme_conversion(app) -> None:
    import db

    assert db.sqlalchemy_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert db.sqlalchemy_url("postgres://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    assert db.sqlalchemy_url("postgresql+psycopg://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    for bad in ("mysql://u:s3cret@h/d", "s3cret", ""):
        with pytest.raises(db.BadDatabaseURL) as err:
            db.sqlalchemy_url(bad)
        assert "s3cret" not in str(err.value)


# --- manage.py and migrations -------------------------------------------------------------------------


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in APP_ENV} | env
    return subprocess.run([sys.executable, *args], cwd=APP, env=clean, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv", [["seed_data", "--test"], ["seed_data", "--staging"], ["migrate"]])
def test_manage_without_database_url_fails_with_one_line(argv) -> None:
    done = _run("manage.py", *argv)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("manage.py: DATABASE_URL is not set")


def test_migrations_render_the_schema_offline() -> None:
    """`alembic upgrade head --sql` runs env.py and the migrations without a server (nothing connects)."""
    done = _run("-m", "alembic", "upgrade", "head", "--sql", DATABASE_URL="postgresql://u:p@127.0.0.1:1/d")
    assert done.returncode == 0, done.stderr
    sql = done.stdout
    for table in ("users", "streams", "cards"):
        assert f"CREATE TABLE {table} (" in sql
    assert "UNIQUE (email)" in sql
    assert "FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE" in sql
    assert "FOREIGN KEY(stream_id) REFERENCES streams (id) ON DELETE CASCADE" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in sql


# --- what the platform reads --------------------------------------------------------------------------


def test_railway_toml() -> None:
    spec = tomllib.loads((APP / "railway.toml").read_text())
    assert spec["build"] == {"builder": "NIXPACKS", "buildCommand": "pip install -r requirements.txt"}
    assert spec["deploy"] == {
        "startCommand": "uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}",
        "preDeployCommand": "python manage.py migrate",
        "healthcheckPath": "/health",
        "healthcheckTimeout": 100,
        "restartPolicyType": "ON_FAILURE",
    }


def test_requirements() -> None:
    names = {line.split(">")[0].split("=")[0].split("[")[0].strip().lower()
             for line in (APP / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert names == {"fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "redis", "sentry-sdk"}
    assert "psycopg[binary]" in (APP / "requirements.txt").read_text()
