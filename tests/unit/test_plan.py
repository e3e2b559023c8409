"""The reconciler's pure core: which replicas to stop, start, restart (after a backoff) or give up on."""

import pytest

from branchyard.plan import (
    EnvObs,
    KillUnhealthy,
    MarkCrashed,
    MarkReplica,
    ReplicaObs,
    RestartReplica,
    ScheduleRestart,
    StartReplica,
    StopReplica,
    backoff,
    plan_environment,
)

NOW = 1000.0


def env(replicas, *, state="ACTIVE", current="d2", in_progress=(), policy="ON_FAILURE", retries=10, desired=None,
        status="SUCCESS", services=()):
    return EnvObs(
        name="staging",
        state=state,
        current_deployment_id=current,
        in_progress=frozenset(in_progress),
        replicas=tuple(replicas),
        restart_policy=policy,
        max_retries=retries,
        desired_replicas=desired,
        current_status=status,
        desired_services=tuple(services),
    )


def r(id, dep="d2", *, alive=True, state="RUNNING", restarts=0, code=None, slot=0, healthy=None, after=None,
      overdue=False, standby_open=False, failures=0, threshold=3, detail=None, service="web"):
    return ReplicaObs(id=id, deployment_id=dep, slot=slot, alive=alive, state=state, restarts=restarts, exit_code=code,
                      healthy=healthy, restart_after=after, overdue=overdue, standby_open=standby_open,
                      health_failures=failures, failure_threshold=threshold, health_detail=detail, service=service)


def w(id, dep="d2", **kw):
    """A replica of the Procfile's `worker` service."""
    return r(id, dep, service="worker", **kw)


def test_healthy_environment_needs_nothing():
    assert plan_environment(env([r(1), r(2, slot=1)], desired=2), NOW) == []


def test_replicas_of_an_old_deployment_are_stopped():
    assert plan_environment(env([r(1, "d1"), r(2)]), NOW) == [StopReplica(1, "not part of the current deployment")]


def test_replicas_of_a_deploy_in_progress_are_left_alone():
    assert plan_environment(env([r(1, "d3", state="STARTING"), r(2)], in_progress={"d3"}), NOW) == []


def test_sleeping_environment_stops_everything_and_starts_nothing():
    assert plan_environment(env([r(1)], state="SLEEPING", desired=2), NOW) == [StopReplica(1, "environment is sleeping")]


@pytest.mark.parametrize(
    ("replica", "state", "expected"),
    [
        # kept warm for overlapSeconds: a rollback to d1 re-adopts it
        (r(1, "d1", state="STANDBY", standby_open=True), "ACTIVE", []),
        (r(1, "d1", state="STANDBY", standby_open=False), "ACTIVE", [StopReplica(1, "standby window over")]),
        (r(1, "d1", state="STANDBY", standby_open=True), "SLEEPING", [StopReplica(1, "environment is sleeping")]),
        (r(1, "d1", state="STANDBY", standby_open=True, alive=False), "ACTIVE", [MarkReplica(1, "STOPPED", "process gone")]),
        # an open window means nothing for a replica that is not on standby
        (r(1, "d1", state="RUNNING", standby_open=True), "ACTIVE", [StopReplica(1, "not part of the current deployment")]),
    ],
)
def test_standby_replicas_run_until_their_window_ends(replica, state, expected):
    assert plan_environment(env([replica, r(2)], state=state), NOW) == expected + (
        [StopReplica(2, "environment is sleeping")] if state == "SLEEPING" else []
    )


def test_dead_replica_of_old_deployment_is_marked_stopped():
    assert plan_environment(env([r(1, "d1", alive=False), r(2)]), NOW) == [MarkReplica(1, "STOPPED", "process gone")]


def test_starting_replica_that_passes_its_health_check_joins_the_route():
    assert plan_environment(env([r(1, state="STARTING", healthy=True)]), NOW) == [
        MarkReplica(1, "RUNNING", "health check passed")
    ]
    assert plan_environment(env([r(1, state="STARTING", healthy=False)]), NOW) == []


def test_a_restarted_replica_that_never_gets_healthy_is_killed_and_counts_as_exited():
    assert plan_environment(env([r(1, state="STARTING", healthy=False, overdue=True)]), NOW) == [
        KillUnhealthy(1, "did not pass its health check in time")
    ]
    after = env([r(1, state="STARTING", alive=False, restarts=2)], desired=1)
    assert plan_environment(after, NOW) == [ScheduleRestart(1, NOW + 4, "exited (code unknown); restart 3/10 in 4s")]


TIMED_OUT = "GET /health: timed out after 2s"


