"""The cron scheduler's clock (BRANCHYARD_TEST_CRON_CLOCK_SPEED, tests only) and a cron service's URL left unprobed."""

import json

import pytest

from branchyard.controller.cron import scaled_clock
from branchyard.controller.uptime import monitored
from branchyard.errors import BadInput
from branchyard.settings import load


def test_the_clock_is_the_wall_clock_unless_a_test_speeds_it():
    wall = iter([1000.0, 1001.0, 1002.5]).__next__
    assert scaled_clock(1.0, wall=wall) is wall
    fast = scaled_clock(60.0, wall=iter([1000.0, 1001.0, 1002.5]).__next__)
    assert (fast(), fast()) == (1060.0, 1150.0)


def test_the_setting():
    assert load({"BRANCHYARD_HOME": "/tmp/x"}).cron_clock_speed == 1.0
    assert load({"BRANCHYARD_HOME": "/tmp/x", "BRANCHYARD_TEST_CRON_CLOCK_SPEED": "60"}).cron_clock_speed == 60.0
    with pytest.raises(BadInput):
        load({"BRANCHYARD_HOME": "/tmp/x", "BRANCHYARD_TEST_CRON_CLOCK_SPEED": "fast"})


@pytest.mark.parametrize(
    ("snapshot", "production", "expected"),
    [
        ({"web": {"cron_schedule": "* * * * *"}, "uptime": None}, True, False),
        ({"web": {"cron_schedule": "* * * * *"}, "uptime": True}, False, False),
        ({"web": {"cron_schedule": None}, "uptime": None}, True, True),
        ({"web": {}, "uptime": True}, False, True),
    ],
)
def test_a_cron_service_is_not_probed(snapshot, production, expected):
    assert monitored(json.dumps(snapshot), production=production) is expected
