"""Deployments: a trigger records what an environment should run; one loop reaches it.

A trigger (git push, a GitHub delivery, `redeploy`, `rollback`, `up`, `variables set`, `promote`, a preview
admitted) calls one of the `queue_*`/`redeploy` methods: it records a deployment, points the environment's
*target* at it (newest wins) and calls `converge` for that environment. `converge` — also run by the reconciler
on every pass, and on start — asks the pure planner `deploy_plan.plan_deployments` what the environment needs
and applies the answer: start a worker, schedule a retry, skip what is superseded, give up after too many tries.

A worker runs one attempt (attempt.py) under the environment's lock; every failure ends on the deployment's
status. On start, `recover` stops what a killed predecessor left half-done and marks the deployments it cut off,
so that the planner resumes them.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import deploy_plan as dp
from .. import names
from ..access import SYSTEM, Actor
from ..backends.ports import EnvironmentsPort, RuntimePort, TaskLedger
from ..build import release
from ..errors import BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import load_project
from ..spec.model import EnvironmentDecl, ProjectSpec
from ..store import models as m
from ..store.db import Store
from ..variables import resolve
from .attempt import Attempts, DeployLog, Superseded
from .backups import Backups
from .dataplane import DataPlane
from .guards import Guards
from .locks import EnvLocks, Held
from .replicas import PORT_PLACEHOLDER, Replicas
from .routes import Routes

log = logging.getLogger("branchyard.deployer")

LOCK_WAIT = 15.0  # seconds an operation waits for the reconciler to finish with an environment
WAIT_SAFETY_NET = 1.0  # seconds between re-reads of a deployment's status while waiting for it to finish


class Deployer:
    def __init__(self, settings: Settings, store: Store, *, data: DataPlane, replicas: Replicas, backups: Backups,
                 routes: Routes, guards: Guards, locks: EnvLocks, runtime: RuntimePort, tasks: TaskLedger,
                 environments: EnvironmentsPort | None = None) -> None:
        self.settings = settings
        self.store = store
        self.data = data
        self.routes = routes
        self.guards = guards
        self.locks = locks
        self.tasks = tasks
        self.attempts = Attempts(settings, store, data=data, replicas=replicas, backups=backups, routes=routes,
                                 guards=guards, runtime=runtime, tasks=tasks, on_finished=self._notify,
                                 environments=environments)
        # Lock order: the store's write lock may be taken while holding _plan_lock, never the other way round;
        # _running_lock and _finished are leaves (nothing else is acquired while holding them).
        self._running: set[str] = set()  # deployments a worker of this control plane has now
        self._running_lock = threading.Lock()
        self._plan_lock = threading.Lock()  # one planner pass at a time: a deployment is never started twice
        self._finished = threading.Condition()  # notified whenever a deployment finishes
        self._finishes = 0  # how many times it was notified (a waiter never misses one between look and wait)

    # --- observing ---------------------------------------------------------------------------------

    def running(self) -> frozenset[str]:
        """Deployments being worked on now (their replicas are theirs, not orphans)."""
        with self._running_lock:
            return frozenset(self._running)

    def wait(self, dep_id: str, *, timeout: float = 3600, stop: threading.Event | None = None) -> tuple[str, str | None]:
        """Block until the deployment has finished (status, error); woken when it does, not by polling."""
        deadline = time.monotonic() + timeout
        while True:
            with self._finished:
                seen = self._finishes
            with self.store.session() as s:  # never while holding _finished (see the lock order above)
                dep = s.get(m.Deployment, dep_id)
                if dep is None:
                    return m.SKIPPED, "the environment was deleted"
                status, error = dep.status, dep.error
            if status in m.TERMINAL and dep_id not in self.running():
                return status, error
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return m.FAILED, "timed out waiting for the deployment"
            with self._finished:
                if self._finishes == seen:
                    self._finished.wait(min(left, WAIT_SAFETY_NET))

    def exclusive(self, project: str, env_name: str) -> Held:
        """The environment's lock, acquired. Conflict at once while a deployment of it is being worked on;
        otherwise wait a little (the reconciler holds it briefly on each pass) before giving up."""
        busy = f"environment {env_name!r} is busy with another deployment or operation; try again when it ends"
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            unfinished = s.scalars(select(m.Deployment.id).where(m.Deployment.environment_id == env.id,
                                                                 m.Deployment.status.in_(m.IN_PROGRESS))).all()
        if any(dep_id in self.running() for dep_id in unfinished):
            raise Conflict(busy)
        lock = self.locks.lock(project, env_name)
        if not lock.acquire(timeout=LOCK_WAIT):
            raise Conflict(busy)
        return Held(lock)

    # --- triggers: record what should run ----------------------------------------------------------

    def new_deployment(self, s: Session, p: m.Project, env: m.Environment, *, sha: str, branch: str | None,
                       trigger: str, work: str, source: m.Deployment | None = None,
                       actor: Actor = SYSTEM) -> m.Deployment:
        """Record a deployment (asked for by `actor`) and make it the environment's target unless a newer one is."""
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha=sha, branch=branch, trigger=trigger,
                           work=work, attempts=0, actor=actor.name)
        if source is not None:  # a redeploy: the same release and snapshot, no rebuild
            dep.release_dir, dep.config_json, dep.variables_json = source.release_dir, source.config_json, source.variables_json
        s.add(dep)
        s.flush()
        if work != m.WORK_ROLLOUT:
            dep.release_dir = str(names.safe_join(self.settings.releases_dir, p.name, dep.id))
        dep.log_path = str(names.safe_join(self.settings.logs_dir, p.name, env.name, dep.id, "deploy.log"))
        target = s.get(m.Deployment, env.target_deployment_id) if env.target_deployment_id else None
        if target is None or target.created_at <= dep.created_at:  # newest wins, whichever commits first
            env.target_deployment_id = dep.id
        what = f"{trigger} of {sha[:12]}" + (f" ({branch})" if branch else "") + (f" from deployment {source.id}" if source else "")
        self.store.record(s, p.name, "deploy.queued", what, environment=env.name, deployment_id=dep.id, actor=actor)
        DeployLog(Path(dep.log_path))(f"-----> {what} to {p.name}/{env.name} (deployment {dep.id})")
        return dep

    def queue_build(self, project: str, env_name: str, sha: str, branch: str | None, trigger: str, incoming: Path,
                    spec: ProjectSpec, *, actor: Actor = SYSTEM) -> str:
        """Create the environment if the spec declares it, record a build of the exported commit, converge."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name)
            if env is None:
                cfg = spec.environment(env_name)  # NotFound names the declared environments
                env = m.Environment(project_id=p.id, name=env_name, branch=cfg.branch, production=cfg.production,
                                    ephemeral=cfg.ephemeral)
                s.add(env)
                s.flush()
                self.store.record(s, project, "environment.created", f"environment {env_name} created on first push",
                                  environment=env_name, actor=actor)
            dep = self.new_deployment(s, p, env, sha=sha, branch=branch, trigger=trigger, work=m.WORK_BUILD, actor=actor)
            dep_id, release_dir = dep.id, Path(dep.release_dir or "")
            decl = spec.environments.get(env_name)
            _follow_protection(s, self.store, project, env, decl, actor)
            if env.branch_pinned and decl is not None and decl.branch and decl.branch != env.branch:
                note = (f"{env_name} deploys branch {env.branch} (set with `environment add`), not {decl.branch} as the "
                        "project files say; the branch set by the user is kept")
                self.store.record(s, project, "environment.branch_conflict", note, environment=env_name, deployment_id=dep_id)
                DeployLog(Path(dep.log_path or ""))(f"       note: {note}")
            incoming.rename(release_dir)  # inside the transaction: a recorded build always has its files
        self.converge(project, env_name)
        self.routes.sync()  # a new environment answers at once ("no healthy deployment yet"), never 404
        return dep_id

    def queue_promotion(self, project: str, target: str, source_dep_id: str, *,
                        on_recorded: Callable[[Session, m.Deployment], None], actor: Actor = SYSTEM) -> str:
        """A copy of SOURCE's release (the same bytes and virtualenv, no rebuild) as TARGET's next deployment.

        `on_recorded` runs in the deployment's own transaction (the promotion records which deployment it is)."""
        with self.store.session() as s:
            source_release = Path(s.get(m.Deployment, source_dep_id).release_dir or "")
        incoming = names.safe_join(self.settings.releases_dir, project, f".incoming-promote-{source_dep_id}-{time.monotonic_ns()}")
        held = self.exclusive(project, target)
        try:
            shutil.copytree(source_release, incoming, symlinks=True)
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, target)
                src = s.get(m.Deployment, source_dep_id)
                dep = self.new_deployment(s, p, env, sha=src.commit_sha, branch=src.branch, trigger="promote",
                                          work=m.WORK_PROMOTE, actor=actor)
                _follow_protection(s, self.store, project, env, load_project(incoming).environments.get(target), actor)
                on_recorded(s, dep)
                dep_id = dep.id
                incoming.rename(Path(dep.release_dir or ""))
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            held.release()
            raise
        self.converge(project, target, held=held)
        return dep_id

    def redeploy(self, project: str, env_name: str, deployment_id: str, *, trigger: str = "redeploy",
                 resolve_again: bool = False, actor: Actor = SYSTEM) -> str:
        """Bring back a retained deployment's release and variables (no rebuild), health-checked, zero downtime.

        With `resolve_again` the variables are resolved again from the spec and what is set now (`variables set`)."""
        held = self.exclusive(project, env_name)
        try:
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                source = self.store.deployment(s, deployment_id, env)
                if not retained(source):
                    raise NotFound(
                        f"deployment {source.id} can no longer be rolled back to: its release is not retained "
                        f"(branchyard keeps the last {self.settings.releases_retained} per environment)"
                    )
                env_id, release_dir = env.id, Path(source.release_dir or "")
            variables_json = None
            if resolve_again:
                cfg = load_project(release_dir).environment(env_name)
                raw, namespaces = self.data.layered_variables(env_id, cfg)
                values = resolve(raw, namespaces=namespaces, port=PORT_PLACEHOLDER).values  # BadInput before any change
                self.guards.isolation_guard(project, env_name, values, production=cfg.production)
                variables_json = self.data.box.encrypt(json.dumps(values))
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, env_name)
                source = self.store.deployment(s, deployment_id, env)
                dep = self.new_deployment(s, p, env, sha=source.commit_sha, branch=source.branch, trigger=trigger,
                                          work=m.WORK_ROLLOUT, source=source, actor=actor)
                if variables_json is not None:
                    dep.variables_json = variables_json
                dep_id, log_path = dep.id, Path(dep.log_path or "")
            if not resolve_again:
                DeployLog(log_path)("       note: database state is not reverted by a redeploy or rollback")
        except BaseException:
            held.release()
            raise
        self.converge(project, env_name, held=held)
        return dep_id

    def rollback(self, project: str, env_name: str, *, actor: Actor = SYSTEM) -> str:
        """Redeploy the previous successful deployment."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            current = self.store.current_deployment(s, env)
            if current is None:
                raise NotFound(f"environment {env_name!r} has no current deployment to roll back from")
            candidates = s.scalars(
                select(m.Deployment)
                .where(m.Deployment.environment_id == env.id, m.Deployment.status == m.REMOVED,
                       m.Deployment.created_at < current.created_at, m.Deployment.release_dir != current.release_dir)
                .order_by(m.Deployment.created_at.desc())
            ).all()
            target = next((d for d in candidates if retained(d)), None)
            if target is None:
                raise NotFound(f"environment {env_name!r} has no earlier successful deployment still retained")
            target_id = target.id
        return self.redeploy(project, env_name, target_id, trigger="rollback", actor=actor)

    def cancel(self, project: str, env_name: str) -> list[str]:
        """Nothing is wanted of the environment any more (it is being destroyed): its workers stop at their next
        step. The ids still being worked on."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name)
            if env is None:
                return []
            env.target_deployment_id = None
            ids = list(s.scalars(select(m.Deployment.id).where(m.Deployment.environment_id == env.id)))
        running = self.running()
        return [d for d in ids if d in running]

    # --- the loop: plan and apply -------------------------------------------------------------------

    def converge_all(self) -> None:
        """One pass over the environments with unfinished deployments (the reconciler calls this every pass)."""
        with self.store.session() as s:
            envs = s.execute(
                select(m.Project.name, m.Environment.name).join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Deployment, m.Deployment.environment_id == m.Environment.id)
                .where(m.Deployment.status.in_(m.IN_PROGRESS)).distinct()
            ).all()
        for project, env_name in envs:
            try:
                self.converge(project, env_name)
            except BranchyardError as err:
                log.warning("converge %s/%s: %s", project, env_name, err)

    def converge(self, project: str, env_name: str, *, held: Held | None = None) -> None:
        """Plan (pure) and apply for one environment's deployments. `held`: the environment's lock, acquired by the
        caller, handed to the worker of the target (released here if no worker starts)."""
        handed = False
        try:
            with self._plan_lock:
                obs = self._observe(project, env_name)
                if obs is None:
                    return
                for action in dp.plan_deployments(obs, time.time()):
                    log.info("%s/%s: %s", project, env_name, action)
                    if isinstance(action, dp.StartDeployment):
                        mine = held if held is not None and action.deployment_id == obs.target_id and not handed else None
                        handed = handed or mine is not None
                        self._start_worker(project, env_name, action, mine)
                    else:
                        self._settle(project, env_name, action)
        finally:
            if held is not None and not handed:
                held.release()

    def _observe(self, project: str, env_name: str) -> dp.EnvDeployObs | None:
        running = self.running()
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name)
            if env is None:
                return None
            rows = s.scalars(select(m.Deployment).where(m.Deployment.environment_id == env.id,
                                                        m.Deployment.status.in_(m.IN_PROGRESS))
                             .order_by(m.Deployment.created_at)).all()
            unfinished = tuple(dp.DeploymentObs(id=d.id, status=d.status, attempts=d.attempts, running=d.id in running,
                                                retry_at=d.retry_at, interrupted=d.error) for d in rows)
            return dp.EnvDeployObs(environment=env_name, target_id=env.target_deployment_id,
                                   current_id=env.current_deployment_id, unfinished=unfinished)

    def _settle(self, project: str, env_name: str, action: dp.DeployAction) -> None:
        """Apply an action that needs no worker."""
        if isinstance(action, dp.CancelDeployment):
            return  # its worker sees at its next step that it is no longer the target (check_wanted)
        with self.store.session() as s:
            dep = s.get(m.Deployment, action.deployment_id)
            if dep is None or dep.status not in m.IN_PROGRESS:
                return
            out = DeployLog(Path(dep.log_path or ""))
            if isinstance(action, dp.ScheduleRetry):
                dep.retry_at = action.at
                self.store.record(s, project, "deploy.retrying", action.reason, environment=env_name, deployment_id=dep.id)
                out(f"!!! {action.reason}")
                return
            status, kind = (m.SKIPPED, "deploy.skipped") if isinstance(action, dp.SkipDeployment) else (m.FAILED, "deploy.failed")
            dep.status, dep.finished_at, dep.error = status, m.utcnow(), action.reason
            self.store.record(s, project, kind, action.reason, environment=env_name, deployment_id=dep.id)
            out(f"-----> skipped: {action.reason}" if status == m.SKIPPED else f"!!! deployment FAILED: {action.reason}")
        self._notify()
        if status == m.FAILED:
            self.routes.sync()

    def _start_worker(self, project: str, env_name: str, action: dp.StartDeployment, held: Held | None) -> None:
        with self._running_lock:
            self._running.add(action.deployment_id)
        with self.store.session() as s:
            dep = s.get(m.Deployment, action.deployment_id)
            dep.attempts, dep.retry_at = action.attempt, None
            if action.attempt > 1:
                dep.error = None
                self.store.record(s, project, "deploy.resumed", f"attempt {action.attempt}/{dp.MAX_ATTEMPTS}: "
                                  f"{action.reason}", environment=env_name, deployment_id=dep.id)
                DeployLog(Path(dep.log_path or ""))(f"-----> attempt {action.attempt}/{dp.MAX_ATTEMPTS}, {action.reason}")
        threading.Thread(target=self._run, args=(project, env_name, action.deployment_id, held),
                         name=f"deploy-{action.deployment_id[:8]}", daemon=True).start()

    def _notify(self) -> None:
        with self._finished:
            self._finishes += 1
            self._finished.notify_all()

    # --- a worker: one attempt at a deployment -----------------------------------------------------

    def _run(self, project: str, env_name: str, dep_id: str, held: Held | None) -> None:
        """Run one attempt under the environment's lock; every failure ends on the deployment's status."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            out, work = DeployLog(Path(dep.log_path or "")), dep.work
        lock = held.lock if held is not None else self.locks.lock(project, env_name)
        try:
            if held is None:
                lock.acquire()
            try:
                self.attempts.run(work, project, env_name, dep_id, out)
            finally:
                lock.release()
        except Superseded as why:
            out(f"-----> skipped: {why}")
            self.attempts.finish(dep_id, m.SKIPPED, str(why))
            with self.store.session() as s:
                self.store.record(s, project, "deploy.skipped", str(why), environment=env_name, deployment_id=dep_id)
        except BranchyardError as err:
            self._fail(project, env_name, dep_id, str(err), out)
        except Exception as err:  # a bug: record it on the deployment rather than lose it in a thread
            log.exception("deployment %s crashed", dep_id)
            self._fail(project, env_name, dep_id, f"internal error: {type(err).__name__}: {err}", out)
        finally:
            with self._running_lock:
                self._running.discard(dep_id)
            self._notify()

    def _fail(self, project: str, env_name: str, dep_id: str, reason: str, out: Callable[[str], None]) -> None:
        out(f"!!! deployment FAILED: {reason}")
        self.attempts.finish(dep_id, m.FAILED, reason)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.failed", reason, environment=env_name, deployment_id=dep_id)
        self.routes.sync()

    def prune_layers(self) -> list[Path]:
        """Delete the release layers (an app's own install, `<cache>/layers/<deployment>`) that no kept release
        uses and no deployment in progress is making. Listed first: a layer made while this runs is not touched."""
        layers = release.release_layers(self.settings.cache_dir / "layers")
        if not layers:
            return []
        building = self._building()
        in_use = self._release_paths("venv", what="release layers")
        if in_use is None:
            return []
        removed = release.remove_unused_layers(layers, in_use=in_use, building=building)
        for layer in removed:
            log.info("removed release layer %s (no kept release uses it)", layer.name)
        return removed

    def prune_virtualenvs(self) -> list[Path]:
        """Delete the shared virtualenvs (`<cache>/venvs/<dependency hash>`) that no kept release uses, when no
        deployment is in progress (one being built names its virtualenv only in its marker, written last)."""
        venvs = release.shared_virtualenvs(self.settings.cache_dir / "venvs")
        if not venvs:
            return []
        before = self._newest_deployment()
        if before is None or self._building():
            return []
        in_use = self._release_paths("dependencies", "venv", what="shared virtualenvs")
        if in_use is None:
            return []

        def still_idle() -> bool:  # no deployment created since the markers were read, none in progress
            return self._newest_deployment() == before and not self._building()

        removed = release.remove_unused_virtualenvs(venvs, in_use=in_use, still_idle=still_idle)
        for venv in removed:
            log.info("removed shared virtualenv %s (no kept release uses it)", venv.name[:12])
        return removed

    def _newest_deployment(self) -> str | None:
        with self.store.session() as s:
            return s.scalars(select(m.Deployment.id).order_by(m.Deployment.created_at.desc()).limit(1)).first()

    def _building(self) -> set[str]:
        with self.store.session() as s:
            return set(s.scalars(select(m.Deployment.id).where(m.Deployment.status.in_(m.IN_PROGRESS))))

    def _release_paths(self, *keys: str, what: str) -> list[Path] | None:
        """The paths kept releases' markers name under `keys`; None if a marker cannot be read (prune nothing)."""
        found = []
        for release_dir in self.settings.releases_dir.glob("*/*"):
            try:
                meta = release.read_release_meta(release_dir) if release_dir.is_dir() else None
            except BranchyardError as err:  # which paths it uses is unknown: delete none this time
                log.warning("%s not pruned: %s", what, err)
                return None
            found += [Path(str(meta[k])) for k in keys if meta and meta.get(k)]
        return found

    # --- start-up ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a (re)start, before the loop: stop what the previous control plane left half-done, and mark the
        deployments it cut off so that the planner resumes them (replicas are sorted out by the reconciler)."""
        for what in self.tasks.kill_leftovers():
            log.warning("stopped %s, left running by the previous control plane", what)
        keep: set[Path] = set()
        with self.store.session() as s:
            for dep in s.scalars(select(m.Deployment).where(m.Deployment.status.in_(m.IN_PROGRESS))).all():
                env = s.get(m.Environment, dep.environment_id)
                project = s.get(m.Project, dep.project_id).name
                out = DeployLog(Path(dep.log_path or ""))
                if env.current_deployment_id == dep.id:
                    # The switch was committed before the crash: this deployment is the one serving.
                    dep.status, dep.finished_at = m.SUCCESS, m.utcnow()
                    note = "the control plane restarted after the switch; deployment completed"
                    self.store.record(s, project, "deploy.succeeded", note, environment=env.name, deployment_id=dep.id)
                    out(f"-----> {note}")
                    continue
                if dep.release_dir:
                    keep.add(Path(dep.release_dir))
                if dep.attempts > 0 and dep.error is None:
                    dep.error = f"the control plane stopped while the deployment was {dep.status}"
                    self.store.record(s, project, "deploy.interrupted", dep.error, environment=env.name,
                                      deployment_id=dep.id)
                    out(f"!!! {dep.error}")
        for project_dir in self.settings.releases_dir.glob("*"):
            if project_dir.is_dir():
                for path in release.remove_incomplete_releases(project_dir, keep=keep):
                    log.info("removed half-written release %s", path)


def retained(d: m.Deployment) -> bool:
    """Whether a deployment can still be brought back: a finished build whose release is kept."""
    return bool(d.release_dir and d.config_json and release.release_complete(Path(d.release_dir)))


def _follow_protection(s: Session, store: Store, project: str, env: m.Environment, decl: EnvironmentDecl | None,
                       actor: Actor) -> None:
    """The spec being deployed says whether the environment is protected (`protected`, default: production is);
    an environment the spec does not declare keeps what it has. A change is an event."""
    if decl is None or decl.protected == env.protected:
        return
    env.protected = decl.protected
    store.record(s, project, "environment.protection", f"{env.name} is {'now' if decl.protected else 'no longer'} "
                 "protected (the spec's `protected`)", environment=env.name, actor=actor)
