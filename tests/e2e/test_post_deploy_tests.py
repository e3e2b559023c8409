"""Tests after every deploy, per tier (issue 16), on a real control plane with real processes, PostgreSQL, Caddy
and the fake GitHub API: `[environments.<env>.tests]` run against the environment's URL once a deployment serves;
production rolls back a deployment whose checks fail (0 failed requests under load across it), staging and
previews keep serving and show UNHEALTHY; each result is a `branchyard/<env>/tests` commit status, a field of
`deployments --json` and `status --json`, and events."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import new_home, start_plane, stop_plane, wait_for
from fakes.github_api import FakeGitHub
from test_previews import SECRET, github_project, send
from webhooks import pull_request

pytestmark = pytest.mark.integration

TOKEN = "ghp_fakeTokenForPostDeployTests0123"
PASSING = 'echo "checks ok for $BRANCHYARD_GIT_COMMIT_SHA"\n'
FAILING = 'echo "checkout page: expected 200, got 500 (token s3cret-in-output)"\nexit 1\n'


@pytest.fixture(scope="module")
def fake():
    with FakeGitHub(token=TOKEN, repositories=("owner/vfy", "owner/vpr")) as f:
        yield f


@pytest.fixture(scope="module")
def plane(venv_cache, fake):
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET,
                                                       "BRANCHYARD_GITHUB_TOKEN": TOKEN,
                                                       "BRANCHYARD_GITHUB_API_URL": fake.url})
    p.api_url = p.json("server", "status")["api_url"]
    try:
        yield p
    finally:
        stop_plane(p)


def with_tests(env: str, commands: str):
    def edit(text: str) -> str:
        return text + f"\n[environments.{env}.tests]\ncommands = {commands}\ntimeout = 60\n"
    return edit


def deployment(plane, repo, env: str, sha: str, *, trigger: str | None = None) -> dict | None:
    return next((d for d in plane.json("deployments", "-e", env, cwd=repo)
                 if d["commit"] == sha and (trigger is None or d["trigger"] == trigger)), None)


def result_of(plane, repo, env: str, sha: str, done=("passed", "failed")) -> dict | None:
    d = deployment(plane, repo, env, sha)
    return d if d and d["tests"] and d["tests"]["status"] in done else None


def context_states(fake, repo: str, sha: str, context: str) -> list[str]:
    return [s["state"] for s in fake.statuses_for(repo, sha) if s["context"] == context]


def test_production_rolls_back_a_push_whose_checks_fail_with_no_failed_request(plane, fake, tmp_path):
    commands = '["python manage.py smoke", "sh check.sh"]'
    repo = github_project(plane, tmp_path, "vfy", toml_edit=with_tests("production", commands))
    secret = "s3cret-in-output"
    plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "production", f"CHECK_TOKEN={secret}", cwd=repo)
    (repo / "check.sh").write_text(PASSING)
    v1 = plane.commit(repo, "post-deploy checks pass")
    plane.git(repo, "push", "branchyard", "main")
    good = wait_for(lambda: result_of(plane, repo, "production", v1), timeout=120)
    assert good["tests"]["status"] == "passed", good
    assert f"checks ok for {v1}" in good["tests"]["detail"]  # the deployment's facts reach the checks
    wait_for(lambda: context_states(fake, "owner/vfy", v1, "branchyard/production/tests") == ["pending", "success"],
             timeout=30)

    host = "vfy.localhost"
    outcomes: list[bool] = []
    failures: list[str] = []  # what each failed request got, with when (to line up with the deployment's events)
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=15, trust_env=False) as client:
            while not stop_load.is_set():
                try:
                    r = client.get(f"http://127.0.0.1:{plane.http_port}/health", headers={"Host": host})
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:200]!r}"
                except httpx.HTTPError as e:
                    ok, why = False, f"{type(e).__name__}: {e}"
                outcomes.append(ok)
                if not ok:
                    failures.append(f"{time.strftime('%H:%M:%S')} {why}")

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, timeout=30)
        (repo / "check.sh").write_text(FAILING)
        v2 = plane.commit(repo, "a change the post-deploy checks catch")
        plane.git(repo, "push", "branchyard", "main")  # the deploy itself succeeds: it goes live, then is checked
        bad = wait_for(lambda: result_of(plane, repo, "production", v2), timeout=120)
        rollback = wait_for(lambda: (d := deployment(plane, repo, "production", v1, trigger="rollback"))
                            and d["status"] == "SUCCESS" and d["current"] and d, timeout=180, interval=0.3)
        wait_for(lambda: plane.get(host).json()["commit"] == v1, timeout=30)
        burst = len(outcomes)
        wait_for(lambda: len(outcomes) >= burst + 20, timeout=30)  # load keeps flowing after the rollback switched
    finally:
        stop_load.set()
        for w in workers:
            w.join(timeout=20)
    failed = outcomes.count(False)
    print(f"\npost-deploy rollback under load: {len(outcomes)} requests, {failed} failed")
    assert failures == [], plane.run("events", "-e", "production", cwd=repo).stdout
    assert bad["tests"]["status"] == "failed"
    assert bad["tests"]["detail"].startswith("`sh check.sh` against http://vfy.localhost:")
    assert "exited with code 1: checkout page: expected 200, got 500" in bad["tests"]["detail"]
    assert secret not in bad["tests"]["detail"]  # masked with the environment's secrets
    assert rollback["trigger"] == "rollback" and rollback["actor"] == "post-deploy verification"

    events = plane.json("events", "-e", "production", cwd=repo)
    kinds = [e["kind"] for e in events]
    assert "deploy.tests_failed" in kinds and "deploy.tests_rollback" in kinds
    (why,) = [e for e in events if e["kind"] == "deploy.tests_rollback"]
    assert "post-deploy tests of deployment" in why["message"] and "checkout page" in why["message"]
    assert secret not in str(events)
    wait_for(lambda: context_states(fake, "owner/vfy", v2, "branchyard/production/tests") == ["pending", "failure"],
             timeout=30)
    failure = [s for s in fake.statuses_for("owner/vfy", v2) if s["context"] == "branchyard/production/tests"][-1]
    assert failure["description"].startswith("Post-deploy tests failed in production: ")
    assert secret not in failure["description"]
    # the rolled-back release is checked too (its own check.sh passes): production is healthy again
    after = wait_for(lambda: (s := plane.json("status", "-e", "production", cwd=repo))["current_deployment"]["tests"]
                     and s["current_deployment"]["tests"]["status"] == "passed" and s, timeout=120)
    assert after["status"] == "SUCCESS" and after["current_deployment"]["id"] == rollback["id"]


def test_staging_failing_checks_mark_it_unhealthy_and_it_keeps_serving(plane, fake, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="vstg")
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace('repository = "owner/yoto-smart-stream"', 'repository = "owner/vfy"')
                    + '\n[environments.staging.tests]\ncommands = "sh check.sh"\n')
    (repo / "check.sh").write_text(PASSING)
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    v1 = plane.commit(repo, "staging checks pass")
    plane.git(repo, "push", "branchyard", "develop")
    good = wait_for(lambda: result_of(plane, repo, "staging", v1), timeout=120)
    assert good["tests"]["status"] == "passed"
    wait_for(lambda: context_states(fake, "owner/vfy", v1, "branchyard/staging/tests") == ["pending", "success"],
             timeout=30)
    assert plane.json("status", "-e", "staging", cwd=repo)["status"] == "SUCCESS"

    (repo / "check.sh").write_text(FAILING)
    v2 = plane.commit(repo, "staging checks fail")
    plane.git(repo, "push", "branchyard", "develop")
    bad = wait_for(lambda: result_of(plane, repo, "staging", v2), timeout=120)
    assert bad["tests"]["status"] == "failed" and bad["status"] == "SUCCESS" and bad["current"]  # not rolled back
    status = plane.json("status", "-e", "staging", cwd=repo)
    assert status["status"] == "UNHEALTHY"
    assert status["current_deployment"]["id"] == bad["id"] and status["current_deployment"]["tests"]["status"] == "failed"
    assert plane.get("vstg-staging.localhost").json()["commit"] == v2  # still serving
    assert plane.run("status", "-e", "staging", cwd=repo).stdout.count("UNHEALTHY") >= 1
    events = plane.json("events", "-e", "staging", cwd=repo)
    (failed,) = [e for e in events if e["kind"] == "deploy.tests_failed"]
    assert "marked UNHEALTHY, keeps serving" in failed["message"]
    assert not [e for e in events if e["kind"] == "deploy.tests_rollback"]
    wait_for(lambda: context_states(fake, "owner/vfy", v2, "branchyard/staging/tests") == ["pending", "failure"],
             timeout=30)

    # The promotion gate "staging's smoke tests pass" reads that record (production's smokeCommand, `manage.py
    # smoke`, would pass against staging): refused, nothing deployed.
    refused = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert refused.returncode != 0
    assert "FAIL  smoke-tests" in refused.stdout
    assert f"post-deploy tests of deployment {bad['id'][:8]} failed" in refused.stdout + refused.stderr
    assert plane.json("deployments", "-e", "production", cwd=repo) == []


def test_a_preview_whose_smoke_command_fails_gets_a_failing_tests_status(plane, fake, tmp_path):
    repo = github_project(plane, tmp_path, "vpr", toml_edit=with_tests("pr", '"sh check.sh"'))
    (repo / "check.sh").write_text(FAILING)
    plane.commit(repo, "preview checks")
    plane.git(repo, "push", "--quiet", "upstream", "main")
    base = plane.git(repo, "rev-parse", "main").stdout.strip()
    plane.git(repo, "checkout", "--quiet", "-b", "feature/checks")
    (repo / "VERSION").write_text("v1\n")
    head = plane.commit(repo, "v1")
    plane.git(repo, "push", "--quiet", "--force", "upstream", "feature/checks")
    plane.git(repo, "checkout", "--quiet", "main")
    pr = pull_request("opened", 21, head_sha=head, head_ref="feature/checks", base_sha=base, repository="owner/vpr")
    assert send(plane, "pull_request", pr).status_code == 202

    states = wait_for(lambda: (s := context_states(fake, "owner/vpr", head, "branchyard/preview/tests"))
                      and s[-1] != "pending" and s, timeout=300, interval=0.3)
    assert states == ["pending", "failure"]
    assert context_states(fake, "owner/vpr", head, "branchyard/preview") == ["pending", "success"]  # it deployed
    bad = wait_for(lambda: result_of(plane, repo, "pr-21", head), timeout=30)
    assert bad["tests"]["status"] == "failed" and bad["current"]
    assert plane.json("status", "-e", "pr-21", cwd=repo)["status"] == "UNHEALTHY"
    (comment,) = wait_for(lambda: (c := fake.comments_on("owner/vpr", 21)) and "Tests" in c[-1]["body"]
                          and "failed" in c[-1]["body"] and c, timeout=30)
    assert "| **Tests** | ❌ failed |" in comment["body"] and "checkout page" in comment["body"]
    assert fake.refused() == []


def test_a_control_plane_killed_while_tests_run_runs_them_again_after_its_restart(plane, fake, tmp_path):
    from test_restart_safety import restart_with, wait_dead

    repo = plane.app_repo(tmp_path, "app", project="vcr")
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text() + '\n[environments.staging.tests]\ncommands = "sh check.sh"\n')
    (repo / "check.sh").write_text(PASSING)
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    sha = plane.commit(repo, "checks that a crash cuts off")
    restart_with(plane, "tests.running")  # SIGKILLs itself once the result is recorded RUNNING
    plane.git(repo, "push", "branchyard", "develop", check=False)
    wait_dead(plane)
    restart_with(plane, None)
    done = wait_for(lambda: result_of(plane, repo, "staging", sha), timeout=120)
    assert done["tests"]["status"] == "passed" and f"checks ok for {sha}" in done["tests"]["detail"]
    kinds = [e["kind"] for e in plane.json("events", "-e", "staging", cwd=repo)]
    assert kinds.count("deploy.tests_started") == 2 and kinds.count("deploy.tests_passed") == 1
    assert plane.json("status", "-e", "staging", cwd=repo)["status"] == "SUCCESS"
