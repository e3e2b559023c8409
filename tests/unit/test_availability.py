"""Availability over 24 h / 7 d / 30 d and incidents from uptime checks, with exact values."""

from __future__ import annotations

from branchyard.availability import Check, availability, incidents, summary

DAY = 86400.0
NOW = 100 * DAY


def test_availability_per_window() -> None:
    checks = [Check(NOW - 20 * DAY, False, error="old"), *[Check(NOW - 3 * DAY + i, i % 4 != 0) for i in range(4)],
              *[Check(NOW - 100 + i, i != 0) for i in range(10)]]
    assert availability(checks, NOW, DAY) == 90.0
    assert availability(checks, NOW, 7 * DAY) == round(100 * 12 / 14, 3)
    assert availability(checks, NOW, 30 * DAY) == 80.0
    assert availability([], NOW, DAY) is None
    assert availability([Check(NOW - 2 * DAY, True)], NOW, DAY) is None


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
