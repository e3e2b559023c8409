"""Promotions: the exact release running in SOURCE deployed to TARGET, behind the gates TARGET's spec declares.

States: PLANNED (plan shown, waiting for `--confirm PROMOTE`) → PENDING_APPROVAL (confirmed, approvals short)
→ WAITING (approved, held by the waitTimer until `start_after`) → PROMOTING (TARGET's deployment running) →
VERIFYING (smoke tests against TARGET) → SUCCESS; or FAILED (a gate, the deploy, or verification — then TARGET is
rolled back) / CANCELLED (the confirmation did not match, or someone cancelled it while open).
Rows live in SQLite, so open promotions and their approvals survive a restart. Who may approve and what counts
is decided in `promotion.py` (pure); the approver is always the authenticated Actor of the request.

A WAITING promotion starts by itself: `run_forever` (a thread of the controller) asks the store every second for
WAITING rows whose `start_after` has passed — level-triggered, so a restart or a missed tick only delays the start
to the next check — and each start re-checks every gate (`_proceed`) with the source's smoke tests run again.

Also here: the two checks the ordinary deploy path makes with the same rules — a commit must have succeeded in
the source environment first (`requireStaging`), and a non-production environment must not reach production's
data (the isolation guard).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import branch_follow, names, verification
from .. import promotion as pm
from ..access import Actor
from ..backends.ports import Placement, RuntimePort
from ..build import release
from ..errors import BadInput, BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import load_project
from ..spec.model import EnvironmentConfig, PromotionSpec
from ..store import models as m
from ..store.db import Store
from ..triggers import gitrefs
from ..triggers.gitremote import commit_log
from ..variables import resolve
from . import git_follow, guards
from .dataplane import DataPlane
from .deployer import Deployer
from .environments import Environments
from .guards import Guards
from .replicas import PORT_PLACEHOLDER, base_env
from .routes import Routes
from .snapshot import web_of

log = logging.getLogger("branchyard.promotions")

VERIFIER = "post-deploy verification"  # the actor of automatic rollbacks
WAIT_TIMER = "wait timer"  # the actor of a start when the waitTimer ends
POLL = 0.2
DUE_EVERY = 1.0  # seconds between checks for WAITING promotions whose timer ended


class Promotions:
    """Plans, confirmations, approvals and the promotion driver of one controller."""

    def __init__(self, settings: Settings, store: Store, *, runtime: RuntimePort, data: DataPlane, deployer: Deployer,
                 environments: Environments, guards: Guards, routes: Routes) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.data = data
        self.deployer = deployer
        self.environments = environments
        self.guards = guards
        self.routes = routes
        self._guard = threading.Lock()  # one state change of a promotion at a time
        self._starting: set[str] = set()  # WAITING promotions whose start runs in a thread now
        self._starting_lock = threading.Lock()

    # --- reading -------------------------------------------------------------------------------------

    def get(self, promotion_id: str) -> dict:
        with self.store.session() as s:
            row = self._find(s, promotion_id)
            out = self._dict(s, row)
            if out["git"] is None and row.state == m.PROMOTION_SUCCESS:
                out["git"] = _branch_already_there(s, self.store, row)
            return out

    def approval_refusal(self, promotion_id: str, who: Actor) -> str | None:
        """Why `who`'s approval of this promotion would not count (preventSelfReview, reviewers), None when it would:
        the same rule `approve` applies (`promotion.refusal`), asked without approving (the dashboard's button)."""
        with self.store.session() as s:
            row = self._find(s, promotion_id)
            project, target, source_dep_id = row.project, row.target, row.source_deployment_id
            _, promoters, _ = _who(s, row)
        return pm.refusal(self._gate_spec(project, target, source_dep_id), who.name, who.user_id, promoters)

    def list(self, project: str, limit: int = 50) -> list[dict]:
        with self.store.session() as s:
            self.store.project(s, project)
            rows = s.scalars(select(m.Promotion).where(m.Promotion.project == project)
                             .order_by(m.Promotion.created_at.desc()).limit(limit)).all()
            return [self._dict(s, r) for r in rows]

    def _find(self, s: Session, promotion_id: str) -> m.Promotion:
        rows = []
        if len(promotion_id) >= 6:
            rows = s.scalars(select(m.Promotion).where(m.Promotion.id.startswith(promotion_id))).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise NotFound(f"promotion id {promotion_id!r} is ambiguous; give more characters")
        raise NotFound(f"unknown promotion {promotion_id!r} (see `branchyard events`)")

    def _dict(self, s: Session, p: m.Promotion) -> dict[str, Any]:
        approvals = _approvals(s, p.id)
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
            "requested_by_id": p.requested_by_id,
            "confirmed_by": p.confirmed_by,
            "confirmed_at": pm.iso(p.confirmed_at),
            "approvers": [a.name for a in approvals],  # everyone who approved; the approvals gate says who counts
            "approvals": [{"name": a.name, "user_id": a.user_id, "at": pm.iso(a.at)} for a in approvals],
            "start_after": pm.iso(p.start_after),
            "git": _git_note(s, p),  # after SUCCESS: the production branch moved, or has diverged (controller/git_follow.py)
            "error": p.error,
            "plan": json.loads(p.plan_json),
            "created_at": p.created_at.isoformat() + "Z",
            "finished_at": p.finished_at.isoformat() + "Z" if p.finished_at else None,
        }

    # --- plan ----------------------------------------------------------------------------------------

    def create(self, project: str, source: str, target: str, actor: Actor) -> dict:
        """Plan a promotion (running its gates now) and record it; reuses the open one for the same release."""
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
        gate_spec = self.guards.gate_spec(project, target, load_project(release_dir))
        pm.check_route(source, target, source_production=source_production, target_production=target_production,
                       spec=gate_spec)
        with self._guard:
            with self.store.session() as s:
                existing = s.scalar(select(m.Promotion).where(
                    m.Promotion.project == project, m.Promotion.target == target,
                    m.Promotion.source_deployment_id == source_dep_id, m.Promotion.state.in_(m.PROMOTION_OPEN)))
                existing_id = existing.id if existing else None
                facts = _who(s, existing) if existing is not None else (
                    (), pm.Promoters(actor.name, actor.user_id), None)
            plan = self._plan(project, source, target, gate_spec, facts, run_smoke=True)
            with self.store.session() as s:
                if existing_id is not None:
                    row = s.get(m.Promotion, existing_id)
                    row.plan_json = json.dumps(plan.to_dict())
                    self.store.record(s, project, "promotion.planned", f"promotion {row.id[:8]} {source} → {target} "
                                      f"re-planned ({plan.commit[:12]})", environment=target, actor=actor)
                else:
                    row = m.Promotion(project=project, source=source, target=target, source_deployment_id=source_dep_id,
                                      commit_sha=plan.commit, previous_deployment_id=None, requested_by=actor.name,
                                      requested_by_id=actor.user_id, plan_json=json.dumps(plan.to_dict()))
                    s.add(row)
                    s.flush()
                    self.store.record(s, project, "promotion.planned", f"promotion {row.id[:8]} {source} → {target} of "
                                      f"{plan.commit[:12]} planned", environment=target, actor=actor)
                if plan.blocking:
                    self._end(s, row, m.PROMOTION_FAILED, _refusal(plan), kind="promotion.refused", actor=actor)
                return self._dict(s, row)

    def _plan(self, project: str, source: str, target: str, spec: PromotionSpec | None, facts: Who, *,
              run_smoke: bool, previous_smoke: pm.SmokeResult | None = None) -> pm.Plan:
        """Observe both environments and compute the plan (gates included)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            src_env, dst_env = self.store.environment(s, p, source), self.store.environment(s, p, target)
            src_dep = s.get(m.Deployment, src_env.current_deployment_id)
            dst_dep = self.store.current_deployment(s, dst_env)
            source_facts = _facts(src_dep)
            recorded = _recorded_tests(src_dep)
            target_facts = _facts(dst_dep) if dst_dep is not None else None
            before = json.loads(self.data.box.decrypt(dst_dep.variables_json)) if dst_dep and dst_dep.variables_json else {}
            release_dir, repo = Path(src_dep.release_dir), p.repo_path
            source_url = self.routes.url(p, src_env)
            dst_env_id, production, override = dst_env.id, dst_env.production, dst_env.replicas_override
            successes = frozenset() if spec is None or spec.source is None else guards.successes(s, p, spec.source)
        cfg = load_project(release_dir).environment(target)
        raw, namespaces = self.data.layered_variables(dst_env_id, cfg)
        pending = {svc.name: "not provisioned yet" for svc in (cfg.postgres, cfg.redis)
                   if svc is not None and svc.name not in namespaces}
        after = resolve(raw, namespaces=namespaces, pending_namespaces=pending, port=PORT_PLACEHOLDER).values
        smoke = previous_smoke
        if run_smoke and spec is not None and spec.smoke_command and recorded is not None:
            smoke = recorded  # the source's post-deploy tests already ran on this very release: their record counts
        elif run_smoke and spec is not None and spec.smoke_command:
            smoke = run_smoke_command(self.runtime, spec.smoke_command, url=source_url, environment=source,
                                      release_dir=release_dir, cfg_root=cfg.web.root_dir, timeout=spec.smoke_timeout,
                                      placement=_check_placement(project, source, cfg))
        observed = pm.Observed(
            source=source, target=target, source_deployment=source_facts,
            source_health=self._health(project, source), target_deployment=target_facts,
            target_config_after=cfg.to_dict(), variables_before=before, variables_after=after,
            commits=commit_log(Path(repo), target_facts.commit if target_facts else None, source_facts.commit),
            source_env_successes=successes, approvals=facts[0], promoters=facts[1], confirmed_at=facts[2],
            now=m.utcnow(), smoke=smoke,
        )
        return pm.plan(observed, spec, target_production=production, mask=self.data.redactor(dst_env_id),
                       replicas_override=override)

    def _health(self, project: str, env_name: str) -> tuple[bool, str]:
        """Whether every replica of the environment's current deployment passes its health check right now."""
        info = self.environments.info(project, env_name)
        path = _health_path(self, project, env_name) or "/"
        if "pods" in info:  # a cluster (issue 19): its web pods, ready as their readiness probe (GET path) judges
            web = [pod for pod in info["pods"] if pod["service"] == "web"]
            ready = [pod for pod in web if pod["ready"]]
            if not web:
                return False, "failing: no web pod running"
            detail = f"{len(ready)}/{len(web)} web pods ready (readiness probe: GET {path})"
            return len(ready) == len(web), ("passing: " if len(ready) == len(web) else "failing: ") + detail
        replicas = info["replicas"]
        healthy = [r for r in replicas if r["alive"] and r["health"] == "healthy"]
        if not replicas:
            return False, "failing: no replica running"
        detail = f"{len(healthy)}/{len(replicas)} replicas healthy (GET {path})"
        return len(healthy) == len(replicas), ("passing: " if len(healthy) == len(replicas) else "failing: ") + detail

    # --- confirm, approve, cancel --------------------------------------------------------------------

    def confirm(self, promotion_id: str, word: str, actor: Actor) -> dict:
        """The typed confirmation: PROMOTE proceeds (or waits for approvals); anything else cancels the promotion."""
        with self._guard:
            with self.store.session() as s:
                row = self._find(s, promotion_id)
                if row.state in m.PROMOTION_FINISHED or row.state in m.PROMOTION_ACTIVE:
                    raise Conflict(f"promotion {row.id[:8]} is {row.state}; plan a new one with `branchyard promote "
                                   f"{row.source} {row.target}`")
                pid, matched = row.id, word == pm.CONFIRM_WORD
                if matched:
                    row.confirmed_by, row.confirmed_at = actor.name, m.utcnow()
                    self.store.record(s, row.project, "promotion.confirmed", f"promotion {pid[:8]} confirmed",
                                      environment=row.target, actor=actor)
                else:  # committed before the error is raised: the cancellation is recorded
                    self._end(s, row, m.PROMOTION_CANCELLED, f"confirmation did not match {pm.CONFIRM_WORD!r}",
                              kind="promotion.cancelled", actor=actor)
            if not matched:
                raise BadInput(f"confirmation did not match {pm.CONFIRM_WORD!r}; promotion {pid[:8]} cancelled, "
                               "nothing deployed")
            return self._proceed(pid, actor, rerun_smoke=False)

    def approve(self, promotion_id: str, approver: Actor) -> dict:
        """One approval by the authenticated user, if the target's rules let it count (else Forbidden, nothing
        recorded); the approval that completes the count lets a confirmed promotion go (or starts its waitTimer)."""
        name = approver.name
        with self.store.session() as s:
            row = self._find(s, promotion_id)
            pid, project, target, source_dep_id = row.id, row.project, row.target, row.source_deployment_id
        spec = self._gate_spec(project, target, source_dep_id)
        with self._guard:
            with self.store.session() as s:
                row = s.get(m.Promotion, pid)
                if row.state not in m.PROMOTION_OPEN:
                    raise Conflict(f"promotion {row.id[:8]} is {row.state}: only open promotions (PLANNED, "
                                   "PENDING_APPROVAL, WAITING) take approvals")
                state = row.state
                approvals, promoters, _ = _who(s, row)
                pm.check_approver(spec, name, approver.user_id, promoters, promotion=pid[:8])
                if any(a.name == name or (a.user_id is not None and a.user_id == approver.user_id) for a in approvals):
                    note = f"{name} already approved promotion {pid[:8]}; counted once"
                    self.store.record(s, row.project, "promotion.approved", note, environment=row.target, actor=approver)
                else:
                    s.add(m.Approval(promotion_id=pid, approver=name, user_id=approver.user_id))
                    s.flush()
                    approvals = _approvals(s, pid)
                    gate = pm.approvals_gate(approvals, spec or PromotionSpec(), promoters)
                    self.store.record(s, row.project, "promotion.approved", f"{name} approved promotion {pid[:8]}: "
                                      f"{gate.detail}", environment=row.target, actor=approver)
                if spec is not None and spec.approvals > 0:
                    # the stored plan shows the count as of now, also while PLANNED (no re-plan before confirmation)
                    _replace_gate(row, pm.approvals_gate(approvals, spec, promoters))
            promo = self._proceed(pid, approver, rerun_smoke=True) if state == m.PROMOTION_PENDING_APPROVAL else self.get(pid)
        return promo | {"approved_by": name}

    def cancel(self, promotion_id: str, actor: Actor, reason: str = "cancelled") -> dict:
        with self._guard, self.store.session() as s:
            row = self._find(s, promotion_id)
            if row.state not in m.PROMOTION_OPEN:
                raise Conflict(f"promotion {row.id[:8]} is {row.state}; only open promotions can be cancelled")
            self._end(s, row, m.PROMOTION_CANCELLED, reason[:200], kind="promotion.cancelled", actor=actor)
            return self._dict(s, row)

    # --- proceeding ----------------------------------------------------------------------------------

    def _proceed(self, pid: str, actor: Actor | str, *, rerun_smoke: bool) -> dict:
        """Re-check the gates against the current state; refuse, wait for approvals or the timer, or start."""
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            project, source, target, source_dep_id = row.project, row.source, row.target, row.source_deployment_id
            facts = _who(s, row)
            env = self.store.environment(s, self.store.project(s, project), source)
            moved = env.current_deployment_id != source_dep_id
            old_plan = json.loads(row.plan_json)
        if moved:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED,
                          f"{source} no longer runs deployment {source_dep_id[:8]}; plan a new promotion",
                          kind="promotion.refused", actor=actor)
            return self.get(pid)
        spec = self._gate_spec(project, target, source_dep_id)
        previous = _smoke_from(old_plan)
        plan = self._plan(project, source, target, spec, facts, run_smoke=previous is None, previous_smoke=previous)
        if plan.next_step == pm.START and rerun_smoke and previous is not None and spec is not None and spec.smoke_command:
            # time passed since the plan (approvals, the timer): the source's smoke tests run again before deploying
            plan = self._plan(project, source, target, spec, facts, run_smoke=True)
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            row.plan_json = json.dumps(plan.to_dict())
            moved_on = row.start_after != plan.start_after  # a new confirmation moves the timer: said again
            row.start_after = plan.start_after
            step = plan.next_step
            if step == pm.REFUSE:
                self._end(s, row, m.PROMOTION_FAILED, _refusal(plan), kind="promotion.refused", actor=actor)
                return self._dict(s, row)
            if step == pm.AWAIT_APPROVALS:
                row.state = m.PROMOTION_PENDING_APPROVAL
                gate = next(g for g in plan.gates if g.id == pm.GATE_APPROVALS)
                self.store.record(s, project, "promotion.pending_approval", f"promotion {pid[:8]} waits: {gate.detail}",
                                  environment=target, actor=actor)
                return self._dict(s, row)
            if step == pm.WAIT:
                if row.state != m.PROMOTION_WAITING or moved_on:  # said once per start_after
                    row.state = m.PROMOTION_WAITING
                    gate = next(g for g in plan.gates if g.id == pm.GATE_WAIT_TIMER)
                    self.store.record(s, project, "promotion.waiting", f"promotion {pid[:8]} {source} → {target} "
                                      f"approved; {gate.detail}", environment=target, actor=actor)
                return self._dict(s, row)
        self._start(pid, actor)
        return self.get(pid)

    def _gate_spec(self, project: str, target: str, source_dep_id: str) -> PromotionSpec | None:
        """TARGET's promotion rules (from the release it runs; the promoted one's when it runs nothing yet)."""
        with self.store.session() as s:
            release_dir = Path(s.get(m.Deployment, source_dep_id).release_dir or "")
        return self.guards.gate_spec(project, target, load_project(release_dir))

    # --- the wait timer ----------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Start WAITING promotions when their timer ends, until `stop`."""
        while not stop.wait(DUE_EVERY):
            try:
                self.start_due()
            except Exception:  # keep the loop alive; the next check starts from the store again
                log.exception("checking promotions due to start failed")

    def start_due(self) -> list[str]:
        """Start each WAITING promotion whose start_after has passed, each in a thread of its own (the start re-runs
        the smoke tests). One query on a small table, so checking every second costs next to nothing."""
        now = m.utcnow()
        with self.store.session() as s:
            due = list(s.scalars(select(m.Promotion.id).where(m.Promotion.state == m.PROMOTION_WAITING,
                                                              m.Promotion.start_after <= now)))
        started = []
        for pid in due:
            with self._starting_lock:
                if pid in self._starting:
                    continue
                self._starting.add(pid)
            started.append(pid)
            threading.Thread(target=self._start_due, args=(pid,), name=f"promote-due-{pid[:8]}", daemon=True).start()
        return started

    def _start_due(self, pid: str) -> None:
        try:
            with self._guard:
                with self.store.session() as s:
                    row = s.get(m.Promotion, pid)
                    if row.state != m.PROMOTION_WAITING:  # cancelled or started meanwhile
                        return
                self._proceed(pid, WAIT_TIMER, rerun_smoke=True)
        except Conflict as err:  # TARGET busy with another deployment: still WAITING, the next check tries again
            log.info("promotion %s due but not started yet: %s", pid[:8], err)
        except Exception as err:  # a bug must end the promotion, not retry it every second
            log.exception("promotion %s could not start", pid)
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_FAILED, f"internal error: {type(err).__name__}: {err}",
                          kind="promotion.failed", actor=WAIT_TIMER)
        finally:
            with self._starting_lock:
                self._starting.discard(pid)

    def _start(self, pid: str, actor: Actor | str) -> None:
        """Copy the source's release (no rebuild) into a new deployment of the target and run it; then verify."""
        with self.store.session() as s:
            row = s.get(m.Promotion, pid)
            project, target, source_dep_id = row.project, row.target, row.source_deployment_id

        def recorded(s: Session, dep: m.Deployment) -> None:
            row = s.get(m.Promotion, pid)
            env = s.get(m.Environment, dep.environment_id)
            row.previous_deployment_id = env.current_deployment_id
            row.target_deployment_id, row.state = dep.id, m.PROMOTION_PROMOTING
            self.store.record(s, project, "promotion.started", f"promotion {pid[:8]}: {row.source} → {target}, "
                              f"{dep.commit_sha[:12]} (release of deployment {source_dep_id[:8]}, not rebuilt)",
                              environment=target, deployment_id=dep.id, actor=actor)

        who = actor if isinstance(actor, Actor) else Actor(actor)
        self.deployer.queue_promotion(project, target, source_dep_id, on_recorded=recorded, actor=who)
        self._drive_in_background(pid)

    def _drive_in_background(self, pid: str) -> None:
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
            url = self.routes.url(p, env)
            release_dir = Path(s.get(m.Deployment, dep_id).release_dir)
        gates = self.guards.gate_spec(project, target, load_project(release_dir))
        if gates is None or not gates.smoke_command:
            with self.store.session() as s:
                self._end(s, s.get(m.Promotion, pid), m.PROMOTION_SUCCESS, None, kind="promotion.succeeded",
                          actor=VERIFIER, note=f"{target} runs {dep_id[:8]} (no smokeCommand to verify with)")
            return
        cfg = load_project(release_dir).environment(target)
        smoke = run_smoke_command(self.runtime, gates.smoke_command, url=url, environment=target, release_dir=release_dir,
                                  cfg_root=cfg.web.root_dir, timeout=gates.smoke_timeout,
                                  placement=_check_placement(project, target, cfg))
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
                return self.deployer.redeploy(project, target, previous, trigger="rollback")
            except Conflict:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.5)  # the promoted deployment's worker is letting go of the environment

    def _wait(self, dep_id: str, timeout: float = 3600) -> tuple[str, str | None]:
        return self.deployer.wait(dep_id, timeout=timeout)

    def _end(self, s: Session, row: m.Promotion, state: str, error: str | None, *, kind: str, actor: Actor | str,
             note: str | None = None) -> None:
        row.state, row.error, row.finished_at = state, error, m.utcnow()
        message = f"promotion {row.id[:8]} {row.source} → {row.target} {state}" + (f": {error or note}" if error or note else "")
        self.store.record(s, row.project, kind, message, environment=row.target, deployment_id=row.target_deployment_id,
                          actor=actor)

    def recover(self) -> None:
        """After a restart: open promotions stay open (approvals kept; a WAITING one starts at its next check once
        due, `run_forever`); one cut off while PROMOTING or VERIFYING is driven again — the deployer resumes its
        deployment, then the smoke tests run against the target."""
        with self.store.session() as s:
            active = list(s.scalars(select(m.Promotion.id).where(m.Promotion.state.in_(m.PROMOTION_ACTIVE))))
            for pid in active:
                row = s.get(m.Promotion, pid)
                self.store.record(s, row.project, "promotion.resumed", f"promotion {pid[:8]} {row.source} → {row.target} "
                                  f"resumed after a control plane restart ({row.state})", environment=row.target,
                                  deployment_id=row.target_deployment_id, actor="system")
        for pid in active:
            self._drive_in_background(pid)


