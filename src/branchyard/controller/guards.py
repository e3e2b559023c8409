"""The rules every path into an environment obeys, the deploy path and promotion alike:

- a commit deployed to an environment whose promotion says `requireStaging` must have succeeded in the
  source environment first;
- a non-production environment never reaches production's data or credentials (the isolation guard).
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import policy
from .. import promotion as pm
from ..build import release
from ..errors import BadInput, BranchyardError
from ..spec import load_project
from ..spec.model import ProjectSpec, PromotionSpec
from ..store import models as m
from ..store.db import Store
from .dataplane import DataPlane


class Guards:
    def __init__(self, store: Store, data: DataPlane) -> None:
        self.store = store
        self.data = data

    def gate_spec(self, project: str, target: str, fallback: ProjectSpec) -> PromotionSpec | None:
        """The gates of TARGET: from the release TARGET runs now (a commit cannot loosen the gates that let it in),
        else from the incoming release."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), target)
            current = self.store.current_deployment(s, env)
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        spec = fallback
        if release_dir is not None and release.release_complete(release_dir):
            try:
                spec = load_project(release_dir)
            except BranchyardError:
                spec = fallback
        decl = spec.environments.get(target)
        return decl.promotion if decl is not None else None

    def require_source_first(self, project: str, env_name: str, spec: ProjectSpec, sha: str) -> None:
        """`requireStaging`: a commit deployed to env_name (git push, `up`) must have succeeded in `from` first."""
        gates = self.gate_spec(project, env_name, spec)
        if gates is None or not gates.require_source or gates.source is None:
            return
        with self.store.session() as s:
            p = self.store.project(s, project)
            if sha in successes(s, p, gates.source):
                return
            reason = (f"{sha[:12]} never ran successfully in {gates.source}; {env_name} requires it first "
                      f"(environments.{env_name}.promotion.requireStaging): deploy it to {gates.source}, then "
                      f"`branchyard promote {gates.source} {env_name}`")
            self.store.record(s, project, "deploy.refused", reason, environment=env_name, actor="git push")
        raise BadInput(reason)

    def production_facts(self, project: str) -> policy.ProductionFacts | None:
        """Production's credentials and the addresses of its data, for the isolation guard (never leaves the server)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id,
                                                       m.Environment.production.is_(True)))
            if env is None:
                return None
            current = self.store.current_deployment(s, env)
            snapshot = current.variables_json if current is not None else None
            env_id = env.id
        _, secrets = self.data.stored_variables(env_id)
        services = self.data.service_variables(env_id)
        values = json.loads(self.data.box.decrypt(snapshot)) if snapshot else {}
        return policy.production_facts(secrets=secrets, services=services, values=values)

    def isolation_refusal(self, project: str, env_name: str, values: dict[str, str], *, production: bool) -> str | None:
        """The isolation guard's one-line refusal for these resolved variables of env_name, or None when isolated."""
        if production:
            return None
        facts = self.production_facts(project)
        if facts is None:
            return None
        found = policy.isolation_findings(env_name, values, facts)
        if not found:
            return None
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        return f"isolation guard: {found[0]}{more}; a non-production environment must never reach production's data"

    def isolation_guard(self, project: str, env_name: str, values: dict[str, str], *, production: bool,
                        kind: str = "deploy.refused") -> None:
        """Refuse (BadInput, recorded as `kind`) variables of a non-production environment that equal or point at
        production's data or credentials."""
        reason = self.isolation_refusal(project, env_name, values, production=production)
        if reason is None:
            return
        with self.store.session() as s:
            self.store.record(s, project, kind, reason, environment=env_name, actor="isolation guard")
        raise BadInput(reason)


def successes(s: Session, p: m.Project, env_name: str) -> frozenset[str]:
    """Commits that ran successfully (reached SUCCESS) in one environment of the project."""
    env = Store.find_environment(s, p, env_name)
    if env is None:
        return frozenset()
    return frozenset(s.scalars(select(m.Deployment.commit_sha).where(
        m.Deployment.environment_id == env.id, m.Deployment.status.in_(pm.RAN_SUCCESSFULLY))))
