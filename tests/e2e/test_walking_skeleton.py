"""End to end on the example app: real git push, real build, real processes, real Caddy."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import alive, wait_for

pytestmark = pytest.mark.integration


def uvicorn_workers(pid: int) -> int:
    """How many uvicorn worker processes (multiprocessing spawns) run in the process group a replica leads."""
    found = 0
    for proc in os.listdir("/proc"):
        if not proc.isdigit():
            continue
        try:
            pgid = int(open(f"/proc/{proc}/stat").read().rsplit(")", 1)[1].split()[2])
            cmdline = open(f"/proc/{proc}/cmdline", "rb").read()
        except OSError:
            continue
        found += pgid == pid and b"spawn_main" in cmdline
    return found


def test_push_main_and_develop_give_routed_healthy_environments(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="yoto")
    sha = plane.git(repo, "rev-parse", "HEAD").stdout.strip()

    push = plane.git(repo, "push", "branchyard", "main")
    assert "deployment SUCCESS" in push.stderr  # the hook's progress reaches the pusher
    prod = plane.get("yoto.localhost")
    assert prod.status_code == 200
    assert prod.json()["environment"] == "production"
    assert prod.json()["commit"] == sha
    assert prod.headers["x-branchyard-environment"] == "production"

    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")
    staging = plane.get(f"yoto-staging.localhost:{plane.http_port}")  # the port in Host is ignored
    assert staging.status_code == 200
    assert staging.json()["environment"] == "staging"

    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["url"] == f"http://yoto.localhost:{plane.http_port}"
    assert status["current_deployment"]["status"] == "SUCCESS"
    assert len(status["replicas"]) == 2  # the seed: production runs 2 web replicas
    assert {r["alive"] for r in status["replicas"]} == {True}
    assert len(plane.json("status", "-e", "staging", cwd=repo)["replicas"]) == 1
    # the seed's "2 replicas × 4 workers" (WORKERS=4 → `uvicorn --workers ${WORKERS:-1}`): each replica's process
    # group holds its 4 uvicorn workers (one memory limit covers them all); staging's WORKERS=2
    assert [uvicorn_workers(r["pid"]) for r in status["replicas"]] == [4, 4]
    assert plane.get("yoto.localhost", "/").json()["workers"] == 4
    [staging_replica] = plane.json("status", "-e", "staging", cwd=repo)["replicas"]
    assert uvicorn_workers(staging_replica["pid"]) == 2

    envs = {e["name"]: e for e in plane.json("environment", "list", cwd=repo)}
    assert set(envs) == {"production", "staging"}
    assert envs["staging"]["branch"] == "develop"
    deployments = plane.json("deployments", "-e", "production", cwd=repo)
    assert [d["status"] for d in deployments] == ["SUCCESS"]

    # a second code-only push reuses the cached virtualenv and replaces the first deployment
    (repo / "VERSION").write_text("2\n")
    sha2 = plane.commit(repo, "v2")
    plane.git(repo, "checkout", "--quiet", "main")
    plane.git(repo, "merge", "--quiet", "--ff-only", "develop")
    push2 = plane.git(repo, "push", "branchyard", "main")
    assert "dependencies cached" in push2.stderr
    assert plane.get("yoto.localhost").json()["commit"] == sha2
    statuses = [d["status"] for d in plane.json("deployments", "-e", "production", cwd=repo)]
    assert statuses == ["SUCCESS", "REMOVED"]
    old_pids = {r["pid"] for r in status["replicas"]}
    assert len(old_pids) == 2 and not any(alive(pid) for pid in old_pids), "the replaced deployment's processes must be stopped"


def test_failing_health_check_keeps_the_previous_deployment_serving(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="hc")
    good = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")

    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace("healthcheckTimeout = 100", "healthcheckTimeout = 3")
                       .replace('healthcheckPath = "/health"', 'healthcheckPath = "/does-not-exist"'))
    # one uvicorn worker: 4 (production's WORKERS) take several seconds to bind on a loaded machine, and this test is about
    # what a 3 s check of a wrong path reports, not about the start-up of several workers
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace('WORKERS = "4"', 'WORKERS = "1"', 1))
    plane.commit(repo, "break the health check")
    push = plane.git(repo, "push", "branchyard", "main", check=False)
    assert push.returncode != 0
    assert "failed its health check" in push.stderr

    deployments = plane.json("deployments", "-e", "production", cwd=repo)
    assert deployments[0]["status"] == "FAILED"
    assert "GET /does-not-exist" in deployments[0]["error"]
    assert deployments[1]["status"] == "SUCCESS" and deployments[1]["current"]
    assert plane.get("hc.localhost").json()["commit"] == good
    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["current_deployment"]["commit"] == good
    assert status["latest_deployment"]["status"] == "FAILED"


def test_failing_build_reports_its_error(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="bb")
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace(
        'buildCommand = "pip install -r requirements.txt"',
        "buildCommand = \"pip install -r requirements.txt && python -c 'import sys; sys.exit(\\\"assets: boom\\\")'\"",
    ))
    plane.commit(repo, "broken build step")
    push = plane.git(repo, "push", "branchyard", "main", check=False)
    assert push.returncode != 0
    assert "assets: boom" in push.stderr
    [dep] = plane.json("deployments", "-e", "production", cwd=repo)
    assert dep["status"] == "FAILED"
    assert "exited with code 1" in dep["error"]
    logs = plane.run("logs", "-e", "production", "--build", cwd=repo).stdout
    assert "assets: boom" in logs
    assert plane.get("bb.localhost").status_code == 503  # no healthy deployment yet: a clear page, not a hang


def test_start_command_that_exits_at_once_fails_with_its_exit_code(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="crash")
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace(
        'startCommand = "uvicorn main:app --host 0.0.0.0 --port $PORT --workers ${WORKERS:-1}"',
        'startCommand = "python -c \'raise SystemExit(7)\'"'))
    plane.commit(repo, "crash at start")
    push = plane.git(repo, "push", "branchyard", "main", check=False)
    assert push.returncode != 0
    [dep] = plane.json("deployments", "-e", "production", cwd=repo)
    assert dep["status"] == "FAILED"
    assert "process exited with code 7" in dep["error"]


def test_unmapped_branch_is_stored_with_a_note(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="unmapped")
    plane.git(repo, "checkout", "--quiet", "-b", "experiment")
    push = plane.git(repo, "push", "branchyard", "experiment")
    assert "not mapped to an environment" in push.stderr
    listed = {e["name"]: e["status"] for e in plane.json("environment", "list", cwd=repo)}
    assert listed == {"production": "NO DEPLOYMENTS", "staging": "NO DEPLOYMENTS"}


def test_up_deploys_head_without_a_push(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="upper")
    sha = plane.commit(repo, "to staging by hand")
    plane.run("up", "-e", "staging", cwd=repo)
    assert plane.get("upper-staging.localhost").json()["commit"] == sha


def test_restarting_the_control_plane_does_not_restart_apps(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="keep")
    plane.git(repo, "push", "branchyard", "main")
    before = plane.json("status", "-e", "production", cwd=repo)["replicas"]

    plane.run("server", "stop")
    # a clean stop: the control plane ran its clean-up (uvicorn re-raises SIGTERM once it has stopped serving)
    assert not (plane.home / "server.json").exists()
    assert "control plane stopped cleanly" in (plane.home / "logs" / "server.log").read_text()
    assert plane.get("keep.localhost").status_code == 200  # apps and router serve without the control plane
    plane.run("server", "--detach")
    info = plane.json("server", "status")
    os.kill(info["pid"], signal.SIGKILL)  # and even after the control plane is killed outright
    wait_for(lambda: not alive(info["pid"]))
    assert plane.get("keep.localhost").status_code == 200
    plane.run("server", "--detach")

    after = plane.json("status", "-e", "production", cwd=repo)["replicas"]
    assert [(r["pid"], r["port"]) for r in after] == [(r["pid"], r["port"]) for r in before]
    assert len(after) == 2 and all(r["alive"] for r in after)
    assert plane.get("keep.localhost").status_code == 200


def test_unknown_host_gets_a_404_page(plane):
    resp = plane.get("nothing-here.localhost")
    assert resp.status_code == 404
    assert "nothing-here.localhost" in resp.text


def test_project_domain_comes_from_branchyard_toml(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="dom")
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace("[project]\n", '[project]\ndomain = "apps.example.test"\n', 1))
    plane.commit(repo, "own domain")
    plane.git(repo, "push", "branchyard", "main")
    assert plane.get("dom.apps.example.test").status_code == 200
    assert plane.get("dom.localhost").status_code == 404
    assert plane.json("status", "-e", "production", cwd=repo)["url"] == f"http://dom.apps.example.test:{plane.http_port}"
