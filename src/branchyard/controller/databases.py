"""An environment's data services as users reach them: add a plugin, connection details, a sanitized refresh."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..access import SYSTEM, Actor
from ..data.sanitize import refresh
from ..errors import BadInput, NotFound
from ..names import database_name
from ..settings import Settings
from ..spec import load_project
from ..store import models as m
from ..store.db import Store
from .dataplane import DataPlane
from .deployer import Deployer

if TYPE_CHECKING:
    from .cluster_rollout import ClusterRollouts

log = logging.getLogger("branchyard.databases")


class Databases:
    def __init__(self, settings: Settings, store: Store, *, data: DataPlane, deployer: Deployer,
                 cluster: ClusterRollouts | None = None) -> None:
        """`cluster`: a cluster backend (Kubernetes). Its servers are reachable only from inside the cluster
        (`postgres.<namespace>` Services), so `connect` goes through the control plane's tunnel even on its machine;
        and an added plugin's server is applied to the namespace at once."""
        self.settings = settings
        self.store = store
        self.data = data
        self.deployer = deployer
        self.cluster = cluster
        self.servers_in_cluster = cluster is not None

    def add_plugin(self, project: str, env_name: str, plugin: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """`branchyard add --plugin postgresql|redis -e ENV`: provision now; references can use it at the next deploy."""
        with self.deployer.exclusive(project, env_name):
            variables = self.data.add_plugin(project, env_name, plugin)
            if self.cluster is not None:  # its StatefulSet in the namespace now (awaited), as a local server starts
                self.cluster.apply_data_services(project, env_name, lambda line: log.info("%s", line.strip()))
        with self.store.session() as s:
            self.store.record(s, project, "plugin.added", f"{plugin} added to {env_name}", environment=env_name, actor=actor)
        return {"plugin": plugin, "variables": variables}

    def connection(self, project: str, env_name: str, kind: str) -> dict[str, Any]:
        """The connection variables of one environment's service (for `connect`), and `tunnel`: whether only the
        control plane reaches the server (then `connect` goes through its tunnel). The local backend's servers listen
        on the control plane's machine (loopback, or the environments' host-side addresses): False, and a CLI on that
        machine connects directly — one elsewhere tunnels anyway."""
        return self._variables(project, env_name, kind) | {"tunnel": self.servers_in_cluster}

    def tunnel_target(self, project: str, env_name: str, kind: str) -> tuple[str, int]:
        """Where `connect`'s tunnel goes: the host and port of the environment's own server, exactly as its
        connection variables say (never an address from the client)."""
        variables = self._variables(project, env_name, kind)
        prefix = "PG" if kind == "postgres" else "REDIS"
        return variables[f"{prefix}HOST"], int(variables[f"{prefix}PORT"])

    def tunnel_opened(self, project: str, env_name: str, kind: str, *, actor: Actor) -> None:
        """The audit event of a tunnel opened to an environment's server (who, where; no credentials)."""
        with self.store.session() as s:
            self.store.record(s, project, "tunnel.opened", f"{actor.name} opened a tunnel to {env_name}'s {kind}",
                              environment=env_name, actor=actor)

    def _variables(self, project: str, env_name: str, kind: str) -> dict[str, str]:
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            rows = s.scalars(select(m.Service).where(m.Service.environment_id == env.id, m.Service.kind == kind)).all()
            names_ = [r.name for r in rows]
            env_id = env.id
        spaces = self.data.service_variables(env_id)
        if not names_:
            raise NotFound(f"environment {env_name!r} has no {kind} (add one with `branchyard add --plugin "
                           f"{'postgresql' if kind == 'postgres' else 'redis'} -e {env_name}`)")
        return spaces[names_[0]]

    def refresh(self, project: str, target: str, source: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Copy SOURCE's database into TARGET through the [sanitize] rules of SOURCE's running release.

        Production is never a target, and nothing is copied without rules."""
        if target == source:
            raise BadInput(f"db refresh: {target} cannot be refreshed from itself")
        with self.store.session() as s:
            p = self.store.project(s, project)
            src_env, dst_env = self.store.environment(s, p, source), self.store.environment(s, p, target)
            if dst_env.production:
                raise BadInput(f"db refresh: {target} is production; refreshing production from anything is refused")
            current = self.store.current_deployment(s, src_env)
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        if release_dir is None or not release_dir.is_dir():
            raise NotFound(f"db refresh: {source} has no running release to read its [sanitize] rules from")
        rules = load_project(release_dir).sanitize
        if rules is None:
            raise BadInput(f"db refresh: {source}'s branchyard.toml has no [sanitize] section; refusing to copy its data "
                           "unsanitized (declare rules, `keep` where a column holds no personal data)")
        with self.deployer.exclusive(project, target), self.data.scratch_server() as scratch:
            lines: list[str] = []
            result = refresh(self.data.admin_for(project, source), database_name(project, source),
                             self.data.admin_for(project, target), database_name(project, target),
                             database_name(project, target), rules,
                             workdir=self.settings.home / "backups" / ".refresh", log=lines.append,
                             scratch_admin=scratch)
            with self.store.session() as s:
                self.store.record(s, project, "database.refreshed", f"{target} refreshed from {source} (sanitized)",
                                  environment=target, actor=actor)
        return result | {"log": lines}
