"""Short-lived work the control plane runs for a deployment (build steps, hooks), recorded while it runs.

Each runs in a session of its own, so a SIGKILLed control plane would leave it going: a pip install
still writing into a virtualenv the resumed build is about to remove, a migration running twice. Each
one is recorded on disk (pid + start time, the identity guard against PID reuse) while it runs; the next
start of the control plane kills the process groups still recorded before any deployment resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ...errors import BackendError
from . import processes

log = logging.getLogger("branchyard.tasks")


class TaskRecords:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextlib.contextmanager
    def running(self, pid: int, label: str) -> Iterator[None]:
        """Record the process group led by `pid` for as long as the block runs."""
        start = processes.start_time_of(pid)
        path = self.directory / f"{pid}.json"
        if start is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"pid": pid, "start_time": start, "label": label}), encoding="utf-8")
            except OSError as exc:
                raise BackendError(f"cannot record task {label!r} in {self.directory}: {exc.strerror}") from None
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def kill_leftovers(self) -> list[str]:
        """SIGKILL the groups of tasks a previous control plane left running; what was killed, by label."""
        killed: list[str] = []
        try:
            records = sorted(self.directory.glob("*.json"))
        except OSError:
            return killed
        for path in records:
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
                handle = processes.ProcessHandle(int(rec["pid"]), int(rec["start_time"]), 0, os.devnull)
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if processes.is_alive(handle) or processes.group_alive(handle):
                processes.stop(handle, grace=0)
                killed.append(f"{rec.get('label', '?')} (pid {handle.pid})")
                log.warning("killed a task left running by the previous control plane: %s", killed[-1])
            path.unlink(missing_ok=True)
        return killed
