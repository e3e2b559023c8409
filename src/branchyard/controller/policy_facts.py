"""What `branchyard check`'s live rules read from the running state. Secret values stay here: only findings and
key names leave."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import isolation as enforced
from .. import monitoring as mon
from .. import policy
from ..backends.ports import RuntimePort
from ..errors import BranchyardError
from ..spec import load_project
from ..store import models as m
from ..store.db import Store
from ..triggers import gitrefs
from ..triggers.gitremote import is_merged
from .costs import Costs
from .dataplane import DataPlane
from .guards import Guards, successes


def live_facts(store: Store, data: DataPlane, guards: Guards, project: str, *, costs: Costs | None = None,
               runtime: RuntimePort | None = None,
               measures: Callable[[str, str], dict[str, float]] | None = None) -> dict[str, Any]:
    """What the live policy rules read. Secret values stay here: only findings and key names are returned.

    `runtime`: what the machine enforces (issue 17); `measures`: an environment's latest metrics (database size)."""
    facts = guards.production_facts(project)
    envs, services, isolation, secrets_by_env = [], [], [], {}
    production_row = None
    with store.session() as s:
        p = store.project(s, project)
        repo = p.repo_path
        rows = s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)).all()
        for env in rows:
            latest = s.scalar(select(m.Deployment).where(m.Deployment.environment_id == env.id)
                              .order_by(m.Deployment.created_at.desc()))
            current = store.current_deployment(s, env)
            envs.append({"name": env.name, "production": env.production, "ephemeral": env.ephemeral,
                         "state": env.state, "branch": env.branch, "id": env.id,
                         "latest_status": latest.status if latest else None, "latest_id": latest.id if latest else "",
                         "latest_error": latest.error if latest else None,
                         "snapshot": current.variables_json if current is not None else None,
                         "commit": current.commit_sha if current is not None else None,
                         "storage_mb": _storage_mb(current.config_json if current is not None else None)})
        persistent_heads = [e["branch"] for e in envs if not e["ephemeral"] and e["branch"]]
        closed_previews = set(s.scalars(select(m.Preview.environment).where(  # pull requests known to be closed
            m.Preview.project_id == p.id, m.Preview.open.is_(False))))
        for e in envs:
            if e["production"] and e["commit"] and e["snapshot"]:
                release_dir = s.get(m.Deployment, s.get(m.Environment, e["id"]).current_deployment_id).release_dir
                production_row = (e, release_dir)
    for e in envs:
        _, secrets = data.stored_variables(e["id"])
        secrets_by_env[e["name"]] = secrets
        for name, space in data.service_variables(e["id"]).items():
            for key in ("DATABASE_URL", "REDIS_URL"):
                address = policy.postgres_address(space.get(key, "")) or policy.redis_address(space.get(key, ""))
                if address:
                    kind = "database" if key == "DATABASE_URL" else "Redis"
                    services.append({"environment": e["name"], "kind": kind, "location": ":".join(map(str, address))})
        if not e["production"] and facts is not None and e["snapshot"]:
            values = json.loads(data.box.decrypt(e["snapshot"]))
            isolation += policy.isolation_findings(e["name"], values, facts)
        if e["ephemeral"]:
            e["merged"] = e["name"] in closed_previews or bool(
                e["branch"] and any(is_merged(Path(repo), e["branch"], head) for head in persistent_heads))
    out = {
        "environments": [{k: v for k, v in e.items() if k not in ("snapshot", "id")} for e in envs],
        "services": services,
        "isolation": isolation,
        "same_secrets": policy.same_secrets(secrets_by_env),
        "production_commit": None,
        "production_branch": _production_branch(Path(repo), envs),
        # each environment's projected $/month from what it runs (issue 17), for the cost-over-production rule
        "costs": [{"environment": e["environment"], "production": e["production"],
                   "monthly": (e["monthly"] or {}).get("total")}
                  for e in (costs.report(project)["environments"] if costs is not None else [])],
        "enforcement": enforced.to_json(runtime.isolation()) if runtime is not None else None,
        "database_storage": _database_storage(project, envs, measures),
    }
    if production_row is not None:
        e, release_dir = production_row
        gates = guards.gate_spec(project, e["name"], load_project(Path(release_dir))) if release_dir else None
        if gates is not None and gates.source:
            with store.session() as s:
                ran = e["commit"] in successes(s, store.project(s, project), gates.source)
            out["production_commit"] = {"environment": e["name"], "commit": e["commit"], "source": gates.source,
                                        "ran_in_source": ran}
    return out


def _storage_mb(config_json: str | None) -> int | None:
    try:
        return (json.loads(config_json or "{}").get("postgres") or {}).get("storage_mb")
    except ValueError:
        return None


def _database_storage(project: str, envs: list[dict[str, Any]],
                      measures: Callable[[str, str], dict[str, float]] | None) -> list[dict[str, Any]]:
    """Each environment's database size against its `storage`, from the last metrics sample."""
    out = []
    for e in envs:
        if e["storage_mb"] and measures is not None:
            row = enforced.storage(measures(project, e["name"]).get(mon.POSTGRES_DATABASE_BYTES), e["storage_mb"])
            if row is not None:
                out.append(row | {"environment": e["name"]})
    return out


def _production_branch(repo: Path, envs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Production's branch head against the commit production runs (branch_follow's relations), or None when
    production deploys no branch or runs nothing."""
    prod = next((e for e in envs if e["production"]), None)
    if prod is None or not prod["branch"] or not prod["commit"]:
        return None
    try:
        relation, head = gitrefs.relation(repo, prod["branch"], prod["commit"])
    except BranchyardError:
        return None  # a repository git cannot read says nothing about divergence; the other rules still run
    return {"environment": prod["name"], "branch": prod["branch"], "commit": prod["commit"], "head": head,
            "relation": relation}
