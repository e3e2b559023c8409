"""An environment's uptime record begins with its first successful check (controller/uptime.py): the failed checks
of a first deploy (between its switch and its route, or an app that never answered) are not downtime of something
that was up; every check after the first success is recorded, failures included, across a restart of the service."""

from __future__ import annotations

import time
from pathlib import Path

from test_uptime_summary import stored as environment_with_checks

from branchyard import settings as settings_mod
from branchyard.availability import Check
from branchyard.controller.uptime import Target, Uptime
from branchyard.store import models as m
from branchyard.store.db import Store


def _uptime(tmp_path: Path, store: Store, env_id: int, results: list[bool], start: int) -> Uptime:
    uptime = Uptime(settings_mod.load({"BRANCHYARD_HOME": str(tmp_path / "home")}), store)
    target = Target(env_id, "x", "production", ("x.localhost",), "/")
    uptime.targets = lambda: [target]  # type: ignore[method-assign] - the probe's answers are the test's
    clock = iter(range(start, start + 1000, 10))
    uptime.probe = lambda t: (lambda ok, at: Check(at, ok, 200 if ok else 503, None if ok else "HTTP 503", 1.0))(
        results.pop(0), float(next(clock)))  # type: ignore[method-assign]
    return uptime


def test_failures_before_the_first_success_are_not_recorded_and_every_check_after_is(tmp_path: Path) -> None:
    store, env_id = environment_with_checks(tmp_path, [])  # a project with its production environment, no checks yet
    try:
        results = [False, False, True, False, True]
        uptime = _uptime(tmp_path, store, env_id, results, int(time.time()) - 600)  # recent: older is pruned
        for _ in range(2):
            uptime.run_once()
        assert uptime.current("x", "production") is None  # nothing known yet: no data, not down
        for _ in range(3):
            uptime.run_once()
        with store.session() as s:
            stored = [c.ok for c in s.query(m.UptimeCheck).order_by(m.UptimeCheck.at)]
        assert stored == [True, False, True]
        # a new service (a restarted control plane) finds the record begun: its first failure is recorded
        again = _uptime(tmp_path, store, env_id, [False], int(time.time()) - 5)
        again.run_once()
        with store.session() as s:
            assert [c.ok for c in s.query(m.UptimeCheck).order_by(m.UptimeCheck.at)][-1] is False
        assert again.current("x", "production") is not None
    finally:
        store.engine.dispose()