# --- smoke tests ---------------------------------------------------------------------------------------


def _check_placement(project: str, environment: str, cfg: EnvironmentConfig) -> Placement:
    """A smoke test runs within the web service's limits (issue 17), as the `check` service of the environment."""
    return Placement(project=project, environment=environment, service="check", memory_mb=cfg.web.memory_mb,
                     cpu=cfg.web.cpu)


def run_smoke_command(runtime: RuntimePort, command: str, *, url: str, environment: str, release_dir: Path,
                      cfg_root: str, timeout: int, extra_env: dict[str, str] | None = None,
                      placement: Placement | None = None) -> pm.SmokeResult:
    """Run the smokeCommand against `url` (BRANCHYARD_TARGET_URL, `--environment NAME`), killed after `timeout`;
    `placement`: the environment's limits (a cgroup of its own where the runtime enforces them)."""
    meta = release.read_release_meta(release_dir) or {}
    venv = Path(str(meta["venv"])) if meta.get("venv") else None
    cwd = release_dir if cfg_root in ("", ".") else names.safe_join(release_dir, cfg_root)
    base = base_env(venv)
    if venv is None:  # a release without a virtualenv has nothing of its own to run with: the server's PATH
        base["PATH"] = os.environ.get("PATH", base["PATH"])
    argv, env = pm.smoke_argv_env(command, url=url, environment=environment, base_env=base | (extra_env or {}))
    started = time.monotonic()
    try:
        code, output = runtime.run_check(argv, cwd=cwd, env=env, timeout=timeout, placement=placement)
    except BranchyardError as err:
        return pm.SmokeResult(False, f"`{command}` could not start: {err}")
    if code is None:
        return pm.SmokeResult(False, f"`{command}` against {url} timed out after {timeout}s (killed)")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1][:200] if lines else "no output"
    took = time.monotonic() - started
    if code == 0:
        return pm.SmokeResult(True, f"`{command}` against {url} passed in {took:.1f}s: {last}")
    return pm.SmokeResult(False, f"`{command}` against {url} exited with code {code}: {last}")


