"""Cost you can see (issue 17): each environment's projected monthly cost and what it cost so far.

Projected: the price table (`cost.Prices`, BRANCHYARD_PRICES) times the allocation of the environment's current
deployment (its configuration snapshot, and `scale web=N`). Measured: the allocation × the time it actually ran,
recorded level-triggered in `environment_usage` — housekeeping (`tick`, every minute) advances every
environment's row to now, counting the interval when the environment was ACTIVE with a live (SUCCESS) current
deployment at both ends; a store listener (`notify`) advances one environment at the events that change what it
runs (`down`, a deployment going live, `scale`), so a stop is counted to the second. Sleeping costs nothing. A gap
while the control plane was down counts if the environment ran before and after it (its processes kept running:
they outlive the control plane). What is read adds the interval since the last advance when the environment runs
now, so the figure grows between ticks. Measured cost starts at the first advance after an environment exists
(`since` is its creation). Dollars are computed when read, so a new price table reprices what was used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .. import cost
from ..errors import NotFound
from ..store import models as m
from ..store.db import RecordedEvent, Store

log = logging.getLogger("branchyard.cost")

# Events after which what an environment runs (or whether it runs) has changed: advance it at once.
TRANSITIONS = frozenset({"environment.down", "deploy.succeeded", "environment.scaled", "deploy.crashed",
                         "environment.slept", "environment.woke"})  # sleep and wake: controller/sleep.py


@dataclass(frozen=True)
class _Env:
    id: int
    name: str
    production: bool
    ephemeral: bool
    state: str
    created_at: dt.datetime
    status: str | None  # the current deployment's
    services: list[cost.Service] | None  # None: no deployment with a configuration yet

    @property
    def running(self) -> bool:
        return self.state == m.ENV_ACTIVE and self.status == m.SUCCESS and self.services is not None

    @property
    def rates(self) -> cost.Rates:
        return cost.rates(self.services or [])


class Costs:
    """Projected and measured cost per environment (collaborators: the store, the price table, a clock)."""

    def __init__(self, store: Store, prices: cost.Prices, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.prices = prices
        self.clock = clock

    # --- recording ---------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance every environment's usage to now (housekeeping; logs, never raises: the next tick catches up)."""
        try:
            self._advance(None, transition=False)
        except Exception:
            log.exception("cost: advancing the environments' usage failed")

    def notify(self, event: RecordedEvent) -> None:
        """A store listener: advance the environment an event changed (one small transaction)."""
        if event.kind in TRANSITIONS and event.environment:
            try:
                self._advance((event.project, event.environment), transition=True)
            except Exception:
                log.exception("cost: advancing %s/%s after %s failed", event.project, event.environment, event.kind)

    def _advance(self, only: tuple[str, str] | None, *, transition: bool) -> None:
        # The store's session holds its write lock throughout: advances (housekeeping's thread, the listeners') are
        # serialised by it, and `now` is read under it, so they never go back in time. No lock of our own: a
        # listener may run while its thread still holds the store's (re-entrant) lock.
        with self.store.session() as s:
            now = self.clock()
            envs = self._environments(s, only)
            rows = {u.environment_id: u for u in s.scalars(
                select(m.EnvironmentUsage).where(m.EnvironmentUsage.environment_id.in_([e.id for e in envs])))}
            for e in envs:
                row = rows.get(e.id)
                r = e.rates
                if row is None:
                    s.add(m.EnvironmentUsage(environment_id=e.id, counted_until=now, running=e.running,
                                             memory_gb=r.memory_gb, vcpu=r.vcpu, storage_gb=r.storage_gb,
                                             running_seconds=0.0, memory_gb_seconds=0.0, vcpu_seconds=0.0,
                                             storage_gb_seconds=0.0))
                    continue
                if now < row.counted_until:
                    continue  # the clock went back (a wall-clock step): wait for it to pass counted_until
                used = cost.advance(_usage(row), was_running=row.running, running=e.running,
                                    since=row.counted_until, now=now, r=_rates(row), transition=transition)
                row.running_seconds, row.memory_gb_seconds = used.running_seconds, used.memory_gb_seconds
                row.vcpu_seconds, row.storage_gb_seconds = used.vcpu_seconds, used.storage_gb_seconds
                row.counted_until, row.running = now, e.running
                row.memory_gb, row.vcpu, row.storage_gb = r.memory_gb, r.vcpu, r.storage_gb

    def _environments(self, s: Any, only: tuple[str, str] | None, *, project_id: int | None = None) -> list[_Env]:
        q = (select(m.Environment.id, m.Environment.name, m.Environment.production, m.Environment.ephemeral,
                    m.Environment.state, m.Environment.created_at, m.Environment.replicas_override,
                    m.Deployment.status, m.Deployment.config_json, m.Environment.services_scale)
             .join(m.Project, m.Project.id == m.Environment.project_id)
             .outerjoin(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
             .order_by(m.Environment.id))
        if only is not None:
            q = q.where(m.Project.name == only[0], m.Environment.name == only[1])
        if project_id is not None:
            q = q.where(m.Environment.project_id == project_id)
        out = []
        for env_id, name, production, ephemeral, state, created, override, status, config_json, scale in s.execute(q).all():
            services = None
            if config_json:
                try:
                    services = cost.allocation(json.loads(config_json), override, json.loads(scale) if scale else None)
                except (ValueError, TypeError, AttributeError):
                    log.warning("cost: environment %s's configuration snapshot cannot be read", name)
            out.append(_Env(env_id, name, bool(production), bool(ephemeral), state, created, status, services))
        return out

    # --- reading -----------------------------------------------------------------------------------------

    def report(self, project: str, environment: str | None = None) -> dict[str, Any]:
        """`branchyard cost --json`: the price table, and per environment its allocation, the projected monthly cost
        (a breakdown per service and resource) and the measured cost so far. Figures are not rounded."""
        now = self.clock()
        with self.store.session() as s:
            p = self.store.project(s, project)
            if environment is not None:
                self.store.environment(s, p, environment)  # NotFound naming the known ones
            envs = self._environments(s, (project, environment) if environment is not None else None, project_id=p.id)
            rows = {u.environment_id: u for u in s.scalars(
                select(m.EnvironmentUsage).where(m.EnvironmentUsage.environment_id.in_([e.id for e in envs])))}
            out = [self._env_report(e, rows.get(e.id), now) for e in envs]
        return {"project": project, "currency": cost.CURRENCY, "hours_per_month": cost.HOURS_PER_MONTH,
                "prices": self.prices.to_dict(), "environments": out}

    def _env_report(self, e: _Env, row: m.EnvironmentUsage | None, now: float) -> dict[str, Any]:
        used = cost.Usage()
        counted_until = None
        if row is not None:
            used = cost.advance(_usage(row), was_running=row.running, running=e.running, since=row.counted_until,
                                now=now, r=_rates(row))
            counted_until = row.counted_until
        monthly = cost.monthly(e.services, self.prices) if e.services is not None else None
        return {
            "environment": e.name, "production": e.production, "preview": e.ephemeral,
            "state": "RUNNING" if e.running else e.state if e.state != m.ENV_ACTIVE else (e.status or "NOT_DEPLOYED"),
            "allocation": cost.summary(e.services) if e.services is not None else None,
            "monthly": monthly.to_dict() if monthly is not None else None,
            "measured": {"total": used.dollars(self.prices), "since": e.created_at.replace(tzinfo=dt.UTC).isoformat(),
                         "running_seconds": used.running_seconds, "counted_until": counted_until,
                         "memory_gb_seconds": used.memory_gb_seconds, "vcpu_seconds": used.vcpu_seconds,
                         "storage_gb_seconds": used.storage_gb_seconds},
        }

    def monthly_totals(self, project: str) -> dict[str, float | None]:
        """Each environment's projected monthly total (None: nothing deployed yet), for `previews list` and `check`."""
        try:
            envs = self.report(project)["environments"]
        except NotFound:
            return {}
        return {e["environment"]: (e["monthly"] or {}).get("total") for e in envs}


def _usage(row: m.EnvironmentUsage) -> cost.Usage:
    return cost.Usage(row.running_seconds, row.memory_gb_seconds, row.vcpu_seconds, row.storage_gb_seconds)


def _rates(row: m.EnvironmentUsage) -> cost.Rates:
    return cost.Rates(row.memory_gb, row.vcpu, row.storage_gb)
