"""The cron planner: which slot runs, which is skipped (overlap, missed while down), never a burst. Exact actions."""

import calendar

import pytest

from branchyard.cron_plan import CATCH_UP, CronObs, SkipRun, StartRun, iso, latest_slot, next_slot, plan_cron


def t(text: str) -> float:
    """`2026-03-29 02:30:00` (UTC) → unix seconds."""
    return float(calendar.timegm(__import__("time").strptime(text, "%Y-%m-%d %H:%M:%S")))


EVERY_MINUTE = "* * * * *"
HOURLY = "0 * * * *"
DAILY_3 = "0 3 * * *"
SINCE = t("2026-01-01 00:00:30")


def obs(schedule=EVERY_MINUTE, since=SINCE, last=None, running=False):
    return CronObs(schedule=schedule, since=since, last_slot=last, running=running)


@pytest.mark.parametrize(
    ("o", "now", "expected"),
    [
        # deployed at 00:00:30: the 00:00 slot was before it went live
        (obs(), t("2026-01-01 00:00:45"), []),
        # the first slot after it went live runs
        (obs(), t("2026-01-01 00:01:00"), [StartRun(t("2026-01-01 00:01:00"))]),
        (obs(), t("2026-01-01 00:01:59"), [StartRun(t("2026-01-01 00:01:00"))]),
        # recorded already: nothing until the next slot
        (obs(last=t("2026-01-01 00:01:00")), t("2026-01-01 00:01:30"), []),
        (obs(last=t("2026-01-01 00:01:00")), t("2026-01-01 00:02:00"), [StartRun(t("2026-01-01 00:02:00"))]),
        # the previous run still going when the next is due: skipped and recorded, one run at a time
        (obs(last=t("2026-01-01 00:01:00"), running=True), t("2026-01-01 00:02:00"),
         [SkipRun(t("2026-01-01 00:02:00"), "the previous run is still running")]),
        (obs(last=t("2026-01-01 00:02:00"), running=True), t("2026-01-01 00:02:10"), []),
        # down for 10 minutes: only the newest missed slot runs (never a burst of 10)
        (obs(last=t("2026-01-01 00:01:00")), t("2026-01-01 00:11:20"), [StartRun(t("2026-01-01 00:11:00"))]),
        # hourly, down from 09:50 to 10:20: 10:00 runs once, late
        (obs(HOURLY, last=t("2026-01-01 09:00:00")), t("2026-01-01 10:20:00"), [StartRun(t("2026-01-01 10:00:00"))]),
        # exactly CATCH_UP late still runs; a second more is missed
        (obs(DAILY_3, last=t("2026-01-01 03:00:00")), t("2026-01-02 03:00:00") + CATCH_UP,
         [StartRun(t("2026-01-02 03:00:00"))]),
        (obs(DAILY_3, last=t("2026-01-01 03:00:00")), t("2026-01-02 03:00:00") + CATCH_UP + 1,
         [SkipRun(t("2026-01-02 03:00:00"), "missed: the scheduler was not running at 2026-01-02T03:00:00Z "
                                            "(60 min ago, more than 60 min late)")]),
        # daily at 03:00, down from 02:00 to 09:00: missed (recorded skipped), not run at 09:00
        (obs(DAILY_3, last=t("2026-01-01 03:00:00")), t("2026-01-02 09:00:00"),
         [SkipRun(t("2026-01-02 03:00:00"), "missed: the scheduler was not running at 2026-01-02T03:00:00Z "
                                            "(360 min ago, more than 60 min late)")]),
        # …and runs the next day
        (obs(DAILY_3, last=t("2026-01-02 03:00:00")), t("2026-01-03 03:00:01"), [StartRun(t("2026-01-03 03:00:00"))]),
        # UTC, no daylight saving: Europe's spring-forward night (2026-03-29 01:00 UTC) has its 02:30 slot
        (obs("30 2 * * *", last=t("2026-03-28 02:30:00")), t("2026-03-29 02:30:00"), [StartRun(t("2026-03-29 02:30:00"))]),
        # and autumn's night (2026-10-25) has exactly one 01:30, not two
        (obs("30 1 * * *", last=t("2026-10-25 01:30:00")), t("2026-10-25 02:30:00"), []),
    ],
)
def test_plan_cron(o, now, expected):
    assert plan_cron(o, now) == expected


@pytest.mark.parametrize(
    ("schedule", "now", "latest", "following"),
    [
        (EVERY_MINUTE, "2026-01-01 10:00:00", "2026-01-01 10:00:00", "2026-01-01 10:01:00"),
        ("*/15 * * * *", "2026-01-01 10:14:59", "2026-01-01 10:00:00", "2026-01-01 10:15:00"),
        ("0 8 * * 1", "2026-01-01 10:00:00", "2025-12-29 08:00:00", "2026-01-05 08:00:00"),  # Mondays
        ("0 0 1 * *", "2026-02-15 12:00:00", "2026-02-01 00:00:00", "2026-03-01 00:00:00"),
    ],
)
def test_slots(schedule, now, latest, following):
    assert latest_slot(schedule, t(now)) == t(latest)
    assert next_slot(schedule, t(now)) == t(following)


def test_iso_is_utc():
    assert iso(t("2026-03-29 02:30:00")) == "2026-03-29T02:30:00Z"
