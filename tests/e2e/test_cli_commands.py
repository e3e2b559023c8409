"""Documented commands with no test of their own: `config show --json`, `environment add`, `link`, and runtime `logs`
with `-d`, `-n` and `--json`. Real control plane, Caddy, git and processes, on the trivially fast app of
test_previews_rules (python -m http.server, which logs every request on stderr)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import BRANCHYARD, EXAMPLE, wait_for
from test_previews_rules import branch_commit, tiny_project

pytestmark = pytest.mark.integration

# `config show -e pr-42 --json` on the example app: the pr template over its base (staging) over the project's
# defaults and railway.toml, with where each value came from.
PR_42 = {
    "environment": "pr-42",
    "production": False,
    "ephemeral": True,
    "branch": None,
    "base": "staging",
    "web": {
        "start_command": "uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}",
        "build_command": "pip install -r requirements.txt",
        "pre_deploy_command": ["python manage.py migrate"],
        "seed_command": "python manage.py seed_data --test",
        "healthcheck_path": "/health",
        "healthcheck_timeout": 100,
        "healthcheck_interval": 5,
        "healthcheck_failures": 3,
        "restart_policy_type": "ON_FAILURE",
        "restart_policy_max_retries": 10,
        "replicas": 1,
        "overlap_seconds": 0,
        "draining_seconds": 0,  # not set: the deploy then drains for DEFAULT_DRAINING_SECONDS (10)
        "memory_mb": 512,
        "cpu": 0.5,
        "sleep_application": False,
        "cron_schedule": None,
        "watch_patterns": [],
        "dockerfile_path": None,
        "root_dir": ".",
    },
    "postgres": {
        "name": "Postgres",
        "memory_mb": 512,
        "storage_mb": 1024,
        "backups": None,
        "ephemeral": True,
        "dedicated": False,
        "template_files": ["migrations", "alembic.ini", "manage.py", "db.py"],
    },
    "redis": None,  # [environments.pr.services.redis] enabled = false
    "variables": {  # staging's, without unset_variables (REDIS_URL, SENTRY_DSN), with the pr template's own
        "YOTO_CLIENT_ID": "${{ secrets.YOTO_CLIENT_ID }}",
        "YOTO_CLIENT_SECRET": "${{ secrets.YOTO_CLIENT_SECRET }}",
        "DATABASE_URL": "${{Postgres.DATABASE_URL}}",
        "PORT": "${{PORT}}",
        "ENVIRONMENT": "preview",
        "DEBUG": "true",
        "LOG_LEVEL": "debug",
        "WORKERS": "1",
    },
    "sources": {
        "web.start_command": "railway.toml [deploy]",
        "web.build_command": "railway.toml [build]",
        "web.pre_deploy_command": "railway.toml [deploy]",
        "web.seed_command": "branchyard.toml [environments.pr.services.web]",
        "web.healthcheck_path": "railway.toml [deploy]",
        "web.healthcheck_timeout": "railway.toml [deploy]",
        "web.healthcheck_interval": "default",
        "web.healthcheck_failures": "default",
        "web.restart_policy_type": "railway.toml [deploy]",
        "web.restart_policy_max_retries": "default",
        "web.replicas": "default",
        "web.overlap_seconds": "default",
        "web.draining_seconds": "default",
        "web.memory_mb": "branchyard.toml [services.web]",
        "web.cpu": "branchyard.toml [services.web]",
        "web.sleep_application": "default",
        "web.cron_schedule": "default",
        "web.watch_patterns": "default",
        "web.dockerfile_path": "default",
        "web.root_dir": "default",
        "postgres.name": "branchyard.toml [services.postgres]",
        "postgres.memory_mb": "branchyard.toml [environments.pr.services.postgres]",
        "postgres.storage_mb": "branchyard.toml [environments.pr.services.postgres]",
        "postgres.backups": "branchyard.toml [environments.pr.services.postgres]",
        "postgres.ephemeral": "branchyard.toml [environments.pr.services.postgres]",
        "postgres.dedicated": "default",
        "postgres.template_files": "branchyard.toml [environments.pr.services.postgres]",
        "variables.YOTO_CLIENT_ID": "branchyard.toml [variables]",
        "variables.YOTO_CLIENT_SECRET": "branchyard.toml [variables]",
        "variables.DATABASE_URL": "branchyard.toml [variables]",
        "variables.PORT": "branchyard.toml [variables]",
        "variables.ENVIRONMENT": "branchyard.toml [environments.pr.variables]",
        "variables.DEBUG": "branchyard.toml [environments.pr.variables]",
        "variables.LOG_LEVEL": "branchyard.toml [environments.pr.variables]",
        "variables.WORKERS": "branchyard.toml [environments.pr.variables]",
    },
    # what the build will use (issue 13), each with its source
    "alerts": {"tier": "preview", "rules": [], "webhooks": []},  # previews: no alert rules by default
    "uptime": False,  # only production's URL is probed unless an environment says `uptime = true`
    "processes": {},  # the Procfile's process types besides web and release (issue 17): the example app has none
    "tests": None,  # no [environments.pr.tests] in the example
    "sleep_after": None,  # no sleepAfter on the pr template…
    # …so a preview sleeps after the operator's default (issue 17): 30 minutes without a request
    "sleep": {"after": 1800, "from": "previews' default (BRANCHYARD_PREVIEW_SLEEP_AFTER)"},
    "build": {
        "python": {"value": "the server's default (BRANCHYARD_PYTHON)", "from": "default: the app names no version"},
        "installer": {"value": "pip install -r requirements.txt", "from": "buildCommand"},
    },
}


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:  # noqa: ANN001
    """The CLI with no server and no BRANCHYARD_* settings (config commands read only the files)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")}
    return subprocess.run([*BRANCHYARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_config_show_json_prints_the_effective_config_and_its_sources(tmp_path):
    done = cli("config", "show", "-e", "pr-42", "--json", "--path", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == PR_42
    # the same in the app's directory, without --path; production's own values come through
    prod = json.loads(cli("config", "show", "-e", "production", "--json", cwd=EXAMPLE).stdout)
    assert (prod["production"], prod["branch"], prod["web"]["replicas"], prod["postgres"]["dedicated"]) == (
        True, "main", 2, True)
    assert prod["sources"]["web.replicas"] == "branchyard.toml [environments.production.services.web]"
    assert prod["redis"] == {"name": "Redis", "memory_mb": 512, "persistence": True}
    unknown = cli("config", "show", "-e", "qa", "--json", "--path", str(EXAMPLE))
    assert (unknown.returncode, unknown.stdout) == (3, "")
    assert unknown.stderr.strip() == "error: unknown environment 'qa' (declared: production, staging, pr-*)"


def test_environment_add_creates_an_environment_listed_with_its_branch(plane, tmp_path):
    repo, _ = tiny_project(plane, tmp_path, "envadd")
    assert [e["name"] for e in plane.json("environment", "list", cwd=repo)] == ["production", "staging"]  # from init
    added = plane.run("environment", "add", "qa", "--branch", "release/qa", cwd=repo)
    assert f"environment qa created: http://envadd-qa.localhost:{plane.http_port}" in added.stdout + added.stderr
    bad = plane.run("environment", "add", "Demo", cwd=repo, check=False)
    assert (bad.returncode, bad.stderr.strip()) == (2, "error: environment name 'Demo' is not allowed: use 1-40 lowercase "
                                                       "letters, digits and dashes, starting and ending with a letter or digit")
    plane.run("environment", "add", "demo", cwd=repo)
    listed = {e["name"]: e for e in plane.json("environment", "list", cwd=repo)}
    assert list(listed) == ["production", "staging", "qa", "demo"]
    qa = listed["qa"]
    assert (qa["project"], qa["branch"], qa["production"], qa["ephemeral"], qa["state"], qa["status"], qa["url"]) == (
        "envadd", "release/qa", False, False, "ACTIVE", "NO DEPLOYMENTS", f"http://envadd-qa.localhost:{plane.http_port}")
    assert listed["demo"]["branch"] is None
    assert plane.json("environment", "list", "--ephemeral", cwd=repo) == []
    created = [e["message"] for e in plane.json("events", cwd=repo) if e["kind"] == "environment.created"]
    assert created == ["environment demo created", "environment qa created",  # newest first
                       "environment staging created (declared by the project files)",
                       "environment production created (declared by the project files)"]
    again = plane.run("environment", "add", "qa", "--branch", "other", cwd=repo, check=False)
    assert again.returncode == 4 and "environment 'qa' already exists in project 'envadd'" in again.stderr
    assert {e["name"]: e["branch"] for e in plane.json("environment", "list", cwd=repo)}["qa"] == "release/qa"


def test_link_points_a_repository_at_a_project_and_a_default_environment(plane, tmp_path):
    repo, _ = tiny_project(plane, tmp_path, "lnk")
    v1 = branch_commit(plane, repo, "develop", "v1", remote="branchyard")  # staging deployed; returns when live
    elsewhere = tmp_path / "elsewhere"  # a repository with no branchyard.toml: only the link names the project
    elsewhere.mkdir()
    plane.git(elsewhere, "init", "--quiet", "--initial-branch=main")
    unlinked = plane.run("status", "--json", cwd=elsewhere, check=False)
    assert unlinked.returncode == 2 and "no project linked here" in unlinked.stderr

    plane.run("link", "lnk", "-e", "staging", cwd=elsewhere)
    status = plane.json("status", cwd=elsewhere)  # no -p, no -e
    assert (status["project"], status["name"], status["current_deployment"]["commit"]) == ("lnk", "staging", v1)
    assert [d["commit"] for d in plane.json("deployments", cwd=elsewhere)] == [v1]
    assert plane.git(elsewhere, "remote", "get-url", "branchyard").stdout == \
        plane.git(repo, "remote", "get-url", "branchyard").stdout  # the project's own remote
    # and a push through the linked remote deploys
    plane.git(elsewhere, "fetch", "--quiet", str(repo), "develop")
    plane.git(elsewhere, "checkout", "--quiet", "-B", "develop", "FETCH_HEAD")
    (elsewhere / "VERSION").write_text("v2\n")
    v2 = plane.commit(elsewhere, "v2 from the linked clone")
    plane.git(elsewhere, "push", "branchyard", "develop")
    assert plane.json("status", cwd=elsewhere)["current_deployment"]["commit"] == v2
    assert plane.get("lnk-staging.localhost", "/VERSION").text == "v2\n"

    # without -e the default environment stays production (declared, registered by init; nothing pushed to main yet)
    third = tmp_path / "third"
    third.mkdir()
    plane.git(third, "init", "--quiet")
    plane.run("link", "lnk", cwd=third)
    default = plane.json("status", cwd=third)
    assert (default["name"], default["status"], default["current_deployment"]) == ("production", "NO DEPLOYMENTS", None)
    assert "no deployment yet: deploy with `git push branchyard main`" in plane.run("status", cwd=third).stdout
    missing = plane.run("status", "-e", "qa", cwd=third, check=False)
    assert missing.returncode == 3
    assert missing.stderr.strip() == "error: unknown environment 'qa' in project 'lnk' (known: production, staging)"
    unknown = plane.run("link", "nosuch", cwd=third, check=False)
    assert unknown.returncode == 3 and "unknown project 'nosuch'" in unknown.stderr


def access_lines(lines: list[str]) -> list[str]:
    """The markers of the requests http.server logged (`"GET /health?<marker> HTTP/1.1" 200`), in order."""
    return [line.split("GET /health?", 1)[1].split(" ", 1)[0] for line in lines if "GET /health?" in line]


def test_runtime_logs_with_deployment_lines_and_json(plane, tmp_path):
    # the liveness probes write to the access log too (`GET /health` every healthcheckInterval, the first one soon
    # after the replica runs; `status` probes a replica not checked yet): this test compares the log's last lines
    # across reads, so it probes once an hour and sends its requests after that first liveness check
    repo, _ = tiny_project(plane, tmp_path, "lg", extra="\n[services.web]\nhealthcheckInterval = 3600\n")
    v1 = branch_commit(plane, repo, "develop", "v1", remote="branchyard")
    first = plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["id"]
    for i in range(4):
        assert plane.get("lg-staging.localhost", f"/health?v1-{i}").status_code == 200
    plane.git(repo, "checkout", "--quiet", "develop")  # v2 on top of v1: the remote refuses to rewrite develop
    (repo / "VERSION").write_text("v2\n")
    v2 = plane.commit(repo, "v2")
    plane.git(repo, "push", "--quiet", "branchyard", "develop")
    plane.git(repo, "checkout", "--quiet", "main")
    second = plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["id"]
    assert second != first
    wait_for(lambda: [r["health"] for e in plane.json("environment", "list", cwd=repo) if e["name"] == "staging"
                      for r in e["replicas"]] == ["healthy"])  # `environment list` never probes: this is the liveness check
    for i in range(6):
        assert plane.get("lg-staging.localhost", f"/health?v2-{i}").status_code == 200

    def records(*args: str) -> list[dict]:  # --json: one record per line
        return [json.loads(line) for line in plane.run("logs", "-e", "staging", *args, "--json", cwd=repo).stdout.splitlines()]

    def marks(recs: list[dict]) -> list[str]:
        return access_lines([r["message"] for r in recs])

    # default: the environment's records, every deployment's, in order (http.server logs to stderr)
    full = wait_for(lambda: (d := records("-n", "1000")) and marks(d)[-1:] == ["v2-5"] and d)
    assert marks(full) == [f"v1-{i}" for i in range(4)] + [f"v2-{i}" for i in range(6)]
    mine = [r for r in full if "GET /health?" in r["message"]]
    assert {(r["service"], r["replica"], r["stream"], r["environment"]) for r in mine} == {("web", 0, "stderr", "staging")}
    assert [r["deployment"] for r in mine] == [first] * 4 + [second] * 6
    # -d ID (a unique prefix will do): that deployment's records only, although it no longer runs
    assert marks(records("-d", second, "-n", "1000")) == [f"v2-{i}" for i in range(6)]
    assert marks(records("-d", first[:8], "-n", "1000")) == [f"v1-{i}" for i in range(4)]
    # -n N: the last N records
    last = records("-n", "3")
    assert last == full[-3:] and marks(last) == ["v2-3", "v2-4", "v2-5"]
    # the text form: one line per record, `time service.replica stream level message`
    text = plane.run("logs", "-e", "staging", "-n", "2", cwd=repo).stdout.splitlines()
    assert text == [f"{r['time']} web.0 stderr - {r['message']}" for r in full[-2:]]

    # --build: a deployment's deploy log (default: the current one), whatever -n says, read from its file
    built = plane.json("logs", "-e", "staging", "--build", "-n", "1", cwd=repo)
    assert (built["deployment_id"], built["status"]) == (second, "SUCCESS")
    assert built["build"][0].startswith(f"-----> push of {v2[:12]} (develop) to lg/staging (deployment {second})")
    old = plane.json("logs", "-e", "staging", "-d", first[:8], "--build", cwd=repo)
    assert (old["deployment_id"], old["status"]) == (first, "REMOVED")
    assert old["build"][0].startswith(f"-----> push of {v1[:12]} (develop) to lg/staging (deployment {first})")
    # its records say the same lines, stream `deploy` (shipped long ago: that deployment ended)
    deploy = plane.json("logs", "-e", "staging", "-d", first, "--build", "-n", "10000", cwd=repo)
    assert [(r["stream"], r["message"]) for r in deploy["records"]] == [("deploy", ln.rstrip("\n")) for ln in deploy["build"]]
    text = plane.run("logs", "-e", "staging", "--build", cwd=repo).stdout.splitlines()
    assert text[0] == f"==> build/deploy log of {second} (SUCCESS)"
    assert text[1:] == [line.rstrip("\n") for line in built["build"]]

    unknown = plane.run("logs", "-e", "staging", "-d", "ffffffff", cwd=repo, check=False)
    assert unknown.returncode == 3 and "unknown deployment 'ffffffff' in environment 'staging'" in unknown.stderr
