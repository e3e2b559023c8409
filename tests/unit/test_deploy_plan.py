"""The deploy planner: which deployment an environment works on, resumed after a restart, newest wins. Exact actions."""

import pytest

from branchyard.deploy_plan import (
    MAX_ATTEMPTS,
    CancelDeployment,
    DeploymentObs,
    EnvDeployObs,
    GiveUp,
    ScheduleRetry,
    SkipDeployment,
    StartDeployment,
    plan_deployments,
    retry_delay,
)

NOW = 1000.0
CUT = "the control plane stopped while the deployment was BUILDING"


def d(id_, status="QUEUED", attempts=0, running=False, retry_at=None, interrupted=None):
    return DeploymentObs(id=id_, status=status, attempts=attempts, running=running, retry_at=retry_at,
                         interrupted=interrupted)


@pytest.mark.parametrize(
    ("target", "current", "unfinished", "expected"),
    [
        # converged: nothing unfinished
        ("a", "a", (), []),
        (None, None, (), []),
        # a trigger recorded the target; nobody works on it yet
        ("b", "a", (d("b"),), [StartDeployment("b", 1, "queued")]),
        # a worker has it: leave it alone
        ("b", "a", (d("b", "BUILDING", 1, running=True),), []),
        # cut off by a restart (first time): resume at once
        ("b", "a", (d("b", "BUILDING", 1),), [StartDeployment("b", 2, f"resumed: {CUT}")]),
        ("b", "a", (d("b", "DEPLOYING", 1, interrupted="stopped during the switch"),),
         [StartDeployment("b", 2, "resumed: stopped during the switch")]),
        # cut off again: a backoff first, then the attempt when it is due
        ("b", "a", (d("b", "BUILDING", 2),), [ScheduleRetry("b", NOW + 5, f"{CUT}; attempt 3/{MAX_ATTEMPTS} in 5s")]),
        ("b", "a", (d("b", "BUILDING", 2, retry_at=NOW + 1),), []),
        ("b", "a", (d("b", "BUILDING", 2, retry_at=NOW),), [StartDeployment("b", 3, f"resumed: {CUT}")]),
        # cut off MAX_ATTEMPTS times: terminal, with the reason
        ("b", "a", (d("b", "BUILDING", MAX_ATTEMPTS),), [GiveUp("b", f"gave up after {MAX_ATTEMPTS} attempts: {CUT}")]),
        # newest wins: an older one being built is asked to stop, an idle older one is skipped
        ("c", "a", (d("b", "BUILDING", 1, running=True), d("c")),
         [CancelDeployment("b", "superseded by newer deployment c"), StartDeployment("c", 1, "queued")]),
        ("c", "a", (d("b", "BUILDING", 1), d("c", "BUILDING", 1, running=True)),
         [SkipDeployment("b", "superseded by newer deployment c")]),
        # the target already finished (e.g. FAILED): stragglers are skipped, nothing is started
        ("c", "a", (d("b", "QUEUED"),), [SkipDeployment("b", "superseded by newer deployment c")]),
        # nothing is wanted (the environment is being destroyed): nothing starts, what runs stops, the rest is skipped
        (None, "a", (d("b", "BUILDING", 1, running=True), d("c")),
         [CancelDeployment("b", "cancelled: no longer wanted"), SkipDeployment("c", "cancelled: no longer wanted")]),
    ],
)
def test_plan_deployments(target, current, unfinished, expected):
    obs = EnvDeployObs(environment="production", target_id=target, current_id=current, unfinished=unfinished)
    assert plan_deployments(obs, NOW) == expected


@pytest.mark.parametrize(("attempts", "delay"), [(0, 0), (1, 0), (2, 5), (3, 10), (4, 20), (7, 120), (30, 120)])
def test_retry_delay(attempts, delay):
    assert retry_delay(attempts) == delay
