"""The alert engine (issue 16): rules + the latest values + what was pending or firing → the new state and what changed.
Pure: no clock, no store, no I/O (controller/alerts.py runs it every ~10 s per environment and keeps its state).

Per rule:
- its condition holds (value above/below the threshold; `down`: value 1) → PENDING from that instant;
- it held for the rule's `for` → FIRING: one `firing` transition (at once when `for` is 0);
- a FIRING rule whose condition no longer holds → RESOLVED after `resolve_for` (0: at once): one `resolved`
  transition, and the rule is free to go pending again;
- no value for the series (no data is not zero): a pending rule is dropped (nothing fires on no data), a firing one
  stays firing (nothing resolves on no data either);
- a firing rule that is no longer among the rules (the spec dropped it) resolves.
An alert fires once and resolves once: a transition is emitted only on entering FIRING and on leaving it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .spec.alerts import DOWN, AlertRule

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True)
class RuleState:
    """An open alert: `since` when its condition started holding; `fired_at` once firing; `clear_since` when a firing
    alert's condition stopped holding (waiting out resolve_for)."""

    state: str
    since: float
    value: float | None = None
    fired_at: float | None = None
    clear_since: float | None = None


@dataclass(frozen=True)
class Transition:
    rule: str
    state: str  # FIRING | RESOLVED
    value: float | None
    threshold: float | None
    since: float  # when the condition started holding
    at: float


def down_value(up: float | None, *, serving: bool, probed: bool) -> float | None:
    """The `down` rule's value: 1 when no web replica serves or the last probe of the public URL failed, 0 when it
    answered (or, where nothing probes the URL, while a replica serves); None — no data — when the URL is probed
    but no recent check is known (after a restart that outlasted the last check's freshness): a firing alert stays
    firing then, and a pending one waits, instead of resolving for want of a probe."""
    if not serving:
        return 1.0
    if up is not None:
        return 1.0 if up == 0.0 else 0.0
    return None if probed else 0.0


def holds(rule: AlertRule, value: float | None) -> bool | None:
    """Whether the rule's condition holds for this value; None without a value."""
    if value is None:
        return None
    if rule.name == DOWN:
        return value >= 1
    if rule.above is not None:
        return value > rule.above
    if rule.below is not None:
        return value < rule.below
    return False


def evaluate(rules: Sequence[AlertRule], values: Mapping[str, float], state: Mapping[str, RuleState],
             now: float) -> tuple[dict[str, RuleState], list[Transition]]:
    """One evaluation: the open alerts after it, and the transitions it makes (in the rules' order)."""
    new: dict[str, RuleState] = {}
    out: list[Transition] = []
    for rule in rules:
        value = values.get(rule.name)
        ok = holds(rule, value)
        current = state.get(rule.name)
        if current is None or current.state != FIRING:
            if not ok:
                continue  # nothing open (a pending rule whose condition stopped, or no data, is dropped)
            since = current.since if current is not None else now
            if now - since >= rule.for_s:
                new[rule.name] = RuleState(FIRING, since=since, value=value, fired_at=now)
                out.append(Transition(rule.name, FIRING, value, rule.threshold, since, now))
            else:
                new[rule.name] = RuleState(PENDING, since=since, value=value)
            continue
        if ok is None:  # firing, no data: stays firing as it was
            new[rule.name] = current
        elif ok:
            new[rule.name] = replace(current, value=value, clear_since=None)
        else:
            clear = current.clear_since if current.clear_since is not None else now
            if now - clear >= rule.resolve_for_s:
                out.append(Transition(rule.name, RESOLVED, value, rule.threshold, current.since, now))
            else:
                new[rule.name] = replace(current, value=value, clear_since=clear)
    names = {r.name for r in rules}
    for name, current in state.items():
        if name not in names and current.state == FIRING:
            out.append(Transition(name, RESOLVED, None, None, current.since, now))
    return new, out
