"""`variables set` under the isolation guard: a value that would make a non-production environment reach
production's data is refused before anything is stored (with or without `--skip-deploys`), on a trivially fast app
(python -m http.server) with real processes, Caddy and git."""

from __future__ import annotations

import pytest
from conftest import new_home, start_plane, stop_plane
from test_previews_rules import succeeded

pytestmark = pytest.mark.integration

PROD_DB = "postgresql://app:prod-db-password-1@db.internal.example:5432/app_production"

TOML = """[project]
name = "{name}"

[environments.production]
branch = "main"

[environments.production.variables]
DATABASE_URL = "{prod_db}"

[environments.staging]
branch = "develop"

[environments.staging.variables]
DATABASE_URL = "postgresql://app:staging-db-password@db.internal.example:5432/app_staging"
"""

RAILWAY = """[deploy]
startCommand = "exec python3 -m http.server $PORT --bind 127.0.0.1"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""


@pytest.fixture(scope="module")
def plane(venv_cache):
    p = start_plane(new_home(), venv_cache)
    try:
        yield p
    finally:
        stop_plane(p)


def stored(plane, repo, env):
    listed = plane.json("variables", "list", "-e", env, cwd=repo)
    return listed, plane.run("variables", "list", "-e", env, "--kv", cwd=repo).stdout


def test_variables_set_is_refused_whole_when_it_would_reach_production(plane, tmp_path):
    repo = tmp_path / "vg"
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML.format(name="vg", prod_db=PROD_DB))
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "production", "API_TOKEN=production-token-1",
              cwd=repo)
    plane.git(repo, "push", "branchyard", "main")
    succeeded(plane, repo, "production")
    plane.git(repo, "push", "branchyard", "main:develop")
    succeeded(plane, repo, "staging")
    plane.run("variables", "set", "--skip-deploys", "-e", "staging", "LOG_LEVEL=debug", cwd=repo)
    before = stored(plane, repo, "staging")
    deployments = plane.json("deployments", "-e", "staging", cwd=repo)

    pinned = ("isolation guard: staging: DATABASE_URL points at production's database app_production on "
              "db.internal.example:5432; a non-production environment must never reach production's data")
    for extra in ([], ["--skip-deploys"], ["--secret"], ["--secret", "--skip-deploys"]):
        done = plane.run("variables", "set", *extra, "-e", "staging", f"DATABASE_URL={PROD_DB}", "OTHER=fine",
                         cwd=repo, check=False)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert done.stderr.strip() == f"error: {pinned}", done.stderr  # one line, naming the variable
        assert PROD_DB not in done.stdout + done.stderr and "prod-db-password-1" not in done.stdout + done.stderr
        assert stored(plane, repo, "staging") == before, extra  # nothing stored, OTHER neither
    # a secret equal to one of production's is refused the same way; nothing was redeployed
    same = plane.run("variables", "set", "--secret", "-e", "staging", "STAGING_TOKEN=production-token-1", cwd=repo,
                     check=False)
    assert same.returncode == 2 and "isolation guard: staging: STAGING_TOKEN equals production's credential " \
                                    "(secret API_TOKEN)" in same.stderr and "production-token-1" not in same.stderr
    assert stored(plane, repo, "staging") == before
    assert plane.json("deployments", "-e", "staging", cwd=repo) == deployments
    refused = [e for e in plane.json("events", "-e", "staging", cwd=repo) if e["kind"] == "variables.refused"]
    assert len(refused) == 5 and all(e["actor"] == "isolation guard" for e in refused)
    assert not any("variables set: DATABASE_URL" in e["message"] or "secrets set: DATABASE_URL" in e["message"]
                   for e in plane.json("events", "-e", "staging", cwd=repo))

    # an environment that does not exist yet is checked on the values alone, and created only when they pass
    fresh = plane.run("variables", "set", "--skip-deploys", "-e", "qa", f"DATABASE_URL={PROD_DB}", cwd=repo,
                      check=False)
    assert fresh.returncode == 2 and "isolation guard: qa: DATABASE_URL points at production's database" in fresh.stderr
    assert "qa" not in {e["name"] for e in plane.json("environment", "list", cwd=repo)}
    # production itself may hold its own values, and a harmless change still goes through (and redeploys)
    plane.run("variables", "set", "--skip-deploys", "-e", "production", f"REPLICA_URL={PROD_DB}", cwd=repo)
    ok = plane.run("variables", "set", "-e", "staging", "LOG_LEVEL=info", cwd=repo)
    assert "variables set in staging: LOG_LEVEL" in ok.stdout
    assert "LOG_LEVEL=info" in stored(plane, repo, "staging")[1]
    assert len(plane.json("deployments", "-e", "staging", cwd=repo)) == len(deployments) + 1


def test_variables_delete_is_refused_when_what_shows_through_would_reach_production(plane, tmp_path):
    """The spec gives staging a value that reaches production's database; a stored override hides it. Deleting
    the override would let the spec's value through: refused, with nothing deleted and nothing redeployed."""
    repo = tmp_path / "vd"
    repo.mkdir()
    leaky = TOML.format(name="vd", prod_db=PROD_DB) + f'READ_DB = "{PROD_DB}"\n'
    (repo / "branchyard.toml").write_text(leaky)
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    own = "postgresql://app:staging-db-password@db.internal.example:5432/app_staging_reads"
    plane.run("variables", "set", "--skip-deploys", "-e", "staging", f"READ_DB={own}", "LOG_LEVEL=debug", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")  # the guard knows production's data from its deployment
    succeeded(plane, repo, "production")
    plane.git(repo, "push", "branchyard", "main:develop")
    succeeded(plane, repo, "staging")  # the stored override wins over the spec's value
    before, deployments = stored(plane, repo, "staging"), plane.json("deployments", "-e", "staging", cwd=repo)

    for extra in ([], ["--skip-deploys"]):
        done = plane.run("variables", "delete", *extra, "-e", "staging", "READ_DB", cwd=repo, check=False)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        assert done.stderr.strip() == ("error: isolation guard: staging: READ_DB points at production's database "
                                       "app_production on db.internal.example:5432; a non-production environment "
                                       "must never reach production's data"), done.stderr
        assert "prod-db-password-1" not in done.stdout + done.stderr
        assert stored(plane, repo, "staging") == before
    assert plane.json("deployments", "-e", "staging", cwd=repo) == deployments
    # deleting a harmless variable goes through
    plane.run("variables", "delete", "--skip-deploys", "-e", "staging", "LOG_LEVEL", cwd=repo)
    assert "LOG_LEVEL" not in stored(plane, repo, "staging")[1]
