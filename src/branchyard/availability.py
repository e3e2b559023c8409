"""Uptime arithmetic (issue 16): availability over a window and the incidents, from the probes' checks. Pure.

A check is one probe of an environment's public URL through the router (controller/uptime.py): up when every host
answered below 500. Availability over a window is the share of its checks that were up (the probe runs at a fixed
interval, so each check stands for the same time), in percent; None when the window holds no check. An incident is
a run of failed checks: from the first failed check to the first check up again (`ended_at` None while it lasts),
with the first check's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WINDOWS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
RETENTION = WINDOWS["30d"]  # checks older than this are pruned


@dataclass(frozen=True)
class Check:
    at: float  # unix seconds
    ok: bool
    status: int | None = None  # the (worst) HTTP status; None when no answer came
    error: str | None = None  # why it failed: "HTTP 502 from …", "timed out", …
    duration_ms: float = 0.0


def availability(checks: Sequence[Check], now: float, window_s: float) -> float | None:
    inside = [c for c in checks if now - window_s <= c.at <= now]
    if not inside:
        return None
    return round(100.0 * sum(c.ok for c in inside) / len(inside), 3)


def incidents(checks: Sequence[Check], limit: int = 5) -> list[dict[str, Any]]:
    """The last `limit` runs of failed checks (checks in time order), newest first."""
    found: list[dict[str, Any]] = []
    first: Check | None = None
    for check in checks:
        if not check.ok and first is None:
            first = check
        elif check.ok and first is not None:
            found.append(_incident(first, check.at))
            first = None
    if first is not None:
        found.append(_incident(first, None, last=checks[-1].at))
    return found[::-1][:limit]


def _incident(first: Check, ended: float | None, *, last: float | None = None) -> dict[str, Any]:
    end = ended if ended is not None else last
    return {"started_at": first.at, "ended_at": ended, "duration_s": round((end or first.at) - first.at, 3),
            "error": first.error}


def summary(checks: Sequence[Check], now: float) -> dict[str, Any]:
    """`status --json`'s `uptime`: availability per window, the last incidents, the last check."""
    out: dict[str, Any] = {name: availability(checks, now, seconds) for name, seconds in WINDOWS.items()}
    out["incidents"] = incidents(checks)
    last = checks[-1] if checks else None
    out["last_check"] = None if last is None else {
        "at": last.at, "ok": last.ok, "status": last.status, "error": last.error, "duration_ms": last.duration_ms}
    return out