@pytest.mark.parametrize(
    ("replica", "policy", "expected"),
    [
        # below the threshold: it stays in the route (one slow answer is not a dead replica)
        (r(1, failures=2, detail=TIMED_OUT), "ON_FAILURE", []),
        (r(1, failures=2, threshold=3), "ALWAYS", []),
        # at or over the threshold: out of the route, stopped; the restart policy then decides
        (r(1, failures=3, detail=TIMED_OUT), "ON_FAILURE",
         [KillUnhealthy(1, f"failed 3 health checks in a row ({TIMED_OUT}); taken out of the route and restarted")]),
        (r(1, failures=4, threshold=1), "ALWAYS",
         [KillUnhealthy(1, "failed 4 health checks in a row; taken out of the route and restarted")]),
        (r(1, failures=3, detail=TIMED_OUT), "NEVER",
         [KillUnhealthy(1, f"failed 3 health checks in a row ({TIMED_OUT}); taken out of the route and stopped "
                           "(restart policy NEVER)")]),
        # only RUNNING replicas are judged by their failures: a STARTING one has its own deadline (overdue)
        (r(1, state="STARTING", failures=3), "ON_FAILURE", []),
        # a replica of another deployment is stopped anyway, not evicted
        (r(1, "d1", failures=3), "ON_FAILURE", [StopReplica(1, "not part of the current deployment")]),
        # a dead one is handled as exited, whatever its failures
        (r(1, alive=False, failures=3, code=-9), "ON_FAILURE",
         [ScheduleRestart(1, NOW + 1, "exited (code -9); restart 1/10 in 1s")]),
    ],
)
def test_a_running_replica_that_keeps_failing_its_health_check_is_evicted(replica, policy, expected):
    assert plan_environment(env([replica], policy=policy), NOW) == expected


def test_an_evicted_replica_under_never_is_not_restarted():
    """The kill makes it exit; the next pass sees it gone and NEVER keeps it down (no restart, no new slot)."""
    evicted = r(1, alive=False, state="STARTING", code=-15)  # KillUnhealthy left it out of the route, then stopped it
    assert plan_environment(env([evicted], policy="NEVER", desired=1), NOW) == [
        MarkReplica(1, "CRASHED", "exited (code -15); restart policy NEVER"),
        MarkCrashed("d2", "every replica has crashed"),
    ]


@pytest.mark.parametrize(
    ("policy", "code", "restarts", "expected"),
    [
        ("ON_FAILURE", 1, 0, [ScheduleRestart(1, NOW + 1, "exited (code 1); restart 1/10 in 1s")]),
        ("ON_FAILURE", None, 3, [ScheduleRestart(1, NOW + 8, "exited (code unknown); restart 4/10 in 8s")]),
        ("ON_FAILURE", 0, 0, [MarkReplica(1, "EXITED", "exited with code 0; ON_FAILURE does not restart it")]),
        ("ALWAYS", 0, 0, [ScheduleRestart(1, NOW + 1, "exited (code 0); restart 1/10 in 1s")]),
        ("NEVER", 1, 0, [MarkReplica(1, "CRASHED", "exited (code 1); restart policy NEVER"),
                         MarkCrashed("d2", "every replica has crashed")]),
        ("ON_FAILURE", 1, 10, [MarkReplica(1, "CRASHED", "exited (code 1) after 10 restarts; no retries left"),
                               MarkCrashed("d2", "every replica has crashed")]),
    ],
)
def test_restart_policy(policy, code, restarts, expected):
    obs = env([r(1, alive=False, code=code, restarts=restarts)], policy=policy, desired=1)
    assert plan_environment(obs, NOW) == expected


def test_a_scheduled_restart_waits_for_its_time_then_happens():
    waiting = env([r(1, alive=False, code=1, after=NOW + 5)], desired=1)
    assert plan_environment(waiting, NOW) == []
    assert plan_environment(waiting, NOW + 5) == [RestartReplica(1, 0, "restart 1/10")]


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_one_crashed_replica_of_two_does_not_crash_the_deployment():
    obs = env([r(1, alive=False, code=1), r(2, slot=1)], policy="NEVER", desired=2)
    assert plan_environment(obs, NOW) == [MarkReplica(1, "CRASHED", "exited (code 1); restart policy NEVER")]


def test_already_crashed_deployment_is_not_marked_twice():
    assert plan_environment(env([r(1, alive=False, state="CRASHED")], status="CRASHED", desired=1), NOW) == []


def test_scale_up_starts_the_missing_slots():
    assert plan_environment(env([r(1)], desired=3), NOW) == [StartReplica(1, "scaled to 3"), StartReplica(2, "scaled to 3")]


def test_scale_down_stops_the_highest_slots():
    obs = env([r(1), r(2, slot=1), r(3, slot=2)], desired=1)
    assert plan_environment(obs, NOW) == [StopReplica(2, "scaled to 1"), StopReplica(3, "scaled to 1")]


def test_crashed_and_exited_replicas_keep_their_slot():
    obs = env([r(1, alive=False, state="CRASHED"), r(2, alive=False, state="EXITED", slot=1)], desired=2)
    assert plan_environment(obs, NOW) == []


