"""Desired deployment vs observed → what the deployer does next. Pure: no I/O, no clock reads; table-tested.

Every trigger (a push, a webhook, `redeploy`, `rollback`, `promote`, `variables set`, `up`, a preview admitted)
only records a deployment and points its environment's *target* at it. The deployer's loop then asks
`plan_deployments` what each environment needs, from what it observes:

- the target is unfinished and nobody works on it → start it (again, after a control plane restart cut it off);
- it was cut off before → start it again after a backoff, and after MAX_ATTEMPTS give up with the reason;
- any other unfinished deployment is older than the target (newest wins) → ask it to stop, or mark it SKIPPED.

So a control plane killed mid-build resumes the build on restart instead of leaving production on the old
release with a FAILED deployment nobody retries.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ATTEMPTS = 4  # workers started on one deployment before it is given up (FAILED, with the reason)
RETRY_BASE = 5.0  # seconds before the second retry; doubles each time (the first retry is immediate)
RETRY_MAX = 120.0


@dataclass(frozen=True)
class DeploymentObs:
    """One unfinished deployment (QUEUED, BUILDING or DEPLOYING) of the environment."""

    id: str
    status: str
    attempts: int  # workers started on it so far
    running: bool  # a worker of this control plane has it now
    retry_at: float | None = None  # the next attempt is due then (epoch seconds)
    interrupted: str | None = None  # why the last attempt stopped without finishing (the control plane restarted)


@dataclass(frozen=True)
class EnvDeployObs:
    environment: str
    target_id: str | None  # the deployment the environment should reach (None: nothing is wanted of it)
    current_id: str | None  # the deployment serving now
    unfinished: tuple[DeploymentObs, ...]  # oldest first


@dataclass(frozen=True)
class StartDeployment:
    deployment_id: str
    attempt: int  # 1 for the first worker
    reason: str


@dataclass(frozen=True)
class ScheduleRetry:
    deployment_id: str
    at: float
    reason: str


@dataclass(frozen=True)
class CancelDeployment:
    """A worker has it, but a newer deployment is wanted: stop at the next step."""

    deployment_id: str
    reason: str


@dataclass(frozen=True)
class SkipDeployment:
    """Nobody works on it and a newer deployment is wanted: SKIPPED."""

    deployment_id: str
    reason: str


@dataclass(frozen=True)
class GiveUp:
    """Cut off MAX_ATTEMPTS times: FAILED with the reason, shown on the environment's status."""

    deployment_id: str
    reason: str


DeployAction = StartDeployment | ScheduleRetry | CancelDeployment | SkipDeployment | GiveUp


def retry_delay(attempts: int) -> float:
    """Seconds before attempt `attempts + 1` of a deployment cut off `attempts` times: 0, 5, 10, 20 … ≤ 120."""
    if attempts <= 1:
        return 0.0
    return min(RETRY_BASE * 2 ** (attempts - 2), RETRY_MAX)


def plan_deployments(obs: EnvDeployObs, now: float) -> list[DeployAction]:
    """What one environment's unfinished deployments need so that its target is reached, and only it."""
    target = obs.target_id  # None: nothing is wanted (the environment is being destroyed)
    actions: list[DeployAction] = []
    for d in obs.unfinished:
        if d.id == target:
            actions.extend(_reach(d, now))
        elif d.running:
            actions.append(CancelDeployment(d.id, f"superseded by newer deployment {target}" if target
                                            else "cancelled: no longer wanted"))
        else:
            actions.append(SkipDeployment(d.id, f"superseded by newer deployment {target}" if target
                                          else "cancelled: no longer wanted"))
    return actions


def _reach(d: DeploymentObs, now: float) -> list[DeployAction]:
    if d.running:
        return []
    if d.attempts == 0:
        return [StartDeployment(d.id, 1, "queued")]
    why = d.interrupted or f"the control plane stopped while the deployment was {d.status}"
    if d.attempts >= MAX_ATTEMPTS:
        return [GiveUp(d.id, f"gave up after {d.attempts} attempts: {why}")]
    if d.retry_at is None:
        wait = retry_delay(d.attempts)
        if wait == 0:
            return [StartDeployment(d.id, d.attempts + 1, f"resumed: {why}")]
        return [ScheduleRetry(d.id, now + wait, f"{why}; attempt {d.attempts + 1}/{MAX_ATTEMPTS} in {wait:g}s")]
    if now >= d.retry_at:
        return [StartDeployment(d.id, d.attempts + 1, f"resumed: {why}")]
    return []
