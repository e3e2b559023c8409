"""Liveness: when a RUNNING replica is probed again, how long a probe waits, and what `status` makes of the results."""

import pytest

from branchyard.controller.environments import replica_health, serving_status
from branchyard.controller.liveness import due, probe_timeout
from branchyard.spec.model import WebConfig


@pytest.mark.parametrize(
    ("checked_at", "interval", "now", "expected"),
    [
        (None, 5, 100.0, True),  # never checked
        (95.0, 5, 100.0, True),  # exactly one interval ago
        (95.5, 5, 100.0, False),
        (99.0, 1, 100.0, True),
        (99.5, 1, 100.0, False),
    ],
)
def test_a_replica_is_probed_at_most_once_per_interval(checked_at, interval, now, expected):
    assert due(checked_at, interval, now) is expected


@pytest.mark.parametrize(
    ("interval", "timeout", "expected"),
    [
        (5, 300, 5.0),  # the defaults
        (1, 300, 1.0),  # never longer than the interval: probes of a hung replica do not pile up
        (30, 300, 5.0),  # nor than 5 s
        (10, 2, 2.0),  # nor than healthcheckTimeout
    ],
)
def test_probe_timeout(interval, timeout, expected):
    assert probe_timeout(WebConfig(healthcheck_path="/health", healthcheck_interval=interval, healthcheck_timeout=timeout)) == expected


@pytest.mark.parametrize(
    ("state", "alive", "failures", "checked", "expected"),
    [
        ("RUNNING", True, 0, True, "healthy"),
        ("RUNNING", True, 2, True, "unhealthy"),  # still routed, on its way to eviction
        ("RUNNING", True, 0, False, "unknown"),  # not checked yet (or no path: nothing is recorded)
        ("STARTING", True, 0, False, "starting"),  # out of the route until it passes
        ("STARTING", False, 0, True, "unhealthy"),  # evicted and stopped, waiting for its restart
        ("RUNNING", False, 0, True, "unhealthy"),
        ("DRAINING", True, 0, True, "unknown"),
    ],
)
def test_replica_health(state, alive, failures, checked, expected):
    assert replica_health(state, alive=alive, failures=failures, checked=checked) == expected


def rep(state="RUNNING", alive=True, health="healthy"):
    return {"state": state, "alive": alive, "health": health}


@pytest.mark.parametrize(
    ("replicas", "desired", "expected"),
    [
        ([rep(), rep()], 2, "SUCCESS"),
        ([rep(), rep(health="unknown")], 2, "SUCCESS"),  # not checked yet is not a failure
        ([rep(), rep(health="unhealthy")], 2, "DEGRADED"),
        ([rep(), rep("STARTING", health="starting")], 2, "DEGRADED"),  # being restarted: out of the route
        ([rep()], 2, "DEGRADED"),  # a slot with no replica at all
        ([rep(health="unhealthy"), rep("STARTING", alive=False, health="unhealthy")], 2, "DOWN"),
        ([rep("CRASHED", alive=False, health="unhealthy")], 1, "DOWN"),
        ([], 1, "DOWN"),
    ],
)
def test_the_environment_status_follows_its_serving_replicas(replicas, desired, expected):
    assert serving_status(replicas, desired) == expected
