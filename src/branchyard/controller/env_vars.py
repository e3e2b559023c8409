"""An environment's variables as users manage them: list (resolved, masked), set, delete — each guarded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import names
from ..access import SYSTEM, Actor
from ..errors import BranchyardError
from ..spec import load_project
from ..spec.model import EnvironmentConfig
from ..store import models as m
from ..store.db import Store
from ..variables import after_set, environment_variables, resolve, variable_sources
from .dataplane import DataPlane
from .deployer import Deployer, retained
from .guards import Guards
from .replicas import PORT_PLACEHOLDER


class EnvVariables:
    def __init__(self, store: Store, *, data: DataPlane, deployer: Deployer, guards: Guards) -> None:
        self.store = store
        self.data = data
        self.deployer = deployer
        self.guards = guards

    def effective(self, project: str, env_name: str, *, reveal: bool = False) -> dict[str, Any]:
        """What the environment's processes get, resolved; secrets (and values containing them) masked unless `reveal`.

        Resolved against the current deployment's config when there is one, else only what was set by hand."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            env_id = env.id
            current = self.store.current_deployment(s, env)
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        cfg = None
        if release_dir is not None and release_dir.is_dir():
            cfg = load_project(release_dir).environment(env_name)
        plain, secrets = self.data.stored_variables(env_id)
        raw, namespaces = self.data.layered_variables(env_id, cfg)
        pending = {} if cfg is None else {svc.name: "not provisioned yet" for svc in (cfg.postgres, cfg.redis)
                                            if svc is not None and svc.name not in namespaces}
        resolved = resolve(raw, namespaces=namespaces, pending_namespaces=pending, port=PORT_PLACEHOLDER)
        redact = (lambda v: v) if reveal else self.data.redactor(env_id)
        sources = variable_sources(cfg.variables if cfg is not None else {}, plain, secrets,
                                   self.data.attached_services(env_id, cfg))
        return {
            "variables": {k: redact(v) for k, v in sorted(resolved.values.items())},
            "secrets": sorted(secrets),
            "pending": resolved.pending,
            "sources": sources,  # spec, set, secret, or the service that provides it
            "deployed": cfg is not None,  # False: no deployment yet, so the project files' own variables are not known
        }

    def set(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool, deploy: bool,
            actor: Actor = SYSTEM) -> dict[str, Any]:
        """`variables set`: guard, store, then redeploy the current release with the new values (unless skipped).

        Refused whole (nothing stored) when the environment's variables would then reach production's data."""
        self._guard(project, env_name, pairs, secret=secret)
        keys = self.data.set_variables(project, env_name, pairs, secret=secret, actor=actor)
        return {"set": keys, "deployment_id": self._redeploy(project, env_name, actor) if deploy else None}

    def delete(self, project: str, env_name: str, key: str, *, deploy: bool, actor: Actor = SYSTEM) -> dict[str, Any]:
        """`variables delete`: refused whole, like `set`, when what shows through would reach production's data."""
        self._guard(project, env_name, {}, secret=False, deleted=key)
        self.data.delete_variable(project, env_name, key, actor=actor)
        return {"deleted": key, "deployment_id": self._redeploy(project, env_name, actor) if deploy else None}

    def _guard(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool, deleted: str | None = None) -> None:
        """The isolation guard over env_name's variables as they would be after `variables set` of `pairs` (or
        `variables delete` of `deleted`): the current release's spec variables, what is stored, the change,
        resolved as a deploy would (BadInput)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name)
            production, env_id, release_dir = env_name == "production", None, None
            if env is None:
                names.environment_name(env_name)  # NameRefused before a refusal could be recorded under it
            else:
                production, env_id = env.production, env.id
                current = self.store.current_deployment(s, env)
                if current is not None and retained(current):
                    release_dir = Path(current.release_dir or "")
        cfg: EnvironmentConfig | None = None
        if release_dir is not None:
            try:
                cfg = load_project(release_dir).environment(env_name)
            except BranchyardError:
                cfg = None  # the release's files cannot say more: the stored variables are still checked
        if production or (cfg is not None and cfg.production):
            return
        plain, secrets = self.data.stored_variables(env_id) if env_id is not None else ({}, {})
        plain, secrets = after_set(plain, secrets, pairs, secret=secret)
        if deleted is not None:  # what the spec says for it (or nothing) shows through again
            plain, secrets = ({k: v for k, v in d.items() if k != deleted} for d in (plain, secrets))
        services = self.data.service_variables(env_id) if env_id is not None else {}
        raw, namespaces = environment_variables(cfg.variables if cfg is not None else {}, plain, secrets, services,
                                                self.data.attached_services(env_id, cfg))
        values = resolve(raw, namespaces=namespaces, port=PORT_PLACEHOLDER, lenient=True).values
        self.guards.isolation_guard(project, env_name, values, production=False, kind="variables.refused")

    def _redeploy(self, project: str, env_name: str, actor: Actor) -> str | None:
        """A new deployment of the current release whose variables are resolved again (no rebuild)."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            if not env.current_deployment_id or (env.state == m.ENV_SLEEPING and env.sleep_kind != m.SLEEP_IDLE):
                return None  # down: nothing running; the next deploy picks the values up
            # asleep for want of requests: redeployed (and so awake) like a running one, or a wake would bring back
            # the old values from the snapshot
            current_id = env.current_deployment_id
        return self.deployer.redeploy(project, env_name, current_id, trigger="variables", resolve_again=True,
                                      actor=actor)
