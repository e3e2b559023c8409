"""The reconcile loop never waits for housekeeping: a daily pg_dump of a big database runs beside it."""

from __future__ import annotations

import threading
import time

from conftest import wait_for

from branchyard.controller import reconciler


def test_a_slow_scheduled_backup_does_not_hold_up_reconcile_passes(monkeypatch) -> None:
    monkeypatch.setattr(reconciler, "INTERVAL", 0.01)
    monkeypatch.setattr(reconciler, "HOUSEKEEPING_EVERY", 2)
    release, dumping = threading.Event(), threading.Event()
    started: list[float] = []

    def slow_backups() -> None:
        started.append(time.monotonic())
        dumping.set()
        release.wait(10)

    loop = reconciler.Reconciler(None, router=None, runtime=None, routes=None, replicas=None, deployer=None, locks=None,  # type: ignore[arg-type]
                                 previews=None, data=None, liveness=None, housekeeping=slow_backups)
    passes: list[float] = []
    monkeypatch.setattr(loop, "run_once", lambda: passes.append(time.monotonic()))
    stop = threading.Event()
    thread = threading.Thread(target=loop.run_forever, args=(stop,))
    thread.start()
    try:
        assert dumping.wait(5)
        during = len(passes)
        # passes go on while the backup runs: among them at least two more housekeeping turns (every 2nd pass)…
        wait_for(lambda: len(passes) > during + 5, timeout=30)
        assert len(started) == 1  # …and none started a second housekeeping beside the one still running
    finally:
        release.set()
        stop.set()
        thread.join(5)
