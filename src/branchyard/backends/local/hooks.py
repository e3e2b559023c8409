"""Lifecycle hooks (preDeployCommand, seedCommand): run once per deploy, output streamed to the deploy log."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from ... import failpoints
from ...errors import DeployFailed
from .processes import kill_group, wrapped
from .tasks import TaskRecords

HOOK_TIMEOUT = 600  # seconds


def run_hook(command: str, *, cwd: Path, env: dict[str, str], out: Callable[[str], None], timeout: float,
             tasks: TaskRecords | None = None, prelude: str = "", prefix: list[str] | None = None) -> None:
    """Run `command` with the environment's variables; DeployFailed (naming it and its exit code) unless it exits 0.

    `tasks` records the hook's process group while it runs (the next start kills it if the control plane dies);
    `prelude`: shell lines run first (joining a cgroup, cgroups.py); `prefix` runs it in the environment's network
    namespace (`ip netns exec NS`)."""
    try:
        proc = subprocess.Popen(wrapped(command, prelude=prelude, prefix=prefix), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        raise DeployFailed(f"`{command}` could not start: {err.strerror}") from None
    timer = threading.Timer(timeout, lambda: kill_group(proc.pid))
    timer.start()
    try:
        with tasks.running(proc.pid, command) if tasks is not None else contextlib.nullcontext():
            failpoints.hit("deploy.during_hook")
            for raw in proc.stdout:
                out("       " + raw.decode(errors="replace").rstrip())
            code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        why = f"timed out after {timeout:.0f}s" if code == -signal.SIGKILL else f"exited with code {code}"
        raise DeployFailed(f"`{command}` {why}; the previous deployment keeps serving")
