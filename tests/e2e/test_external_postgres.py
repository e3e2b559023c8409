"""BRANCHYARD_POSTGRES_URL: the operator's own PostgreSQL server holds the environments' databases.

"The operator's server" is a second embedded PostgreSQL started here, outside the plane's home, with an admin role
that has CREATEDB and CREATEROLE but is not a superuser (what the setting asks for). The plane must create each
environment's database and role on it, keep them apart, drop them with the environment, and run no PostgreSQL of
its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import new_home, processes_mentioning, start_plane, stop_plane

from branchyard.backends.local import postgres
from branchyard.backends.local.postgres import Admin, LocalServer

pytestmark = pytest.mark.integration

TOML = """[project]
name = "ext"

[services.postgres]
name = "Postgres"

[variables]
DATABASE_URL = "${{Postgres.DATABASE_URL}}"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
"""

RAILWAY = """[deploy]
startCommand = "exec python3 -m http.server $PORT --bind 127.0.0.1"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""


@pytest.fixture(scope="module")
def operator() -> Iterator[tuple[LocalServer, str]]:
    """The operator's server and the URL of its non-superuser admin role (CREATEDB, CREATEROLE)."""
    base = Path(tempfile.mkdtemp(prefix="branchyard-operator-pg-"))
    server = LocalServer(data_dir=base / "server")
    try:
        server.ensure_running()
        password = postgres.new_password()
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE ROLE ops LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                psycopg.sql.Literal(password)))
            conn.execute("GRANT CONNECT ON DATABASE postgres TO ops")  # the embedded server revokes it from PUBLIC
        yield server, f"postgresql://ops:{password}@127.0.0.1:{server.port}/postgres"
    finally:
        server.stop()
        left = processes_mentioning(str(base))
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"postgres processes left running: {left}"


@pytest.fixture(scope="module")
def plane(operator, venv_cache):
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_POSTGRES_URL": operator[1]})
    try:
        yield p
    finally:
        stop_plane(p)


def env_url(plane, repo: Path, env: str) -> str:
    """DATABASE_URL as the environment's processes get it."""
    return plane.run("run", "-e", env, "--", "sh", "-c", 'printf %s "$DATABASE_URL"', cwd=repo).stdout


def one(url: str, query: str):  # noqa: ANN201
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute(query).fetchone()


def test_environments_get_their_own_database_on_the_operators_server(plane, operator, tmp_path):
    server, ops_url = operator
    root = Admin(server.admin_url())
    before = set(root.databases())
    repo = tmp_path / "ext"
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML)
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")  # production: provisioned by the deploy
    plane.git(repo, "push", "branchyard", "main:develop")  # staging too

    assert set(root.databases()) - before == {"by_ext_production", "by_ext_staging"}
    assert {"by_ext_production", "by_ext_staging"} <= set(root.roles())
    kinds = [(e["environment"], e["kind"]) for e in plane.json("events", cwd=repo) if e["kind"] == "postgres.created"]
    assert sorted(kinds) == [("production", "postgres.created"), ("staging", "postgres.created")]
    assert not (plane.home / "postgres").exists()  # the plane never initialised a server of its own

    urls = {env: env_url(plane, repo, env) for env in ("production", "staging")}
    for env, url in urls.items():
        parts = urlsplit(url)
        assert (parts.hostname, parts.port, parts.path, parts.username) == (
            "127.0.0.1", server.port, f"/by_ext_{env}", f"by_ext_{env}")
        # the app's credentials open its own database, as its own unprivileged role, on the operator's server
        assert one(url, "SELECT current_database(), current_user, inet_server_port()") == (
            f"by_ext_{env}", f"by_ext_{env}", server.port)
        assert one(url, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user") == (
            False, False, False)

    # isolation: staging's credentials do not open production's database
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "by_ext_production"'):
        one(urlsplit(urls["staging"])._replace(path="/by_ext_production").geturl(), "SELECT 1")
    # and what staging writes stays in staging's database
    with psycopg.connect(urls["staging"], autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('staging only')")
    assert one(urls["staging"], "SELECT body FROM notes") == ("staging only",)
    assert one(urls["production"], "SELECT to_regclass('public.notes') IS NULL") == (True,)

    # delete: the environment's database and role are dropped from the operator's server, production's stay
    plane.run("environment", "delete", "staging", "--yes", cwd=repo)
    assert set(root.databases()) - before == {"by_ext_production"}
    assert "by_ext_staging" not in root.roles() and "by_ext_production" in root.roles()
    assert one(urls["production"], "SELECT current_database()") == ("by_ext_production",)
    with pytest.raises(psycopg.OperationalError):
        one(urls["staging"], "SELECT 1")

    # the operator's server is not the plane's to stop: `server stop --all` leaves it running
    plane.run("server", "stop", "--all")
    assert server.pid() is not None and one(ops_url, "SELECT current_user") == ("ops",)
