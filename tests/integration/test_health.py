"""Health checks against real HTTP servers, a silent TCP listener and a dying process."""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from branchyard.backends.local import processes
from branchyard.backends.local.health import HealthResult, next_interval, probe, wait_healthy
from branchyard.backends.local.processes import ProcessHandle

pytestmark = pytest.mark.integration

# status for "/health" and for "/" come from argv; DELAY (seconds) delays listening.
SERVER = textwrap.dedent(
    """
    import http.server, os, sys, time
    health, root = int(sys.argv[1]), int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(health if self.path == "/health" else root)
            self.end_headers()
        def log_message(self, *a): pass
    time.sleep(float(os.environ.get("DELAY", "0")))
    http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., ProcessHandle]]:
    handles: list[ProcessHandle] = []

    def start(health: int = 200, root: int = 404, delay: float = 0.0, command: str | None = None) -> ProcessHandle:
        port = processes.free_port()
        cmd = command or f"exec {shlex.quote(sys.executable)} -c {shlex.quote(SERVER)} {health} {root}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port), "DELAY": str(delay)}
        h = processes.spawn(cmd, cwd=tmp_path, env=env, log_path=tmp_path / "app.log", port=port)
        handles.append(h)
        return h

    yield start
    for h in handles:
        processes.stop(h, grace=1.0)


def wait(h: ProcessHandle, path: str | None, timeout: float = 10.0) -> HealthResult:
    return wait_healthy(
        h.port,
        path,
        timeout=timeout,
        alive=lambda: processes.is_alive(h),
        exit_code=lambda: processes.exit_code(h),
    )


def test_path_answering_200_is_healthy(server: Callable[..., ProcessHandle]) -> None:
    h = server(health=200, root=500, delay=0.3)
    result = wait(h, "/health")
    assert result.ok, result
    assert re.fullmatch(r"GET /health → 200 in \d+\.\ds", result.detail), result.detail
    assert probe(h.port, "/health").ok
    assert probe(h.port, "health").ok  # a path without its leading slash


def test_path_must_answer_exactly_200(server: Callable[..., ProcessHandle]) -> None:
    h = server(health=204, root=200)
    result = wait(h, "/health", timeout=0.6)
    assert result == HealthResult(False, "GET /health → 204 after 0.6s")


def test_no_path_and_500_on_root_is_unhealthy(server: Callable[..., ProcessHandle]) -> None:
    h = server(health=200, root=500)
    result = wait(h, None, timeout=0.5)
    assert result == HealthResult(False, "GET / → 500 after 0.5s")
    one = probe(h.port, None)
    assert not one.ok
    assert one.detail.startswith("GET / → 500 in ")


def test_no_path_and_404_on_root_is_healthy(server: Callable[..., ProcessHandle]) -> None:
    h = server(health=500, root=404)
    result = wait(h, None)
    assert result.ok, result
    assert result.detail.startswith("GET / → 404 in ")


def test_a_tcp_listener_that_never_answers_http_is_unhealthy() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = wait_healthy(port, None, timeout=0.8, alive=lambda: True)
        elapsed = time.monotonic() - started
        assert result == HealthResult(False, "timed out after 0.8s: no HTTP response within 0.8s")
        assert 0.7 < elapsed < 2.0
        one = probe(port, "/health", timeout=0.2)
        assert one == HealthResult(False, "GET /health: no HTTP response within 0.2s")


def test_nothing_listening_times_out_with_connection_refused() -> None:
    port = processes.free_port()
    result = wait_healthy(port, "/health", timeout=0.3, alive=lambda: True)
    assert result == HealthResult(False, "timed out after 0.3s: connection refused")


def test_a_dying_process_fails_fast_with_its_exit_code(server: Callable[..., ProcessHandle]) -> None:
    h = server(command="sleep 0.3; echo boom >&2; exit 1")
    started = time.monotonic()
    result = wait(h, "/health", timeout=60)
    assert result == HealthResult(False, "process exited with code 1")
    assert time.monotonic() - started < 3
    assert processes.tail(processes.stderr_path(Path(h.log_path))) == ["boom"]


def test_a_dead_process_of_unknown_exit_status() -> None:
    result = wait_healthy(processes.free_port(), None, timeout=5, alive=lambda: False)
    assert result == HealthResult(False, "process exited")


def test_polling_is_quick_once_the_app_listens(server: Callable[..., ProcessHandle]) -> None:
    h = server(delay=1.0)
    started = time.monotonic()
    result = wait(h, "/health")
    assert result.ok, result
    # listening after ~1s (+ interpreter start-up); the back-off is capped at 0.5s
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("interval", "elapsed", "expected"),
    [
        (0.05, 0.0, 0.05),  # the first seconds: every interval, so a replica is routed soon after it is ready
        (0.05, 4.9, 0.05),
        (0.05, 5.0, 0.065),  # then back off ×1.3 …
        (0.4, 60.0, 0.5),  # … up to one poll every 0.5 s
        (0.5, 60.0, 0.5),
        (0.8, 60.0, 0.8),  # a caller's longer interval is never shortened
    ],
)
def test_poll_schedule(interval: float, elapsed: float, expected: float) -> None:
    assert next_interval(interval, elapsed) == pytest.approx(expected)


def test_proxies_from_the_environment_are_ignored(
    server: Callable[..., ProcessHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    h = server()
    assert wait(h, "/health").ok


def test_a_long_failing_health_check_reports_what_the_last_probe_got(server):
    """The deploy log hears, every `report_every` seconds, why a replica is not healthy yet (here: a 503)."""
    h = server(health=503)
    # the server listens first (under load its interpreter takes a while to start): every probe below gets its 503
    deadline = time.monotonic() + 30
    while "503" not in probe(h.port, "/health", timeout=1.0).detail:
        assert time.monotonic() < deadline, "the test server never answered"
        time.sleep(0.02)
    heard: list[str] = []
    result = wait_healthy(h.port, "/health", timeout=1.5, alive=lambda: processes.is_alive(h), progress=heard.append,
                          report_every=0.3)
    assert not result.ok and result.detail == "GET /health → 503 after 1.5s"
    assert heard and all(re.fullmatch(r"not healthy yet after [0-9.]+s of 1\.5s: last GET /health → 503", line)
                         for line in heard), heard