# --- helpers -----------------------------------------------------------------------------------------------

Who = tuple[tuple[pm.ApprovalFact, ...], pm.Promoters, dt.datetime | None]  # approvals, promoters, confirmed_at


def _approvals(s: Session, pid: str) -> tuple[pm.ApprovalFact, ...]:
    rows = s.scalars(select(m.Approval).where(m.Approval.promotion_id == pid).order_by(m.Approval.id))
    return tuple(pm.ApprovalFact(a.approver, a.user_id, a.at) for a in rows)


def _who(s: Session, row: m.Promotion) -> Who:
    """What the approval rules read from a stored promotion."""
    return (_approvals(s, row.id), pm.Promoters(row.requested_by, row.requested_by_id, row.confirmed_by),
            row.confirmed_at)


def _replace_gate(row: m.Promotion, gate: pm.Gate) -> None:
    plan = json.loads(row.plan_json)
    plan["gates"] = [gate.to_dict() if g["id"] == gate.id else g for g in plan.get("gates", [])]
    row.plan_json = json.dumps(plan)


def _facts(dep: m.Deployment) -> pm.DeploymentFacts:
    return pm.DeploymentFacts(id=dep.id, status=dep.status, commit=dep.commit_sha,
                              config=json.loads(dep.config_json) if dep.config_json else None)


