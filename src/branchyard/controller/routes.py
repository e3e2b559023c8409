"""Which host routes to which replicas, derived from the state; the router is told only when that changes."""

from __future__ import annotations

from sqlalchemy import select

from .. import names
from ..backends.ports import Route, RouterPort
from ..settings import Settings
from ..store import models as m
from ..store.db import Store


class Routes:
    def __init__(self, settings: Settings, store: Store, router: RouterPort) -> None:
        self.settings = settings
        self.store = store
        self.router = router

    def hostname(self, p: m.Project, env: m.Environment) -> str:
        return names.hostname(p.name, env.name, p.domain or self.settings.domain, production=env.production)

    def host_of(self, project: str, env_name: str) -> str:
        with self.store.session() as s:
            p = self.store.project(s, project)
            return self.hostname(p, self.store.environment(s, p, env_name))

    def url(self, p: m.Project, env: m.Environment) -> str:
        return self.settings.public_url(self.hostname(p, env))

    def desired(self) -> list[Route]:
        """Every environment's route: its current deployment's RUNNING replicas, a sleeping page, or "unavailable"."""
        routes = []
        with self.store.session() as s:  # two column queries: this runs on every reconcile pass
            envs = s.execute(
                select(m.Project.name, m.Project.domain, m.Environment.name, m.Environment.production,
                       m.Environment.state, m.Environment.current_deployment_id)
                .join(m.Environment).order_by(m.Project.name, m.Environment.id)
            ).all()
            ports: dict[str, list[int]] = {}
            for deployment_id, port in s.execute(
                select(m.Replica.deployment_id, m.Replica.port)
                .join(m.Environment, m.Environment.current_deployment_id == m.Replica.deployment_id)
                .where(m.Replica.state == m.REPLICA_RUNNING)
                .order_by(m.Replica.slot)
            ):
                ports.setdefault(deployment_id, []).append(port)
        for project, domain, env_name, production, state, current in envs:
            host = names.hostname(project, env_name, domain or self.settings.domain, production=production)
            if state == m.ENV_SLEEPING:
                routes.append(Route(host=host, project=project, environment=env_name, upstreams=(), state="sleeping"))
                continue
            ups = tuple(f"127.0.0.1:{port}" for port in ports.get(current, ())) if current else ()
            routes.append(Route(host=host, project=project, environment=env_name, upstreams=ups,
                                state="serving" if ups else "unavailable"))
        return routes

    def sync(self) -> None:
        """Make the router serve exactly what the state says (one admin call, skipped when nothing changed)."""
        self.router.apply(self.desired())
