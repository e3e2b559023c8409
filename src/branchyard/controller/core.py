"""The controller: turns pushes into deployments and keeps environments at their desired state.

Order of writes in a deploy is chosen so that a SIGKILL at any instant leaves state the reconciler
can converge from: replicas are recorded before they are waited on; the switch (current deployment +
old one REMOVED) is one transaction; routes are derived from that state and re-applied on start.
"""

from __future__ import annotations

import json
import os
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import names, plan
from ..backends.local import processes
from ..backends.local.caddy import Route, Router
from ..backends.local.health import wait_healthy
from ..build import release
from ..errors import BadInput, BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import load_project
from ..store import models as m
from ..store.db import Store
from ..triggers.gitremote import create_bare_repo
from .variables import resolve

log = logging.getLogger("branchyard.controller")

ZERO_SHA = "0" * 40
UP_REF_PREFIX = "refs/branchyard/up/"
RECONCILE_EVERY = 2.0


@dataclass(frozen=True)
class PushResult:
    deployment_id: str | None
    note: str | None


class DeployLog:
    """A deployment's progress log (build output + deploy steps), appended line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")


class Controller:
    def __init__(self, settings: Settings, store: Store, router: Router) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._in_progress: set[str] = set()
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt what is running, clean up what a crash left behind, then keep reconciling."""
        for d in (self.settings.repos_dir, self.settings.releases_dir, self.settings.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.router.ensure_running()
        self.recover()
        self.reconcile_once()
        self._loop = threading.Thread(target=self._reconcile_forever, name="reconciler", daemon=True)
        self._loop.start()

    def shutdown(self, *, wait: float = 5.0) -> None:
        self._stop.set()
        if self._loop:
            self._loop.join(timeout=wait)

    def lock(self, project: str, env: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((project, env), threading.Lock())

    def recover(self) -> None:
        """After a (re)start: deployments that were mid-flight are FAILED; their replicas stopped."""
        with self.store.session() as s:
            stale = s.scalars(select(m.Deployment).where(m.Deployment.status.in_(m.IN_PROGRESS))).all()
            for dep in stale:
                if dep.id in self._in_progress:
                    continue
                previous = dep.status
                dep.status = m.FAILED
                dep.error = f"the control plane stopped while the deployment was {previous}; previous deployment kept"
                dep.finished_at = m.utcnow()
                project = s.get(m.Project, dep.project_id)
                env = s.get(m.Environment, dep.environment_id)
                self.store.record(s, project.name, "deploy.failed", dep.error, environment=env.name, deployment_id=dep.id)
                if dep.log_path:
                    DeployLog(Path(dep.log_path))(f"!!! {dep.error}")
        for project_dir in self.settings.releases_dir.glob("*"):
            if project_dir.is_dir():
                for path in release.remove_incomplete_releases(project_dir):
                    log.info("removed half-written release %s", path)

    # --- projects & environments -------------------------------------------------------------------

    def create_project(self, name: str, upstream: str | None) -> dict:
        name = names.project_name(name)
        repo = names.safe_join(self.settings.repos_dir, f"{name}.git")
        with self.store.session() as s:
            existing = s.scalar(select(m.Project).where(m.Project.name == name))
            if existing is None:
                create_bare_repo(repo, project=name, home=self.settings.home)
                s.add(m.Project(name=name, repo_path=str(repo), upstream=upstream))
                self.store.record(s, name, "project.created", f"project {name} created")
            else:
                create_bare_repo(Path(existing.repo_path), project=name, home=self.settings.home)
                if upstream:
                    existing.upstream = upstream
        return self.project_info(name)

    def project_info(self, name: str) -> dict:
        with self.store.session() as s:
            p = self.store.project(s, name)
            return {"name": p.name, "repo_path": p.repo_path, "upstream": p.upstream}

    def list_projects(self) -> list[dict]:
        with self.store.session() as s:
            return [
                {"name": p.name, "repo_path": p.repo_path, "upstream": p.upstream}
                for p in s.scalars(select(m.Project).order_by(m.Project.name))
            ]

    def add_environment(self, project: str, name: str, *, branch: str | None = None) -> dict:
        name = names.environment_name(name)
        with self.store.session() as s:
            p = self.store.project(s, project)
            if s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == name)):
                raise Conflict(f"environment {name!r} already exists in project {project!r}")
            s.add(m.Environment(project_id=p.id, name=name, branch=branch, production=name == "production"))
            self.store.record(s, project, "environment.created", f"environment {name} created", environment=name)
        return self.environment_info(project, name)

    def delete_environment(self, project: str, name: str) -> None:
        """Stop the environment's processes, drop its route, and forget it (releases and logs too)."""
        with self.lock(project, name):
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, name)
                replicas = s.scalars(select(m.Replica).where(m.Replica.environment_id == env.id)).all()
                deployments = s.scalars(select(m.Deployment).where(m.Deployment.environment_id == env.id)).all()
                releases = [d.release_dir for d in deployments if d.release_dir]
                handles = [self._handle(r) for r in replicas]
            for h in handles:
                if h is not None:
                    processes.stop(h, grace=5)
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, name)
                s.delete(env)
                self.store.record(s, project, "environment.deleted", f"environment {name} deleted", environment=name)
            self.sync_routes()
            for path in releases:
                shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(names.safe_join(self.settings.logs_dir, project, name), ignore_errors=True)

    def list_environments(self, project: str) -> list[dict]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            envs = s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id))
            return [self._env_dict(s, p, e) for e in envs]

    def environment_info(self, project: str, name: str) -> dict:
        with self.store.session() as s:
            p = self.store.project(s, project)
            return self._env_dict(s, p, self.store.environment(s, p, name))

    def _env_dict(self, s, p: m.Project, env: m.Environment) -> dict:  # noqa: ANN001 - Session
        host = self._hostname(p, env)
        current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
        latest = s.scalar(
            select(m.Deployment).where(m.Deployment.environment_id == env.id).order_by(m.Deployment.created_at.desc())
        )
        replicas = []
        if current is not None:
            for r in s.scalars(select(m.Replica).where(m.Replica.deployment_id == current.id).order_by(m.Replica.slot)):
                h = self._handle(r)
                replicas.append(
                    {
                        "slot": r.slot,
                        "name": f"{env.name}.web.{r.slot}",
                        "pid": r.pid,
                        "port": r.port,
                        "state": r.state,
                        "alive": h is not None and processes.is_alive(h),
                        "restarts": r.restarts,
                        "uptime_seconds": round((m.utcnow() - r.started_at).total_seconds(), 1),
                    }
                )
        return {
            "project": p.name,
            "name": env.name,
            "branch": env.branch,
            "production": env.production,
            "ephemeral": env.ephemeral,
            "state": env.state,
            "url": self.settings.public_url(host),
            "hostname": host,
            "status": current.status if current else (latest.status if latest else "NO DEPLOYMENTS"),
            "current_deployment": _deployment_dict(current) if current else None,
            "latest_deployment": _deployment_dict(latest) if latest else None,
            "replicas": replicas,
        }

    def list_deployments(self, project: str, env_name: str, limit: int = 50) -> list[dict]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            rows = s.scalars(
                select(m.Deployment)
                .where(m.Deployment.environment_id == env.id)
                .order_by(m.Deployment.created_at.desc())
                .limit(limit)
            )
            return [_deployment_dict(d) | {"current": d.id == env.current_deployment_id} for d in rows]

    def deployment_info(self, deployment_id: str) -> dict:
        with self.store.session() as s:
            return _deployment_dict(self.store.deployment(s, deployment_id))

    def events(self, project: str | None = None, env_name: str | None = None, limit: int = 100) -> list[dict]:
        with self.store.session() as s:
            q = select(m.Event).order_by(m.Event.id.desc()).limit(limit)
            if project:
                q = q.where(m.Event.project == project)
            if env_name:
                q = q.where(m.Event.environment == env_name)
            return [
                {
                    "at": e.at.isoformat() + "Z",
                    "project": e.project,
                    "environment": e.environment,
                    "deployment_id": e.deployment_id,
                    "kind": e.kind,
                    "actor": e.actor,
                    "message": e.message,
                }
                for e in s.scalars(q)
            ]

    # --- pushes → deployments ----------------------------------------------------------------------

    def receive_push(self, project: str, ref: str, old: str, new: str, git_env: dict[str, str]) -> PushResult:
        """A ref was pushed to the project's remote: export it and queue a deployment if it maps to one."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            repo = Path(p.repo_path)
        if new == ZERO_SHA:
            return PushResult(None, f"{ref} deleted")
        if ref.startswith(UP_REF_PREFIX):
            env_name, branch = names.environment_name(ref[len(UP_REF_PREFIX):]), None
        else:
            if not ref.startswith("refs/heads/"):
                return PushResult(None, f"{ref} stored (only branches deploy)")
            branch = names.branch_from_ref(ref)
            env_name = None
        staging = names.safe_join(self.settings.releases_dir, project, f".incoming-{new[:40]}-{time.monotonic_ns()}")
        release.export_commit(repo, new, staging, git_env=git_env)
        try:
            spec = load_project(staging)
            if env_name is None:
                env_name = spec.environment_for_branch(branch)
                if env_name is None:
                    return PushResult(None, f"branch {branch!r} is not mapped to an environment; stored, not deployed")
            dep_id = self._queue(project, env_name, new, branch, "up" if branch is None else "push", staging, spec)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return PushResult(dep_id, None)

    def _queue(self, project: str, env_name: str, sha: str, branch: str | None, trigger: str, staging: Path, spec) -> str:  # noqa: ANN001
        """Create the environment if the spec declares it, record a QUEUED deployment, start its worker."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
            if env is None:
                cfg = spec.environment(env_name)  # NotFound names the declared environments
                env = m.Environment(
                    project_id=p.id, name=env_name, branch=cfg.branch, production=cfg.production, ephemeral=cfg.ephemeral
                )
                s.add(env)
                s.flush()
                self.store.record(s, project, "environment.created", f"environment {env_name} created on first push", environment=env_name)
            dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha=sha, branch=branch, trigger=trigger)
            s.add(dep)
            s.flush()
            dep.release_dir = str(names.safe_join(self.settings.releases_dir, project, dep.id))
            dep.log_path = str(names.safe_join(self.settings.logs_dir, project, env_name, dep.id, "deploy.log"))
            self.store.record(
                s, project, "deploy.queued", f"{trigger} of {sha[:12]}" + (f" ({branch})" if branch else ""),
                environment=env_name, deployment_id=dep.id,
            )
            dep_id, release_dir, log_path = dep.id, Path(dep.release_dir), Path(dep.log_path)
        staging.rename(release_dir)
        self.sync_routes()  # a new environment answers at once ("no healthy deployment yet"), never 404
        DeployLog(log_path)(f"-----> {trigger} of {sha[:12]} to {project}/{env_name} (deployment {dep_id})")
        self._in_progress.add(dep_id)
        worker = threading.Thread(target=self._run_deployment, args=(project, env_name, dep_id), name=f"deploy-{dep_id[:8]}", daemon=True)
        self._workers.append(worker)
        worker.start()
        return dep_id

    def _set_status(self, dep_id: str, status: str, error: str | None = None) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.status = status
            if error is not None:
                dep.error = error
            if status in m.TERMINAL:
                dep.finished_at = m.utcnow()

    def _run_deployment(self, project: str, env_name: str, dep_id: str) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
        out = DeployLog(Path(dep.log_path))
        try:
            with self.lock(project, env_name):
                if self._superseded(dep_id):
                    return
                self._deploy(project, env_name, dep_id, out)
        except BranchyardError as err:
            self._fail(project, env_name, dep_id, str(err), out)
        except Exception as err:  # a bug: record it on the deployment rather than lose it in a thread
            log.exception("deployment %s crashed", dep_id)
            self._fail(project, env_name, dep_id, f"internal error: {type(err).__name__}: {err}", out)
        finally:
            self._in_progress.discard(dep_id)

    def _superseded(self, dep_id: str) -> bool:
        """Newest wins: a queued deployment with a newer one queued behind it is skipped."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            newer = s.scalar(
                select(m.Deployment).where(
                    m.Deployment.environment_id == dep.environment_id,
                    m.Deployment.status == m.QUEUED,
                    m.Deployment.created_at > dep.created_at,
                ).order_by(m.Deployment.created_at.desc())
            )
            if newer is None:
                return False
            dep.status = m.SKIPPED
            dep.error = f"superseded by newer deployment {newer.id}"
            dep.finished_at = m.utcnow()
        DeployLog(Path(dep.log_path))(f"-----> skipped: {dep.error}")
        return True

    def _fail(self, project: str, env_name: str, dep_id: str, reason: str, out: Callable[[str], None]) -> None:
        out(f"!!! deployment FAILED: {reason}")
        self._set_status(dep_id, m.FAILED, reason)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.failed", reason, environment=env_name, deployment_id=dep_id)

    def _deploy(self, project: str, env_name: str, dep_id: str, out: Callable[[str], None]) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            release_dir = Path(dep.release_dir)
            sha, branch = dep.commit_sha, dep.branch
        # Build ---------------------------------------------------------------------------------------
        self._set_status(dep_id, m.BUILDING)
        spec = load_project(release_dir)
        for warning in (*spec.warnings, *spec.ignored):
            out(f"       note: {warning}")
        cfg = spec.environment(env_name)
        src = names.safe_join(release_dir, cfg.web.root_dir) if cfg.web.root_dir not in ("", ".") else release_dir
        out(f"-----> building {sha[:12]} (python virtualenv)")
        started = time.monotonic()
        built = release.build(
            src, cfg.web.build_command, cache_dir=self.settings.cache_dir, python=self.settings.python, log=lambda l: out(f"       {l}")
        )
        out(f"-----> build done in {time.monotonic() - started:.1f}s" + (" (dependencies cached)" if built.cached else ""))
        release.mark_release_complete(release_dir, {"deployment": dep_id, "commit": sha, "venv": str(built.venv)})
        if not cfg.web.start_command:
            raise BadInput("no start command: set deploy.startCommand in railway.toml or a web: line in Procfile")
        # Variables ------------------------------------------------------------------------------------
        with self.store.session() as s:
            p = s.get(m.Project, env.project_id)
            p.domain = spec.domain  # the commit being deployed says which domain the project uses
            host = self._hostname(p, env)
        probe = _resolve(cfg, port=0)
        for name, why in probe.pending.items():
            out(f"       note: variable {name} left unset: {why}")
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.config_json = json.dumps(cfg.to_dict())
            dep.variables_json = json.dumps(sorted(probe.values))  # names only: values may be secrets
            dep.status = m.DEPLOYING
        # Start replicas -------------------------------------------------------------------------------
        n = cfg.web.replicas
        out(f"-----> starting {n} replica{'s' if n != 1 else ''}: {cfg.web.start_command}")
        handles: list[tuple[int, processes.ProcessHandle]] = []
        for slot in range(n):
            port = processes.free_port()
            env_vars = _process_env(
                built.venv, _resolve(cfg, port=port).values, port=port,
                project=project, env_name=env_name, host=host, sha=sha, branch=branch, dep_id=dep_id, slot=slot,
            )
            log_path = names.safe_join(self.settings.logs_dir, project, env_name, dep_id, f"web.{slot}.log")
            h = processes.spawn(cfg.web.start_command, cwd=src, env=env_vars, log_path=log_path, port=port)
            with self.store.session() as s:
                r = m.Replica(
                    deployment_id=dep_id, environment_id=env.id, slot=slot, pid=h.pid, start_time=h.start_time,
                    port=port, log_path=str(log_path),
                )
                s.add(r)
                s.flush()
                handles.append((r.id, h))
        # Health ---------------------------------------------------------------------------------------
        path = cfg.web.healthcheck_path
        out(f"-----> health check: {'GET ' + path + ' → 200' if path else 'GET / → status < 500'} within {cfg.web.healthcheck_timeout}s")
        with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
            results = list(
                pool.map(
                    lambda rh: wait_healthy(
                        rh[1].port, path, timeout=cfg.web.healthcheck_timeout,
                        alive=lambda h=rh[1]: processes.is_alive(h), exit_code=lambda h=rh[1]: processes.exit_code(h),
                    ),
                    handles,
                )
            )
        bad = [(slot, res, h) for slot, ((_, h), res) in enumerate(zip(handles, results)) if not res.ok]
        if bad:
            slot, res, h = bad[0]
            tail = processes.tail(Path(h.log_path), 10)
            for line in tail:
                out(f"       web.{slot} | {line}")
            for _, h2 in handles:
                processes.stop(h2, grace=2)
            with self.store.session() as s:
                for rid, _ in handles:
                    s.get(m.Replica, rid).state = m.REPLICA_STOPPED
            raise_detail = f"replica web.{slot} failed its health check: {res.detail}"
            if tail:
                raise_detail += f" — last log line: {tail[-1].strip()[:200]}"
            from ..errors import DeployFailed

            raise DeployFailed(raise_detail)
        for slot, res in enumerate(results):
            out(f"       web.{slot} healthy: {res.detail}")
        # Switch ---------------------------------------------------------------------------------------
        with self.store.session() as s:
            for rid, _ in handles:
                s.get(m.Replica, rid).state = m.REPLICA_RUNNING
            env = s.get(m.Environment, env.id)
            old_id = env.current_deployment_id
            env.current_deployment_id = dep_id
            env.state = m.ENV_ACTIVE
            if old_id:
                old = s.get(m.Deployment, old_id)
                if old is not None and old.status in (m.SUCCESS, m.CRASHED, m.SLEEPING):
                    old.status = m.REMOVED
        self.sync_routes()
        out(f"-----> routed {self.settings.public_url(host)} → {', '.join(str(h.port) for _, h in handles)}")
        # Drain the previous deployment ---------------------------------------------------------------
        if old_id:
            self._stop_deployment_replicas(old_id, grace=max(1, cfg.web.draining_seconds or 5))
        self._set_status(dep_id, m.SUCCESS)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.succeeded", f"{sha[:12]} is live", environment=env_name, deployment_id=dep_id)
        out(f"-----> deployment SUCCESS: {self.settings.public_url(host)}")

    # --- processes & routes ------------------------------------------------------------------------

    def _hostname(self, p: m.Project, env: m.Environment) -> str:
        return names.hostname(p.name, env.name, p.domain or self.settings.domain, production=env.production)

    @staticmethod
    def _handle(r: m.Replica) -> processes.ProcessHandle | None:
        return processes.adopt(r.pid, r.start_time, r.port, r.log_path)

    def _stop_deployment_replicas(self, dep_id: str, *, grace: float) -> None:
        with self.store.session() as s:
            rows = s.scalars(select(m.Replica).where(m.Replica.deployment_id == dep_id)).all()
        for r in rows:
            h = self._handle(r)
            if h is not None:
                processes.stop(h, grace=grace)
        with self.store.session() as s:
            for r in rows:
                s.get(m.Replica, r.id).state = m.REPLICA_STOPPED

    def desired_routes(self) -> list[Route]:
        routes = []
        with self.store.session() as s:
            for p in s.scalars(select(m.Project).order_by(m.Project.name)):
                for env in s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)):
                    host = self._hostname(p, env)
                    if env.state == m.ENV_SLEEPING:
                        routes.append(Route(host=host, project=p.name, environment=env.name, upstreams=(), state="sleeping"))
                        continue
                    ups: tuple[str, ...] = ()
                    if env.current_deployment_id:
                        ups = tuple(
                            f"127.0.0.1:{r.port}"
                            for r in s.scalars(
                                select(m.Replica)
                                .where(m.Replica.deployment_id == env.current_deployment_id, m.Replica.state == m.REPLICA_RUNNING)
                                .order_by(m.Replica.slot)
                            )
                        )
                    state = "serving" if ups else "unavailable"
                    routes.append(Route(host=host, project=p.name, environment=env.name, upstreams=ups, state=state))
        return routes

    def sync_routes(self) -> None:
        self.router.apply(self.desired_routes())

    def reconcile_once(self) -> None:
        """Observe every environment, plan, apply; then make Caddy's routes match the state."""
        with self.store.session() as s:
            envs = [(p.name, e.id, e.name) for p, e in s.execute(select(m.Project, m.Environment).join(m.Environment))]
        for project, env_id, env_name in envs:
            lock = self.lock(project, env_name)
            if not lock.acquire(blocking=False):
                continue  # a deploy is working on it; it will leave a consistent state
            try:
                self._reconcile_env(project, env_id)
            except BranchyardError as err:
                log.warning("reconcile %s/%s: %s", project, env_name, err)
            finally:
                lock.release()
        self.sync_routes()

    def _reconcile_env(self, project: str, env_id: int) -> None:
        with self.store.session() as s:
            env = s.get(m.Environment, env_id)
            if env is None:
                return
            rows = s.scalars(
                select(m.Replica).where(m.Replica.environment_id == env_id, m.Replica.state.in_(plan.LIVE_STATES | {"CRASHED"}))
            ).all()
            current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            cfg = json.loads(current.config_json) if current and current.config_json else {}
            web = cfg.get("web", {})
            handles = {r.id: self._handle(r) for r in rows}
            obs = plan.EnvObs(
                name=env.name,
                state=env.state,
                current_deployment_id=env.current_deployment_id,
                in_progress=frozenset(self._in_progress),
                replicas=tuple(
                    plan.ReplicaObs(
                        id=r.id, deployment_id=r.deployment_id, slot=r.slot,
                        alive=handles[r.id] is not None and processes.is_alive(handles[r.id]),
                        state=r.state, restarts=r.restarts,
                        exit_code=processes.exit_code(handles[r.id]) if handles[r.id] is not None else None,
                    )
                    for r in rows
                ),
                restart_policy=web.get("restart_policy_type", "ON_FAILURE"),
                max_retries=int(web.get("restart_policy_max_retries", 10)),
            )
            env_name = env.name
        for action in plan.plan_environment(obs):
            self._apply(project, env_name, action, handles)

    def _apply(self, project: str, env_name: str, action: plan.Action, handles: dict) -> None:
        if isinstance(action, plan.StopReplica):
            h = handles.get(action.replica_id)
            if h is not None:
                processes.stop(h, grace=5)
            with self.store.session() as s:
                s.get(m.Replica, action.replica_id).state = m.REPLICA_STOPPED
        elif isinstance(action, plan.MarkReplica):
            with self.store.session() as s:
                s.get(m.Replica, action.replica_id).state = action.state
                if action.state == m.REPLICA_CRASHED:
                    self.store.record(s, project, "replica.crashed", action.reason, environment=env_name)
        elif isinstance(action, plan.MarkCrashed):
            with self.store.session() as s:
                dep = s.get(m.Deployment, action.deployment_id)
                dep.status = m.CRASHED
                dep.error = action.reason
                self.store.record(s, project, "deploy.crashed", action.reason, environment=env_name, deployment_id=dep.id)
        elif isinstance(action, plan.RestartReplica):
            self._restart_replica(project, env_name, action)

    def _restart_replica(self, project: str, env_name: str, action: plan.RestartReplica) -> None:
        with self.store.session() as s:
            r = s.get(m.Replica, action.replica_id)
            dep = s.get(m.Deployment, r.deployment_id)
            env = s.get(m.Environment, r.environment_id)
            cfg = json.loads(dep.config_json)
            meta = release.read_release_meta(Path(dep.release_dir))
            venv = Path(meta["venv"]) if meta else None
            slot, log_path, sha, branch, dep_id = r.slot, r.log_path, dep.commit_sha, dep.branch, dep.id
            release_dir = Path(dep.release_dir)
        if venv is None:
            return
        spec = load_project(release_dir)
        ecfg = spec.environment(env_name)
        src = names.safe_join(release_dir, ecfg.web.root_dir) if ecfg.web.root_dir not in ("", ".") else release_dir
        with self.store.session() as s:
            host = self._hostname(s.get(m.Project, dep.project_id), env)
        port = processes.free_port()
        env_vars = _process_env(venv, _resolve(ecfg, port=port).values, port=port, project=project, env_name=env_name,
                                host=host, sha=sha, branch=branch, dep_id=dep_id, slot=slot)
        DeployLog(Path(log_path))(f"-----> restarting web.{slot}: {action.reason}")
        h = processes.spawn(cfg["web"]["start_command"], cwd=src, env=env_vars, log_path=Path(log_path), port=port)
        with self.store.session() as s:
            r = s.get(m.Replica, action.replica_id)
            r.pid, r.start_time, r.port, r.restarts, r.started_at = h.pid, h.start_time, port, r.restarts + 1, m.utcnow()
            r.state = m.REPLICA_STARTING
            self.store.record(s, project, "replica.restarted", f"web.{slot} {action.reason}", environment=env_name, deployment_id=dep_id)
        res = wait_healthy(port, ecfg.web.healthcheck_path, timeout=ecfg.web.healthcheck_timeout,
                           alive=lambda: processes.is_alive(h), exit_code=lambda: processes.exit_code(h))
        with self.store.session() as s:
            s.get(m.Replica, action.replica_id).state = m.REPLICA_RUNNING if res.ok else m.REPLICA_STARTING

    def _reconcile_forever(self) -> None:
        while not self._stop.wait(RECONCILE_EVERY):
            try:
                self.reconcile_once()
            except Exception:  # keep the loop alive; the next round starts from fresh state
                log.exception("reconcile failed")

    # --- logs --------------------------------------------------------------------------------------

    def read_log(self, deployment_id: str, offset: int = 0) -> tuple[str, int, bool]:
        """A chunk of a deployment's log from `offset`: (text, new offset, deployment finished)."""
        with self.store.session() as s:
            dep = self.store.deployment(s, deployment_id)
            path, done = Path(dep.log_path or ""), dep.status in m.TERMINAL
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        return data.decode("utf-8", errors="replace"), offset + len(data), done

    def environment_logs(self, project: str, env_name: str, *, lines: int = 100, build: bool = False,
                         deployment_id: str | None = None) -> dict:
        """Build/deploy log and runtime logs of a deployment (default: current, else latest)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            if deployment_id:
                dep = self.store.deployment(s, deployment_id, env)
            else:
                dep = (s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None) or s.scalar(
                    select(m.Deployment).where(m.Deployment.environment_id == env.id).order_by(m.Deployment.created_at.desc())
                )
            if dep is None:
                raise NotFound(f"environment {env_name!r} has no deployments yet")
            replicas = s.scalars(select(m.Replica).where(m.Replica.deployment_id == dep.id).order_by(m.Replica.slot)).all()
            deploy_log = Path(dep.log_path) if dep.log_path else None
            runtime = {f"web.{r.slot}": Path(r.log_path) for r in replicas}
        result = {"deployment_id": dep.id, "status": dep.status, "build": [], "runtime": {}}
        if deploy_log is not None:
            result["build"] = processes.tail(deploy_log, lines if not build else 10_000)
        if not build:
            result["runtime"] = {name: processes.tail(path, lines) for name, path in runtime.items()}
        return result

    # --- whole-machine teardown (tests, uninstall) -------------------------------------------------

    def stop_everything(self) -> None:
        """Stop every app process this control plane knows about, then the router."""
        with self.store.session() as s:
            rows = s.scalars(select(m.Replica).where(m.Replica.state.in_(plan.LIVE_STATES))).all()
        for r in rows:
            h = self._handle(r)
            if h is not None:
                processes.stop(h, grace=3)
        with self.store.session() as s:
            for r in rows:
                s.get(m.Replica, r.id).state = m.REPLICA_STOPPED
        self.router.stop()


def _resolve(cfg, *, port: int):  # noqa: ANN001 - EnvironmentConfig
    """Resolve an environment's variables for one replica. Data-plane references stay pending for now."""
    pending = {"secrets": "secrets are not supported yet"}
    for svc in (cfg.postgres, cfg.redis):
        if svc is not None:
            pending[svc.name] = f"{svc.name} is not provisioned yet (the data plane is not available in this version)"
    return resolve(cfg.variables, namespaces={"shared": dict(cfg.variables)}, pending_namespaces=pending, port=port)


