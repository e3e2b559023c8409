"""Each environment's own PostgreSQL and Redis, reference variables, secrets, hooks, run/connect, teardown."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
import redis
from conftest import BRANCHYARD

from branchyard.backends.local.postgres import Admin, LocalServer

pytestmark = pytest.mark.integration

SECRET_VALUES = ("production-client-secret-value", "staging-client-secret-value")


def deploy_both(plane, tmp_path, project):
    repo = plane.app_repo(tmp_path, "app", project=project)
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")
    return repo


def test_environments_get_their_own_database_and_redis_wired_by_references(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "dp")
    for host, env in (("dp.localhost", "production"), ("dp-staging.localhost", "staging")):
        health = plane.get(host).json()
        assert (health["environment"], health["database"], health["redis"], health["status"]) == (env, "ok", "ok", "ok")
    # migrations ran (preDeployCommand) and staging was seeded once (seedCommand); production was not
    assert plane.get("dp-staging.localhost", "/users").json()["users"]
    assert plane.get("dp.localhost", "/users").json()["users"] == []

    prod = plane.json("variables", "list", "-e", "production", cwd=repo)["variables"]
    staging = plane.json("variables", "list", "-e", "staging", cwd=repo)["variables"]
    assert prod["DATABASE_URL"] != staging["DATABASE_URL"] and prod["REDIS_URL"] != staging["REDIS_URL"]
    assert "••••••" in prod["DATABASE_URL"] and "••••••" in prod["YOTO_CLIENT_SECRET"]


def test_no_environment_can_reach_another_ones_database(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "iso")
    urls = {}
    for env in ("production", "staging"):
        shown = plane.run("run", "-e", env, "--", "sh", "-c", "echo $DATABASE_URL", cwd=repo).stdout.strip()
        urls[env] = shown
    assert urls["production"] != urls["staging"]
    redis_urls = {env: plane.run("run", "-e", env, "--", "sh", "-c", "echo $REDIS_URL", cwd=repo).stdout.strip()
                  for env in ("production", "staging")}
    for mine, theirs in (("production", "staging"), ("staging", "production")):
        other_db = urls[theirs].rsplit("/", 1)[1]
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(urls[mine].rsplit("/", 1)[0] + "/" + other_db, connect_timeout=5).close()
        psycopg.connect(urls[mine], connect_timeout=5).close()  # its own works
        # my Redis password against their Redis: refused
        their = redis.Redis.from_url(redis_urls[theirs])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=their.connection_pool.connection_kwargs["host"],
                        port=their.connection_pool.connection_kwargs["port"],
                        password=redis.Redis.from_url(redis_urls[mine]).connection_pool.connection_kwargs["password"]).ping()
        assert redis.Redis.from_url(redis_urls[mine]).ping()


def test_secrets_never_appear_in_output_or_logs(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "sec")
    outputs = [
        plane.run("variables", "list", "-e", "production", cwd=repo).stdout,
        plane.run("variables", "list", "-e", "production", "--json", cwd=repo).stdout,
        plane.run("variables", "list", "-e", "production", "--kv", cwd=repo).stdout,
        plane.run("status", "-e", "production", "--json", cwd=repo).stdout,
        plane.run("logs", "-e", "production", cwd=repo).stdout,
        plane.run("logs", "-e", "production", "--build", cwd=repo).stdout,
        plane.run("events", "--json", cwd=repo).stdout,
        (plane.home / "logs" / "server.log").read_text(),
        (plane.home / "state.db").read_bytes().decode("latin-1"),
    ]
    outputs += [p.read_text(errors="replace") for p in (plane.home / "logs").rglob("*.log")]
    for text in outputs:
        for secret in SECRET_VALUES:
            assert secret not in text


def test_connect_reads_stdin(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "conn")
    done = subprocess.run([*BRANCHYARD, "connect", "postgres", "-e", "staging"], cwd=repo, env=plane.env,
                          input="select count(*) > 0 as seeded from users;\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert " t" in done.stdout
    done = subprocess.run([*BRANCHYARD, "connect", "redis", "-e", "production"], cwd=repo, env=plane.env,
                          input="PING\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "PONG" in done.stdout


def test_variables_set_redeploys_with_the_new_value_and_missing_secret_is_refused(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "vars")
    deployments = len(plane.json("deployments", "-e", "staging", cwd=repo))
    plane.run("variables", "set", "DEBUG=false", "-e", "staging", cwd=repo)
    assert plane.get("vars-staging.localhost", "/").json()["debug"] is False
    assert len(plane.json("deployments", "-e", "staging", cwd=repo)) == deployments + 1

    plane.run("variables", "delete", "YOTO_CLIENT_ID", "-e", "staging", "--skip-deploys", cwd=repo)
    (repo / "VERSION").write_text("2\n")
    plane.commit(repo, "v2")
    push = plane.git(repo, "push", "branchyard", "develop", check=False)
    assert push.returncode != 0
    assert "${{ secrets.YOTO_CLIENT_ID }}: secrets has no variable 'YOTO_CLIENT_ID'" in push.stderr


def test_failing_pre_deploy_command_keeps_the_previous_deployment(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "mig")
    good = plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["id"]
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace('preDeployCommand = "python manage.py migrate"',
                                                   'preDeployCommand = ["python manage.py migrate", "exit 3"]'))
    plane.commit(repo, "broken migration")
    push = plane.git(repo, "push", "branchyard", "develop", check=False)
    assert push.returncode != 0 and "`exit 3` exited with code 3" in push.stderr
    assert plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["id"] == good
    assert plane.get("mig-staging.localhost").status_code == 200


def test_teardown_drops_database_role_and_redis(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "tear")
    url = plane.run("run", "-e", "staging", "--", "sh", "-c", "echo $DATABASE_URL", cwd=repo).stdout.strip()
    redis_dir = plane.home / "redis" / "tear" / "staging"
    assert redis_dir.is_dir()
    plane.run("environment", "delete", "staging", "--yes", cwd=repo)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
    assert not redis_dir.exists()
    admin = Admin(LocalServer(data_dir=plane.home / "postgres" / "shared").admin_url())
    assert "by_tear_staging" not in admin.databases() and "by_tear_staging" not in admin.roles()
    assert "by_tear_production" not in admin.databases()  # production has a dedicated server of its own
    assert plane.json("environment", "list", cwd=repo)[0]["name"] == "production"


def test_add_plugin(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="plug")
    bad = plane.run("add", "--plugin", "mongodb", "-e", "staging", cwd=repo, check=False)
    assert bad.returncode == 2 and "unknown plugin 'mongodb'" in bad.stderr
    done = plane.run("add", "--plugin", "redis", "-e", "staging", cwd=repo)
    assert "REDISPORT=" in done.stdout


def test_backup_restore_round_trip_and_refusals(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "bk")
    users = lambda: plane.get("bk-staging.localhost", "/users").json()["users"]  # noqa: E731
    before = users()
    assert before
    backup = plane.run("backup", "-e", "staging", cwd=repo).stdout
    # staging has `backups = "daily"`: the scheduled one may fall in this test (the unexplained failure of
    # an earlier session, two rows instead of one); it is not what this test checks
    [row] = [b for b in plane.json("backup", "list", "-e", "staging", cwd=repo) if b["kind"] != "scheduled"]
    assert row["id"] in backup and len(row["sha256"]) == 64 and row["kind"] == "manual"
    plane.run("run", "-e", "staging", "--", sys.executable, "-c",
              "import os, psycopg; c = psycopg.connect(os.environ['DATABASE_URL']); c.execute('delete from cards');"
              "c.execute('delete from streams'); c.execute('delete from users'); c.commit()", cwd=repo)
    assert plane.get("bk-staging.localhost", "/users?limit=1000").json()["users"] == []
    plane.run("restore", row["id"], "-e", "staging", cwd=repo)
    assert [u["email"] for u in users()] == [u["email"] for u in before]

    wrong = plane.run("restore", row["id"], "-e", "production", "--yes", cwd=repo, check=False)
    assert wrong.returncode == 2 and "is of environment 'staging', not 'production'" in wrong.stderr
    unknown = plane.run("restore", "deadbeef-0000", "-e", "staging", cwd=repo, check=False)
    assert unknown.returncode == 3 and "unknown backup" in unknown.stderr
    prod = plane.run("restore", row["id"], "-e", "production", cwd=repo, check=False, input="")
    assert prod.returncode == 2 and "pass --yes" in prod.stderr


def test_production_migrations_are_preceded_by_a_backup_and_deletion_by_a_final_one(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "pb")
    plane.git(repo, "checkout", "--quiet", "main")
    (repo / "VERSION").write_text("2\n")
    plane.commit(repo, "v2")
    push = plane.git(repo, "push", "branchyard", "main")
    assert "taken before migrations" in push.stderr

    def kinds() -> list[str]:  # the daily backup of `backups = "daily"` may fall in this test: not what it checks
        return [b["kind"] for b in plane.json("backup", "list", "-e", "production", cwd=repo) if b["kind"] != "scheduled"]

    assert kinds() == ["pre-deploy"]
    plane.run("environment", "delete", "production", "--confirm", "production", cwd=repo)
    assert kinds() == ["final", "pre-deploy"]


def test_refresh_staging_from_production_sanitized(plane, tmp_path):
    repo = deploy_both(plane, tmp_path, "ref")
    people = [("ada@lovelace.example", "Ada Lovelace"), ("alan@turing.example", "Alan Turing")]
    for email, name in people:
        assert plane.request("POST", "ref.localhost", "/users", json={"email": email, "name": name}).status_code == 201
    refused = plane.run("db", "refresh", "production", "--from", "staging", "--yes", cwd=repo, check=False)
    assert refused.returncode == 2 and "refreshing production from anything is refused" in refused.stderr
    plane.run("db", "refresh", "staging", "--from", "production", "--yes", cwd=repo)
    users = plane.get("ref-staging.localhost", "/users?limit=1000").json()["users"]
    assert len(users) == len(people)  # production's rows, not staging's seed
    dump = subprocess.run([*BRANCHYARD, "connect", "postgres", "-e", "staging"], cwd=repo, env=plane.env, timeout=60,
                          input="select email, name from users;\n", capture_output=True, text=True).stdout
    for email, name in people:
        assert email not in dump and name not in dump
    assert "@example.invalid" in dump
