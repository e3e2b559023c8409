"""A cron service's schedule → what its scheduler does now. Pure: no I/O, no clock reads; table-tested.

`cronSchedule` (Railway's key) is a standard 5-field cron expression, always in UTC (no daylight saving: a UTC
day has 24 hours, so no slot is doubled or lost). The scheduler asks `plan_cron` about every cron environment about
once a second, from what it observes (the newest slot recorded, whether a run is still going):

- the newest slot at or before `now` was not recorded yet → **start** a run for it, or **skip** it (recorded as
  skipped, with why) when the previous run is still going — one run at a time, as Railway does;
- slots before the cron deployment went live (`since`) never run;
- after downtime (a control plane stopped, a machine asleep) only the *newest* missed slot is considered, never a
  burst of them: it runs when it is at most CATCH_UP seconds old, else it is recorded as skipped ("missed").
  An hourly job after 20 minutes down runs once, late; a 03:00 daily job with the control plane down from 02:00 to
  09:00 does not run at 09:00 — it runs at 03:00 the next day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from croniter import croniter

CATCH_UP = 3600.0  # seconds: how late the newest missed slot may still be started after downtime
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class CronObs:
    """One cron environment as the scheduler sees it; times are unix seconds (UTC)."""

    schedule: str
    since: float  # when its cron deployment went live: earlier slots never run
    last_slot: float | None  # the newest slot recorded (run or skipped); None: none yet
    running: bool  # a run of it is still going


@dataclass(frozen=True)
class StartRun:
    slot: float


@dataclass(frozen=True)
class SkipRun:
    slot: float
    reason: str


CronAction = StartRun | SkipRun


def latest_slot(schedule: str, now: float) -> float:
    """The newest time at or before `now` the schedule fires at (UTC)."""
    start = dt.datetime.fromtimestamp(now, _UTC) + dt.timedelta(milliseconds=1)  # get_prev is strictly before
    return croniter(schedule, start).get_prev(dt.datetime).timestamp()


def next_slot(schedule: str, now: float) -> float:
    """The first time strictly after `now` the schedule fires at (UTC)."""
    return croniter(schedule, dt.datetime.fromtimestamp(now, _UTC)).get_next(dt.datetime).timestamp()


def iso(ts: float) -> str:
    """`2026-01-01T03:00:00Z`: how slots are shown."""
    return dt.datetime.fromtimestamp(ts, _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_cron(obs: CronObs, now: float) -> list[CronAction]:
    """What the scheduler does for one cron environment now: nothing, start the newest slot's run, or skip it."""
    slot = latest_slot(obs.schedule, now)
    if slot < obs.since or (obs.last_slot is not None and slot <= obs.last_slot):
        return []
    if obs.running:
        return [SkipRun(slot, "the previous run is still running")]
    late = now - slot
    if late > CATCH_UP:
        return [SkipRun(slot, f"missed: the scheduler was not running at {iso(slot)} "
                              f"({late / 60:.0f} min ago, more than {CATCH_UP / 60:.0f} min late)")]
    return [StartRun(slot)]