def _process_env(venv: Path, variables: dict[str, str], *, port: int, project: str, env_name: str,
                 host: str, sha: str, branch: str | None, dep_id: str, slot: int) -> dict[str, str]:
    """A replica's environment: a clean base, the environment's variables, then built-ins."""
    base = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "VIRTUAL_ENV": str(venv),
        "PYTHONUNBUFFERED": "1",
    }
    builtins = {
        "PORT": str(port),
        "BRANCHYARD_PROJECT_NAME": project,
        "BRANCHYARD_ENVIRONMENT_NAME": env_name,
        "BRANCHYARD_PUBLIC_DOMAIN": host,
        "BRANCHYARD_GIT_COMMIT_SHA": sha,
        "BRANCHYARD_GIT_BRANCH": branch or "",
        "BRANCHYARD_DEPLOYMENT_ID": dep_id,
        "BRANCHYARD_REPLICA_ID": f"{env_name}.web.{slot}",
    }
    # Apps written for Railway read RAILWAY_*; give them the same facts.
    railway = {
        "RAILWAY_ENVIRONMENT_NAME": env_name,
        "RAILWAY_PUBLIC_DOMAIN": host,
        "RAILWAY_GIT_COMMIT_SHA": sha,
        "RAILWAY_GIT_BRANCH": branch or "",
        "RAILWAY_DEPLOYMENT_ID": dep_id,
        "RAILWAY_REPLICA_ID": f"{env_name}.web.{slot}",
    }
    return base | railway | variables | builtins


def _deployment_dict(d: m.Deployment) -> dict:
    return {
        "id": d.id,
        "status": d.status,
        "commit": d.commit_sha,
        "branch": d.branch,
        "trigger": d.trigger,
        "error": d.error,
        "created_at": d.created_at.isoformat() + "Z",
        "finished_at": d.finished_at.isoformat() + "Z" if d.finished_at else None,
    }
