"""Procfile process types as services (issue 17), for real (git, Caddy, processes): an app whose Procfile has `web`,
`worker` and `release`. The release runs before the switch, the worker starts after it (the deploy log shows the
order) and its lines reach `branchyard logs` as service "worker"; killed, it is restarted by the restart policy
(new pid, `replica.restarted`); `scale worker=2` runs two, `scale worker=0` none; a new deploy replaces the workers
(the old pids are gone); `down` stops them and `up` brings them back; deleting an environment leaves no process."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest
from conftest import alive, new_home, start_plane, stop_plane, wait_for
from leaks import processes_of

pytestmark = pytest.mark.integration

PROJECT = "jobs"

TOML = f"""[project]
name = "{PROJECT}"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
"""

RAILWAY = """[deploy]
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""

PROCFILE = ("web: exec python3 -m http.server $PORT --bind 127.0.0.1\n"
            "release: python3 release.py\n"
            "worker: exec python3 worker.py\n")

RELEASE = 'import os\nprint("release phase of", os.environ["BRANCHYARD_DEPLOYMENT_ID"], flush=True)\n'

# A job runner with a prefork pool of one (as celery's): says who it is once, then works forever (SIGTERM ends both,
# as Python's default does).
WORKER = textwrap.dedent('''
    import os, time
    child = os.fork()
    if child:
        print("worker", os.environ["RAILWAY_REPLICA_ID"], "pid", os.getpid(), "child", child, "of",
              os.environ["BRANCHYARD_DEPLOYMENT_ID"], flush=True)
    while True:
        time.sleep(0.5)
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
    repo = tmp_path_factory.mktemp("procfile") / PROJECT
    repo.mkdir()
    files = {"branchyard.toml": TOML, "railway.toml": RAILWAY, "Procfile": PROCFILE, "release.py": RELEASE,
             "worker.py": WORKER, "health": "ok\n"}
    for name, text in files.items():
        (repo / name).write_text(text)
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")
    return repo


def status(plane, repo, env="production") -> dict:
    return plane.json("status", "-e", env, cwd=repo)


def workers(plane, repo, env="production") -> list[dict]:
    """The worker service's replicas as `status --json` lists them (not stopped)."""
    return status(plane, repo, env)["services"].get("worker", {"replicas": []})["replicas"]


def live_worker_pids(plane, repo, env="production") -> list[int]:
    return sorted(r["pid"] for r in workers(plane, repo, env) if r["alive"] and r["state"] == "RUNNING")


def events(plane, repo, kind: str) -> list[dict]:
    return [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == kind]


def test_release_runs_before_the_switch_and_the_worker_after_it(plane, repo):
    info = status(plane, repo)
    dep = info["current_deployment"]["id"]
    assert info["status"] == "SUCCESS" and plane.get(f"{PROJECT}.localhost").text == "ok\n"
    services = info["services"]
    assert (services["web"]["running"], services["web"]["desired"]) == (1, 1)
    assert {k: services["worker"][k] for k in ("running", "total", "desired", "restarts", "command")} == {
        "running": 1, "total": 1, "desired": 1, "restarts": 0, "command": "exec python3 worker.py"}
    [worker] = services["worker"]["replicas"]
    assert (worker["name"], worker["service"], worker["health"]) == ("production.worker.0", "worker", "healthy")
    assert [r["name"] for r in info["replicas"]] == ["production.web.0"]  # `replicas` stays web's
    text = plane.run("status", "-e", "production", cwd=repo).stdout
    assert "services: web 1/1 running  worker 1/1 running" in text and "production.worker.0" in text

    build = plane.json("logs", "-e", "production", "--build", cwd=repo)["build"]
    at = {key: next(i for i, line in enumerate(build) if key in line)
          for key in (f"release phase of {dep}", "-----> routed", "-----> starting 1 worker replica", "worker.0 started")}
    assert list(at.values()) == sorted(at.values()), build  # release, switch, then the worker

    # the worker's stdout reaches the environment's records as service "worker", replica 0
    def worker_records():
        out = plane.run("logs", "-e", "production", "-n", "200", "--json", cwd=repo).stdout.splitlines()
        return [r for r in map(json.loads, out) if r.get("service") == "worker"]

    [record] = wait_for(worker_records)
    assert (record["replica"], record["deployment"]) == (0, dep)
    assert record["message"].startswith(f"worker production.worker.0 pid {worker['pid']} child ")
    assert record["message"].endswith(f" of {dep}")


def child_of(plane, repo, pid: int) -> int:
    """The pool process the worker `pid` forked, as its first log line says."""
    def said():
        out = plane.run("logs", "-e", "production", "-n", "500", "--json", cwd=repo).stdout.splitlines()
        return [int(r["message"].split()[5]) for r in map(json.loads, out)
                if r.get("service") == "worker" and f" pid {pid} child " in r["message"]]
    [child] = wait_for(said)
    return child


def test_a_killed_worker_is_restarted_by_the_restart_policy(plane, repo):
    [before] = live_worker_pids(plane, repo)
    orphan = child_of(plane, repo, before)
    assert alive(orphan)
    os.kill(before, signal.SIGKILL)  # the leader only, as the OOM killer would: its pool process is left orphaned
    after = wait_for(lambda: (p := live_worker_pids(plane, repo)) and p != [before] and p, timeout=60)
    assert len(after) == 1 and not alive(before)
    assert not alive(orphan)  # the slot's old process group went before it was restarted
    assert alive(child_of(plane, repo, after[0]))
    [restarted] = wait_for(lambda: events(plane, repo, "replica.restarted"))
    assert restarted["message"].startswith("worker.0 restart 1/10") and f"(pid {after[0]})" in restarted["message"]
    [exited] = events(plane, repo, "replica.exited")
    assert exited["message"].startswith("worker.0 exited (code -9)")
    assert status(plane, repo)["services"]["worker"]["restarts"] == 1
    assert plane.get(f"{PROJECT}.localhost").status_code == 200  # the site never noticed


def test_scale_runs_two_workers_then_none(plane, repo):
    deployments = len(plane.json("deployments", "-e", "production", cwd=repo))
    plane.run("scale", "worker=2", "-e", "production", cwd=repo)
    pids = wait_for(lambda: len(p := live_worker_pids(plane, repo)) == 2 and p)
    assert sorted(r["name"] for r in workers(plane, repo)) == ["production.worker.0", "production.worker.1"]
    assert status(plane, repo)["services"]["worker"]["desired"] == 2

    done = plane.run("scale", "worker=0", "-e", "production", cwd=repo)
    assert "production: worker runs 0 replica(s)" in done.stdout
    assert workers(plane, repo) == [] and not any(alive(p) for p in pids)
    assert len(plane.json("deployments", "-e", "production", cwd=repo)) == deployments  # no deploy, no rebuild
    assert [e["message"] for e in events(plane, repo, "environment.scaled")][:2] == [
        "worker scaled to 0", "worker scaled to 2"]

    refused = plane.run("scale", "web=0", "-e", "production", cwd=repo, check=False)
    assert refused.returncode == 2 and "expected at least 1 replica" in refused.stderr
    unknown = plane.run("scale", "celery=1", "-e", "production", cwd=repo, check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: scale: unknown service 'celery' (this deployment runs: web, worker)"
    plane.run("scale", "worker=1", "-e", "production", cwd=repo)
    assert len(wait_for(lambda: live_worker_pids(plane, repo))) == 1


def test_a_new_deploy_replaces_the_workers(plane, repo):
    old_pids = live_worker_pids(plane, repo)
    old_dep = status(plane, repo)["current_deployment"]["id"]
    (repo / "VERSION").write_text("2\n")
    plane.commit(repo, "v2")
    plane.git(repo, "push", "branchyard", "main")
    info = status(plane, repo)
    new_dep = info["current_deployment"]["id"]
    assert new_dep != old_dep
    assert not any(alive(p) for p in old_pids)  # gone by the time the deploy is reported
    [worker] = info["services"]["worker"]["replicas"]
    assert worker["alive"] and worker["pid"] not in old_pids
    build = plane.json("logs", "-e", "production", "--build", cwd=repo)["build"]
    assert any("stopping 1 worker replica(s) of the previous deployment" in line for line in build)

    plane.run("rollback", "-e", "production", cwd=repo)  # the previous deployment's workers come back with it
    info = status(plane, repo)
    [back] = info["services"]["worker"]["replicas"]
    assert info["current_deployment"]["trigger"] == "rollback" and back["alive"] and back["pid"] != worker["pid"]
    assert not alive(worker["pid"])


def test_down_stops_the_workers_and_up_brings_them_back(plane, repo):
    pids = live_worker_pids(plane, repo)
    plane.run("down", "-e", "production", cwd=repo)
    assert not any(alive(p) for p in pids)
    assert processes_of(plane.home, PROJECT, "production") == []
    plane.run("up", "-e", "production", cwd=repo)
    assert len(wait_for(lambda: live_worker_pids(plane, repo))) == 1


def test_deleting_an_environment_leaves_no_worker(plane, repo):
    plane.git(repo, "push", "branchyard", "main:develop")
    assert len(live_worker_pids(plane, repo, "staging")) == 1
    pids = processes_of(plane.home, PROJECT, "staging")
    assert len(pids) == 3  # its web replica, its worker and the worker's pool process
    plane.run("environment", "delete", "staging", "--yes", cwd=repo)
    assert processes_of(plane.home, PROJECT, "staging") == [] and not any(alive(p) for p in pids)
