"""The reconciler's pure core: which replicas to stop, restart or give up on."""

import pytest

from branchyard.plan import EnvObs, MarkCrashed, MarkReplica, ReplicaObs, RestartReplica, StopReplica, plan_environment


def env(replicas, *, state="ACTIVE", current="d2", in_progress=(), policy="ON_FAILURE", retries=10):
    return EnvObs(
        name="staging",
        state=state,
        current_deployment_id=current,
        in_progress=frozenset(in_progress),
        replicas=tuple(replicas),
        restart_policy=policy,
        max_retries=retries,
    )


def r(id, dep="d2", *, alive=True, state="RUNNING", restarts=0, code=None, slot=0):
    return ReplicaObs(id=id, deployment_id=dep, slot=slot, alive=alive, state=state, restarts=restarts, exit_code=code)


def test_healthy_environment_needs_nothing():
    assert plan_environment(env([r(1), r(2, slot=1)])) == []


def test_replicas_of_an_old_deployment_are_stopped():
    assert plan_environment(env([r(1, "d1"), r(2)])) == [StopReplica(1, "not part of the current deployment")]


def test_replicas_of_a_deploy_in_progress_are_left_alone():
    assert plan_environment(env([r(1, "d3", state="STARTING"), r(2)], in_progress={"d3"})) == []


def test_sleeping_environment_stops_everything():
    assert plan_environment(env([r(1)], state="SLEEPING")) == [StopReplica(1, "environment is sleeping")]


def test_dead_replica_of_old_deployment_is_marked_stopped():
    assert plan_environment(env([r(1, "d1", alive=False), r(2)])) == [MarkReplica(1, "STOPPED", "process gone")]


@pytest.mark.parametrize(
    ("policy", "code", "restarts", "expected"),
    [
        ("ON_FAILURE", 1, 0, [RestartReplica(1, 0, "exited (code 1); restart 1/10")]),
        ("ON_FAILURE", None, 3, [RestartReplica(1, 0, "exited (code unknown); restart 4/10")]),
        ("ON_FAILURE", 0, 0, [MarkReplica(1, "STOPPED", "exited with code 0; ON_FAILURE does not restart it")]),
        ("ALWAYS", 0, 0, [RestartReplica(1, 0, "exited (code 0); restart 1/10")]),
        ("NEVER", 1, 0, [MarkReplica(1, "CRASHED", "exited (code 1); restart policy NEVER"),
                         MarkCrashed("d2", "every replica has crashed")]),
        ("ON_FAILURE", 1, 10, [MarkReplica(1, "CRASHED", "exited (code 1) after 10 restarts; no retries left"),
                               MarkCrashed("d2", "every replica has crashed")]),
    ],
)
def test_restart_policy(policy, code, restarts, expected):
    obs = env([r(1, alive=False, code=code, restarts=restarts)], policy=policy)
    assert plan_environment(obs) == expected


def test_one_crashed_replica_of_two_does_not_crash_the_deployment():
    obs = env([r(1, alive=False, code=1), r(2, slot=1)], policy="NEVER")
    assert plan_environment(obs) == [MarkReplica(1, "CRASHED", "exited (code 1); restart policy NEVER")]


def test_already_crashed_deployment_is_not_marked_twice():
    assert plan_environment(env([r(1, alive=False, state="CRASHED")])) == []
