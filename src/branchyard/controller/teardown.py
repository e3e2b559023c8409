"""Deleting an environment: its processes, route, database, Redis, releases and logs (production: a final backup)."""

from __future__ import annotations

import shutil

from sqlalchemy import select

from .. import names
from ..access import SYSTEM, Actor
from ..backends.ports import EnvironmentsPort
from ..build import archive
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .backups import Backups
from .cron import Cron
from .dataplane import DataPlane
from .deployer import Deployer
from .replicas import Replicas
from .routes import Routes


class Teardown:
    def __init__(self, settings: Settings, store: Store, *, deployer: Deployer, replicas: Replicas, data: DataPlane,
                 backups: Backups, routes: Routes, cron: Cron, environments: EnvironmentsPort | None = None) -> None:
        self.settings = settings
        self.store = store
        self.deployer = deployer
        self.replicas = replicas
        self.data = data
        self.backups = backups
        self.routes = routes
        self.cron = cron  # a cron service's run still going is stopped with the environment
        self.environments = environments  # a cluster backend: the environment's namespace goes, awaited and checked

    def delete_environment(self, project: str, name: str, *, actor: Actor = SYSTEM) -> None:
        """Stop the environment's processes, drop its route, database and Redis, and forget it (releases and logs too).

        Production's database gets a final backup first."""
        with self.deployer.exclusive(project, name):
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, name)
                env_id = env.id
                replica_ids = list(s.scalars(select(m.Replica.id).where(m.Replica.environment_id == env.id)))
                releases = list(s.scalars(select(m.Deployment.release_dir).where(m.Deployment.environment_id == env.id)))
                production = env.production
                has_database = s.scalar(select(m.Service.id).where(m.Service.environment_id == env.id,
                                                                   m.Service.kind == "postgres")) is not None
                env.state, env.target_deployment_id = m.ENV_SLEEPING, None
            self.routes.sync()
            self.replicas.stop(replica_ids, grace=5)
            self.cron.stop_runs(env_id, "the environment was deleted")
            if production and has_database:
                self.backups.create(project, name, kind="final")  # kept after the environment is gone
            freed = self.data.destroy(project, name)  # its database and role, its Redis, their data directories
            self.replicas.runtime.forget(project, name)  # its network namespace (issue 17)
            if self.environments is not None:  # its namespace, deleted and awaited; nothing labelled with it left
                self.environments.destroy(project, name)
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), name)
                s.delete(env)  # variables, secrets and service records go with it (ON DELETE CASCADE)
                detail = f"; {', '.join(freed)}" if freed else ""
                self.store.record(s, project, "environment.deleted", f"environment {name} deleted{detail}", environment=name,
                                  actor=actor)
            self.routes.sync()
            for path in releases:
                if path:
                    shutil.rmtree(path, ignore_errors=True)
                    archive.remove(path)  # a cluster release's archive and its digest (issue 19)
            shutil.rmtree(names.safe_join(self.settings.logs_dir, project, name), ignore_errors=True)
