"""`status`'s `uptime` computed in SQLite (controller/uptime.summary_sql) equals availability.summary (pure, the
definition) over the same checks, for tables of checks and random ones."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from branchyard.availability import Check, summary
from branchyard.controller.uptime import summary_sql
from branchyard.store import models as m
from branchyard.store.db import Store

NOW = 1_800_000_000.0
DAY = 86400.0


def stored(tmp_path: Path, checks: list[Check]) -> tuple[Store, int]:
    store = Store(tmp_path / "state.db")
    with store.session() as s:
        p = m.Project(name="x", repo_path="/r")
        s.add(p)
        s.flush()
        env = m.Environment(project_id=p.id, name="production", production=True)
        s.add(env)
        s.flush()
        s.add_all([m.UptimeCheck(environment_id=env.id, at=c.at, ok=c.ok, status=c.status, error=c.error,
                                 duration_ms=c.duration_ms) for c in checks])
        return store, env.id


def random_checks(seed: int) -> list[Check]:
    rng = random.Random(seed)
    at, ok, checks = NOW - 31 * DAY, True, []
    while at < NOW:
        if rng.random() < 0.01:
            ok = not ok
        checks.append(Check(at, ok, 200 if ok else 502, None if ok else f"HTTP 502 #{len(checks)}", 1.5))
        at += rng.choice([30.0, 35.0, 3600.0, 4 * 3600.0])
    return checks


@pytest.mark.parametrize(
    "checks",
    [
        [],
        [Check(NOW - 10, True, 200, None, 3.5), Check(NOW - 5, False, 502, "HTTP 502", 1.0)],
        [Check(NOW - 40 * DAY, False, None, "old", 0.0), Check(NOW - 3 * DAY, True, 200, None, 1.0)],
        [Check(NOW - 20 * DAY, False, None, "timed out", 5000.0), Check(NOW - 3 * DAY, True, 200, None, 1.0),
         Check(NOW - 2 * DAY, False, 500, "HTTP 500", 1.0), Check(NOW - 2 * DAY + 30, False, 500, "again", 1.0),
         Check(NOW - DAY - 60, True, 200, None, 1.0), Check(NOW, True, 200, None, 1.0)],
        random_checks(1),
        random_checks(2),
    ],
)
def test_the_sql_summary_equals_the_definition(tmp_path: Path, checks: list[Check]) -> None:
    store, env_id = stored(tmp_path, checks)
    try:
        with store.session() as s:
            fast = summary_sql(s, env_id, NOW, monitored=True)
        kept = [c for c in checks if c.at >= NOW - 30 * DAY]  # what is kept (older checks are pruned)
        slow = summary(kept, NOW)
        for window in ("24h", "7d", "30d"):  # sums in another order: the last rounded digit may differ
            assert fast[window] == (None if slow[window] is None else pytest.approx(slow[window], abs=0.002)), window
        assert (fast["incidents"], fast["last_check"]) == (slow["incidents"], slow["last_check"])
    finally:
        store.close()


def test_an_environment_never_probed_and_not_monitored_has_none(tmp_path: Path) -> None:
    store, env_id = stored(tmp_path, [])
    try:
        with store.session() as s:
            assert summary_sql(s, env_id, NOW, monitored=False) is None
            assert summary_sql(s, env_id, NOW, monitored=True)["24h"] is None
    finally:
        store.close()
