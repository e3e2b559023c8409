"""Resource limits end to end (issue 17), on a tiny real app with `memory = "64 MB"`: a request that makes it allocate
past its limit gets it OOM-killed in its cgroup, the event says "exceeded its 64 MB memory limit", the restart policy
restarts it and it serves again; a release that blows its limit during its health check fails the deploy saying so,
and the previous deployment keeps serving. `status --json` says what the machine enforces.

Skipped (with the reason) where this machine cannot enforce limits (not root, no memory/cpu cgroup controllers)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import pytest
from conftest import new_home, start_plane, stop_plane, wait_for

from branchyard.backends.local.cgroups import Cgroups

pytestmark = pytest.mark.integration

APP = """import http.server, os

EAT_AT_START = {eat_at_start}
if EAT_AT_START:
    import time
    time.sleep(0.5)
    hog = bytearray(200 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/eat":
            hog = bytearray(200 << 20)  # past the 64 MB limit: the kernel's OOM killer ends the replica
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
TOML = """[project]
name = "hog"

[environments.production]
branch = "main"

[environments.production.services.web]
memory = "64 MB"
cpu = 0.5
"""
RAILWAY = """[deploy]
startCommand = "exec python3 app.py"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""
HOST = "hog.localhost"


@pytest.fixture(scope="module")
def plane(venv_cache):
    why = Cgroups(Path(tempfile.gettempdir()) / "branchyard-probe").why_not
    if why:
        print(f"resource limits cannot be enforced here: {why}")
        pytest.skip(f"resource limits cannot be enforced here: {why}")
    p = start_plane(new_home(), venv_cache)
    try:
        yield p
    finally:
        stop_plane(p)


def test_a_replica_past_its_memory_limit_is_killed_restarted_and_the_event_names_the_limit(plane, tmp_path):
    repo = tmp_path / "hog"
    repo.mkdir()
    (repo / "app.py").write_text(APP.format(eat_at_start=False))
    (repo / "branchyard.toml").write_text(TOML)
    (repo / "railway.toml").write_text(RAILWAY)
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "a tiny app that eats 200 MB on GET /eat")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")

    def status():
        return plane.json("status", "-e", "production", cwd=repo)

    def events():
        return plane.json("events", "-e", "production", "-n", "200", cwd=repo)

    first = wait_for(lambda: (lambda s: s if s["status"] == "SUCCESS" and s["replicas"]
                              and s["replicas"][0]["health"] == "healthy" else None)(status()), timeout=120)
    assert first["isolation"]["limits"] is True and first["isolation"]["limits_why_not"] is None
    shown = plane.run("status", "-e", "production", cwd=repo).stdout
    assert "limits: enforced (memory and cpu of each replica in its own cgroup)" in shown, shown
    report = json.loads(plane.run("check", "--json", cwd=repo, check=False).stdout)
    assert "isolation-enforced" in report["checked"]
    assert not [f for f in report["findings"] if "resource limits" in f["message"]], report
    replica = first["replicas"][0]
    cgroup = Path(f"/proc/{replica['pid']}/cgroup").read_text()
    assert "/branchyard/" in cgroup and "/hog/production/web.0." in cgroup, cgroup

    with _any():  # the router answers 502, or the connection drops
        plane.get(HOST, "/eat")

    exited = wait_for(lambda: next((e for e in events() if e["kind"] == "replica.exited"), None), timeout=60)
    assert exited["message"].startswith("web.0 exceeded its 64 MB memory limit (killed, exit -9); restart 1/10 in "), exited
    wait_for(lambda: next((e for e in events() if e["kind"] == "replica.restarted"), None), timeout=60)
    again = wait_for(lambda: (lambda s: s if s["status"] == "SUCCESS" and s["replicas"][0]["restarts"] == 1
                              and s["replicas"][0]["health"] == "healthy" else None)(status()), timeout=60)
    assert again["replicas"][0]["pid"] != replica["pid"]
    assert plane.get(HOST, "/health").status_code == 200
    # the killed replica's cgroup is gone; the new one has its own
    groups = [Path("/sys/fs/cgroup/" + (line.split(":", 2)[1] or ".") + line.split(":", 2)[2])  # v1 memory, or v2
              for line in cgroup.splitlines() if "/branchyard/" in line]
    assert groups and not any(g.exists() for g in groups)

    # a release that blows its limit while it is health-checked fails the deploy with that reason
    (repo / "app.py").write_text(APP.format(eat_at_start=True))
    plane.commit(repo, "eat 200 MB at start")
    plane.git(repo, "push", "branchyard", "main", check=False)
    failed = wait_for(lambda: next((d for d in plane.json("deployments", "-e", "production", cwd=repo)
                                    if d["status"] == "FAILED"), None), timeout=120)
    assert "exceeded its 64 MB memory limit (killed, exit -9)" in (failed["error"] or ""), json.dumps(failed)
    assert plane.get(HOST, "/health").status_code == 200  # the previous deployment keeps serving


class _any:
    """Either outcome of a request whose replica is killed under it: an HTTP error answer, or no answer."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is None or issubclass(kind, httpx.HTTPError)
