"""Promotions: the exact release running in SOURCE deployed to TARGET, behind the gates TARGET's spec declares.

States: PLANNED (plan shown, waiting for `--confirm PROMOTE`) → PENDING_APPROVAL (confirmed, approvals short)
→ PROMOTING (TARGET's deployment running) → VERIFYING (smoke tests against TARGET) → SUCCESS; or FAILED (a gate,
the deploy, or verification — then TARGET is rolled back) / CANCELLED (the confirmation did not match).
Rows live in SQLite, so open promotions and their approvals survive a restart.

Also here: the two checks the ordinary deploy path makes with the same rules — a commit must have succeeded in
the source environment first (`requireStaging`), and a non-production environment must not reach production's
data (the isolation guard).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from .. import names, policy
from .. import promotion as pm
from ..build import release
from ..errors import BadInput, BranchyardError, Conflict, NotFound
from ..spec import load_project
from ..spec.model import ProjectSpec, PromotionSpec
from ..store import models as m
from .replicas import PORT_PLACEHOLDER
from .variables import resolve

if TYPE_CHECKING:
    from .core import Controller

log = logging.getLogger("branchyard.promotions")

VERIFIER = "post-deploy verification"  # the actor of automatic rollbacks
POLL = 0.2


class Promotions:
    """Plans, confirmations, approvals and the promotion driver of one controller."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.store = ctl.store
        self._guard = threading.Lock()  # one state change of a promotion at a time

    # --- reading -------------------------------------------------------------------------------------

    def get(self, promotion_id: str) -> dict:
        with self.store.session() as s:
            return self._dict(s, self._find(s, promotion_id))

    def list(self, project: str, limit: int = 50) -> list[dict]:
        with self.store.session() as s:
            self.store.project(s, project)
            rows = s.scalars(select(m.Promotion).where(m.Promotion.project == project)
                             .order_by(m.Promotion.created_at.desc()).limit(limit)).all()
            return [self._dict(s, r) for r in rows]

    def _find(self, s, promotion_id: str) -> m.Promotion:  # noqa: ANN001 - Session
        rows = []
        if len(promotion_id) >= 6:
            rows = s.scalars(select(m.Promotion).where(m.Promotion.id.startswith(promotion_id))).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise NotFound(f"promotion id {promotion_id!r} is ambiguous; give more characters")
        raise NotFound(f"unknown promotion {promotion_id!r} (see `branchyard events`)")

    def _dict(self, s, p: m.Promotion) -> dict:  # noqa: ANN001 - Session
        approvers = [a.approver for a in s.scalars(select(m.Approval).where(m.Approval.promotion_id == p.id)
                                                    .order_by(m.Approval.id))]
        return {
            "id": p.id,
            "project": p.project,
            "source": p.source,
            "target": p.target,
            "state": p.state,
            "commit": p.commit_sha,
            "source_deployment_id": p.source_deployment_id,
            "previous_deployment_id": p.previous_deployment_id,
            "target_deployment_id": p.target_deployment_id,
            "rollback_deployment_id": p.rollback_deployment_id,
            "requested_by": p.requested_by,
            "approvers": approvers,
            "error": p.error,
            "plan": json.loads(p.plan_json),
            "created_at": p.created_at.isoformat() + "Z",
            "finished_at": p.finished_at.isoformat() + "Z" if p.finished_at else None,
        }

    # --- plan ----------------------------------------------------------------------------------------

    def create(self, project: str, source: str, target: str, actor: str) -> dict:
        """Plan a promotion (running its gates now) and record it; reuses the open one for the same release."""
        actor = pm.approver_name(actor)
        with self.store.session() as s:
            p = self.store.project(s, project)
            src_env, dst_env = self.store.environment(s, p, source), self.store.environment(s, p, target)
            if src_env.current_deployment_id is None:
                raise NotFound(f"promote: {source} has no deployment to promote (push its branch first)")
            src_dep = s.get(m.Deployment, src_env.current_deployment_id)
            release_dir = Path(src_dep.release_dir or "")
            source_production, target_production = src_env.production, dst_env.production
            source_dep_id = src_dep.id
        if not release.release_complete(release_dir):
            raise NotFound(f"promote: {source}'s current release ({source_dep_id[:8]}) is not retained")
        gate_spec = self.gate_spec(project, target, load_project(release_dir))
        pm.check_route(source, target, source_production=source_production, target_production=target_production,
                       spec=gate_spec)
        with self._guard:
            with self.store.session() as s:
                existing = s.scalar(select(m.Promotion).where(
                    m.Promotion.project == project, m.Promotion.target == target,
                    m.Promotion.source_deployment_id == source_dep_id, m.Promotion.state.in_(m.PROMOTION_OPEN)))
                existing_id = existing.id if existing else None
                approvers = [] if existing is None else list(
                    s.scalars(select(m.Approval.approver).where(m.Approval.promotion_id == existing.id)))
            plan = self._plan(project, source, target, gate_spec, approvers, run_smoke=True)
            with self.store.session() as s:
                if existing_id is not None:
                    row = s.get(m.Promotion, existing_id)
                    row.plan_json = json.dumps(plan.to_dict())
                    self.store.record(s, project, "promotion.planned", f"promotion {row.id[:8]} {source} → {target} "
                                      f"re-planned ({plan.commit[:12]})", environment=target, actor=actor)
                else:
                    row = m.Promotion(project=project, source=source, target=target, source_deployment_id=source_dep_id,
                                      commit_sha=plan.commit, previous_deployment_id=None, requested_by=actor,
                                      plan_json=json.dumps(plan.to_dict()))
                    s.add(row)
                    s.flush()
                    self.store.record(s, project, "promotion.planned", f"promotion {row.id[:8]} {source} → {target} of "
                                      f"{plan.commit[:12]} planned", environment=target, actor=actor)
                if plan.blocking:
                    self._end(s, row, m.PROMOTION_FAILED, _refusal(plan), kind="promotion.refused", actor=actor)
                return self._dict(s, row)

    def gate_spec(self, project: str, target: str, fallback: ProjectSpec) -> PromotionSpec | None:
        """The gates of TARGET: from the release TARGET runs now (a commit cannot loosen the gates that let it in),
        else from the incoming release."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), target)
            current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        spec = fallback
        if release_dir is not None and release.release_complete(release_dir):
            try:
                spec = load_project(release_dir)
            except BranchyardError:
                spec = fallback
        decl = spec.environments.get(target)
        return decl.promotion if decl is not None else None

    def _plan(self, project: str, source: str, target: str, spec: PromotionSpec | None, approvers: list[str], *,
              run_smoke: bool, previous_smoke: pm.SmokeResult | None = None) -> pm.Plan:
        """Observe both environments and compute the plan (gates included)."""
        ctl = self.ctl
        with self.store.session() as s:
            p = self.store.project(s, project)
            src_env, dst_env = self.store.environment(s, p, source), self.store.environment(s, p, target)
            src_dep = s.get(m.Deployment, src_env.current_deployment_id)
            dst_dep = s.get(m.Deployment, dst_env.current_deployment_id) if dst_env.current_deployment_id else None
            source_facts = _facts(src_dep)
            target_facts = _facts(dst_dep) if dst_dep is not None else None
            before = json.loads(ctl.data.box.decrypt(dst_dep.variables_json)) if dst_dep and dst_dep.variables_json else {}
            release_dir, repo = Path(src_dep.release_dir), p.repo_path
            source_url = ctl.settings.public_url(ctl.hostname(p, src_env))
            dst_env_id, production, override = dst_env.id, dst_env.production, dst_env.replicas_override
            successes = frozenset() if spec is None or spec.source is None else _successes(s, p, spec.source)
        cfg = load_project(release_dir).environment(target)
        raw, namespaces = ctl._variables_for(dst_env_id, cfg)
        pending = {svc.name: "not provisioned yet" for svc in (cfg.postgres, cfg.redis)
                   if svc is not None and svc.name not in namespaces}
        after = resolve(raw, namespaces=namespaces, pending_namespaces=pending, port=PORT_PLACEHOLDER).values
        smoke = previous_smoke
        if run_smoke and spec is not None and spec.smoke_command:
            smoke = run_smoke_command(spec.smoke_command, url=source_url, environment=source,
                                      release_dir=release_dir, cfg_root=cfg.web.root_dir, timeout=spec.smoke_timeout)
        observed = pm.Observed(
            source=source, target=target, source_deployment=source_facts,
            source_health=self._health(project, source), target_deployment=target_facts,
            target_config_after=cfg.to_dict(), variables_before=before, variables_after=after,
            commits=_commits(repo, target_facts.commit if target_facts else None, source_facts.commit),
            source_env_successes=successes, approvers=tuple(approvers), smoke=smoke,
        )
        return pm.plan(observed, spec, target_production=production, mask=ctl.data.redactor(dst_env_id),
                       replicas_override=override)

    def _health(self, project: str, env_name: str) -> tuple[bool, str]:
        """Whether every replica of the environment's current deployment passes its health check right now."""
        info = self.ctl.environment_info(project, env_name)
        replicas = info["replicas"]
        healthy = [r for r in replicas if r["alive"] and r["health"] == "healthy"]
        path = _health_path(self, project, env_name) or "/"
        if not replicas:
            return False, "failing: no replica running"
        detail = f"{len(healthy)}/{len(replicas)} replicas healthy (GET {path})"
        return len(healthy) == len(replicas), ("passing: " if len(healthy) == len(replicas) else "failing: ") + detail

    # --- confirm, approve, cancel --------------------------------------------------------------------

    def confirm(self, promotion_id: str, word: str, actor: str) -> dict:
        """The typed confirmation: PROMOTE proceeds (or waits for approvals); anything else cancels the promotion."""
        actor = pm.approver_name(actor)
        with self._guard:
            with self.store.session() as s:
                row = self._find(s, promotion_id)
                if row.state in m.PROMOTION_FINISHED or row.state in m.PROMOTION_ACTIVE:
                    raise Conflict(f"promotion {row.id[:8]} is {row.state}; plan a new one with `branchyard promote "
                                   f"{row.source} {row.target}`")
                pid, matched = row.id, word == pm.CONFIRM_WORD
                if matched:
                    self.store.record(s, row.project, "promotion.confirmed", f"promotion {pid[:8]} confirmed",
                                      environment=row.target, actor=actor)
                else:  # committed before the error is raised: the cancellation is recorded
                    self._end(s, row, m.PROMOTION_CANCELLED, f"confirmation did not match {pm.CONFIRM_WORD!r}",
                              kind="promotion.cancelled", actor=actor)
            if not matched:
                raise BadInput(f"confirmation did not match {pm.CONFIRM_WORD!r}; promotion {pid[:8]} cancelled, "
                               "nothing deployed")
            return self._proceed(pid, actor, rerun_smoke=False)

    def approve(self, promotion_id: str, approver: str) -> dict:
        """One approval by a distinct approver; the approval that completes the count lets a confirmed promotion go."""
        name = pm.approver_name(approver)
        with self._guard:
            with self.store.session() as s:
                row = self._find(s, promotion_id)
                if row.state not in m.PROMOTION_OPEN:
                    raise Conflict(f"promotion {row.id[:8]} is {row.state}: only open promotions (PLANNED, "
                                   "PENDING_APPROVAL) take approvals")
                pid, state = row.id, row.state
                known = set(s.scalars(select(m.Approval.approver).where(m.Approval.promotion_id == pid)))
                if name in known:
                    note = f"{name} already approved promotion {pid[:8]}; counted once"
                    self.store.record(s, row.project, "promotion.approved", note, environment=row.target, actor=name)
                else:
                    s.add(m.Approval(promotion_id=pid, approver=name))
                    self.store.record(s, row.project, "promotion.approved",
                                      f"{name} approved promotion {pid[:8]} ({len(known) + 1} approvals)",
                                      environment=row.target, actor=name)
            if state == m.PROMOTION_PENDING_APPROVAL:
                return self._proceed(pid, name, rerun_smoke=True)
            return self.get(pid)

    def cancel(self, promotion_id: str, actor: str, reason: str = "cancelled") -> dict:
        actor = pm.approver_name(actor)
        with self._guard, self.store.session() as s:
            row = self._find(s, promotion_id)
            if row.state not in m.PROMOTION_OPEN:
                raise Conflict(f"promotion {row.id[:8]} is {row.state}; only open promotions can be cancelled")
            self._end(s, row, m.PROMOTION_CANCELLED, reason[:200], kind="promotion.cancelled", actor=actor)
            return self._dict(s, row)

    # --- proceeding ----------------------------------------------------------------------------------

    def _proceed(self, pid: str, actor: str, *, rerun_smoke: bool) -> dict:
        """Re-check the gates against the current state; refuse, wait for approvals, or start the deployment."""
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            project, source, target, source_dep_id = row.project, row.source, row.target, row.source_deployment_id
            approvers = list(s.scalars(select(m.Approval.approver).where(m.Approval.promotion_id == pid)))
            env = self.store.environment(s, self.store.project(s, project), source)
            moved = env.current_deployment_id != source_dep_id
            old_plan = json.loads(row.plan_json)
        if moved:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED,
                          f"{source} no longer runs deployment {source_dep_id[:8]}; plan a new promotion",
                          kind="promotion.refused", actor=actor)
            return self.get(pid)
        with self.store.session() as s:
            release_dir = Path(s.get(m.Deployment, source_dep_id).release_dir or "")
        spec = self.gate_spec(project, target, load_project(release_dir))
        previous = _smoke_from(old_plan)
        plan = self._plan(project, source, target, spec, approvers, run_smoke=rerun_smoke or previous is None,
                          previous_smoke=previous)
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            row.plan_json = json.dumps(plan.to_dict())
            if plan.blocking:
                self._end(s, row, m.PROMOTION_FAILED, _refusal(plan), kind="promotion.refused", actor=actor)
                return self._dict(s, row)
            if plan.awaiting_approval:
                row.state = m.PROMOTION_PENDING_APPROVAL
                gate = next(g for g in plan.gates if g.id == pm.GATE_APPROVALS)
                self.store.record(s, project, "promotion.pending_approval", f"promotion {pid[:8]} waits: {gate.detail}",
                                  environment=target, actor=actor)
                return self._dict(s, row)
        self._start(pid, actor)
        return self.get(pid)

    def _start(self, pid: str, actor: str) -> None:
        """Copy the source's release (no rebuild) into a new deployment of the target and run it; then verify."""
        ctl = self.ctl
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            project, target = row.project, row.target
            src = s.get(m.Deployment, row.source_deployment_id)
            source_release = Path(src.release_dir)
        incoming = names.safe_join(ctl.settings.releases_dir, project, f".incoming-promote-{pid}-{time.monotonic_ns()}")
        held = ctl._busy_lock(project, target)
        try:
            shutil.copytree(source_release, incoming, symlinks=True)  # the same bytes and the same virtualenv
            with self.store.session() as s:
                row = s.get(m.Promotion, pid)
                p = self.store.project(s, project)
                env = self.store.environment(s, p, target)
                src = s.get(m.Deployment, row.source_deployment_id)
                dep = ctl._new_deployment(s, p, env, sha=src.commit_sha, branch=src.branch, trigger="promote")
                dep.release_dir = str(names.safe_join(ctl.settings.releases_dir, project, dep.id))
                row.previous_deployment_id = env.current_deployment_id
                row.target_deployment_id, row.state = dep.id, m.PROMOTION_PROMOTING
                dep_id, release_dir = dep.id, Path(dep.release_dir)
                self.store.record(s, project, "promotion.started", f"promotion {pid[:8]}: {row.source} → {target}, "
                                  f"{src.commit_sha[:12]} (release of deployment {src.id[:8]}, not rebuilt)",
                                  environment=target, deployment_id=dep_id, actor=actor)
            incoming.rename(release_dir)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            held.lock.release()
            raise
        ctl._start_worker(project, target, dep_id, ctl._promote_and_roll_out, holding_lock=True)
        threading.Thread(target=self._drive, args=(pid,), name=f"promote-{pid[:8]}", daemon=True).start()

    def _drive(self, pid: str) -> None:
        try:
            self._verify(pid)
        except Exception as err:  # a bug must still end the promotion, not leave it PROMOTING
            log.exception("promotion %s crashed", pid)
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED, f"internal error: {type(err).__name__}: {err}",
                          kind="promotion.failed", actor=VERIFIER)

    def _verify(self, pid: str) -> None:
        """Wait for the target's deployment; run the smoke tests against the target; roll back if they fail."""
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            project, target, dep_id, previous = row.project, row.target, row.target_deployment_id, row.previous_deployment_id
        status, error = self._wait(dep_id)
        if status != m.SUCCESS:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED,
                          f"{target}'s deployment {dep_id[:8]} {status}: {error or 'see its log'}; the previous "
                          "deployment keeps serving", kind="promotion.failed", actor=VERIFIER)
            return
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            row.state = m.PROMOTION_VERIFYING
            p = self.store.project(s, project)
            env = self.store.environment(s, p, target)
            url = self.ctl.settings.public_url(self.ctl.hostname(p, env))
            release_dir = Path(s.get(m.Deployment, dep_id).release_dir)
        gates = self.gate_spec(project, target, load_project(release_dir))
        if gates is None or not gates.smoke_command:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_SUCCESS, None, kind="promotion.succeeded",
                          actor=VERIFIER, note=f"{target} runs {dep_id[:8]} (no smokeCommand to verify with)")
            return
        cfg = load_project(release_dir).environment(target)
        smoke = run_smoke_command(gates.smoke_command, url=url, environment=target, release_dir=release_dir,
                                  cfg_root=cfg.web.root_dir, timeout=gates.smoke_timeout)
        if smoke.passed:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_SUCCESS, None, kind="promotion.succeeded",
                          actor=VERIFIER, note=f"{target} runs {dep_id[:8]}; post-deploy smoke tests passed")
            return
        reason = f"post-deploy smoke tests failed on {target}: {smoke.detail}"
        with self.store.session() as s:
            self.store.record(s, project, "promotion.verification_failed", reason, environment=target,
                              deployment_id=dep_id, actor=VERIFIER)
        if previous is None:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED,
                          f"{reason}; {target} had no previous deployment to roll back to", kind="promotion.failed",
                          actor=VERIFIER)
            return
        rollback_id = self._rollback(project, target, previous)
        with self.store.session() as s:
            s.get(m.Promotion, pid).rollback_deployment_id = rollback_id
        status, error = self._wait(rollback_id) if rollback_id else ("FAILED", "rollback could not start")
        outcome = (f"rolled back to deployment {previous[:8]}" if status == m.SUCCESS
                   else f"the rollback to {previous[:8]} {status}: {error}")
        with self.store.session() as s:
            self.store.record(s, project, "promotion.rolled_back", f"{target} {outcome} after failed verification",
                              environment=target, deployment_id=rollback_id, actor=VERIFIER)
            self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED, f"{reason}; {outcome}", kind="promotion.failed",
                      actor=VERIFIER)

    def _rollback(self, project: str, target: str, previous: str) -> str | None:
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.ctl.redeploy(project, target, previous, trigger="rollback")
            except Conflict:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.5)  # the promoted deployment's worker is letting go of the environment

    def _wait(self, dep_id: str, timeout: float = 3600) -> tuple[str, str | None]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.store.session() as s:
                dep = s.get(m.Deployment, dep_id)
                status, error = dep.status, dep.error
            if status in m.TERMINAL and dep_id not in self.ctl.in_progress():
                return status, error
            time.sleep(POLL)
        return "FAILED", "timed out waiting for the deployment"

    def _end(self, s, row: m.Promotion, state: str, error: str | None, *, kind: str, actor: str,  # noqa: ANN001
             note: str | None = None) -> None:
        row.state, row.error, row.finished_at = state, error, m.utcnow()
        message = f"promotion {row.id[:8]} {row.source} → {row.target} {state}" + (f": {error or note}" if error or note else "")
        self.store.record(s, row.project, kind, message, environment=row.target, deployment_id=row.target_deployment_id,
                          actor=actor)

    def recover(self) -> None:
        """After a restart: open promotions stay open (approvals kept); one cut off mid-deploy is FAILED with why."""
        with self.store.session() as s:
            for row in s.scalars(select(m.Promotion).where(m.Promotion.state.in_(m.PROMOTION_ACTIVE))).all():
                dep = s.get(m.Deployment, row.target_deployment_id) if row.target_deployment_id else None
                where = f"; {row.target}'s deployment {dep.id[:8]} is {dep.status}" if dep is not None else ""
                self._end(s, row, m.PROMOTION_FAILED, f"the control plane restarted during {row.state}{where}; "
                          "post-deploy verification did not run (check it, then roll back or promote again)",
                          kind="promotion.failed", actor="system")


