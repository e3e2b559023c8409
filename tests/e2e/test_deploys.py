"""Deploy semantics on the example app: rollback, redeploy by id, down/up, scale, restart policies."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import alive, wait_for

pytestmark = pytest.mark.integration


def staging_repo(plane, tmp_path, project, railway_extra=""):
    repo = plane.app_repo(tmp_path, "app", project=project)
    if railway_extra:
        (repo / "railway.toml").write_text((repo / "railway.toml").read_text() + railway_extra)
    plane.commit(repo, "config")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")
    return repo


def test_rollback_and_redeploy_by_id_bring_back_release_and_variables(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="rb")
    v1 = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")
    text = (repo / "branchyard.toml").read_text()
    (repo / "branchyard.toml").write_text(text.replace('DEBUG = "false"', 'DEBUG = "true"', 1))
    v2 = plane.commit(repo, "v2: debug on")
    plane.git(repo, "push", "branchyard", "main")
    assert plane.get("rb.localhost", "/").json()["debug"] is True

    done = plane.run("rollback", "-e", "production", cwd=repo)
    assert "database state is not reverted" in done.stdout
    assert plane.get("rb.localhost").json()["commit"] == v1
    assert plane.get("rb.localhost", "/").json()["debug"] is False  # the old deployment's variables came back
    deps = plane.json("deployments", "-e", "production", cwd=repo)
    assert [(d["trigger"], d["status"]) for d in deps] == [("rollback", "SUCCESS"), ("push", "REMOVED"), ("push", "REMOVED")]
    assert all(d["can_rollback"] for d in deps)

    v2_id = deps[1]["id"]
    plane.run("redeploy", v2_id[:8], "-e", "production", cwd=repo)  # a unique prefix is enough
    assert plane.get("rb.localhost").json()["commit"] == v2
    assert plane.get("rb.localhost", "/").json()["debug"] is True
    assert len(plane.json("status", "-e", "production", cwd=repo)["replicas"]) == 2


def test_within_overlap_seconds_a_rollback_re_adopts_the_previous_replicas(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "warm", railway_extra="overlapSeconds = 30\ndrainingSeconds = 2\n")
    v1 = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    v1_pids = [r["pid"] for r in plane.json("status", "-e", "staging", cwd=repo)["replicas"]]
    assert len(v1_pids) == 1  # staging runs one replica: the checks on these pids below are not vacuous
    (repo / "VERSION").write_text("2\n")
    v2 = plane.commit(repo, "v2")
    plane.git(repo, "push", "branchyard", "develop")  # returns at the switch, not after the overlap
    status = plane.json("status", "-e", "staging", cwd=repo)
    v2_pids = [r["pid"] for r in status["replicas"]]
    assert len(v2_pids) == 1 and v2_pids != v1_pids
    assert [r["pid"] for r in status["standby"]] == v1_pids and all(alive(p) for p in v1_pids)
    assert 0 < status["standby"][0]["seconds_left"] <= 30
    assert plane.get("warm-staging.localhost").json()["commit"] == v2

    done = plane.run("rollback", "-e", "staging", cwd=repo)
    assert "re-adopted from standby" in done.stdout and "database state is not reverted" in done.stdout
    status = plane.json("status", "-e", "staging", cwd=repo)
    assert [r["pid"] for r in status["replicas"]] == v1_pids  # the same processes: no cold start
    assert [r["state"] for r in status["replicas"]] == ["RUNNING"]
    assert [r["pid"] for r in status["standby"]] == v2_pids  # and v2 waits in turn
    assert plane.get("warm-staging.localhost").json()["commit"] == v1

    # A redeploy whose variables differ (resolved again) cannot re-adopt: new processes, and the
    # deployment that replaced the standby one stops it (one deployment on standby at most).
    plane.run("variables", "set", "LOG_LEVEL=debug", "-e", "staging", cwd=repo)
    status = plane.json("status", "-e", "staging", cwd=repo)
    assert len(status["replicas"]) == 1 and not {r["pid"] for r in status["replicas"]} & set(v1_pids + v2_pids)
    assert [r["pid"] for r in status["standby"]] == v1_pids
    wait_for(lambda: not any(alive(p) for p in v2_pids), timeout=15)


def test_standby_replicas_stop_when_their_window_ends(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "cool", railway_extra="overlapSeconds = 2\ndrainingSeconds = 2\n")
    v1_pids = [r["pid"] for r in plane.json("status", "-e", "staging", cwd=repo)["replicas"]]
    assert len(v1_pids) == 1
    (repo / "VERSION").write_text("2\n")
    plane.commit(repo, "v2")
    plane.git(repo, "push", "branchyard", "develop")
    assert all(alive(p) for p in v1_pids)
    wait_for(lambda: not any(alive(p) for p in v1_pids), timeout=20)  # the reconciler drains them
    wait_for(lambda: plane.json("status", "-e", "staging", cwd=repo)["standby"] == [], timeout=10)
    only = plane.run("rollback", "-e", "staging", cwd=repo)  # now a cold start, as without overlap
    assert "re-adopted" not in only.stdout


def test_redeploy_of_an_unknown_deployment_is_refused(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "rbbad")
    before = plane.json("deployments", "-e", "staging", cwd=repo)
    done = plane.run("redeploy", "nonexistent", "-e", "staging", cwd=repo, check=False)
    assert done.returncode == 3
    assert "unknown deployment 'nonexistent' in environment 'staging'" in done.stderr
    only = plane.run("rollback", "-e", "staging", cwd=repo, check=False)
    assert only.returncode == 3 and "no earlier successful deployment" in only.stderr
    assert plane.json("deployments", "-e", "staging", cwd=repo) == before


def test_down_serves_a_503_page_and_up_brings_the_last_deployment_back(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "sleepy")
    sha = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    pids = [r["pid"] for r in plane.json("status", "-e", "staging", cwd=repo)["replicas"]]
    assert len(pids) == 1
    plane.run("down", "-e", "staging", cwd=repo)
    page = plane.get("sleepy-staging.localhost")
    assert page.status_code == 503 and "staging" in page.text
    assert not any(alive(p) for p in pids)
    assert plane.json("status", "-e", "staging", cwd=repo)["status"] == "SLEEPING"
    refused = plane.run("scale", "web=2", "-e", "staging", cwd=repo, check=False)
    assert refused.returncode == 4 and "is down" in refused.stderr

    plane.run("up", "-e", "staging", cwd=repo)
    assert plane.get("sleepy-staging.localhost").json()["commit"] == sha
    status = plane.json("status", "-e", "staging", cwd=repo)
    assert status["status"] == "SUCCESS" and status["state"] == "ACTIVE"


def test_scale_changes_the_replica_count_without_a_rebuild(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "scaler")
    deployments = len(plane.json("deployments", "-e", "staging", cwd=repo))
    plane.run("scale", "web=3", "-e", "staging", cwd=repo)
    replicas = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    assert sorted(r["slot"] for r in replicas) == [0, 1, 2] and all(r["alive"] for r in replicas)
    seen = {plane.get("scaler-staging.localhost").json()["replica"] for _ in range(30)}
    assert seen == {"staging.web.0", "staging.web.1", "staging.web.2"}  # the router balances over all three

    plane.run("scale", "web=1", "-e", "staging", cwd=repo)
    replicas = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    assert [r["slot"] for r in replicas] == [0]
    assert len(plane.json("deployments", "-e", "staging", cwd=repo)) == deployments  # no new deployment, no rebuild

    bad = plane.run("scale", "web=-1", "-e", "staging", cwd=repo, check=False)
    assert bad.returncode == 2 and "expected at least 1 replica" in bad.stderr
    bad = plane.run("scale", "worker", "-e", "staging", cwd=repo, check=False)
    assert bad.returncode == 2 and "expected SERVICE=N" in bad.stderr


def test_on_failure_restarts_a_killed_replica(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "phoenix")
    [before] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted():
        [r] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
        return r if r["restarts"] == 1 and r["alive"] and r["state"] == "RUNNING" else None

    after = wait_for(restarted)
    assert after["pid"] != before["pid"]
    # the replica is the control plane's own child (exec'ed start command): its exit status is known exactly
    assert after["last_exit"].startswith("exited (code -9); restart 1/10 in 1s"), after["last_exit"]
    assert wait_for(lambda: plane.get("phoenix-staging.localhost").status_code == 200)
    kinds = [e["kind"] for e in plane.json("events", "-e", "staging", cwd=repo)]
    assert "replica.restarted" in kinds and "replica.exited" in kinds


CLEAN_EXIT = """
[environments.staging.deploy]
startCommand = "uvicorn main:app --host 127.0.0.1 --port $PORT; exit 0"
"""


def _exit_cleanly(pid: int) -> None:
    """The start command is `uvicorn …; exit 0`: stop uvicorn and the shell around it exits 0."""
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    assert children, "expected the shell to be running uvicorn"
    os.kill(int(children[0]), signal.SIGTERM)


def test_on_failure_does_not_restart_a_clean_exit_but_always_does(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "clean", CLEAN_EXIT)
    [r] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    _exit_cleanly(r["pid"])
    # the reconciler's decision is recorded: EXITED (a state it never restarts from), not a scheduled restart
    [exited] = wait_for(lambda: [e for e in plane.json("events", "-e", "staging", cwd=repo)
                                 if e["kind"].startswith("replica.")])
    assert (exited["kind"], exited["message"]) == ("replica.exited", "web.0 exited with code 0; ON_FAILURE does not restart it")
    [r] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    assert r["state"] == "EXITED" and r["restarts"] == 0
    assert r["last_exit"].startswith("exited with code 0; ON_FAILURE does not restart it"), r["last_exit"]

    always = staging_repo(plane, tmp_path / "b", "always", CLEAN_EXIT + 'restartPolicyType = "always"\n')
    [r] = plane.json("status", "-e", "staging", cwd=always)["replicas"]
    _exit_cleanly(r["pid"])
    wait_for(lambda: (lambda x: x["restarts"] == 1 and x["alive"])(plane.json("status", "-e", "staging", cwd=always)["replicas"][0]))


def test_never_leaves_a_crashed_deployment_with_the_reason(plane, tmp_path):
    repo = staging_repo(plane, tmp_path, "never", '\n[environments.staging.deploy]\nrestartPolicyType = "NEVER"\n')
    [r] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    os.kill(r["pid"], signal.SIGKILL)
    status = wait_for(lambda: (lambda s: s if s["status"] == "CRASHED" else None)(plane.json("status", "-e", "staging", cwd=repo)))
    assert "every replica has crashed" in status["current_deployment"]["error"]
    assert "restart policy NEVER" in status["current_deployment"]["error"]
    assert "deploy.crashed" in [e["kind"] for e in plane.json("events", "-e", "staging", cwd=repo)]


def test_max_retries_then_crashed(plane, tmp_path):
    extra = '\n[environments.staging.deploy]\nrestartPolicyMaxRetries = 1\n'
    repo = staging_repo(plane, tmp_path, "retries", extra)
    for expected_restarts in (0, 1):
        r = wait_for(lambda: (lambda x: x if x["alive"] and x["restarts"] == expected_restarts else None)(
            plane.json("status", "-e", "staging", cwd=repo)["replicas"][0]))
        os.kill(r["pid"], signal.SIGKILL)
    status = wait_for(lambda: (lambda s: s if s["status"] == "CRASHED" else None)(plane.json("status", "-e", "staging", cwd=repo)))
    assert "after 1 restarts; no retries left" in status["current_deployment"]["error"]
