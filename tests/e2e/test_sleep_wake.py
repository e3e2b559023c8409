"""Sleep and wake (issue 17), for real: an environment with `sleepAfter = 2` goes to sleep by itself (0 processes of
its own), its first request is held and answered 200 once a replica is healthy (never 502/503), 20 concurrent first
requests all get 200 from one wake, `down` still answers the sleeping page and is not woken by a request, `up` wakes
an idle environment, and a control plane restarted while an environment sleeps keeps it asleep and wakeable.
Real control plane, Caddy (both tiers), git and processes, on a tiny echo app."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from conftest import BRANCHYARD, alive, processes_mentioning, wait_for

pytestmark = pytest.mark.integration

HOST = "sleepy-staging.localhost"

TOML = """[project]
name = "sleepy"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
sleepAfter = 2
"""

RAILWAY = """[deploy]
startCommand = "exec python3 app.py"
healthcheckPath = "/health"
healthcheckTimeout = 30
"""

# Answers every GET and POST with what it received (method, path, body, headers): the held request must arrive whole.
APP = '''import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                          "greeting": os.environ.get("GREETING"),
                          "headers": {k.lower(): v for k, v in self.headers.items()}, "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = answer

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
'''


def call(plane, method: str, path: str, **kw) -> httpx.Response:
    """A request through the router to the staging environment, with time to wait for a wake."""
    return httpx.request(method, f"http://127.0.0.1:{plane.http_port}{path}", headers={"Host": HOST}, timeout=30,
                         trust_env=False, **kw)


def events(plane, repo: Path, kind: str) -> list[dict]:
    return [e for e in plane.json("events", "-e", "staging", cwd=repo) if e["kind"] == kind]


def wait_asleep(plane, repo: Path) -> dict:
    """Asleep for want of requests (now: a wake switches to ACTIVE before its first answer), and the event that says
    so (newest first)."""
    wait_for(lambda: (lambda s: s["state"] == "SLEEPING" and s["sleeping"]["kind"] == "idle" and not s["replicas"])(
        plane.json("status", "-e", "staging", cwd=repo)), timeout=60, interval=0.3)
    info = plane.json("status", "-e", "staging", cwd=repo)
    assert info["status"] == "SLEEPING" and info["sleeping"]["since"], info
    return events(plane, repo, "environment.slept")[0]


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def app(plane, tmp_path_factory):
    repo = tmp_path_factory.mktemp("sleepy") / "sleepy"
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML)
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "app.py").write_text(APP)
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "--quiet", "branchyard", "main:develop")
    wait_for(lambda: plane.json("status", "-e", "staging", cwd=repo)["current_deployment"], timeout=120)
    return repo


def test_the_spec_shows_the_effective_sleep(plane, app):
    shown = json.loads(subprocess.run([*BRANCHYARD, "config", "show", "-e", "staging", "--json"], cwd=app, env=plane.env,
                                      capture_output=True, text=True, check=True).stdout)
    assert shown["sleep_after"] == 2 and shown["sleep"] == {"after": 2, "from": "sleepAfter"}
    production = json.loads(subprocess.run([*BRANCHYARD, "config", "show", "-e", "production", "--json"], cwd=app,
                                           env=plane.env, capture_output=True, text=True, check=True).stdout)
    assert production["sleep"] == {"after": None, "from": "default: never"}


def test_an_idle_environment_sleeps_by_itself_and_its_processes_are_gone(plane, app):
    # Its replicas: the processes working in its releases (only staging of this project is deployed). Read at once
    # after a request (which wakes it if it already slept): `sleepAfter = 2` leaves no time for a CLI call first.
    releases = str(plane.home / "releases" / "sleepy")
    slept = len(events(plane, app, "environment.slept"))  # before the request: the next sleep may come 2 s after it
    assert call(plane, "GET", "/health").status_code == 200
    pids = processes_mentioning(releases)
    assert pids
    groups = {os.getpgid(pid) for pid in pids}
    event = wait_for(lambda: (lambda found: found[0] if len(found) > slept else None)(
        events(plane, app, "environment.slept")), timeout=60, interval=0.3)
    assert event["message"] == "staging slept after 2 s without a request (its next request wakes it)"
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=20)
    assert all(group_gone(g) for g in groups)  # the whole process group: the app and anything it forked
    info = plane.json("status", "-e", "staging", cwd=app)
    if info["state"] == "SLEEPING":  # (not woken since by anything: nobody asked it anything)
        assert info["replicas"] == [] and info["sleeping"]["kind"] == "idle" and not processes_mentioning(releases)
    production = plane.json("status", "-e", "production", cwd=app)
    assert production["state"] == "ACTIVE"  # never deployed here, and never sleeps unless told


def test_the_first_request_is_held_and_answered_after_waking(plane, app):
    wait_asleep(plane, app)
    woke_before = len(events(plane, app, "environment.woke"))
    r = call(plane, "POST", "/submit?token=abc", content=b"x" * 5000)
    assert r.status_code == 200, r.text
    echoed = r.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/submit?token=abc" and echoed["body"] == "x" * 5000
    assert "x-branchyard-wake-secret" not in echoed["headers"]  # the secret goes to the control plane only
    woke = events(plane, app, "environment.woke")
    assert len(woke) == woke_before + 1 and "woke on a request" in woke[0]["message"]
    assert call(plane, "GET", "/health").status_code == 200


def test_twenty_concurrent_first_requests_are_all_answered_by_one_wake(plane, app):
    wait_asleep(plane, app)
    woke_before = len(events(plane, app, "environment.woke"))
    results: list[int | str] = []
    gate = threading.Barrier(20)

    def first() -> None:
        gate.wait()
        try:
            results.append(call(plane, "GET", "/health").status_code)
        except httpx.HTTPError as err:
            results.append(repr(err))

    threads = [threading.Thread(target=first) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 20, results
    assert len(events(plane, app, "environment.woke")) == woke_before + 1  # one wake, however many waited


def test_up_wakes_an_idle_environment(plane, app):
    wait_asleep(plane, app)
    out = plane.run("up", "-e", "staging", cwd=app).stdout
    assert "staging is awake" in out
    assert "woke on `up`" in events(plane, app, "environment.woke")[0]["message"]
    assert call(plane, "GET", "/health").status_code == 200


def test_a_restart_while_asleep_keeps_it_asleep_and_wakeable(plane, app):
    event = wait_asleep(plane, app)
    plane.run("server", "stop")
    plane.run("server", "--detach", timeout=120)
    info = plane.json("status", "-e", "staging", cwd=app)
    assert info["state"] == "SLEEPING" and info["sleeping"]["kind"] == "idle" and info["replicas"] == []
    assert events(plane, app, "environment.slept")[0]["at"] == event["at"]  # still the same sleep
    assert call(plane, "GET", "/health").status_code == 200


def test_a_variable_set_while_asleep_is_what_it_wakes_with(plane, app):
    wait_asleep(plane, app)
    plane.run("variables", "set", "-e", "staging", "GREETING=hello-after-sleep", cwd=app)
    assert call(plane, "GET", "/").json()["greeting"] == "hello-after-sleep"


def test_down_still_serves_the_sleeping_page_and_a_request_does_not_wake_it(plane, app):
    wait_asleep(plane, app)
    plane.run("down", "-e", "staging", cwd=app)  # an idle sleep made explicit
    info = plane.json("status", "-e", "staging", cwd=app)
    assert info["sleeping"]["kind"] == "down"
    r = call(plane, "GET", "/health")
    assert r.status_code == 503 and "sleeping" in r.text.lower()
    assert plane.json("status", "-e", "staging", cwd=app)["state"] == "SLEEPING"
    plane.run("up", "-e", "staging", cwd=app)  # a down environment comes back with a redeploy, as before
    assert call(plane, "GET", "/health").status_code == 200
