"""App replicas as plain OS processes that outlive the control plane.

Each replica is `/bin/sh -c <command>` started in its own session, so it leads its own process group
and survives the control plane being SIGKILLed. A handle is (pid, start_time): the start time from
/proc/<pid>/stat guards every check and every signal against PID reuse, so a handle stored in the
database can be adopted again after a restart.

Children we spawned ourselves are reaped here (a zombie counts as dead) and their exit status kept;
the exit status of an adopted process is unknowable and reported as None.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from branchyard.backends.ports import ProcessHandle, ResourceUsage
from branchyard.errors import BackendError, DeployFailed

__all__ = ["ProcessHandle", "adopt", "exit_code", "free_port", "group_alive", "is_alive", "kill_group", "spawn",
           "start_time_of", "stderr_path", "stop", "tail", "usage"]

_KILL_WAIT = 10.0  # seconds to wait for the group to vanish after SIGKILL before giving up
_POLL = 0.02


@dataclass(frozen=True)
class _Stat:
    state: str
    pgrp: int
    session: int
    start_time: int


# Popen objects of children we spawned and have not reaped yet, and exit codes of those we reaped.
# Keeping the Popen until it is reaped stops subprocess' own __del__/_cleanup machinery from reaping
# our children behind our back (which would lose their exit status).
_lock = threading.Lock()
_children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
_exit_codes: dict[tuple[int, int], int] = {}
_MAX_EXIT_CODES = 4096
_ZOMBIE_WAIT = 2.0  # seconds: a child /proc shows exited is collected by waitpid within this


def pid_exists(pid: int) -> bool:
    """Whether any process has this pid (one we may not signal counts too); no identity check."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    """Bind 127.0.0.1:0 and return the port the kernel picked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True if something listens on `port` (any IPv4 address, or IPv6 when the host has it)."""
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with sock:
            # SO_REUSEADDR: a port in TIME_WAIT is free for a server (they all set it too).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((addr, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise BackendError(f"cannot check port {port}: {exc.strerror}") from None
    return False


_COMPOUND = re.compile(
    r"[;|&\n]|^\s*([A-Za-z_][A-Za-z0-9_]*="
    r"|(if|for|while|until|case|exec|exit|return|cd|export|set|trap|unset|eval|wait|ulimit|umask|[.:{(!])(\s|$))"
)


def exec_form(command: str) -> str:
    """`exec CMD` for a simple command, so the app itself is the process we track and signal (its exit
    code is the app's, and no shell is left holding it); compound commands run under the shell as given."""
    return command if _COMPOUND.search(command) else f"exec {command}"


def stderr_path(log_path: Path) -> Path:
    """Where a process's stderr goes: beside its stdout's `NAME.log`, `NAME.stderr.log`."""
    log_path = Path(log_path)
    stem = log_path.name[:-4] if log_path.name.endswith(".log") else log_path.name
    return log_path.with_name(f"{stem}.stderr.log")


def wrapped(command: str, *, prelude: str = "", prefix: list[str] | None = None) -> list[str]:
    """The argv that runs `command` under /bin/sh, after `prelude` (shell lines: joining a cgroup) and inside `prefix`
    (`ip netns exec NS`). The prelude runs first, in a shell of its own that then execs the prefix: `ip netns exec`
    mounts a sysfs of the namespace's over /sys, where the cgroup hierarchies are not. Every step execs, so the pid
    the caller gets is the command's."""
    if not prefix:
        return ["/bin/sh", "-c", f"{prelude}\n{command}" if prelude else command]
    inner = [*prefix, "/bin/sh", "-c", command]
    return ["/bin/sh", "-c", f'{prelude}\nexec "$@"', "sh", *inner] if prelude else inner


def spawn(command: str, *, cwd: Path, env: dict[str, str], log_path: Path, port: int,
          split_stderr: bool = True, prelude: str = "", prefix: list[str] | None = None,
          host: str = "127.0.0.1") -> ProcessHandle:
    """Start `/bin/sh -c command` as a new session leader, stdout appended to log_path and stderr to
    `stderr_path(log_path)`: two files the process holds open itself (O_APPEND), so it keeps logging while the
    control plane is down, and each line's stream is known. `split_stderr=False`: both into log_path.
    `prelude`: shell lines run first (joining a cgroup before the app execs, cgroups.py); `prefix`: what runs the
    app's shell (`ip netns exec NS`, which execs: the pid stays the same); `host`: where the process is reached (its
    namespace's address)."""
    log_path = Path(log_path)
    err_path = stderr_path(log_path) if split_stderr else log_path
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child, closed below
    except OSError as exc:
        raise BackendError(f"cannot open log file {log_path}: {exc.strerror}") from None
    try:
        err = open(err_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child, closed below
    except OSError as exc:
        log.close()
        raise BackendError(f"cannot open log file {err_path}: {exc.strerror}") from None
    try:
        proc = subprocess.Popen(
            wrapped(exec_form(command), prelude=prelude, prefix=prefix),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=err,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        where = f" in {cwd}" if isinstance(exc, FileNotFoundError) else ""
        raise DeployFailed(f"cannot start `{command}`{where}: {exc.strerror}") from None
    finally:
        log.close()
        err.close()
    # Unreaped, the child's /proc entry stays even if it already exited, so this read cannot miss.
    stat = _read_stat(proc.pid)
    if stat is None:  # pragma: no cover - only if someone else reaped our child
        raise BackendError(f"process {proc.pid} vanished right after start")
    with _lock:
        _children[proc.pid] = (stat.start_time, proc)
    return ProcessHandle(pid=proc.pid, start_time=stat.start_time, port=port, log_path=str(log_path), host=host)


def is_alive(h: ProcessHandle) -> bool:
    """True if the process of this handle runs (same start time, not a zombie)."""
    if _reap(h):
        return False
    stat = _read_stat(h.pid)
    if stat is None or stat.start_time != h.start_time:
        return False
    if stat.state in ("Z", "X", "x"):
        _reap(h, zombie=True)
        return False
    return True


def group_alive(h: ProcessHandle) -> bool:
    """True if a process of the handle's group still runs (its leader may be gone)."""
    return bool(_group_members(h))


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


_SCAN_TTL = 0.25  # seconds one pass over /proc serves: a sampler reading many replicas at once pays for one
_scan_lock = threading.Lock()
_scan: tuple[float, list[tuple[int, int, int, int, int, int]]] = (-1.0, [])


def _processes(leader: ProcessHandle) -> list[tuple[int, int, int, int, int, int]]:
    """(pid, pgrp, session, start time, cpu ticks, rss pages) of every live process, from one pass over /proc, shared
    by the callers of the next _SCAN_TTL seconds (reading /proc costs a few µs per process, more under gVisor) unless
    `leader` is not in it (started since)."""
    global _scan
    with _scan_lock:
        at, found = _scan
        if time.monotonic() - at < _SCAN_TTL and any(p[0] == leader.pid and p[3] == leader.start_time for p in found):
            return found
        found = []
        try:
            entries = os.listdir("/proc")
        except OSError as exc:  # pragma: no cover
            raise BackendError(f"cannot list /proc: {exc.strerror}") from None
        for name in entries:
            if not name.isdigit():
                continue
            try:
                fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
                try:
                    raw = os.read(fd, 4096)
                finally:
                    os.close(fd)
            except OSError:
                continue  # gone meanwhile
            rest = raw[raw.rfind(b")") + 2:].split()
            try:
                if rest[0] in (b"Z", b"X", b"x"):
                    continue
                found.append((int(name), int(rest[2]), int(rest[3]), int(rest[19]), int(rest[11]) + int(rest[12]), int(rest[21])))
            except (IndexError, ValueError):
                continue
        _scan = (time.monotonic(), found)
        return found


def usage(h: ProcessHandle) -> ResourceUsage | None:
    """CPU seconds and RSS summed over the replica's live processes: its group and its session (it leads both; a
    worker that made a group of its own still counts), none older than the leader. None when the replica is gone.

    Fields 14+15 of /proc/<pid>/stat (utime+stime, clock ticks) and 24 (rss, pages); at most _SCAN_TTL old. RSS counts
    pages shared by forked workers once per worker, as `ps` does."""
    if not is_alive(h):
        return None
    cpu_ticks, rss_pages, count = 0, 0, 0
    for _pid, pgrp, session, start_time, ticks, pages in _processes(h):
        if (pgrp == h.pid or session == h.pid) and start_time >= h.start_time:
            cpu_ticks += ticks
            rss_pages += pages
            count += 1
    return ResourceUsage(cpu_seconds=cpu_ticks / _CLK_TCK, rss_bytes=rss_pages * _PAGE, processes=count)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid`, a child we started and still hold (so the pid cannot be reused)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exit_code(h: ProcessHandle) -> int | None:
    """Exit status of a child we spawned and reaped (negative: killed by that signal), else None."""
    _reap(h)
    with _lock:
        return _exit_codes.get((h.pid, h.start_time))


def stop(h: ProcessHandle, *, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; return once it is gone.

    Idempotent. Never signals a pid whose start time does not match the handle. If the leader has
    already exited, members of its group still running (started after it) are stopped one by one.
    """
    _signal_group(h, signal.SIGTERM)
    if _wait_gone(h, grace):
        return
    _signal_group(h, signal.SIGKILL)
    if not _wait_gone(h, _KILL_WAIT):
        raise BackendError(f"process group {h.pid} still running {_KILL_WAIT:g}s after SIGKILL")


def tail(path: Path, lines: int = 20) -> list[str]:
    """Last `lines` lines of a (log) file, reading backwards from its end; [] if it does not exist."""
    if lines <= 0:
        return []
    block = 8192
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc.strerror}") from None
    # the log shipper frees shipped bytes (a punched hole reads as NULs): those are not lines
    text = data.replace(b"\x00", b"").decode("utf-8", errors="replace")
    out = text.splitlines()
    if pos > 0 and len(out) > lines:
        out = out[1:]  # the first line may be cut
    return out[-lines:]


def start_time_of(pid: int) -> int | None:
    """The process's start time (its identity with the pid, see ProcessHandle), or None when it is gone."""
    stat = _read_stat(pid)
    return None if stat is None or stat.state in ("Z", "X", "x") else stat.start_time


def adopt(pid: int, start_time: int, port: int, log_path: str, host: str = "127.0.0.1") -> ProcessHandle | None:
    """A handle for a process started earlier (maybe by a previous control plane); None if it is gone."""
    h = ProcessHandle(pid=pid, start_time=start_time, port=port, log_path=log_path, host=host)
    return h if is_alive(h) else None


# -- internals -------------------------------------------------------------------------------------


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return _Stat(state=rest[0], pgrp=int(rest[2]), session=int(rest[3]), start_time=int(rest[19]))
    except (IndexError, ValueError):
        return None


def _reap(h: ProcessHandle, *, zombie: bool = False) -> bool:
    """Reap the handle's process if it is our child and has exited; True if it is known to be dead.

    zombie: the caller saw it exited (/proc says Z). The kernel may show that a moment before waitpid can
    collect it (seen under gVisor): then wait for it briefly rather than lose its exit status."""
    key = (h.pid, h.start_time)
    with _lock:
        if key in _exit_codes:
            return True
        entry = _children.get(h.pid)
        if entry is None or entry[0] != h.start_time:
            return False
        proc = entry[1]
    rc = proc.poll()
    if rc is None and zombie:
        try:
            rc = proc.wait(timeout=_ZOMBIE_WAIT)
        except subprocess.TimeoutExpired:
            rc = None
    if rc is None:
        return False
    with _lock:
        _children.pop(h.pid, None)
        if len(_exit_codes) >= _MAX_EXIT_CODES:
            _exit_codes.pop(next(iter(_exit_codes)))
        _exit_codes[key] = rc
    return True


def _group_members(h: ProcessHandle) -> list[tuple[int, int]]:
    """(pid, start_time) of live processes in the handle's group, excluding zombies."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError as exc:  # pragma: no cover
        raise BackendError(f"cannot list /proc: {exc.strerror}") from None
    for name in entries:
        if not name.isdigit():
            continue
        stat = _read_stat(int(name))
        if stat is None or stat.pgrp != h.pid or stat.state in ("Z", "X", "x"):
            continue
        if stat.start_time < h.start_time:
            continue  # older than our leader: cannot belong to the group it created
        members.append((int(name), stat.start_time))
    return members


def _signal_group(h: ProcessHandle, sig: signal.Signals) -> None:
    leader = _read_stat(h.pid)
    if leader is not None and leader.start_time == h.start_time and not _reap(h):
        try:
            os.killpg(h.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise BackendError(f"not allowed to signal process group {h.pid}") from None
        return
    # The leader is gone (or is a zombie): its PID is still pinned while group members exist,
    # but signal each member individually after re-checking its identity.
    for pid, start in _group_members(h):
        stat = _read_stat(pid)
        if stat is None or stat.start_time != start or stat.pgrp != h.pid:
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise BackendError(f"not allowed to signal process {pid}") from None


def _wait_gone(h: ProcessHandle, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(h) and not _group_members(h):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
