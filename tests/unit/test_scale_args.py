"""`branchyard scale SERVICE=N` (issue 17): the CLI's parsing, and the control plane's check against the deployment's
Procfile services; each service's count stored per environment."""

from __future__ import annotations

import pytest

from branchyard.cli.deploy_cmd import parse_scale
from branchyard.controller.workers import check_scale, counts, scaled
from branchyard.errors import BadInput
from branchyard.spec.model import ProcessConfig


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [("web=3", ("web", 3)), ("worker=2", ("worker", 2)), ("worker=0", ("worker", 0)), ("mail_out=1", ("mail_out", 1))],
)
def test_parse_scale(assignment, expected):
    assert parse_scale(assignment) == expected


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("worker", "scale: expected SERVICE=N (e.g. web=3, worker=2), got 'worker'"),
        ("web=two", "scale: expected SERVICE=N (e.g. web=3, worker=2), got 'web=two'"),
        ("=2", "scale: expected SERVICE=N (e.g. web=3, worker=2), got '=2'"),
        ("web=0", "scale: web=0: expected at least 1 replica (use `branchyard down` to stop)"),
        ("web=-1", "scale: web=-1: expected at least 1 replica (use `branchyard down` to stop)"),
        ("worker=-1", "scale: worker=-1: expected 0 or more replicas"),
    ],
)
def test_parse_scale_refuses(assignment, message):
    with pytest.raises(BadInput) as err:
        parse_scale(assignment)
    assert err.value.message == message


KNOWN = {"worker": ProcessConfig("python worker.py"), "clock": ProcessConfig("python clock.py")}


@pytest.mark.parametrize(
    ("service", "replicas", "message"),
    [
        ("web", 2, None), ("worker", 0, None), ("clock", 3, None),
        ("web", 0, "scale: web=0: expected at least 1 replica (use `branchyard down` to stop)"),
        ("celery", 1, "scale: unknown service 'celery' (this deployment runs: web, worker, clock)"),
        ("worker", -2, "scale: worker=-2: expected 0 or more replicas"),
    ],
)
def test_check_scale(service, replicas, message):
    if message is None:
        check_scale(service, replicas, KNOWN)
        return
    with pytest.raises(BadInput) as err:
        check_scale(service, replicas, KNOWN)
    assert err.value.message == message


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, {"worker": 1, "clock": 1}), ('{"worker": 0}', {"worker": 0, "clock": 1}),
     ('{"worker": 3, "gone": 2}', {"worker": 3, "clock": 1})],  # a count of a type the deployment lacks is unused
)
def test_counts_scale_wins_over_the_snapshot(stored, expected):
    assert counts(KNOWN, stored) == expected


def test_scaled_keeps_the_other_services_counts():
    assert scaled(None, "worker", 2) == '{"worker": 2}'
    assert scaled('{"clock": 0, "worker": 2}', "worker", 0) == '{"clock": 0, "worker": 0}'
