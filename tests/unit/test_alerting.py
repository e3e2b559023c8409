"""The alert engine's state machine (alerting.evaluate), step by step with exact values."""

from __future__ import annotations

import pytest

from branchyard.alerting import FIRING, PENDING, RESOLVED, RuleState, Transition, down_value, evaluate, holds
from branchyard.spec.alerts import AlertRule

RATE = AlertRule("http_5xx_rate", above=0.05, for_s=10.0)
RATE_STICKY = AlertRule("http_5xx_rate", above=0.05, for_s=10.0, resolve_for_s=5.0)
DOWN = AlertRule("down", for_s=0.0)
LOW = AlertRule("http_requests_per_second", below=1.0, for_s=2.0)


def run(rule: AlertRule, steps: list[tuple[float, float | None]]) -> list[tuple[float, str | None, str | None]]:
    """Feed (now, value) steps through evaluate; per step: (now, state after, transition made or None)."""
    state: dict[str, RuleState] = {}
    seen = []
    for now, value in steps:
        state, moves = evaluate([rule], {} if value is None else {rule.name: value}, state, now)
        assert len(moves) <= 1
        seen.append((now, state[rule.name].state if rule.name in state else None, moves[0].state if moves else None))
    return seen


@pytest.mark.parametrize(
    ("rule", "steps", "expected"),
    [
        # pending at 0, fires once at 10 (held 10 s), stays firing without a second transition, resolves once
        (RATE, [(0, 0.5), (5, 0.5), (10, 0.2), (20, 0.9), (30, 0.0), (40, 0.0)],
         [(0, PENDING, None), (5, PENDING, None), (10, FIRING, FIRING), (20, FIRING, None), (30, None, RESOLVED),
          (40, None, None)]),
        # the condition stops before `for`: pending dropped, starts again from scratch
        (RATE, [(0, 0.5), (5, 0.01), (8, 0.5), (17, 0.5), (18, 0.5)],
         [(0, PENDING, None), (5, None, None), (8, PENDING, None), (17, PENDING, None), (18, FIRING, FIRING)]),
        # exactly the threshold is not above it
        (RATE, [(0, 0.05), (20, 0.05)], [(0, None, None), (20, None, None)]),
        # for = 0: fires at the first evaluation
        (DOWN, [(0, 0.0), (1, 1.0), (2, 1.0), (3, 0.0)],
         [(0, None, None), (1, FIRING, FIRING), (2, FIRING, None), (3, None, RESOLVED)]),
        # no data: nothing pends on it, a firing alert neither resolves nor re-fires
        (DOWN, [(0, None), (1, 1.0), (2, None), (3, None), (4, 1.0), (5, 0.0)],
         [(0, None, None), (1, FIRING, FIRING), (2, FIRING, None), (3, FIRING, None), (4, FIRING, None),
          (5, None, RESOLVED)]),
        (RATE, [(0, 0.5), (5, None), (20, 0.5)], [(0, PENDING, None), (5, None, None), (20, PENDING, None)]),
        # resolve_for: a dip shorter than it does not resolve (no flapping), a long enough one resolves once
        (RATE_STICKY, [(0, 1.0), (10, 1.0), (11, 0.0), (14, 1.0), (15, 0.0), (19, 0.0), (20, 0.0), (21, 0.0)],
         [(0, PENDING, None), (10, FIRING, FIRING), (11, FIRING, None), (14, FIRING, None), (15, FIRING, None),
          (19, FIRING, None), (20, None, RESOLVED), (21, None, None)]),
        # below
        (LOW, [(0, 0.5), (1, 0.5), (2, 0.5), (3, 1.0)],
         [(0, PENDING, None), (1, PENDING, None), (2, FIRING, FIRING), (3, None, RESOLVED)]),
    ],
)
def test_state_machine(rule: AlertRule, steps: list, expected: list) -> None:
    assert run(rule, steps) == expected


def test_transitions_carry_value_threshold_and_since() -> None:
    state, moves = evaluate([RATE], {"http_5xx_rate": 0.5}, {}, 100.0)
    assert moves == [] and state == {"http_5xx_rate": RuleState(PENDING, since=100.0, value=0.5)}
    state, moves = evaluate([RATE], {"http_5xx_rate": 0.25}, state, 110.0)
    assert moves == [Transition("http_5xx_rate", FIRING, 0.25, 0.05, 100.0, 110.0)]
    assert state == {"http_5xx_rate": RuleState(FIRING, since=100.0, value=0.25, fired_at=110.0)}
    state, moves = evaluate([RATE], {"http_5xx_rate": 0.0}, state, 125.0)
    assert moves == [Transition("http_5xx_rate", RESOLVED, 0.0, 0.05, 100.0, 125.0)] and state == {}


def test_a_restart_neither_refires_nor_forgets() -> None:
    """The state the controller stored is all the engine needs: a firing alert read back stays firing, silently."""
    stored = {"down": RuleState(FIRING, since=50.0, value=1.0, fired_at=50.0)}
    state, moves = evaluate([DOWN], {"down": 1.0}, stored, 500.0)
    assert moves == [] and state["down"].state == FIRING and state["down"].fired_at == 50.0
    state, moves = evaluate([DOWN], {"down": 0.0}, stored, 500.0)
    assert [m.state for m in moves] == [RESOLVED] and moves[0].since == 50.0


def test_a_firing_rule_the_spec_dropped_resolves_and_a_pending_one_is_forgotten() -> None:
    stored = {"down": RuleState(FIRING, since=1.0, fired_at=1.0), "http_5xx_rate": RuleState(PENDING, since=1.0)}
    state, moves = evaluate([], {"down": 1.0}, stored, 9.0)
    assert state == {} and moves == [Transition("down", RESOLVED, None, None, 1.0, 9.0)]


def test_several_rules_in_their_order() -> None:
    state, moves = evaluate([DOWN, RATE], {"down": 1.0, "http_5xx_rate": 0.9}, {}, 0.0)
    assert [(m.rule, m.state) for m in moves] == [("down", FIRING)] and state["http_5xx_rate"].state == PENDING


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [(RATE, 0.06, True), (RATE, 0.05, False), (RATE, None, None), (LOW, 0.99, True), (LOW, 1.0, False),
     (DOWN, 1.0, True), (DOWN, 0.0, False)],
)
def test_holds(rule: AlertRule, value: float | None, expected: bool | None) -> None:
    assert holds(rule, value) is expected


@pytest.mark.parametrize(("up", "serving", "probed", "expected"), [
    (None, False, True, 1.0),  # no web replica serves: down, whatever the probe said
    (1.0, False, True, 1.0),
    (0.0, True, True, 1.0),  # the last probe of the public URL failed
    (1.0, True, True, 0.0),
    (None, True, True, None),  # probed, but no fresh check known (a restart outlasted it): no data, not "up"
    (None, True, False, 0.0),  # nothing probes its URL: a serving replica is all there is to know
])
def test_the_down_value(up, serving, probed, expected) -> None:
    assert down_value(up, serving=serving, probed=probed) == expected


def test_a_firing_down_alert_survives_a_restart_that_outlasts_the_last_probe() -> None:
    firing = {"down": RuleState(FIRING, since=0.0, value=1.0, fired_at=0.0)}
    values = {} if (v := down_value(None, serving=True, probed=True)) is None else {"down": v}
    state, moves = evaluate([AlertRule("down", for_s=0.0, resolve_for_s=1.0)], values, firing, 60.0)
    assert moves == [] and state["down"].state == FIRING and state["down"].clear_since is None
