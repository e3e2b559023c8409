"""Desired vs observed → actions. Pure: no I/O, no clock reads (`now` is given); table-tested.

The reconciler observes every environment (its state, current deployment, replicas and whether each
process is alive and healthy), asks `plan_environment` what must change, and applies the answer.
Because it starts from the current state every time, a crash, a restart or a missed step converges
by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

LIVE_STATES = frozenset({"STARTING", "RUNNING"})
HELD_STATES = LIVE_STATES | {"CRASHED", "EXITED"}
BACKOFF_BASE = 1.0  # seconds before the first restart; doubles each time
BACKOFF_MAX = 30.0
WEB = "web"


@dataclass(frozen=True)
class ReplicaObs:
    id: int
    deployment_id: str
    slot: int
    alive: bool
    state: str  # STARTING | RUNNING | DRAINING | STANDBY | STOPPED | EXITED | CRASHED
    restarts: int = 0
    exit_code: int | None = None  # known only for processes this control plane spawned
    exit_reason: str | None = None  # the runtime's why, when it knows: "exceeded its 512 MB memory limit" (OOM kill)
    healthy: bool | None = None  # probed for STARTING replicas outside a deploy
    overdue: bool = False  # STARTING for longer than the health-check timeout
    restart_after: float | None = None  # a restart is scheduled for this time
    standby_open: bool = False  # a STANDBY replica whose overlap window has not ended
    # Liveness of a RUNNING replica (the observer probes it every healthcheckInterval; a success resets the count).
    health_failures: int = 0  # failed health checks in a row
    failure_threshold: int = 3  # healthcheckFailures: that many in a row and it is evicted
    health_detail: str | None = None  # what the last failed check got ("GET /health: timed out after 2s")
    service: str = "web"  # or a Procfile process type (worker): no route, no HTTP health check


@dataclass(frozen=True)
class EnvObs:
    name: str
    state: str  # ACTIVE | SLEEPING
    current_deployment_id: str | None
    in_progress: frozenset[str]  # deployments being built/deployed right now (their replicas are not orphans)
    replicas: tuple[ReplicaObs, ...]
    restart_policy: str = "ON_FAILURE"  # ON_FAILURE | ALWAYS | NEVER
    max_retries: int = 10
    desired_replicas: int | None = None  # None: leave the count alone (no current deployment)
    current_status: str | None = None  # the current deployment's status
    # The current deployment's other services (Procfile worker, clock …) and how many of each: (("worker", 2),).
    # A service of the deployment not listed here runs none.
    desired_services: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class StopReplica:
    replica_id: int
    reason: str


@dataclass(frozen=True)
class KillUnhealthy:
    """Take a replica out of the route, then stop it; it then counts as exited (restart policy applies).

    For one that never became healthy, and for a RUNNING one that failed healthcheckFailures checks in a row."""

    replica_id: int
    reason: str


@dataclass(frozen=True)
class StartReplica:
    slot: int
    reason: str
    service: str = "web"


@dataclass(frozen=True)
class RestartReplica:
    replica_id: int
    slot: int
    reason: str
    service: str = "web"


@dataclass(frozen=True)
class ScheduleRestart:
    replica_id: int
    at: float
    reason: str


@dataclass(frozen=True)
class MarkReplica:
    replica_id: int
    state: str
    reason: str


@dataclass(frozen=True)
class MarkCrashed:
    deployment_id: str
    reason: str


Action = StopReplica | KillUnhealthy | StartReplica | RestartReplica | ScheduleRestart | MarkReplica | MarkCrashed


def backoff(restarts: int) -> float:
    """Seconds to wait before restart number `restarts + 1`: 1, 2, 4, … capped at 30."""
    return min(BACKOFF_BASE * 2**restarts, BACKOFF_MAX)


def plan_environment(obs: EnvObs, now: float) -> list[Action]:
    """What one environment needs so that exactly its current deployment's replicas run, healthy."""
    actions: list[Action] = []
    serving = obs.state == "ACTIVE" and obs.current_deployment_id is not None
    for r in obs.replicas:
        if r.deployment_id in obs.in_progress:
            continue  # the deploy that owns it decides
        if not (serving and r.deployment_id == obs.current_deployment_id):
            if r.alive:
                if r.state == "STANDBY" and r.standby_open and serving:
                    continue  # the previous deployment, kept warm for a rollback until its window ends
                if obs.state == "SLEEPING":
                    why = "environment is sleeping"
                elif r.state == "STANDBY":
                    why = "standby window over"
                else:
                    why = "not part of the current deployment"
                actions.append(StopReplica(r.id, why))
            elif r.state in LIVE_STATES or r.state == "STANDBY":
                actions.append(MarkReplica(r.id, "STOPPED", "process gone"))
            continue
        if r.alive:
            if r.state == "STARTING" and r.service != WEB:
                actions.append(MarkReplica(r.id, "RUNNING", "started (a worker has no HTTP health check)"))
            elif r.state == "STARTING" and r.healthy:
                actions.append(MarkReplica(r.id, "RUNNING", "health check passed"))
            elif r.state == "STARTING" and r.overdue:
                actions.append(KillUnhealthy(r.id, "did not pass its health check in time"))
            elif r.state == "RUNNING" and r.health_failures >= r.failure_threshold:
                actions.append(KillUnhealthy(r.id, _unhealthy(obs, r)))
            continue
        if r.state in LIVE_STATES and _surplus(obs, r):
            actions.append(MarkReplica(r.id, "STOPPED", "exited; its slot is beyond the scaled count"))
        elif r.state in LIVE_STATES:
            actions.extend(_after_exit(obs, r, now))
    if serving and obs.current_deployment_id not in obs.in_progress:
        actions.extend(_count(obs))
        actions.extend(_crashed(obs, actions))
    return actions