# --- the same rules on the ordinary deploy path ------------------------------------------------------


def require_source_first(ctl: Controller, project: str, env_name: str, spec: ProjectSpec, sha: str) -> None:
    """`requireStaging`: a commit deployed to env_name (git push, `up`) must have succeeded in `from` first."""
    gates = ctl.promotions.gate_spec(project, env_name, spec)
    if gates is None or not gates.require_source or gates.source is None:
        return
    with ctl.store.session() as s:
        p = ctl.store.project(s, project)
        if sha in _successes(s, p, gates.source):
            return
        reason = (f"{sha[:12]} never ran successfully in {gates.source}; {env_name} requires it first "
                  f"(environments.{env_name}.promotion.requireStaging): deploy it to {gates.source}, then "
                  f"`branchyard promote {gates.source} {env_name}`")
        ctl.store.record(s, project, "deploy.refused", reason, environment=env_name, actor="git push")
    raise BadInput(reason)


def production_facts(ctl: Controller, project: str) -> policy.ProductionFacts | None:
    """Production's credentials and the addresses of its data, for the isolation guard (never leaves the server)."""
    with ctl.store.session() as s:
        p = ctl.store.project(s, project)
        env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.production.is_(True)))
        if env is None:
            return None
        current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
        snapshot = current.variables_json if current is not None else None
        env_id = env.id
    _, secrets = ctl.data.stored_variables(env_id)
    services = ctl.data.service_variables(env_id)
    values = json.loads(ctl.data.box.decrypt(snapshot)) if snapshot else {}
    return policy.production_facts(secrets=secrets, services=services, values=values)


