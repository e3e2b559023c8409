"""Deployments: a trigger records what an environment should run; one loop reaches it.

A trigger (git push, a GitHub delivery, `redeploy`, `rollback`, `up`, `variables set`, `promote`, a preview
admitted) calls one of the `queue_*`/`redeploy` methods: it records a deployment, points the environment's
*target* at it (newest wins) and calls `converge` for that environment. `converge` — also run by the reconciler
on every pass, and on start — asks the pure planner `deploy_plan.plan_deployments` what the environment needs
and applies the answer: start a worker, schedule a retry, skip what is superseded, give up after too many tries.

A worker runs one attempt under the environment's lock: build (or reuse a release), provision, guard, hooks,
start, health-check, switch, drain. Writes are ordered so that a SIGKILL at any instant leaves state the loop
converges from: replicas are recorded before they are waited on; the switch (new current deployment, old one
REMOVED) is one transaction; a deployment cut off before its switch stays unfinished and the next start
resumes it (its leftover build steps, hooks and replicas stopped first).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import deploy_plan as dp
from .. import failpoints, names
from ..backends.ports import RuntimePort, TaskLedger
from ..build import release
from ..data import templates
from ..errors import BadInput, BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import load_project
from ..spec.model import EnvironmentConfig, ProjectSpec
from ..store import models as m
from ..store.db import Store
from .backups import Backups
from .dataplane import DataPlane
from .guards import Guards
from .locks import EnvLocks, Held
from .projects import remember_spec
from .replicas import PORT_PLACEHOLDER, Replicas
from .routes import Routes
from .snapshot import DeploymentConfig
from .variables import resolve

log = logging.getLogger("branchyard.deployer")

DEFAULT_DRAINING_SECONDS = 10
HOOK_TIMEOUT = 600  # seconds a preDeployCommand or seedCommand may take
LOCK_WAIT = 15.0  # seconds an operation waits for the reconciler to finish with an environment
WAIT_SAFETY_NET = 1.0  # seconds between re-reads of a deployment's status while waiting for it to finish


class Superseded(BranchyardError):
    """A newer deployment to the same environment is wanted; this one stops where it is."""


class DeployLog:
    """A deployment's progress log (build output + deploy steps), appended line by line, secrets masked."""

    def __init__(self, path: Path, redact: Callable[[str], str] | None = None) -> None:
        self.path = path
        self.redact = redact
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        if self.redact is not None:
            line = self.redact(line)
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line.rstrip("\n") + "\n")
        except FileNotFoundError:  # the environment was destroyed under a cancelled build: nothing to log to
            pass


@dataclass(frozen=True)
class _Ready:
    """A deployment's release checked and its variables gathered, ready to be built or applied."""

    release_dir: Path
    sha: str
    spec: ProjectSpec
    cfg: EnvironmentConfig
    src: Path
    env_id: int
    raw: dict[str, str]
    namespaces: dict[str, Mapping[str, str]]


