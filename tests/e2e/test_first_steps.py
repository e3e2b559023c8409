"""A new user's first steps on a fresh project, for real (git, Caddy, PostgreSQL, processes): environments exist from
`init`, a repository on `master` is told how to deploy, `environment add --branch` survives deploys, a database added
before the first push is wired into an app that reads only PG* (Heroku's attach), the Procfile's `release:` line runs
as the pre-deploy command with the same variables, and `run` executes in the release's virtualenv and directory."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import new_home, start_plane, stop_plane

pytestmark = pytest.mark.integration

PROJECT = "firststeps"

TOML = f"""[project]
name = "{PROJECT}"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"

[environments.staging.services.postgres]
name = "Postgres"
"""

RAILWAY = """[deploy]
healthcheckPath = "/health"
healthcheckTimeout = 60
drainingSeconds = 1
"""

PROCFILE = "web: exec python app.py\nrelease: python release.py\nworker: python worker.py\n"

# An app written for Heroku/Railway's attach: no branchyard or Railway config reaches it, only libpq's PG* names.
APP = textwrap.dedent('''
    import http.server, json, os
    import psycopg  # libpq reads PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                body = b"ok"
            else:
                with psycopg.connect() as conn:
                    database, greeting = conn.execute(
                        "SELECT current_database(), (SELECT greeting FROM hello LIMIT 1)").fetchone()
                body = json.dumps({"database": database, "greeting": greeting,
                                   "public_domain": os.environ.get("RAILWAY_PUBLIC_DOMAIN")}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
''')

RELEASE = textwrap.dedent('''
    import psycopg

    with psycopg.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hello (greeting text)")
        conn.execute("DELETE FROM hello")
        conn.execute("INSERT INTO hello VALUES ('hello from the release phase')")
''')


@pytest.fixture(scope="module")
def plane(venv_cache):
    p = start_plane(new_home(), venv_cache)
    try:
        yield p
    finally:
        stop_plane(p)


@pytest.fixture(scope="module")
def repo(plane, tmp_path_factory):
    """The app on `master` (git's old default), registered with `init`; (repo, init's output)."""
    repo = tmp_path_factory.mktemp("first") / PROJECT
    repo.mkdir()
    files = {"branchyard.toml": TOML, "railway.toml": RAILWAY, "Procfile": PROCFILE, "app.py": APP,
             "release.py": RELEASE, "worker.py": "print('worker ran')\n",
             "requirements.txt": "psycopg[binary]>=3.1\ntabulate\n"}
    for name, text in files.items():
        (repo / name).write_text(text)
    plane.git(repo, "init", "--quiet", "--initial-branch=master")
    plane.commit(repo, "initial")
    init = plane.run("init", cwd=repo)
    return repo, init.stdout


def test_init_registers_the_declared_environments_and_says_how_to_deploy_master(plane, repo):
    repo, said = repo
    assert "environments: production, staging" in said
    assert ("branch 'master' (checked out here) is not mapped to an environment. Map it with `branchyard environment "
            "add production --branch master`") in said and "`git push branchyard master:main`" in said
    assert {e["name"]: e["branch"] for e in plane.json("environment", "list", cwd=repo)} == {
        "production": "main", "staging": "develop"}
    check = plane.run("config", "check", cwd=repo)
    assert "Procfile" not in check.stderr  # its worker: runs as a service (issue 17): nothing to warn about


def test_status_variables_and_plugins_work_before_the_first_push(plane, repo):
    repo, _ = repo
    status = plane.run("status", "-e", "production", cwd=repo)
    assert "no deployment yet: deploy with `git push branchyard main`" in status.stdout
    assert "(no deployment yet" in plane.run("variables", "list", "-e", "production", cwd=repo).stdout
    plane.run("add", "--plugin", "postgresql", "-e", "production", cwd=repo)
    listed = plane.json("variables", "list", "-e", "production", cwd=repo)
    attached = ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
    assert {k: listed["sources"][k] for k in attached} == dict.fromkeys(attached, "Postgres")
    assert listed["variables"]["PGPASSWORD"] == "••••••" and listed["variables"]["PGDATABASE"] == f"by_{PROJECT}_production"
    table = plane.run("variables", "list", "-e", "production", cwd=repo).stdout
    assert "provided by Postgres" in table
    plane.run("add", "--plugin", "redis", "-e", "production", cwd=repo)
    listed = plane.json("variables", "list", "-e", "production", cwd=repo)
    redis = ("REDIS_URL", "REDISHOST", "REDISPORT", "REDISUSER", "REDISPASSWORD")
    assert {k: listed["sources"][k] for k in redis} == dict.fromkeys(redis, "Redis")
    assert listed["variables"]["REDISPASSWORD"] == "••••••" and "••••••" in listed["variables"]["REDIS_URL"]
    refused = plane.run("run", "-e", "production", "--", "true", cwd=repo, check=False)
    assert refused.returncode == 3
    assert refused.stderr.strip() == ("error: run: environment 'production' has no deployment yet; commands run in its "
                                      "current release (deploy one first: `git push branchyard main`)")


def test_a_branch_set_by_the_user_deploys_and_is_kept(plane, repo):
    repo, _ = repo
    unmapped = plane.git(repo, "push", "branchyard", "master")
    assert ("branch 'master' is not mapped to an environment; stored, not deployed. Map it with `branchyard "
            "environment add production --branch master`") in unmapped.stderr
    assert plane.json("deployments", "-e", "production", cwd=repo) == []
    added = plane.run("environment", "add", "production", "--branch", "master", cwd=repo)
    assert "environment production now deploys branch master" in added.stdout

    plane.git(repo, "commit", "--quiet", "--allow-empty", "-m", "deploy")
    plane.git(repo, "push", "branchyard", "master")  # returns when SUCCESS

    envs = {e["name"]: e for e in plane.json("environment", "list", cwd=repo)}
    assert (envs["production"]["branch"], envs["production"]["branch_pinned"]) == ("master", True)
    conflicts = [e["message"] for e in plane.json("events", "-e", "production", cwd=repo)
                 if e["kind"] == "environment.branch_conflict"]
    assert conflicts == ["production deploys branch master (set with `environment add`), not main as the project "
                         "files say; the branch set by the user is kept"]


def test_the_attached_database_reaches_an_app_that_reads_only_pg_variables(plane, repo):
    """Deployed by the test above: the release phase wrote a row with PG* alone; the app reads it back."""
    repo, _ = repo
    got = plane.get(f"{PROJECT}.localhost", "/").json()
    assert got == {"database": f"by_{PROJECT}_production", "greeting": "hello from the release phase",
                   "public_domain": f"{PROJECT}.localhost:{plane.http_port}"}
    build = plane.run("logs", "-e", "production", "--build", cwd=repo).stdout
    assert "preDeployCommand: python release.py" in build
    password = plane.run("run", "-e", "production", "--", "printenv", "PGPASSWORD", cwd=repo).stdout.strip()
    assert password and password not in build
    assert password not in plane.run("variables", "list", "-e", "production", "--kv", cwd=repo).stdout


def test_run_executes_in_the_release_with_its_virtualenv(plane, repo):
    repo, _ = repo
    script = ("import json, os, sys, tabulate; print(json.dumps({'prefix': sys.prefix, 'venv': os.environ['VIRTUAL_ENV'],"
              " 'cwd': os.getcwd(), 'app': os.path.isfile('app.py'), 'db': os.environ['PGDATABASE']}))")
    got = json.loads(plane.run("run", "-e", "production", "--", "python", "-c", script, cwd=repo).stdout)
    assert got["prefix"] == got["venv"] and got["app"] and got["db"] == f"by_{PROJECT}_production"
    current = plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["id"]
    assert got["cwd"] == str(plane.home / "releases" / PROJECT / current)
    assert got["venv"].startswith(plane.env["BRANCHYARD_CACHE_DIR"])


def test_a_database_declared_by_the_spec_is_attached_at_the_first_deploy(plane, repo):
    repo, _ = repo
    plane.git(repo, "push", "branchyard", "master:develop")  # staging: its database is made by this deploy
    got = plane.get(f"{PROJECT}-staging.localhost", "/").json()
    assert (got["database"], got["greeting"]) == (f"by_{PROJECT}_staging", "hello from the release phase")
