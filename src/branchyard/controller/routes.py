"""Which host routes to which replicas, derived from the state; the router is told only when that changes."""

from __future__ import annotations

import time
import urllib.parse

from sqlalchemy import select

from .. import names
from ..backends.ports import Route, RouterPort
from ..domains import wants_hsts
from ..settings import Settings
from ..store import models as m
from ..store.db import Store

HOSTS_FRESH = 5.0  # seconds: how old the served host set may be when the TLS `ask` endpoint answers from it


class Routes:
    def __init__(self, settings: Settings, store: Store, router: RouterPort) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self._hosts: tuple[float, frozenset[str]] = (float("-inf"), frozenset())  # (monotonic time, hosts) of desired()

    def hostname(self, p: m.Project, env: m.Environment) -> str:
        return names.hostname(p.name, env.name, p.domain or self.settings.domain, production=env.production)

    def host_of(self, project: str, env_name: str) -> str:
        with self.store.session() as s:
            p = self.store.project(s, project)
            return self.hostname(p, self.store.environment(s, p, env_name))

    def url(self, p: m.Project, env: m.Environment) -> str:
        return self.settings.public_url(self.hostname(p, env))

    def desired(self) -> list[Route]:
        """Every environment's routes: its generated host and each custom domain, all to its current deployment's
        RUNNING replicas, a sleeping page, or "unavailable"."""
        routes = []
        with self.store.session() as s:  # three column queries: this runs on every reconcile pass
            envs = s.execute(
                select(m.Project.name, m.Project.domain, m.Environment.name, m.Environment.production,
                       m.Environment.state, m.Environment.current_deployment_id, m.Environment.id,
                       m.Environment.sleep_kind)
                .join(m.Environment).order_by(m.Project.name, m.Environment.id)
            ).all()
            ports: dict[str, list[str]] = {}
            for deployment_id, host, port in s.execute(
                select(m.Replica.deployment_id, m.Replica.host, m.Replica.port)
                .join(m.Environment, m.Environment.current_deployment_id == m.Replica.deployment_id)
                .where(m.Replica.state == m.REPLICA_RUNNING, m.Replica.service == "web")  # workers have no route
                .order_by(m.Replica.slot)
            ):
                ports.setdefault(deployment_id, []).append(f"{host}:{port}")  # its namespace's address (issue 17)
            custom: dict[int, list[str]] = {}
            for env_id, host in s.execute(select(m.Domain.environment_id, m.Domain.host).order_by(m.Domain.host)):
                custom.setdefault(env_id, []).append(host)
        generated = {names.hostname(project, env_name, domain or self.settings.domain, production=production)
                     for project, domain, env_name, production, *_ in envs}
        for project, domain, env_name, production, state, current, env_id, sleep_kind in envs:
            host = names.hostname(project, env_name, domain or self.settings.domain, production=production)
            # A generated host wins over a custom domain equal to it (`domain add` refuses that; a project's
            # `domain` changed later can still make one): the router must never see one host twice.
            hosts = [host, *(h for h in custom.get(env_id, ()) if h not in generated)]
            hsts = wants_hsts(self.settings.hsts, tls=self.settings.tls, production=production)
            if state == m.ENV_SLEEPING:
                wake = sleep_kind == m.SLEEP_IDLE  # asleep for want of requests: the next one wakes it (controller/sleep.py)
                routes += [Route(host=h, project=project, environment=env_name, upstreams=(), state="sleeping", hsts=hsts,
                                 wake=wake) for h in hosts]
                continue
            ups = tuple(ports.get(current, ())) if current else ()
            routes += [Route(host=h, project=project, environment=env_name, upstreams=ups,
                             state="serving" if ups else "unavailable", hsts=hsts) for h in hosts]
        self._hosts = (time.monotonic(), frozenset(r.host for r in routes) | self._control_host())
        return routes

    def _control_host(self) -> frozenset[str]:
        """The control plane's public host (BRANCHYARD_PUBLIC_URL), which the edge serves too (and certifies)."""
        host = urllib.parse.urlsplit(self.settings.control_url).hostname if self.settings.control_url else None
        return frozenset([host.lower()]) if host else frozenset()

    def hosts(self) -> frozenset[str]:
        """Every host the router serves (generated and custom), as of the last route sync if it is recent (the
        reconciler syncs every second; `domain add/delete` and environment changes sync at once), else read now."""
        when, hosts = self._hosts
        if time.monotonic() - when > HOSTS_FRESH:
            hosts = frozenset(r.host for r in self.desired()) | self._control_host()
        return hosts

    def sync(self) -> None:
        """Make the router serve exactly what the state says (one admin call, skipped when nothing changed)."""
        self.router.apply(self.desired())