def _unhealthy(obs: EnvObs, r: ReplicaObs) -> str:
    """Why a running replica is evicted, and what happens next under the restart policy."""
    then = "stopped (restart policy NEVER)" if obs.restart_policy.upper() == "NEVER" else "restarted"
    detail = f" ({r.health_detail})" if r.health_detail else ""
    return f"failed {r.health_failures} health checks in a row{detail}; taken out of the route and {then}"


def _after_exit(obs: EnvObs, r: ReplicaObs, now: float) -> list[Action]:
    """A replica of the current deployment has exited: restart it (after a backoff) or give up, per policy."""
    code = "unknown" if r.exit_code is None else str(r.exit_code)
    how = f"{r.exit_reason} (killed, exit {code})" if r.exit_reason else f"exited (code {code})"
    policy = obs.restart_policy.upper()
    if policy == "NEVER":
        return [MarkReplica(r.id, "CRASHED", f"{how}; restart policy NEVER")]
    if policy == "ON_FAILURE" and r.exit_code == 0:
        return [MarkReplica(r.id, "EXITED", "exited with code 0; ON_FAILURE does not restart it")]
    if r.restarts >= obs.max_retries:
        return [MarkReplica(r.id, "CRASHED", f"{how} after {r.restarts} restarts; no retries left")]
    if r.restart_after is None:
        wait = backoff(r.restarts)
        return [ScheduleRestart(r.id, now + wait, f"{how}; restart {r.restarts + 1}/{obs.max_retries} in {wait:g}s")]
    if now >= r.restart_after:
        return [RestartReplica(r.id, r.slot, f"restart {r.restarts + 1}/{obs.max_retries}", r.service)]
    return []


def _wanted(obs: EnvObs) -> dict[str, int] | None:
    """How many replicas each service of the current deployment should run; None: leave the counts alone."""
    if obs.desired_replicas is None:
        return None
    return {WEB: obs.desired_replicas, **dict(obs.desired_services)}


def _surplus(obs: EnvObs, r: ReplicaObs) -> bool:
    """A replica whose slot the scaled count no longer has (`scale worker=0` while it waited for its restart)."""
    wanted = _wanted(obs)
    return wanted is not None and r.slot >= wanted.get(r.service, 0)


def _count(obs: EnvObs) -> list[Action]:
    """Start missing slots and stop surplus ones, per service: web runs `desired_replicas`, each other service its
    count in `desired_services` (none when it is not listed)."""
    wanted = _wanted(obs)
    if wanted is None:
        return []
    mine = [r for r in obs.replicas if r.deployment_id == obs.current_deployment_id]
    actions: list[Action] = []
    for service in [*wanted, *sorted({r.service for r in mine} - set(wanted))]:
        desired = wanted.get(service, 0)
        theirs = [r for r in mine if r.service == service]
        # A crashed or cleanly exited replica still holds its slot: replacing it would defeat the restart policy.
        held = {r.slot for r in theirs if r.state in HELD_STATES}
        why = f"scaled to {desired}" if service == WEB else f"{service} scaled to {desired}"
        actions += [StartReplica(slot, why, service) for slot in range(desired) if slot not in held]
        actions += [StopReplica(r.id, why) for r in theirs if r.slot >= desired and r.alive and r.state in LIVE_STATES]
    return actions


def _crashed(obs: EnvObs, planned: list[Action]) -> list[Action]:
    """When every web replica of the current deployment has crashed, the deployment is CRASHED (a crashed worker
    is shown on its own replica, the site still serves)."""
    if obs.current_status == "CRASHED":
        return []
    mine = [r for r in obs.replicas if r.deployment_id == obs.current_deployment_id and r.service == WEB]
    crashed_now = {a.replica_id for a in planned if isinstance(a, MarkReplica) and a.state == "CRASHED"}
    if mine and all(r.state == "CRASHED" or r.id in crashed_now for r in mine):
        return [MarkCrashed(obs.current_deployment_id, "every replica has crashed")]
    return []
