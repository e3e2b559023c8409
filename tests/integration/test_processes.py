"""Real processes: spawn, identity, reaping, group stop, adoption after the parent is gone."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from branchyard.backends.local import processes
from branchyard.backends.local.processes import ProcessHandle
from branchyard.errors import DeployFailed

pytestmark = pytest.mark.integration

PY = sys.executable
SERVER = textwrap.dedent(
    """
    import http.server, os, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
    print("listening on", os.environ["PORT"], flush=True)
    srv.serve_forever()
    """
)


def base_env(port: int, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": str(port), **extra}


def server_command() -> str:
    return f"exec {shlex.quote(PY)} -c {shlex.quote(SERVER)}"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def gone(pid: int) -> bool:
    """True if pid no longer runs (missing, or a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[Callable[..., ProcessHandle]]:
    handles: list[ProcessHandle] = []

    def spawn(command: str, *, port: int | None = None, env: dict[str, str] | None = None) -> ProcessHandle:
        port = processes.free_port() if port is None else port
        h = processes.spawn(
            command, cwd=tmp_path, env=env or base_env(port), log_path=tmp_path / "logs" / "app.log", port=port
        )
        handles.append(h)
        return h

    yield spawn
    for h in handles:
        processes.stop(h, grace=1.0)
        assert not processes.is_alive(h)


def test_spawn_http_server_then_stop(spawned: Callable[..., ProcessHandle], tmp_path: Path) -> None:
    h = spawned(server_command())
    wait_for(lambda: answers(h.port))
    assert processes.is_alive(h)
    assert processes.port_in_use(h.port)
    assert processes.exit_code(h) is None
    assert h.log_path == str(tmp_path / "logs" / "app.log")
    wait_for(lambda: processes.tail(Path(h.log_path)) == [f"listening on {h.port}"])
    with open(f"/proc/{h.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert int(fields[2]) == h.pid  # process group leader
    assert int(fields[3]) == h.pid  # session leader
    processes.stop(h, grace=5)
    assert not processes.is_alive(h)
    assert processes.exit_code(h) == -signal.SIGTERM
    assert not processes.port_in_use(h.port)
    processes.stop(h)  # idempotent


def test_stop_kills_the_whole_group(spawned: Callable[..., ProcessHandle], tmp_path: Path) -> None:
    h = spawned("sleep 300 & echo $! > child.pid; wait")
    wait_for(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip() != "")
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child)
    started = time.monotonic()
    processes.stop(h, grace=5)
    assert time.monotonic() - started < 4  # SIGTERM reached the child too: no wait for the SIGKILL
    assert not processes.is_alive(h)
    assert gone(child)


def test_stop_kills_survivors_when_the_leader_already_exited(
    spawned: Callable[..., ProcessHandle], tmp_path: Path
) -> None:
    h = spawned("sleep 300 & echo $! > child.pid")  # the shell exits at once, its child stays in the group
    wait_for(lambda: not processes.is_alive(h))
    child = int((tmp_path / "child.pid").read_text())
    assert not gone(child)
    processes.stop(h, grace=5)
    assert gone(child)


def test_sigkill_after_grace(spawned: Callable[..., ProcessHandle], tmp_path: Path) -> None:
    h = spawned("trap '' TERM; touch trapped; sleep 300 & wait; wait; wait")
    wait_for(lambda: (tmp_path / "trapped").exists())  # SIGTERM is ignored from here on
    started = time.monotonic()
    processes.stop(h, grace=0.5)
    assert time.monotonic() - started >= 0.5  # it gave the grace period, then SIGKILL:
    assert not processes.is_alive(h)
    assert processes.exit_code(h) == -signal.SIGKILL


def test_exit_code_of_a_process_that_exits(spawned: Callable[..., ProcessHandle]) -> None:
    h = spawned("cat; exit 3")  # stdin is /dev/null: cat returns at once
    wait_for(lambda: not processes.is_alive(h), timeout=5)
    assert processes.exit_code(h) == 3


def test_a_zombie_counts_as_dead_and_is_reaped(spawned: Callable[..., ProcessHandle]) -> None:
    h = spawned("exit 0")
    wait_for(lambda: gone(h.pid), timeout=5)
    with open(f"/proc/{h.pid}/stat") as f:  # not reaped yet: still a zombie
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    assert not processes.is_alive(h)
    assert not os.path.exists(f"/proc/{h.pid}")  # reaped
    assert processes.exit_code(h) == 0


def test_env_is_passed_exactly(spawned: Callable[..., ProcessHandle], tmp_path: Path) -> None:
    os.environ["BRANCHYARD_TEST_LEAK"] = "1"
    try:
        h = spawned('echo "$PORT|$FOO|${BRANCHYARD_TEST_LEAK:-unset}"', env=base_env(4321, FOO="bar"))
    finally:
        del os.environ["BRANCHYARD_TEST_LEAK"]
    wait_for(lambda: not processes.is_alive(h))
    assert processes.tail(Path(h.log_path)) == ["4321|bar|unset"]


def test_log_is_appended_stdout_and_stderr_each_to_its_file(spawned: Callable[..., ProcessHandle], tmp_path: Path) -> None:
    for word in ("one", "two"):
        h = spawned(f"echo {word}; echo {word}-err >&2")
        wait_for(lambda h=h: not processes.is_alive(h))
    assert processes.tail(tmp_path / "logs" / "app.log") == ["one", "two"]
    assert processes.stderr_path(tmp_path / "logs" / "app.log") == tmp_path / "logs" / "app.stderr.log"
    assert processes.tail(tmp_path / "logs" / "app.stderr.log") == ["one-err", "two-err"]


def test_spawn_in_a_missing_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(DeployFailed, match="cannot start `true` in .*missing"):
        processes.spawn("true", cwd=tmp_path / "missing", env={}, log_path=tmp_path / "x.log", port=1)


def test_adopt_checks_identity(spawned: Callable[..., ProcessHandle]) -> None:
    h = spawned(server_command())
    assert processes.adopt(h.pid, h.start_time, h.port, h.log_path) == h
    assert processes.adopt(h.pid, h.start_time + 1, h.port, h.log_path) is None
    wrong = ProcessHandle(pid=h.pid, start_time=h.start_time + 1, port=h.port, log_path=h.log_path)
    processes.stop(wrong, grace=0.2)  # a different process by identity: must not be signalled
    assert processes.is_alive(h)
    assert not processes.is_alive(wrong)
    unused = 4_000_000  # above pid_max on Linux
    assert processes.adopt(unused, 1, 1, "") is None


def test_process_outlives_its_parent_and_can_be_adopted(tmp_path: Path) -> None:
    port = processes.free_port()
    script = textwrap.dedent(
        f"""
        import dataclasses, json, sys
        from pathlib import Path
        from branchyard.backends.local import processes
        h = processes.spawn({server_command()!r}, cwd=Path({str(tmp_path)!r}),
                            env={base_env(port)!r}, log_path=Path({str(tmp_path / "app.log")!r}), port={port})
        print(json.dumps(dataclasses.asdict(h)))
        """
    )
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, check=True, timeout=30).stdout
    data = json.loads(out)
    try:
        wait_for(lambda: answers(port))
        h = processes.adopt(data["pid"], data["start_time"], data["port"], data["log_path"])
        assert h is not None
        assert processes.is_alive(h)
        assert processes.exit_code(h) is None  # not our child: unknowable
    finally:
        h2 = ProcessHandle(**data)
        processes.stop(h2, grace=5)
    assert not processes.is_alive(h2)
    assert gone(data["pid"])
    assert processes.adopt(data["pid"], data["start_time"], port, data["log_path"]) is None


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i} " + "x" * 100 + "\n" for i in range(1000)))
    last = processes.tail(log, 3)
    assert [line.split()[1] for line in last] == ["997", "998", "999"]
    assert len(processes.tail(log, 200)) == 200
    assert processes.tail(log, 200)[0].startswith("line 800 ")
    (tmp_path / "short.log").write_text("a\nb\nc")  # no final newline
    assert processes.tail(tmp_path / "short.log", 2) == ["b", "c"]
    assert processes.tail(tmp_path / "short.log", 10) == ["a", "b", "c"]
    assert processes.tail(tmp_path / "missing.log") == []
    (tmp_path / "empty.log").write_text("")
    assert processes.tail(tmp_path / "empty.log") == []


def test_free_port_and_port_in_use() -> None:
    port = processes.free_port()
    assert 0 < port < 65536
    assert not processes.port_in_use(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert processes.port_in_use(port)
    assert not processes.port_in_use(port)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("uvicorn main:app --host 0.0.0.0 --port $PORT", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"),
        ("gunicorn -b 0.0.0.0:${PORT:-8000} app:app", "exec gunicorn -b 0.0.0.0:${PORT:-8000} app:app"),
        ("python manage.py migrate && uvicorn app:app", "python manage.py migrate && uvicorn app:app"),
        ("FOO=1 uvicorn app:app", "FOO=1 uvicorn app:app"),
        ("if true; then x; fi", "if true; then x; fi"),
        ("exec uvicorn app:app", "exec uvicorn app:app"),
    ],
)
def test_simple_commands_are_execed_so_the_app_is_the_tracked_process(command, expected):
    assert processes.exec_form(command) == expected
