"""Uptime arithmetic (issue 16): availability over a window and the incidents, from the probes' checks. Pure.

A check is one probe of an environment's public URL through the router (controller/uptime.py): up when every host
answered below 500. Availability over a window is the share of its time that was up (each
check stands for the time until the next one), in percent; None when no check covers the window. An incident is
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
    """Percent of the window's time the URL was up: each check stands for the time until the next one (the last
    until now), clipped to the window — so a failing probe that waits out its timeout, checking less often than one
    that is answered at once, weighs as much as the time it covers. None when no check covers the window."""
    start = now - window_s
    up = total = 0.0
    for i, check in enumerate(checks):
        end = checks[i + 1].at if i + 1 < len(checks) else now
        lo, hi = max(check.at, start), min(end, now)
        if hi > lo:
            total += hi - lo
            up += (hi - lo) if check.ok else 0.0
    if total == 0:
        inside = [c for c in checks if start <= c.at <= now]
        return None if not inside else (100.0 if inside[-1].ok else 0.0)
    return round(100.0 * up / total, 3)


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
