"""The Procfile's other process types (worker, clock …) as services of an environment (issue 17).

A service runs `replicas` copies of its Procfile command from the deployment's snapshot, in slots
`<env>.<type>.<n>` (rows in `replicas` with that `service`), logging to `<type>.<n>.log` (+ `.stderr.log`), with
web's `memory`/`cpu` limits and restart policy, without a route and without an HTTP health check (RUNNING once
started). The count is the snapshot's (1) unless `branchyard scale worker=N` set one for the environment
(`Environment.services_scale`, JSON; web's count stays in `replicas_override`).

The reconciler's planner (plan.py) keeps the counts per service, restarts per policy and stops what is not the
current deployment's. A deploy does it in order (`roll`, right after the web switch):

1. the new release's web replicas start, pass their health checks, the route switches (as before);
2. the new release's workers start;
3. the old release's workers stop (SIGTERM, then SIGKILL after the draining grace), before the old web replicas drain.

So a worker of the old release never runs once the deploy is reported; for a moment both releases' workers run
(as web replicas overlap during the switch): jobs must tolerate that, as on Heroku and Railway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from sqlalchemy import select

from ..errors import BadInput, BranchyardError
from ..spec.model import ProcessConfig
from ..store import models as m
from ..store.db import Store
from .replicas import ReleaseCtx, Replicas

WEB = "web"


def counts(processes: Mapping[str, ProcessConfig], scale_json: str | None) -> dict[str, int]:
    """How many replicas each of the deployment's services runs: `scale` wins over the snapshot (pure)."""
    scaled = json.loads(scale_json) if scale_json else {}
    return {name: int(scaled.get(name, p.replicas)) for name, p in processes.items()}


def scaled(scale_json: str | None, service: str, replicas: int) -> str:
    """The environment's `services_scale` after `scale SERVICE=N` (pure)."""
    scaled = json.loads(scale_json) if scale_json else {}
    return json.dumps(scaled | {service: replicas}, sort_keys=True)


def check_scale(service: str, replicas: int, known: Mapping[str, ProcessConfig]) -> None:
    """`scale SERVICE=N`: web needs one replica at least (`down` stops it), a Procfile service may be 0 (pure)."""
    if service == WEB:
        if replicas < 1:
            raise BadInput(f"scale: web={replicas}: expected at least 1 replica (use `branchyard down` to stop)")
        return
    if service not in known:
        names = ", ".join([WEB, *known])
        raise BadInput(f"scale: unknown service {service!r} (this deployment runs: {names})")
    if replicas < 0:
        raise BadInput(f"scale: {service}={replicas}: expected 0 or more replicas")


def roll(store: Store, replicas: Replicas, ctx: ReleaseCtx, grace: float, out: Callable[[str], None]) -> None:
    """After the web switch: start the new deployment's workers, then stop every other worker of the environment
    (the previous deployment's, or any an older one left)."""
    with store.session() as s:
        env = s.get(m.Environment, ctx.env_id)
        wanted = counts({n: ProcessConfig(c) for n, c in ctx.services}, env.services_scale)
        old = list(s.scalars(select(m.Replica.id).where(
            m.Replica.environment_id == ctx.env_id, m.Replica.service != WEB, m.Replica.deployment_id != ctx.dep_id,
            m.Replica.state != m.REPLICA_STOPPED)))
    for service, n in wanted.items():
        if n:
            out(f"-----> starting {n} {service} replica{'s' if n != 1 else ''}: {dict(ctx.services)[service]}")
        for slot in range(n):
            try:
                _, h = replicas.spawn(ctx, slot, service=service)
            except BranchyardError as err:  # web serves already: the planner starts it again on its next passes
                out(f"       {service}.{slot} did not start: {err}")
                continue
            out(f"       {service}.{slot} started: pid {h.pid}")
    if old:
        out(f"-----> stopping {len(old)} worker replica(s) of the previous deployment (SIGTERM, SIGKILL after {grace:g}s)")
        replicas.stop(old, grace=grace)


def services_status(rows: list[dict], scale_json: str | None, processes: Mapping[str, ProcessConfig],
                    web_desired: int) -> dict[str, dict]:
    """`status`'s `services`: per service its replicas running/total and restarts (pure over status rows)."""
    wanted = {WEB: web_desired, **counts(processes, scale_json)}
    out: dict[str, dict] = {}
    for service in [*wanted, *sorted({r["service"] for r in rows} - set(wanted))]:
        mine = [r for r in rows if r["service"] == service]
        out[service] = {
            "desired": wanted.get(service, 0),
            "running": sum(1 for r in mine if r["alive"] and r["state"] == m.REPLICA_RUNNING),
            "total": len(mine),
            "restarts": sum(r["restarts"] for r in mine),
            "command": None if service == WEB else (processes[service].command if service in processes else None),
            "replicas": [r for r in mine],
        }
    return out
