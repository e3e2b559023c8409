"""Logs you can follow (issue 16): `logs -f` sees a replica that restarts and the next deployment; `--level`,
`--since` and `--http` filter the example app's records; Ctrl-C ends -f cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime

import pytest
from conftest import BRANCHYARD, wait_for

pytestmark = pytest.mark.integration

HOST = "flog.localhost"
V2_ERROR = "v2 is up: an error line on purpose"


def _started(record: dict, pid: int) -> bool:
    """uvicorn's own plain line naming the replica's leader: "Started server process [PID]" with one worker, "Started
    parent process [PID]" with several (production runs WORKERS=4)."""
    return any(record["message"].startswith(f"INFO:     Started {what} process [{pid}]") for what in ("server", "parent"))


def test_follow_across_a_restart_and_a_deploy_and_filters(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="flog")
    plane.git(repo, "push", "branchyard", "main")
    status = plane.json("status", "-e", "production", cwd=repo)
    first = status["current_deployment"]["id"]
    victim = status["replicas"][0]

    follow = subprocess.Popen([*BRANCHYARD, "logs", "-e", "production", "-f", "--json"], cwd=repo, env=plane.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(json.loads(line) for line in follow.stdout), daemon=True)
    reader.start()
    try:
        def started(pid: int) -> dict | None:  # uvicorn's own plain line, on stderr
            return next((r for r in seen if _started(r, pid)), None)

        line = wait_for(lambda: started(victim["pid"]))
        assert (line["deployment"], line["service"], line["replica"], line["stream"], line["level"]) == (
            first, "web", victim["slot"], "stderr", "info")

        # the replica dies; the restart policy brings it back, and -f sees the new process's lines
        os.killpg(os.getpgid(victim["pid"]), signal.SIGKILL)
        back = wait_for(lambda: next((r for r in plane.json("status", "-e", "production", cwd=repo)["replicas"]
                                      if r["slot"] == victim["slot"] and r["pid"] != victim["pid"]
                                      and r["state"] == "RUNNING"), None), timeout=90)
        again = wait_for(lambda: started(back["pid"]))
        assert (again["deployment"], again["replica"]) == (first, victim["slot"])

        # the control plane stops; the app keeps logging (its own files); -f waits, and once the control plane is
        # back (a new process: offsets from disk) it sees what was written meanwhile, each line once
        plane.run("server", "stop")
        assert plane.get(HOST, "/health?while-down").status_code == 200
        plane.run("server", "--detach", timeout=120)
        down = wait_for(lambda: [r for r in seen if "GET /health?while-down " in r["message"]])
        assert len(down) == 1 and down[0]["deployment"] == first

        between = time.time()
        time.sleep(0.01)  # records after this instant are strictly later
        # the next deployment: its app logs an ERROR (a JSON line from the app's logging setup) as it starts
        main = repo / "main.py"
        main.write_text(main.read_text() + f'\nlog.error("{V2_ERROR}")\n')
        plane.commit(repo, "v2 logs an error")
        plane.git(repo, "push", "branchyard", "main")
        second = plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["id"]
        assert second != first
        v2 = wait_for(lambda: next((r for r in seen if r["message"] == V2_ERROR), None))
        assert (v2["deployment"], v2["level"], v2["stream"], v2["fields"]["logger"]) == (second, "error", "stderr", "yoto")
        assert any(r["stream"] == "deploy" and r["deployment"] == second for r in seen)  # its deploy log too
        # every worker of both replicas logs it: wait until -f has shown them all (each is counted once below)
        wait_for(lambda: len([r for r in seen if r["message"] == V2_ERROR]) >= 8, timeout=60)

        # Ctrl-C ends -f cleanly
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=30) == 0
        assert "Traceback" not in follow.stderr.read()
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    reader.join(timeout=10)
    # each line once: the follow's polls neither repeat nor skip
    # once per worker process of each replica (production runs WORKERS=4: the app's module is imported by each)
    assert sorted(r["replica"] for r in seen if r["message"] == V2_ERROR) == [0] * 4 + [1] * 4
    assert [_started(r, victim["pid"]) for r in seen].count(True) == 1

    def records(*args: str) -> list[dict]:
        out = plane.run("logs", "-e", "production", "-n", "10000", *args, "--json", cwd=repo).stdout
        return [json.loads(line) for line in out.splitlines()]

    # --level error: only error and above, and the v2 line is there
    errors = records("--level", "error")
    assert V2_ERROR in [r["message"] for r in errors]
    assert {r["level"] for r in errors} <= {"error", "critical"}
    assert {r["level"] for r in records()} >= {"info", "error"}  # there were info lines to leave out
    # --since: nothing before the instant, and what came after
    since = datetime.fromtimestamp(between, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    later = records("--since", since)
    assert V2_ERROR in [r["message"] for r in later]
    assert all(r["time"] >= since for r in later)
    assert not [r for r in later if _started(r, victim["pid"])]
    assert records("--since", "1h")[0]["deployment"] == first  # everything is within the hour
    assert records("--until", since)[-1]["time"] < since

    # --http: the router's access records, without the query string
    assert plane.get(HOST, "/health?token=s3cret-in-a-query").status_code == 200
    http = wait_for(lambda: [r for r in records("--http") if r["path"] == "/health" and r["method"] == "GET"])
    assert {(r["stream"], r["host"], r["status"]) for r in http} == {("http", HOST, 200)}
    assert "s3cret" not in json.dumps(records("--http"))
    assert not [r for r in records() if r["stream"] == "http"]  # left out by default
    # the request sent while the control plane was down is in the router's records too (shipped after its return)
    assert [r["status"] for r in records("--http") if r["path"] == "/health" and r["time"] < since]

    # a bad filter: one line naming the flag and the value, exit 2
    for args, message in ((("--since", "yesterday"), "logs: --since 'yesterday' is neither a duration (10m, 2h, 3d) nor an "
                                                     "ISO time (2026-12-03T12:00:00Z)"),
                          (("--level", "loud"), "logs: --level 'loud': expected one of debug, info, warning, error, critical")):
        bad = plane.run("logs", "-e", "production", *args, cwd=repo, check=False)
        assert (bad.returncode, bad.stderr) == (2, f"error: {message}\n")
