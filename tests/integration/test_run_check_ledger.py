"""LocalRuntime.run_check (smoke tests, post-deploy tests): recorded in the task ledger while it runs, so a control
plane killed meanwhile has it killed at its next start; a check past its timeout is killed, group and all."""

from __future__ import annotations

import os
import time

from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords


def test_a_check_is_recorded_while_it_runs_and_forgotten_after(tmp_path):
    tasks = tmp_path / "tasks"
    runtime = LocalRuntime(TaskRecords(tasks))
    # the record is written just after the process starts: the check waits for it, then shows it
    script = f'until ls "{tasks}"/*.json >/dev/null 2>&1; do sleep 0.05; done; cat "{tasks}"/*.json; echo; echo last line'
    code, output = runtime.run_check(["/bin/sh", "-c", script], cwd=tmp_path,
                                     env={"PATH": os.environ["PATH"]}, timeout=30)
    assert code == 0
    assert '"label": "check: until ls' in output and output.splitlines()[-1] == "last line"
    assert list(tasks.glob("*.json")) == []


def test_a_check_past_its_timeout_is_killed_with_its_children(tmp_path):
    runtime = LocalRuntime(TaskRecords(tmp_path / "tasks"))
    pidfile = tmp_path / "child"
    code, output = runtime.run_check(["/bin/sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"],
                                     cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=1)
    assert (code, output.strip()) == (None, "started")
    child = int(pidfile.read_text())

    def alive() -> bool:  # a SIGKILLed process is gone (or a zombie) a moment after the signal, not at once
        try:
            with open(f"/proc/{child}/stat") as f:
                return "Z" not in f.read().rsplit(")", 1)[1][:3]
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive()
    assert list((tmp_path / "tasks").glob("*.json")) == []