def test_a_lost_replica_slot_is_started_again():
    # e.g. a replica stopped by hand or lost in a crash: the count converges back
    assert plan_environment(env([r(1, alive=False, state="STOPPED")], desired=1), NOW) == [StartReplica(0, "scaled to 1")]


def test_no_count_changes_while_the_current_deployment_is_in_progress():
    assert plan_environment(env([], in_progress={"d2"}, desired=2), NOW) == []


OOM = "exceeded its 512 MB memory limit"


@pytest.mark.parametrize(
    ("policy", "restarts", "expected"),
    [
        ("ON_FAILURE", 0, [ScheduleRestart(1, NOW + 1, f"{OOM} (killed, exit -9); restart 1/10 in 1s")]),
        ("NEVER", 0, [MarkReplica(1, "CRASHED", f"{OOM} (killed, exit -9); restart policy NEVER"),
                      MarkCrashed("d2", "every replica has crashed")]),
        ("ON_FAILURE", 10, [MarkReplica(1, "CRASHED", f"{OOM} (killed, exit -9) after 10 restarts; no retries left"),
                            MarkCrashed("d2", "every replica has crashed")]),
    ],
)
def test_an_oom_killed_replica_says_which_limit_it_exceeded(policy, restarts, expected):
    dead = ReplicaObs(id=1, deployment_id="d2", slot=0, alive=False, state="RUNNING", restarts=restarts, exit_code=-9,
                      exit_reason=OOM)
    assert plan_environment(env([dead], policy=policy, desired=1), NOW) == expected


# --- Procfile services (issue 17): the same planner, per service ------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "services", "expected"),
    [
        # a new deployment's workers start beside its web replica
        ([r(1)], [("worker", 2)], [StartReplica(0, "worker scaled to 2", "worker"), StartReplica(1, "worker scaled to 2", "worker")]),
        # each service counts its own slots: web.0 does not hold worker.0
        ([r(1), w(2)], [("worker", 1), ("clock", 1)], [StartReplica(0, "clock scaled to 1", "clock")]),
        ([r(1), w(2), w(3, slot=1)], [("worker", 1)], [StopReplica(3, "worker scaled to 1")]),
        # `scale worker=0`
        ([r(1), w(2)], [("worker", 0)], [StopReplica(2, "worker scaled to 0")]),
        # a service the deployment no longer declares runs none
        ([r(1), w(2)], [], [StopReplica(2, "worker scaled to 0")]),
        # a dead worker waiting for its restart when scaled to 0 is not restarted
        ([r(1), w(2, alive=False, after=NOW - 1, restarts=1)], [("worker", 0)],
         [MarkReplica(2, "STOPPED", "exited; its slot is beyond the scaled count")]),
        # an old deployment's workers stop like its web replicas
        ([r(1), w(2, "d1"), w(3)], [("worker", 1)], [StopReplica(2, "not part of the current deployment")]),
    ],
)
def test_services_are_counted_per_service(replicas, services, expected):
    assert plan_environment(env(replicas, desired=1, services=services), NOW) == expected


def test_a_started_worker_is_running_without_a_health_check():
    assert plan_environment(env([r(1), w(2, state="STARTING")], desired=1, services=[("worker", 1)]), NOW) == [
        MarkReplica(2, "RUNNING", "started (a worker has no HTTP health check)")]


@pytest.mark.parametrize(
    ("policy", "replica", "expected"),
    [
        ("ON_FAILURE", w(2, alive=False, code=1), [ScheduleRestart(2, NOW + 1, "exited (code 1); restart 1/10 in 1s")]),
        ("ON_FAILURE", w(2, alive=False, code=-9, restarts=1, after=NOW),
         [RestartReplica(2, 0, "restart 2/10", "worker")]),
        ("ON_FAILURE", w(2, alive=False, code=0), [MarkReplica(2, "EXITED", "exited with code 0; ON_FAILURE does not restart it")]),
        ("ALWAYS", w(2, alive=False, code=0), [ScheduleRestart(2, NOW + 1, "exited (code 0); restart 1/10 in 1s")]),
        ("NEVER", w(2, alive=False, code=1), [MarkReplica(2, "CRASHED", "exited (code 1); restart policy NEVER")]),
    ],
)
def test_the_restart_policy_applies_to_workers(policy, replica, expected):
    assert plan_environment(env([r(1), replica], desired=1, services=[("worker", 1)], policy=policy), NOW) == expected


def test_a_crashed_worker_does_not_crash_the_deployment():
    # its web replica still serves: only the worker's own row says CRASHED
    obs = env([r(1), w(2, alive=False, code=1)], desired=1, services=[("worker", 1)], policy="NEVER")
    assert plan_environment(obs, NOW) == [MarkReplica(2, "CRASHED", "exited (code 1); restart policy NEVER")]


def test_workers_stop_when_the_environment_sleeps():
    assert plan_environment(env([r(1), w(2)], state="SLEEPING", desired=1, services=[("worker", 1)]), NOW) == [
        StopReplica(1, "environment is sleeping"), StopReplica(2, "environment is sleeping")]
