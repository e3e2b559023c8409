"""Issue 17 through a real control plane and real `git push`es: watchPatterns (a push touching only docs/ does not
deploy and says so; one touching app/ does) and a cron service (built and recorded, no replicas, no health check,
the router's unavailable page, `status` showing its schedule; its runs — a real process per slot, overlapping slots
skipped — listed by `cron runs` and their output in `logs`). The control plane runs with
BRANCHYARD_TEST_CRON_CLOCK_SPEED=60 (tests only): a "* * * * *" slot comes every second, no real minute is waited."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import new_home, start_plane, stop_plane, wait_for
from webhooks import deliver, push

pytestmark = pytest.mark.integration

JOB = """import os, time
print("tick", os.environ["RAILWAY_ENVIRONMENT_NAME"], "DATABASE_URL" in os.environ, flush=True)
time.sleep(2.5)  # 2.5 s of wall clock = 2.5 schedule minutes: the next slots come while it runs
"""


SECRET = "cron-watch-webhook-secret"


@pytest.fixture(scope="module")
def plane(tmp_path_factory, venv_cache):
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_TEST_CRON_CLOCK_SPEED": "60",
                                                       "BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET})
    try:
        p.api_url = p.json("server", "status")["api_url"]
        yield p
    finally:
        stop_plane(p)

WATCH = '\n[build]\nwatchPatterns = ["/app/**", "/main.py"]\n'


def _with_railway(repo, extra: str, *, replace: tuple[str, str] | None = None) -> None:
    text = (repo / "railway.toml").read_text()
    if replace:
        assert replace[0] in text, f"railway.toml has no {replace[0]!r}"  # the example app's file changed under the test
        text = text.replace(*replace)
    (repo / "railway.toml").write_text(text.replace("[build]\n", "[build]\n" + extra.split("[build]\n", 1)[1], 1)
                                       if "[build]\n" in extra else text + extra)


def _deployments(plane, repo) -> list[tuple[str, str]]:
    return [(d["commit"], d["status"]) for d in plane.json("deployments", "-e", "production", cwd=repo)]


def test_a_push_touching_no_watched_file_does_not_deploy(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="watch")
    _with_railway(repo, WATCH)
    (repo / "app").mkdir()
    (repo / "app" / "settings.txt").write_text("one\n")
    first = plane.commit(repo, "watchPatterns")
    plane.git(repo, "push", "branchyard", "main")  # the first deploy always deploys
    assert _deployments(plane, repo) == [(first, "SUCCESS")]

    (repo / "docs").mkdir()
    (repo / "docs" / "notes.md").write_text("only docs\n")
    docs = plane.commit(repo, "docs only")
    pushed = plane.git(repo, "push", "branchyard", "main")
    assert ('remote: branchyard: no deploy: no changed file matches watchPatterns ["/app/**", "/main.py"] '
            f"(docs/notes.md changed since {first[:12]})") in pushed.stderr
    assert _deployments(plane, repo) == [(first, "SUCCESS")]  # no new deployment
    assert plane.get("watch.localhost").json()["commit"] == first
    events = plane.json("events", "-e", "production", cwd=repo)
    skipped = [e for e in events if e["kind"] == "deploy.skipped"]
    assert len(skipped) == 1 and skipped[0]["message"] == (
        f'push of {docs[:12]}: no deploy: no changed file matches watchPatterns ["/app/**", "/main.py"] '
        f"(docs/notes.md changed since {first[:12]})")

    (repo / "app" / "settings.txt").write_text("two\n")
    app = plane.commit(repo, "app change")
    plane.git(repo, "push", "branchyard", "main")  # compared with the deployed commit: docs/ and app/ changed since
    assert _deployments(plane, repo)[0] == (app, "SUCCESS")
    assert plane.get("watch.localhost").json()["commit"] == app


def test_a_github_push_touching_no_watched_file_does_not_deploy_either(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="ghwatch")
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace('repository = "owner/yoto-smart-stream"', 'repository = "owner/ghwatch"'))
    _with_railway(repo, WATCH)
    (repo / "app").mkdir()
    (repo / "app" / "settings.txt").write_text("one\n")
    first = plane.commit(repo, "watchPatterns")
    upstream = tmp_path / "upstream.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(upstream)], check=True, env=plane.env)
    plane.git(repo, "remote", "add", "upstream", str(upstream))
    plane.run("init", "--repo", str(upstream), cwd=repo)

    def delivered(before: str, after: str) -> None:
        answer = deliver(plane.api_url, "push", push("refs/heads/main", before=before, after=after,
                                                       repository="owner/ghwatch"), secret=SECRET)
        assert answer.status_code == 202, answer.text

    delivered("0" * 40, first)
    wait_for(lambda: _deployments(plane, repo) == [(first, "SUCCESS")], timeout=240, interval=1)
    (repo / "docs").mkdir()
    (repo / "docs" / "notes.md").write_text("only docs\n")
    docs = plane.commit(repo, "docs only")
    plane.git(repo, "push", "--quiet", "upstream", "main")
    delivered(first, docs)
    events = wait_for(lambda: [e for e in plane.json("events", "-e", "production", cwd=repo)
                               if e["kind"] == "deploy.skipped"], timeout=60, interval=0.5)
    assert events[0]["message"] == (f'push of {docs[:12]}: no deploy: no changed file matches watchPatterns '
                                    f'["/app/**", "/main.py"] (docs/notes.md changed since {first[:12]})')
    assert events[0]["actor"] == "github"
    assert _deployments(plane, repo) == [(first, "SUCCESS")]
    assert not [e for e in plane.json("events", cwd=repo) if e["kind"] == "push.ignored"]  # one event says it


def test_a_cron_service_deploys_without_replicas_and_runs_on_its_schedule(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="cronjob")
    (repo / "cronjob.py").write_text(JOB)
    _with_railway(repo, "", replace=('startCommand = "uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}"',
                                     'startCommand = "python cronjob.py"\ncronSchedule = "* * * * *"'))
    toml = repo / "branchyard.toml"  # post-deploy tests declared: nothing serves a cron service's URL to test
    toml.write_text(toml.read_text() + '\n[environments.production.tests]\ncommands = ["curl -fsS $BRANCHYARD_TARGET_URL"]\n')
    sha = plane.commit(repo, "a cron service")
    pushed = plane.git(repo, "push", "branchyard", "main")
    assert 'cron service: `python cronjob.py` runs on "* * * * *" (UTC), one run at a time' in pushed.stderr
    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["status"] == "SUCCESS" and status["current_deployment"]["commit"] == sha
    assert status["replicas"] == [] and status["cron"]["schedule"] == "* * * * *"
    assert status["uptime"] is None  # nothing serves: its URL is not probed (no "down" alert)
    tests = wait_for(lambda: (d := plane.json("deployments", "-e", "production", cwd=repo)[0])["tests"]
                     and d["tests"]["status"] != "running" and d["tests"], timeout=60)
    assert tests["status"] == "skipped" and tests["detail"].startswith('a cron service ("* * * * *"): nothing serves')
    text = plane.run("status", "-e", "production", cwd=repo).stdout
    assert "cron: * * * * *, next run at " in text
    assert plane.get("cronjob.localhost", "/").status_code == 503  # the router's unavailable page: nothing serves
    refused = plane.run("scale", "web=2", "-e", "production", cwd=repo, check=False)
    assert refused.returncode != 0 and "runs a cron service" in refused.stderr  # nothing to scale

    def listed():
        runs = plane.json("cron", "runs", "-e", "production", cwd=repo)
        done = [r for r in runs if r["status"] == "succeeded"]
        return runs if done and any(r["status"] == "skipped" for r in runs) else None

    runs = wait_for(listed, timeout=90, interval=0.5)
    ok = next(r for r in runs if r["status"] == "succeeded")
    assert ok["exit_code"] == 0 and ok["log_lines"] == 1 and ok["log_tail"] == ["tick production True"]
    assert ok["duration_s"] >= 60 * 2  # 2.5 s of wall clock at 60×
    skipped = next(r for r in runs if r["status"] == "skipped")
    assert skipped["detail"] == "the previous run is still running" and skipped["exit_code"] is None
    assert [r["scheduled_for"] for r in runs] == sorted((r["scheduled_for"] for r in runs), reverse=True)
    table = plane.run("cron", "runs", "-e", "production", cwd=repo).stdout
    assert "SUCCEEDED" in table and "SKIPPED" in table

    def logged():
        out = plane.run("logs", "-e", "production", "--json", "-n", "200", cwd=repo).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [r for r in records if r["service"] == "cron"]

    cron_records = wait_for(logged, timeout=60, interval=0.5)
    assert cron_records[0]["message"] == "tick production True" and cron_records[0]["stream"] == "stdout"