class Deployer:
    def __init__(self, settings: Settings, store: Store, *, data: DataPlane, replicas: Replicas, backups: Backups,
                 routes: Routes, guards: Guards, locks: EnvLocks, runtime: RuntimePort, tasks: TaskLedger) -> None:
        self.settings = settings
        self.store = store
        self.data = data
        self.replicas = replicas
        self.backups = backups
        self.routes = routes
        self.guards = guards
        self.locks = locks
        self.runtime = runtime
        self.tasks = tasks
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
                       trigger: str, work: str, source: m.Deployment | None = None) -> m.Deployment:
        """Record a deployment and make it the environment's target unless a newer one already is."""
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha=sha, branch=branch, trigger=trigger,
                           work=work, attempts=0)
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
        self.store.record(s, p.name, "deploy.queued", what, environment=env.name, deployment_id=dep.id)
        DeployLog(Path(dep.log_path))(f"-----> {what} to {p.name}/{env.name} (deployment {dep.id})")
        return dep

    def queue_build(self, project: str, env_name: str, sha: str, branch: str | None, trigger: str, incoming: Path,
                    spec: ProjectSpec) -> str:
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
                                  environment=env_name)
            dep = self.new_deployment(s, p, env, sha=sha, branch=branch, trigger=trigger, work=m.WORK_BUILD)
            dep_id, release_dir = dep.id, Path(dep.release_dir or "")
            incoming.rename(release_dir)  # inside the transaction: a recorded build always has its files
        self.converge(project, env_name)
        self.routes.sync()  # a new environment answers at once ("no healthy deployment yet"), never 404
        return dep_id

    def queue_promotion(self, project: str, target: str, source_dep_id: str, *,
                        on_recorded: Callable[[Session, m.Deployment], None]) -> str:
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
                                          work=m.WORK_PROMOTE)
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
                 resolve_again: bool = False) -> str:
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
                raw, namespaces = self.data.layered_variables(env_id, cfg.variables)
                values = resolve(raw, namespaces=namespaces, port=PORT_PLACEHOLDER).values  # BadInput before any change
                self.guards.isolation_guard(project, env_name, values, production=cfg.production)
                variables_json = self.data.box.encrypt(json.dumps(values))
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, env_name)
                source = self.store.deployment(s, deployment_id, env)
                dep = self.new_deployment(s, p, env, sha=source.commit_sha, branch=source.branch, trigger=trigger,
                                          work=m.WORK_ROLLOUT, source=source)
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

    def rollback(self, project: str, env_name: str) -> str:
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
        return self.redeploy(project, env_name, target_id, trigger="rollback")

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
                self._check_wanted(dep_id)
                steps = {m.WORK_BUILD: self._build_and_roll_out, m.WORK_PROMOTE: self._promote_and_roll_out,
                         m.WORK_ROLLOUT: self._roll_out}
                steps[work](project, env_name, dep_id, out)
            finally:
                lock.release()
        except Superseded as why:
            out(f"-----> skipped: {why}")
            self._finish(dep_id, m.SKIPPED, str(why))
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

    def _check_wanted(self, dep_id: str) -> None:
        """Superseded unless this deployment is still its environment's target."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:
                raise Superseded("cancelled: the environment was deleted")
            target = s.get(m.Environment, dep.environment_id).target_deployment_id
        if target == dep_id:
            return
        raise Superseded(f"superseded by newer deployment {target}" if target else "cancelled: the environment is being destroyed")

    def _set_status(self, dep_id: str, status: str) -> None:
        with self.store.session() as s:
            s.get(m.Deployment, dep_id).status = status

    def _finish(self, dep_id: str, status: str, error: str | None = None) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:  # its environment was deleted meanwhile
                return
            dep.status, dep.finished_at = status, m.utcnow()
            if error is not None:
                dep.error = error
        self._notify()

    def _fail(self, project: str, env_name: str, dep_id: str, reason: str, out: Callable[[str], None]) -> None:
        out(f"!!! deployment FAILED: {reason}")
        self._finish(dep_id, m.FAILED, reason)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.failed", reason, environment=env_name, deployment_id=dep_id)
        self.routes.sync()

    def _build_and_roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        ready = self._prepare(project, env_name, dep_id, out)
        out(f"-----> building {ready.sha[:12]} (python virtualenv)")
        started = time.monotonic()
        built = release.build(ready.src, ready.cfg.web.build_command, cache_dir=self.settings.cache_dir,
                              python=self.settings.python, log=lambda line: out(f"       {line}"), tasks=self.tasks)
        out(f"-----> build done in {time.monotonic() - started:.1f}s" + (" (dependencies cached)" if built.cached else ""))
        self._apply(project, env_name, dep_id, out, ready, built.venv)

    def _promote_and_roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        """A promotion: the source's release as it is (no rebuild), with this environment's own variables and data."""
        ready = self._prepare(project, env_name, dep_id, out)
        meta = release.read_release_meta(ready.release_dir) or {}
        venv = Path(str(meta.get("venv", "")))
        if not meta.get("venv") or not (venv / "bin").is_dir():
            raise BranchyardError(f"the promoted release's virtualenv {venv} is gone; push the commit again to rebuild")
        out(f"-----> promoted release of {ready.sha[:12]} (built once, not rebuilt; virtualenv {venv.name[:12]})")
        self._apply(project, env_name, dep_id, out, ready, venv)

    def _prepare(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> _Ready:
        """Read the release's spec for this environment and check it before anything is built or changed."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            release_dir, sha, trigger = Path(dep.release_dir or ""), dep.commit_sha, dep.trigger
        self._set_status(dep_id, m.BUILDING)
        spec = load_project(release_dir)
        for note in (*spec.warnings, *spec.ignored):
            out(f"       note: {note}")
        cfg = spec.environment(env_name)
        if not cfg.web.start_command:
            raise BadInput("no start command: set deploy.startCommand in railway.toml or a web: line in Procfile")
        if trigger in ("push", "up", "webhook"):
            self.guards.require_source_first(project, env_name, spec, sha)  # the git path keeps the gates
        src = release_dir if cfg.web.root_dir in ("", ".") else names.safe_join(release_dir, cfg.web.root_dir)
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            env_id = env.id
            env.branch, env.production, env.ephemeral = cfg.branch or env.branch, cfg.production, cfg.ephemeral
        raw, namespaces = self.data.layered_variables(env_id, cfg.variables)
        out.redact = self.data.redactor(env_id)
        _check_references(raw, namespaces, cfg)  # refuse a bad reference before anything is built or created
        return _Ready(release_dir=release_dir, sha=sha, spec=spec, cfg=cfg, src=src, env_id=env_id, raw=raw,
                      namespaces=namespaces)

    def _apply(self, project: str, env_name: str, dep_id: str, out: DeployLog, ready: _Ready, venv: Path) -> None:
        """Provision, resolve, guard isolation, back up and migrate, then roll out (health-checked, zero downtime)."""
        cfg, env_id, sha, release_dir, src = ready.cfg, ready.env_id, ready.sha, ready.release_dir, ready.src
        key = self._template_key(ready, venv, out)
        provisioned = self.data.provision(project, env_name, cfg, template_key=key)
        for name in provisioned.namespaces:
            cloned = provisioned.cloned_from and cfg.postgres is not None and name == cfg.postgres.name
            out(f"-----> {name}: ready" + (f" (cloned from template {provisioned.cloned_from})" if cloned else ""))
        out.redact = self.data.redactor(env_id)  # now including the service passwords
        values = resolve(ready.raw, namespaces=ready.namespaces | provisioned.namespaces, port=PORT_PLACEHOLDER).values
        self.guards.isolation_guard(project, env_name, values, production=cfg.production)  # before any hook
        release.mark_release_complete(release_dir, {"deployment": dep_id, "commit": sha, "venv": str(venv)})
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.config_json = DeploymentConfig.from_environment(cfg).to_json()
            dep.variables_json = self.data.box.encrypt(json.dumps(values))  # values include secrets: encrypted at rest
            s.get(m.Project, dep.project_id).domain = ready.spec.domain  # the deployed commit says which domain to use
        if not ready.spec.is_preview_instance(env_name):  # a preview's own files never change who gets a preview
            remember_spec(self.store, project, ready.spec)
        failpoints.hit("deploy.after_build")
        self._check_wanted(dep_id)
        hook_env = self.replicas.hook_env(venv, values)
        if cfg.production and cfg.web.pre_deploy_command and cfg.postgres is not None and not provisioned.new_database:
            backup = self.backups.create(project, env_name, kind="pre-deploy")
            out(f"-----> backup {backup['id']} taken before migrations ({backup['size']} bytes, sha256 {backup['sha256'][:12]})")
        if provisioned.cloned_from:
            out("-----> preDeployCommand and seedCommand skipped: the template was made by these same commands, "
                "files and dependencies")
            self.data.mark_seeded(project, env_name)
        else:
            for command in cfg.web.pre_deploy_command:
                out(f"-----> preDeployCommand: {command}")
                self.runtime.run_hook(command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT)
            if cfg.web.seed_command and self.data.needs_seed(env_id):
                out(f"-----> seedCommand (new database): {cfg.web.seed_command}")
                self.runtime.run_hook(cfg.web.seed_command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT)
                self.data.mark_seeded(project, env_name)
            if key and provisioned.new_database:
                try:
                    made = self.data.save_template(project, env_name, key)
                    if made:
                        out(f"-----> kept this new database as template {made}: the next new database with the same "
                            "templateFiles is a copy of it")
                except BranchyardError as err:  # a template is an optimisation: the deployment goes on
                    out(f"       note: no template kept: {err}")
        self._roll_out(project, env_name, dep_id, out)

    def _template_key(self, ready: _Ready, venv: Path, out: DeployLog) -> str | None:
        """The key of the database `ready`'s hooks would make (postgres.templateFiles), or None without templates.

        Never for production (its database is never a copy) nor a dedicated server (nothing to share it with)."""
        pg = ready.cfg.postgres
        if pg is None or not pg.template_files:
            return None
        if ready.cfg.production or pg.dedicated:
            out(f"       note: postgres.templateFiles ignored for {'production' if ready.cfg.production else 'a dedicated server'}")
            return None
        plain, secrets = self.data.stored_variables(ready.env_id)
        return templates.template_key(
            ready.src, pg.template_files, pre_deploy=ready.cfg.web.pre_deploy_command, seed=ready.cfg.web.seed_command,
            dependencies=venv.name, variables={k: v for k, v in ready.raw.items() if k not in secrets},
            secret_names=secrets, server="external" if self.settings.postgres_url else "shared")

    def _roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        """Start the deployment's replicas, health-check them, switch the route in one call, drain the old ones."""
        began = time.monotonic()
        self._set_status(dep_id, m.DEPLOYING)
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            host = self.routes.hostname(s.get(m.Project, dep.project_id), env)
            queued = (m.utcnow() - dep.created_at).total_seconds()
            leftovers = list(s.scalars(select(m.Replica.id).where(m.Replica.deployment_id == dep_id,
                                                                  m.Replica.state != m.REPLICA_STOPPED)))
        if leftovers:  # started by an attempt a restart cut off before its switch: never two copies of a slot
            out(f"-----> stopping {len(leftovers)} replica(s) left by the interrupted attempt")
            self.replicas.stop(leftovers, grace=5)
        ctx = self.replicas.context(dep_id, host)
        n = ctx.replicas
        out(f"-----> starting {n} replica{'s' if n != 1 else ''}: {ctx.start_command}")
        path = ctx.healthcheck_path
        out(f"-----> health check: {'GET ' + path + ' → 200' if path else 'GET / → status < 500'} within {ctx.healthcheck_timeout}s")
        handles = self.replicas.start(ctx, list(range(n)), out)
        healthy = time.monotonic()
        failpoints.hit("deploy.after_health")
        self._check_wanted(dep_id)
        with self.store.session() as s:
            env = s.get(m.Environment, ctx.env_id)
            old_id = env.current_deployment_id if env.current_deployment_id != dep_id else None
            env.current_deployment_id, env.state = dep_id, m.ENV_ACTIVE
            if old_id:
                old = s.get(m.Deployment, old_id)
                if old.status in (m.SUCCESS, m.CRASHED, m.SLEEPING):
                    old.status = m.REMOVED
        failpoints.hit("deploy.after_switch")
        self.routes.sync()
        routed = time.monotonic()
        out(f"-----> routed {self.settings.public_url(host)} → {', '.join(str(h.port) for _, h in handles)} "
            f"({_ms(queued + routed - began)} after it was queued: roll-out began at +{_ms(queued)}, replicas healthy "
            f"in {_ms(healthy - began)}, switch and route in {_ms(routed - healthy)})")
        if old_id:
            self._drain(ctx.env_id, old_id, ctx.overlap_seconds, ctx.draining_seconds, out)
        self._prune_releases(ctx.env_id)
        out(f"-----> deployment SUCCESS: {self.settings.public_url(host)}")  # before the status: followers stop there
        self._finish(dep_id, m.SUCCESS)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.succeeded", f"{ctx.sha[:12]} is live", environment=env_name, deployment_id=dep_id)

    def _drain(self, env_id: int, old_id: str, overlap: int, draining: int, out: Callable[[str], None]) -> None:
        """The old deployment is out of the route: let in-flight requests finish, then stop it.

        With `overlap`, its replicas stay on standby that long (a rollback to it re-adopts them) and the
        reconciler stops them afterwards; the deployment does not wait for that."""
        with self.store.session() as s:
            ids = list(s.scalars(select(m.Replica.id).where(m.Replica.deployment_id == old_id, m.Replica.state != m.REPLICA_STOPPED)))
            for rid in ids:
                s.get(m.Replica, rid).state = m.REPLICA_DRAINING
        if not ids:
            return
        grace = draining or DEFAULT_DRAINING_SECONDS
        if overlap:
            out(f"-----> overlap: previous deployment {old_id[:8]} keeps running {overlap}s out of the route, then drains")
            self.replicas.park(env_id, ids, seconds=overlap, grace=grace)
            return
        out(f"-----> draining previous deployment {old_id[:8]} (SIGTERM, SIGKILL after {grace}s)")
        self.replicas.stop(ids, grace=grace)

    def _prune_releases(self, env_id: int) -> None:
        """Keep the release directories of the newest `releases_retained` deployments (and any still running)."""
        retain = self.settings.releases_retained
        with self.store.session() as s:
            env = s.get(m.Environment, env_id)
            deps = s.scalars(select(m.Deployment).where(m.Deployment.environment_id == env_id)
                             .order_by(m.Deployment.created_at.desc())).all()
            running = set(s.scalars(select(m.Replica.deployment_id).where(m.Replica.environment_id == env_id,
                                                                          m.Replica.state != m.REPLICA_STOPPED)))
            keep = {d.release_dir for d in deps[:retain]} | {
                d.release_dir for d in deps if d.id == env.current_deployment_id or d.status in m.IN_PROGRESS or d.id in running
            }
            drop = {d.release_dir for d in deps[retain:]} - keep
        for path in drop:
            if path:
                shutil.rmtree(path, ignore_errors=True)

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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def retained(d: m.Deployment) -> bool:
    """Whether a deployment can still be brought back: a finished build whose release is kept."""
    return bool(d.release_dir and d.config_json and release.release_complete(Path(d.release_dir)))


class _AnyKey(dict[str, str]):
    """A namespace whose variables are not known yet (a service about to be provisioned): any key is fine."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return ""


def _check_references(raw: dict[str, str], namespaces: dict[str, Mapping[str, str]], cfg: EnvironmentConfig) -> None:
    """Every reference must name a declared service, a set secret, a variable, or PORT (else BadInput)."""
    services: dict[str, dict[str, str]] = {svc.name: _AnyKey() for svc in (cfg.postgres, cfg.redis) if svc is not None}
    resolve(raw, namespaces=namespaces | services, port=PORT_PLACEHOLDER)