def isolation_refusal(ctl: Controller, project: str, env_name: str, values: dict[str, str], *,
                      production: bool) -> str | None:
    """The isolation guard's one-line refusal for these resolved variables of env_name, or None when they are isolated."""
    if production:
        return None
    facts = production_facts(ctl, project)
    if facts is None:
        return None
    found = policy.isolation_findings(env_name, values, facts)
    if not found:
        return None
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return f"isolation guard: {found[0]}{more}; a non-production environment must never reach production's data"


def isolation_guard(ctl: Controller, project: str, env_name: str, values: dict[str, str], *, production: bool,
                    kind: str = "deploy.refused") -> None:
    """Refuse (BadInput, recorded as `kind`) variables of a non-production environment that equal or point at
    production's data or credentials."""
    reason = isolation_refusal(ctl, project, env_name, values, production=production)
    if reason is None:
        return
    with ctl.store.session() as s:
        ctl.store.record(s, project, kind, reason, environment=env_name, actor="isolation guard")
    raise BadInput(reason)


# --- smoke tests ---------------------------------------------------------------------------------------


def run_smoke_command(command: str, *, url: str, environment: str, release_dir: Path, cfg_root: str,
                      timeout: int) -> pm.SmokeResult:
    """Run the smokeCommand against `url` (BRANCHYARD_TARGET_URL, `--environment NAME`), killed after `timeout`."""
    meta = release.read_release_meta(release_dir) or {}
    venv = Path(str(meta.get("venv", "")))
    cwd = release_dir if cfg_root in ("", ".") else names.safe_join(release_dir, cfg_root)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    base = {"PATH": f"{venv}/bin:{path}" if meta.get("venv") else path, "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    if meta.get("venv"):
        base["VIRTUAL_ENV"] = str(venv)
    argv, env = pm.smoke_argv_env(command, url=url, environment=environment, base_env=base)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        return pm.SmokeResult(False, f"`{command}` could not start: {err.strerror}")
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return pm.SmokeResult(False, f"`{command}` against {url} timed out after {timeout}s (killed)")
    lines = [line.strip() for line in output.decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1][:200] if lines else "no output"
    took = time.monotonic() - started
    if proc.returncode == 0:
        return pm.SmokeResult(True, f"`{command}` against {url} passed in {took:.1f}s: {last}")
    return pm.SmokeResult(False, f"`{command}` against {url} exited with code {proc.returncode}: {last}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- helpers -----------------------------------------------------------------------------------------------


def _facts(dep: m.Deployment) -> pm.DeploymentFacts:
    return pm.DeploymentFacts(id=dep.id, status=dep.status, commit=dep.commit_sha,
                              config=json.loads(dep.config_json) if dep.config_json else None)


def _successes(s, p: m.Project, env_name: str) -> frozenset[str]:  # noqa: ANN001 - Session
    """Commits that ran successfully (reached SUCCESS) in one environment of the project."""
    env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
    if env is None:
        return frozenset()
    return frozenset(s.scalars(select(m.Deployment.commit_sha).where(
        m.Deployment.environment_id == env.id, m.Deployment.status.in_(pm.RAN_SUCCESSFULLY))))


def _health_path(self: Promotions, project: str, env_name: str) -> str | None:
    with self.store.session() as s:
        env = self.store.environment(s, self.store.project(s, project), env_name)
        dep = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
        return json.loads(dep.config_json)["web"].get("healthcheck_path") if dep and dep.config_json else None


def _commits(repo: str, old: str | None, new: str, limit: int = 50) -> tuple[tuple[str, str], ...]:
    """(sha, subject) of old..new in the project's repository, newest first (just `new` when old is unknown)."""
    spec = [f"{old}..{new}"] if old and old != new else ([] if old == new else [new, "-1"])
    if not spec:
        return ()
    try:
        done = subprocess.run(["git", "--git-dir", repo, "log", f"--max-count={limit}", "--format=%H%x09%s", *spec],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    return tuple(tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in done.stdout.splitlines())  # type: ignore[misc]


def _smoke_from(plan: dict) -> pm.SmokeResult | None:
    for gate in plan.get("gates", []):
        if gate["id"] == pm.GATE_SMOKE:
            return pm.SmokeResult(gate["passed"], gate["detail"])
    return None


def _refusal(plan: pm.Plan) -> str:
    return "; ".join(f"gate {g.id} failed: {g.detail}" for g in plan.blocking)



# --- live facts for `branchyard check` ---------------------------------------------------------------------


def live_facts(ctl: Controller, project: str) -> dict:
    """What the live policy rules read. Secret values stay here: only findings and key names are returned."""
    facts = production_facts(ctl, project)
    envs, services, isolation, secrets_by_env = [], [], [], {}
    production_row = None
    with ctl.store.session() as s:
        p = ctl.store.project(s, project)
        repo = p.repo_path
        rows = s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)).all()
        for env in rows:
            latest = s.scalar(select(m.Deployment).where(m.Deployment.environment_id == env.id)
                              .order_by(m.Deployment.created_at.desc()))
            current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            envs.append({"name": env.name, "production": env.production, "ephemeral": env.ephemeral,
                         "state": env.state, "branch": env.branch, "id": env.id,
                         "latest_status": latest.status if latest else None, "latest_id": latest.id if latest else "",
                         "latest_error": latest.error if latest else None,
                         "snapshot": current.variables_json if current is not None else None,
                         "commit": current.commit_sha if current is not None else None})
        persistent_heads = [e["branch"] for e in envs if not e["ephemeral"] and e["branch"]]
        closed_previews = set(s.scalars(select(m.Preview.environment).where(  # pull requests known to be closed
            m.Preview.project_id == p.id, m.Preview.open.is_(False))))
        for e in envs:
            if e["production"] and e["commit"] and e["snapshot"]:
                release_dir = s.get(m.Deployment, s.get(m.Environment, e["id"]).current_deployment_id).release_dir
                production_row = (e, release_dir)
    for e in envs:
        _, secrets = ctl.data.stored_variables(e["id"])
        secrets_by_env[e["name"]] = secrets
        for name, space in ctl.data.service_variables(e["id"]).items():
            for key in ("DATABASE_URL", "REDIS_URL"):
                address = policy.postgres_address(space.get(key, "")) or policy.redis_address(space.get(key, ""))
                if address:
                    kind = "database" if key == "DATABASE_URL" else "Redis"
                    services.append({"environment": e["name"], "kind": kind, "location": ":".join(map(str, address))})
        if not e["production"] and facts is not None and e["snapshot"]:
            values = json.loads(ctl.data.box.decrypt(e["snapshot"]))
            isolation += policy.isolation_findings(e["name"], values, facts)
        if e["ephemeral"]:
            e["merged"] = e["name"] in closed_previews or bool(
                e["branch"] and any(_merged(repo, e["branch"], head) for head in persistent_heads))
    out = {
        "environments": [{k: v for k, v in e.items() if k not in ("snapshot", "id")} for e in envs],
        "services": services,
        "isolation": isolation,
        "same_secrets": policy.same_secrets(secrets_by_env),
        "production_commit": None,
    }
    if production_row is not None:
        e, release_dir = production_row
        gates = ctl.promotions.gate_spec(project, e["name"], load_project(Path(release_dir))) if release_dir else None
        if gates is not None and gates.source:
            with ctl.store.session() as s:
                ran = e["commit"] in _successes(s, ctl.store.project(s, project), gates.source)
            out["production_commit"] = {"environment": e["name"], "commit": e["commit"], "source": gates.source,
                                        "ran_in_source": ran}
    return out


def _merged(repo: str, branch: str, into: str) -> bool:
    """Whether `branch` has commits of its own and they are all contained in `into` (a branch just created from
    `into`, still at its head, is not merged)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True, text=True, timeout=30)

    try:
        heads = git("rev-parse", f"refs/heads/{branch}", f"refs/heads/{into}").stdout.split()
        if len(heads) != 2 or heads[0] == heads[1]:
            return False
        return git("merge-base", "--is-ancestor", heads[0], heads[1]).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
