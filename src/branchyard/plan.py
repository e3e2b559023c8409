"""Desired vs observed → actions. Pure: no I/O, no clock reads; table-tested.

The reconciler observes every environment (its state, current deployment, replicas and whether each
process is alive), asks `plan_environment` what must change, and applies the answer. Because it starts
from the current state every time, a crash, a restart or a missed step converges by itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaObs:
    id: int
    deployment_id: str
    slot: int
    alive: bool
    state: str  # STARTING | RUNNING | STOPPED | CRASHED
    restarts: int = 0
    exit_code: int | None = None  # known only for processes this control plane spawned


@dataclass(frozen=True)
class EnvObs:
    name: str
    state: str  # ACTIVE | SLEEPING
    current_deployment_id: str | None
    in_progress: frozenset[str]  # deployments being built/deployed right now (their replicas are not orphans)
    replicas: tuple[ReplicaObs, ...]
    restart_policy: str = "ON_FAILURE"  # ON_FAILURE | ALWAYS | NEVER
    max_retries: int = 10


@dataclass(frozen=True)
class StopReplica:
    replica_id: int
    reason: str


@dataclass(frozen=True)
class RestartReplica:
    replica_id: int
    slot: int
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


Action = StopReplica | RestartReplica | MarkReplica | MarkCrashed

LIVE_STATES = frozenset({"STARTING", "RUNNING"})


def plan_environment(obs: EnvObs) -> list[Action]:
    """What one environment needs so that exactly its current deployment's replicas run."""
    actions: list[Action] = []
    for r in obs.replicas:
        belongs = r.deployment_id == obs.current_deployment_id and obs.state == "ACTIVE"
        if r.deployment_id in obs.in_progress:
            continue  # the deploy that owns it decides
        if not belongs:
            if r.alive:
                why = "environment is sleeping" if obs.state == "SLEEPING" else "not part of the current deployment"
                actions.append(StopReplica(r.id, why))
            elif r.state in LIVE_STATES:
                actions.append(MarkReplica(r.id, "STOPPED", "process gone"))
            continue
        if r.alive or r.state not in LIVE_STATES:
            continue
        actions.extend(_after_exit(obs, r))
    if obs.current_deployment_id and obs.state == "ACTIVE":
        current = [r for r in obs.replicas if r.deployment_id == obs.current_deployment_id]
        crashed_now = {a.replica_id for a in actions if isinstance(a, MarkReplica) and a.state == "CRASHED"}
        if current and all(r.state == "CRASHED" or r.id in crashed_now for r in current):
            if any(r.state != "CRASHED" for r in current):
                actions.append(MarkCrashed(obs.current_deployment_id, "every replica has crashed"))
    return actions


def _after_exit(obs: EnvObs, r: ReplicaObs) -> list[Action]:
    """A replica of the current deployment has exited: restart it or give up, per the restart policy."""
    code = "unknown" if r.exit_code is None else str(r.exit_code)
    policy = obs.restart_policy.upper()
    if policy == "NEVER":
        return [MarkReplica(r.id, "CRASHED", f"exited (code {code}); restart policy NEVER")]
    if policy == "ON_FAILURE" and r.exit_code == 0:
        return [MarkReplica(r.id, "STOPPED", "exited with code 0; ON_FAILURE does not restart it")]
    if r.restarts >= obs.max_retries:
        return [MarkReplica(r.id, "CRASHED", f"exited (code {code}) after {r.restarts} restarts; no retries left")]
    return [RestartReplica(r.id, r.slot, f"exited (code {code}); restart {r.restarts + 1}/{obs.max_retries}")]
