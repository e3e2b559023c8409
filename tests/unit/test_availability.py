"""Availability over 24 h / 7 d / 30 d and incidents from uptime checks, with exact values."""

from __future__ import annotations

import pytest

from branchyard.availability import Check, availability, incidents, summary

DAY = 86400.0
NOW = 100 * DAY


@pytest.mark.parametrize(
    ("checks", "window", "expected"),
    [
        # each check stands for the time until the next one, the last until now (NOW = 100 here)
        ([Check(0, True), Check(10, False), Check(40, True)], 100, 70.0),
        ([Check(0, True), Check(10, False), Check(40, True)], 70, 85.714),  # [30, 40) down, [40, 100) up
        ([Check(0, True), Check(10, False), Check(40, True)], 1000, 70.0),  # no check before 0: 100 s covered
        ([Check(0, False)], 50, 0.0),  # a check before the window covers it
        ([Check(100, True)], 50, 100.0),  # a check at this instant covers no time yet: its own word
        ([], 50, None),
        # a failing probe waits out its timeout (fewer checks) and weighs as much as the time it covers
        ([Check(0, True), Check(1, True), Check(2, True), Check(3, True), Check(4, False), Check(9, False),
          Check(14, True)], 100, 90.0),
    ],
)
def test_availability_is_time_weighted(checks: list[Check], window: float, expected: float | None) -> None:
    assert availability(checks, 100, window) == expected


def test_windows() -> None:
    checks = [Check(NOW - 20 * DAY, False), Check(NOW - 3 * DAY, True)]
    assert availability(checks, NOW, DAY) == 100.0
    assert availability(checks, NOW, 7 * DAY) == 42.857  # the failed check covers 4 of the 7 days
    assert availability(checks, NOW, 30 * DAY) == 15.0  # 17 of the 20 days covered


def test_incidents_are_runs_of_failed_checks_newest_first() -> None:
    checks = [Check(0, True), Check(30, False, 500, "HTTP 500 from a.localhost"), Check(60, False, None, "timed out"),
              Check(90, True), Check(120, True), Check(150, False, None, "connection refused")]
    assert incidents(checks) == [
        {"started_at": 150, "ended_at": None, "duration_s": 0.0, "error": "connection refused"},
        {"started_at": 30, "ended_at": 90, "duration_s": 60.0, "error": "HTTP 500 from a.localhost"},
    ]
    assert incidents(checks, limit=1)[0]["started_at"] == 150
    assert incidents(checks + [Check(180, False), Check(200, False)])[0] == {
        "started_at": 150, "ended_at": None, "duration_s": 50.0, "error": "connection refused"}
    assert incidents([Check(0, True), Check(1, True)]) == []


def test_summary_shape() -> None:
    s = summary([Check(NOW - 10, True, 200, None, 3.5), Check(NOW - 5, False, 502, "HTTP 502", 1.0)], NOW)
    assert s == {"24h": 50.0, "7d": 50.0, "30d": 50.0,
                 "incidents": [{"started_at": NOW - 5, "ended_at": None, "duration_s": 0.0, "error": "HTTP 502"}],
                 "last_check": {"at": NOW - 5, "ok": False, "status": 502, "error": "HTTP 502", "duration_ms": 1.0}}
    assert summary([], NOW) == {"24h": None, "7d": None, "30d": None, "incidents": [], "last_check": None}
