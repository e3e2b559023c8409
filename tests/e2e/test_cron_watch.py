"""Issue 17 through a real control plane and real `git push`es: watchPatterns (a push touching only docs/ does not
deploy and says so; one touching app/ does) and a cron service's deploy (built and recorded, no replicas, no health
check, the router's unavailable page, `status` showing its schedule; runs are listed by `cron runs`). The scheduler's
runs themselves are tested with a fast clock in tests/integration/test_cron_scheduler.py (no real minute waited)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

WATCH = '\n[build]\nwatchPatterns = ["/app/**", "/main.py"]\n'


def _with_railway(repo, extra: str, *, replace: tuple[str, str] | None = None) -> None:
    text = (repo / "railway.toml").read_text()
    if replace:
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


def test_a_cron_service_deploys_without_replicas_and_shows_its_schedule(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="cronjob")
    _with_railway(repo, "", replace=('startCommand = "uvicorn main:app --host 0.0.0.0 --port $PORT"',
                                     'startCommand = "python -c \\"print(\'tick\')\\""\ncronSchedule = "*/5 * * * *"'))
    sha = plane.commit(repo, "a cron service")
    pushed = plane.git(repo, "push", "branchyard", "main")
    assert 'cron service: `python -c "print(\'tick\')"` runs on "*/5 * * * *" (UTC), one run at a time' in pushed.stdout \
        + pushed.stderr
    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["status"] == "SUCCESS" and status["current_deployment"]["commit"] == sha
    assert status["replicas"] == [] and status["cron"]["schedule"] == "*/5 * * * *"
    assert status["cron"]["next_run_at"].endswith(":00Z")
    text = plane.run("status", "-e", "production", cwd=repo).stdout
    assert f"cron: */5 * * * *, next run at {status['cron']['next_run_at']}" in text
    assert plane.get("cronjob.localhost", "/").status_code == 503  # the router's unavailable page: nothing serves
    runs = plane.json("cron", "runs", "-e", "production", cwd=repo)
    assert isinstance(runs, list) and all(r["status"] in ("running", "succeeded") for r in runs)