def _health_path(self: Promotions, project: str, env_name: str) -> str | None:
    with self.store.session() as s:
        env = self.store.environment(s, self.store.project(s, project), env_name)
        dep = self.store.current_deployment(s, env)
        web = web_of(dep.config_json) if dep is not None else None
        return web.healthcheck_path if web is not None else None


def _git_note(s: Session, p: m.Promotion) -> dict[str, str] | None:
    """What happened to the production branch once this promotion succeeded (None until GitFollow has acted)."""
    if p.state != m.PROMOTION_SUCCESS or p.target_deployment_id is None:
        return None
    event = s.scalar(select(m.Event).where(m.Event.deployment_id == p.target_deployment_id,
                                           m.Event.kind.in_((git_follow.MOVED, git_follow.DIVERGED)))
                     .order_by(m.Event.id.desc()))
    return None if event is None else {"kind": event.kind, "message": event.message}


def _branch_already_there(s: Session, store: Store, p: m.Promotion) -> dict[str, str] | None:
    """A succeeded promotion with no git event: when production's branch already contains the commit (nothing to
    move, so GitFollow records nothing), say so; None while a move may still come. One git call: `get` only."""
    project = store.project(s, p.project)
    env = store.find_environment(s, project, p.target)
    if env is None or not env.branch:
        return None
    relation, _ = gitrefs.relation(Path(project.repo_path), env.branch, p.commit_sha)
    if relation != branch_follow.CONTAINS:
        return None
    return {"kind": "git.branch_current", "message": f"{env.branch} already contains {p.commit_sha[:12]}"}


def _recorded_tests(dep: m.Deployment) -> pm.SmokeResult | None:
    """The source deployment's post-deploy test result ([environments.<source>.tests]), when one finished."""
    if dep.tests_status not in (verification.PASSED, verification.FAILED):
        return None
    return pm.SmokeResult(dep.tests_status == verification.PASSED,
                          f"post-deploy tests of deployment {dep.id[:8]} {dep.tests_status}: {dep.tests_detail or ''}".strip())


def _smoke_from(plan: dict) -> pm.SmokeResult | None:
    for gate in plan.get("gates", []):
        if gate["id"] == pm.GATE_SMOKE:
            return pm.SmokeResult(gate["passed"], gate["detail"])
    return None


def _refusal(plan: pm.Plan) -> str:
    return "; ".join(f"gate {g.id} failed: {g.detail}" for g in plan.blocking)



