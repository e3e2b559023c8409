"""The controller: turns pushes into deployments and keeps environments at their desired state.

Writes are ordered so that a SIGKILL at any instant leaves state the reconciler converges from:
replicas are recorded before they are waited on; the switch (new current deployment, old one
REMOVED) is one transaction; routes are derived from that state and re-applied on start.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import failpoints, names
from ..backends.local import processes
from ..backends.local.caddy import Route, Router
from ..backends.local.health import probe
from ..build import release
from ..data import templates
from ..errors import BadInput, BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import load_project
from ..store import models as m
from ..store.db import Store
from ..triggers.gitremote import create_bare_repo
from .backups import Backups
from .dataplane import DataPlane, database_name
from .hooks import HOOK_TIMEOUT, run_hook
from .replicas import PORT_PLACEHOLDER, Replicas
from .variables import resolve

log = logging.getLogger("branchyard.controller")

ZERO_SHA = "0" * 40
UP_REF_PREFIX = "refs/branchyard/up/"
DEFAULT_DRAINING_SECONDS = 10
LOCK_WAIT = 15.0  # seconds an operation waits for the reconciler to finish with an environment


@dataclass(frozen=True)
class PushResult:
    deployment_id: str | None
    note: str | None


class Superseded(BranchyardError):
    """A newer deployment to the same environment arrived; this one stops where it is."""


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


class Controller:
    def __init__(self, settings: Settings, store: Store, router: Router) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.data = DataPlane(settings, store)
        self.backups = Backups(store, self.data, settings.home / "backups")
        self.replicas = Replicas(settings, store, self.data.box)
        from .previews import Previews
        from .promotions import Promotions
        from .webhooks import Webhooks

        self.previews = Previews(self)
        self.webhooks = Webhooks(self)
        self.promotions = Promotions(self)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._in_progress: dict[str, threading.Event] = {}  # deployment id → "superseded" flag
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Adopt what is running, clean up what a crash left behind, then keep reconciling."""
        from .reconciler import Reconciler

        for d in (self.settings.repos_dir, self.settings.releases_dir, self.settings.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.router.ensure_running()
        self.recover()
        self.promotions.recover()
        self.data.ensure_running()
        self.reconciler = Reconciler(self)
        self.reconciler.run_once()
        self._loop = threading.Thread(target=self.reconciler.run_forever, args=(self._stop,), name="reconciler", daemon=True)
        self._loop.start()
        threading.Thread(target=self.previews.run_forever, args=(self._stop,), name="previews", daemon=True).start()
        self.webhooks.resume()  # deliveries accepted before a crash and not yet acted on

    def shutdown(self, *, wait: float = 5.0) -> None:
        self._stop.set()
        self.previews.shutdown()
        if self._loop:
            self._loop.join(timeout=wait)

    def lock(self, project: str, env: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((project, env), threading.Lock())

    def in_progress(self) -> frozenset[str]:
        return frozenset(self._in_progress)

    def recover(self) -> None:
        """After a (re)start: finish or fail what was mid-flight. Replicas are then sorted out by the reconciler."""
        with self.store.session() as s:
            stale = s.scalars(select(m.Deployment).where(m.Deployment.status.in_(m.IN_PROGRESS))).all()
            for dep in stale:
                if dep.id in self._in_progress:
                    continue
                env = s.get(m.Environment, dep.environment_id)
                project = s.get(m.Project, dep.project_id)
                if env.current_deployment_id == dep.id:
                    # The switch was committed before the crash: this deployment is the one serving.
                    dep.status, dep.finished_at = m.SUCCESS, m.utcnow()
                    note = "the control plane restarted after the switch; deployment completed"
                    self.store.record(s, project.name, "deploy.succeeded", note, environment=env.name, deployment_id=dep.id)
                else:
                    previous = dep.status
                    dep.status, dep.finished_at = m.FAILED, m.utcnow()
                    dep.error = f"the control plane stopped while the deployment was {previous}; previous deployment kept"
                    note = dep.error
                    self.store.record(s, project.name, "deploy.failed", note, environment=env.name, deployment_id=dep.id)
                if dep.log_path:
                    DeployLog(Path(dep.log_path))(f"!!! {note}")
        for project_dir in self.settings.releases_dir.glob("*"):
            if project_dir.is_dir():
                for path in release.remove_incomplete_releases(project_dir):
                    log.info("removed half-written release %s", path)

    # --- projects & environments -------------------------------------------------------------------

    def create_project(self, name: str, upstream: str | None, github_repository: str | None = None) -> dict:
        name = names.project_name(name)
        repo = names.safe_join(self.settings.repos_dir, f"{name}.git")
        with self.store.session() as s:
            existing = s.scalar(select(m.Project).where(m.Project.name == name))
            if existing is None:
                create_bare_repo(repo, project=name, home=self.settings.home)
                s.add(m.Project(name=name, repo_path=str(repo), upstream=upstream, github_repository=github_repository))
                self.store.record(s, name, "project.created", f"project {name} created")
            else:
                create_bare_repo(Path(existing.repo_path), project=name, home=self.settings.home)
                if upstream:
                    existing.upstream = upstream
                if github_repository:
                    existing.github_repository = github_repository
        return self.project_info(name)

    def project_info(self, name: str) -> dict:
        with self.store.session() as s:
            p = self.store.project(s, name)
            return {"name": p.name, "repo_path": p.repo_path, "upstream": _shown_upstream(p.upstream),
                    "github_repository": p.github_repository, "webhook_secret_set": p.webhook_secret is not None}

    def configure_github(self, project: str, *, webhook_secret: str | None, repository: str | None) -> dict:
        """`branchyard github configure`: the project's own webhook secret (encrypted) and GitHub repository."""
        if repository is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository):
            raise BadInput(f"github configure: --repository: expected \"owner/name\", got {repository!r}")
        if webhook_secret is not None and len(webhook_secret) < 8:
            raise BadInput("github configure: --webhook-secret: use at least 8 characters")
        with self.store.session() as s:
            p = self.store.project(s, project)
            changed = []
            if webhook_secret is not None:
                p.webhook_secret = self.data.box.encrypt(webhook_secret)
                changed.append("webhook secret")
            if repository is not None:
                p.github_repository = repository
                changed.append(f"repository {repository}")
            self.store.record(s, project, "github.configured", f"github: {', '.join(changed) or 'nothing'} set",
                              actor="cli")
        return self.project_info(project)

    def remember_spec(self, project: str, spec) -> None:  # noqa: ANN001 - ProjectSpec
        """What a persistent branch's config says about GitHub and previews, kept for webhooks and the janitor."""
        from dataclasses import asdict

        with self.store.session() as s:
            p = self.store.project(s, project)
            if spec.github_repository:
                p.github_repository = spec.github_repository
            p.preview_policy = json.dumps(asdict(spec.preview)) if spec.preview is not None else None

    def cancel_deployments(self, project: str, env_name: str) -> list[str]:
        """Ask the environment's deployments in progress to stop at their next step; the ids still running."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
            if env is None:
                return []
            ids = list(s.scalars(select(m.Deployment.id).where(m.Deployment.environment_id == env.id)))
        running = [d for d in ids if d in self._in_progress]
        for dep_id in running:
            flag = self._in_progress.get(dep_id)
            if flag is not None:
                flag.set()
        return running

    def list_projects(self) -> list[dict]:
        with self.store.session() as s:
            return [
                {"name": p.name, "repo_path": p.repo_path, "upstream": _shown_upstream(p.upstream)}
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
        self.sync_routes()
        return self.environment_info(project, name)

    def delete_environment(self, project: str, name: str) -> None:
        """Stop the environment's processes, drop its route, database and Redis, and forget it (releases and logs too).

        Production's database gets a final backup first."""
        with self._busy_lock(project, name):
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, name)
                replica_ids = list(s.scalars(select(m.Replica.id).where(m.Replica.environment_id == env.id)))
                releases = list(s.scalars(select(m.Deployment.release_dir).where(m.Deployment.environment_id == env.id)))
                production = env.production
                has_database = s.scalar(select(m.Service.id).where(m.Service.environment_id == env.id,
                                                                   m.Service.kind == "postgres")) is not None
                env.state = m.ENV_SLEEPING
            self.sync_routes()
            self.replicas.stop(replica_ids, grace=5)
            if production and has_database:
                self.backups.create(project, name, kind="final")  # kept after the environment is gone
            freed = self.data.destroy(project, name)  # its database and role, its Redis, their data directories
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), name)
                s.delete(env)  # variables, secrets and service records go with it (ON DELETE CASCADE)
                detail = f"; {', '.join(freed)}" if freed else ""
                self.store.record(s, project, "environment.deleted", f"environment {name} deleted{detail}", environment=name)
            self.sync_routes()
            for path in releases:
                if path:
                    shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(names.safe_join(self.settings.logs_dir, project, name), ignore_errors=True)

    def list_environments(self, project: str) -> list[dict]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            envs = s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id))
            rows = [self._env_dict(s, p, e, probe_health=False) for e in envs]
        for row in rows:
            if row["ephemeral"]:
                row["preview"] = self.previews.info(project, row["name"])
        return rows

    def environment_info(self, project: str, name: str) -> dict:
        with self.store.session() as s:
            p = self.store.project(s, project)
            return self._env_dict(s, p, self.store.environment(s, p, name), probe_health=True)

    def _env_dict(self, s, p: m.Project, env: m.Environment, *, probe_health: bool) -> dict:  # noqa: ANN001 - Session
        current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
        latest = s.scalar(
            select(m.Deployment).where(m.Deployment.environment_id == env.id).order_by(m.Deployment.created_at.desc())
        )
        health_path = json.loads(current.config_json)["web"].get("healthcheck_path") if current and current.config_json else None
        replicas = []
        if current is not None:
            rows = s.scalars(
                select(m.Replica)
                .where(m.Replica.deployment_id == current.id, m.Replica.state != m.REPLICA_STOPPED)
                .order_by(m.Replica.slot)
            )
            for r in rows:
                h = processes.adopt(r.pid, r.start_time, r.port, r.log_path)
                alive = h is not None and processes.is_alive(h)
                health = None
                if probe_health and alive:
                    health = "healthy" if probe(r.port, health_path, timeout=1.0).ok else "unhealthy"
                replicas.append(
                    {
                        "slot": r.slot,
                        "name": f"{env.name}.web.{r.slot}",
                        "pid": r.pid,
                        "port": r.port,
                        "state": r.state,
                        "alive": alive,
                        "health": health,
                        "restarts": r.restarts,
                        "uptime_seconds": round((m.utcnow() - r.started_at).total_seconds(), 1) if alive else 0,
                        "last_exit": r.last_exit,
                    }
                )
        standby = [
            {"deployment_id": r.deployment_id, "slot": r.slot, "pid": r.pid, "port": r.port,
             "seconds_left": round(self.replicas.standby_left(r.id), 1)}
            for r in s.scalars(select(m.Replica).where(m.Replica.environment_id == env.id, m.Replica.state == m.REPLICA_STANDBY)
                               .order_by(m.Replica.slot))
        ]
        status = current.status if current else (latest.status if latest else "NO DEPLOYMENTS")
        if env.state == m.ENV_SLEEPING:
            status = m.SLEEPING
        return {
            "project": p.name,
            "name": env.name,
            "branch": env.branch,
            "production": env.production,
            "ephemeral": env.ephemeral,
            "state": env.state,
            "url": self.settings.public_url(self.hostname(p, env)),
            "hostname": self.hostname(p, env),
            "status": status,
            "replicas_override": env.replicas_override,
            "current_deployment": _deployment_dict(current) if current else None,
            "latest_deployment": _deployment_dict(latest) if latest else None,
            "replicas": replicas,
            "standby": standby,  # the previous deployment's replicas kept warm for overlapSeconds
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
            return [
                _deployment_dict(d) | {"current": d.id == env.current_deployment_id, "can_rollback": _retained(d)}
                for d in rows
            ]

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
            repo = Path(self.store.project(s, project).repo_path)
        if new == ZERO_SHA:
            if ref.startswith("refs/heads/"):
                _, note = self.previews.want_branch(project, names.branch_from_ref(ref), None)
                return PushResult(None, note)
            return PushResult(None, f"{ref} deleted")
        if ref.startswith(UP_REF_PREFIX):
            env_name, branch = names.environment_name(ref[len(UP_REF_PREFIX):]), None
        elif ref.startswith("refs/heads/"):
            env_name, branch = None, names.branch_from_ref(ref)
        else:
            return PushResult(None, f"{ref} stored (only branches deploy)")
        incoming = names.safe_join(self.settings.releases_dir, project, f".incoming-{new[:40]}-{time.monotonic_ns()}")
        release.export_commit(repo, new, incoming, git_env=git_env)
        try:
            spec = load_project(incoming)
            if env_name is None:
                env_name = spec.environment_for_branch(branch)
                if env_name is None and spec.preview is not None and spec.preview.trigger == "branch" \
                        and spec.preview_matches(branch):
                    return self._branch_preview(project, repo, branch, new, git_env, spec)
                if env_name is None:
                    return PushResult(None, f"branch {branch!r} is not mapped to an environment; stored, not deployed")
            dep_id = self._queue_build(project, env_name, new, branch, "up" if branch is None else "push", incoming, spec)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return PushResult(dep_id, None)

    def _branch_preview(self, project: str, repo: Path, branch: str, sha: str, git_env: dict[str, str],
                        spec) -> PushResult:  # noqa: ANN001 - ProjectSpec
        """trigger = "branch": the pushed branch gets (or updates) its own preview, deployed now so the push streams it."""
        env_name, note = self.previews.want_branch(project, branch, sha)
        if env_name is None:
            return PushResult(None, note)
        with self.previews.busy(project, env_name):  # the preview loop leaves it alone while the push queues it
            dep_id = self.previews.deploy_commit(project, env_name, sha, branch, fork=False, policy=spec.preview,
                                                 repo=repo, git_env=git_env)
        if dep_id is None:
            info = self.previews.info(project, env_name) or {}
            return PushResult(None, f"no preview for branch {branch!r}: {info.get('reason')}")
        return PushResult(dep_id, f"preview {env_name} for branch {branch}")

    def _queue_build(self, project: str, env_name: str, sha: str, branch: str | None, trigger: str, incoming: Path,
                     spec) -> str:  # noqa: ANN001 - ProjectSpec
        """Create the environment if the spec declares it, record a QUEUED deployment, start its worker."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
            if env is None:
                cfg = spec.environment(env_name)  # NotFound names the declared environments
                env = m.Environment(project_id=p.id, name=env_name, branch=cfg.branch, production=cfg.production,
                                    ephemeral=cfg.ephemeral)
                s.add(env)
                s.flush()
                self.store.record(s, project, "environment.created", f"environment {env_name} created on first push",
                                  environment=env_name)
            dep = self._new_deployment(s, p, env, sha=sha, branch=branch, trigger=trigger)
            dep.release_dir = str(names.safe_join(self.settings.releases_dir, project, dep.id))
            dep_id, release_dir = dep.id, Path(dep.release_dir)
        incoming.rename(release_dir)
        self._supersede_older(env_name, project, dep_id)
        self._start_worker(project, env_name, dep_id, self._build_and_roll_out)
        self.sync_routes()  # a new environment answers at once ("no healthy deployment yet"), never 404
        return dep_id

    def _new_deployment(self, s, p: m.Project, env: m.Environment, *, sha: str, branch: str | None, trigger: str,  # noqa: ANN001
                        source: m.Deployment | None = None) -> m.Deployment:
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha=sha, branch=branch, trigger=trigger)
        if source is not None:  # a redeploy: the same release and snapshot, no rebuild
            dep.release_dir, dep.config_json, dep.variables_json = source.release_dir, source.config_json, source.variables_json
        s.add(dep)
        s.flush()
        dep.log_path = str(names.safe_join(self.settings.logs_dir, p.name, env.name, dep.id, "deploy.log"))
        what = f"{trigger} of {sha[:12]}" + (f" ({branch})" if branch else "") + (f" from deployment {source.id}" if source else "")
        self.store.record(s, p.name, "deploy.queued", what, environment=env.name, deployment_id=dep.id)
        DeployLog(Path(dep.log_path))(f"-----> {what} to {p.name}/{env.name} (deployment {dep.id})")
        return dep

    def _supersede_older(self, env_name: str, project: str, newest: str) -> None:
        """Newest wins: older deployments of this environment still building stop at their next step.

        Only those created before `newest`: two deployments queued at once never stop each other."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            created = s.get(m.Deployment, newest).created_at
            older = s.scalars(
                select(m.Deployment.id).where(
                    m.Deployment.environment_id == env.id, m.Deployment.status.in_([m.QUEUED, m.BUILDING]),
                    m.Deployment.id != newest, m.Deployment.created_at < created,
                )
            ).all()
        for dep_id in older:
            flag = self._in_progress.get(dep_id)
            if flag is not None:
                flag.set()

    def _start_worker(self, project: str, env_name: str, dep_id: str, work: Callable[[str, str, str, DeployLog], None],
                      *, holding_lock: bool = False) -> None:
        """Run `work` in a thread under the environment's lock (handed over if the caller already holds it)."""
        self._in_progress[dep_id] = threading.Event()
        threading.Thread(target=self._run, args=(project, env_name, dep_id, work, holding_lock), name=f"deploy-{dep_id[:8]}",
                         daemon=True).start()

    def _run(self, project: str, env_name: str, dep_id: str, work: Callable[[str, str, str, DeployLog], None],
             holding_lock: bool) -> None:
        """Run one deployment under the environment's lock; every failure ends on the deployment's status."""
        with self.store.session() as s:
            out = DeployLog(Path(s.get(m.Deployment, dep_id).log_path))
        lock = self.lock(project, env_name)
        try:
            with _Held(lock) if holding_lock else lock:
                self._check_superseded(dep_id)
                work(project, env_name, dep_id, out)
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
            self._in_progress.pop(dep_id, None)

    def _check_superseded(self, dep_id: str) -> None:
        flag = self._in_progress.get(dep_id)
        if flag is not None and flag.is_set():
            with self.store.session() as s:
                dep = s.get(m.Deployment, dep_id)
                if dep is None:
                    raise Superseded("cancelled: the environment was deleted")
                newer = s.scalar(
                    select(m.Deployment.id)
                    .where(m.Deployment.environment_id == dep.environment_id, m.Deployment.created_at > dep.created_at)
                    .order_by(m.Deployment.created_at.desc())
                )
            raise Superseded(f"superseded by newer deployment {newer}" if newer else "cancelled: the environment is being destroyed")

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

    def _fail(self, project: str, env_name: str, dep_id: str, reason: str, out: Callable[[str], None]) -> None:
        out(f"!!! deployment FAILED: {reason}")
        self._finish(dep_id, m.FAILED, reason)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.failed", reason, environment=env_name, deployment_id=dep_id)
        self.sync_routes()

    def _build_and_roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        ready = self._prepare(project, env_name, dep_id, out)
        out(f"-----> building {ready.sha[:12]} (python virtualenv)")
        started = time.monotonic()
        built = release.build(ready.src, ready.cfg.web.build_command, cache_dir=self.settings.cache_dir,
                              python=self.settings.python, log=lambda line: out(f"       {line}"))
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
        from . import promotions

        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            release_dir, sha, trigger = Path(dep.release_dir), dep.commit_sha, dep.trigger
        self._set_status(dep_id, m.BUILDING)
        spec = load_project(release_dir)
        for note in (*spec.warnings, *spec.ignored):
            out(f"       note: {note}")
        cfg = spec.environment(env_name)
        if not cfg.web.start_command:
            raise BadInput("no start command: set deploy.startCommand in railway.toml or a web: line in Procfile")
        if trigger in ("push", "up", "webhook"):
            promotions.require_source_first(self, project, env_name, spec, sha)  # the git path keeps the gates
        src = release_dir if cfg.web.root_dir in ("", ".") else names.safe_join(release_dir, cfg.web.root_dir)
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            env_id = env.id
            env.branch, env.production, env.ephemeral = cfg.branch or env.branch, cfg.production, cfg.ephemeral
        raw, namespaces = self._variables_for(env_id, cfg)
        out.redact = self.data.redactor(env_id)
        _check_references(raw, namespaces, cfg)  # refuse a bad reference before anything is built or created
        return _Ready(release_dir=release_dir, sha=sha, spec=spec, cfg=cfg, src=src, env_id=env_id, raw=raw,
                      namespaces=namespaces)

    def _apply(self, project: str, env_name: str, dep_id: str, out: DeployLog, ready: _Ready, venv: Path) -> None:
        """Provision, resolve, guard isolation, back up and migrate, then roll out (health-checked, zero downtime)."""
        from . import promotions

        cfg, env_id, sha, release_dir, src = ready.cfg, ready.env_id, ready.sha, ready.release_dir, ready.src
        key = self._template_key(ready, venv, out)
        provisioned = self.data.provision(project, env_name, cfg, template_key=key)
        for name in provisioned.namespaces:
            cloned = provisioned.cloned_from and cfg.postgres is not None and name == cfg.postgres.name
            out(f"-----> {name}: ready" + (f" (cloned from template {provisioned.cloned_from})" if cloned else ""))
        out.redact = self.data.redactor(env_id)  # now including the service passwords
        values = resolve(ready.raw, namespaces=ready.namespaces | provisioned.namespaces, port=PORT_PLACEHOLDER).values
        promotions.isolation_guard(self, project, env_name, values, production=cfg.production)  # before any hook
        release.mark_release_complete(release_dir, {"deployment": dep_id, "commit": sha, "venv": str(venv)})
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.config_json = json.dumps(cfg.to_dict())
            dep.variables_json = self.data.box.encrypt(json.dumps(values))  # values include secrets: encrypted at rest
            s.get(m.Project, dep.project_id).domain = ready.spec.domain  # the deployed commit says which domain to use
        if not ready.spec.is_preview_instance(env_name):  # a preview's own files never change who gets a preview
            self.remember_spec(project, ready.spec)
        failpoints.hit("deploy.after_build")
        self._check_superseded(dep_id)
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
                run_hook(command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT)
            if cfg.web.seed_command and self.data.needs_seed(env_id):
                out(f"-----> seedCommand (new database): {cfg.web.seed_command}")
                run_hook(cfg.web.seed_command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT)
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

    def _variables_for(self, env_id: int, cfg) -> tuple[dict[str, str], dict[str, dict[str, str]]]:  # noqa: ANN001
        """An environment's raw variables (spec, then `variables set`, then secrets) and the namespaces known so far."""
        plain, secrets = self.data.stored_variables(env_id)
        raw = dict(cfg.variables) | plain | {k: f"${{{{ secrets.{k} }}}}" for k in secrets}
        return raw, self.data.service_variables(env_id) | {"secrets": secrets, "shared": dict(cfg.variables) | plain}

    def _roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        """Start the deployment's replicas, health-check them, switch the route in one call, drain the old ones."""
        self._set_status(dep_id, m.DEPLOYING)
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            host = self.hostname(s.get(m.Project, dep.project_id), env)
        ctx = self.replicas.context(dep_id, host)
        n = ctx.replicas
        out(f"-----> starting {n} replica{'s' if n != 1 else ''}: {ctx.start_command}")
        path = ctx.healthcheck_path
        out(f"-----> health check: {'GET ' + path + ' → 200' if path else 'GET / → status < 500'} within {ctx.healthcheck_timeout}s")
        handles = self.replicas.start(ctx, list(range(n)), out)
        failpoints.hit("deploy.after_health")
        with self.store.session() as s:
            env = s.get(m.Environment, ctx.env_id)
            old_id = env.current_deployment_id if env.current_deployment_id != dep_id else None
            env.current_deployment_id, env.state = dep_id, m.ENV_ACTIVE
            if old_id:
                old = s.get(m.Deployment, old_id)
                if old.status in (m.SUCCESS, m.CRASHED, m.SLEEPING):
                    old.status = m.REMOVED
        failpoints.hit("deploy.after_switch")
        self.sync_routes()
        out(f"-----> routed {self.settings.public_url(host)} → {', '.join(str(h.port) for _, h in handles)}")
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

    # --- operations on an environment ---------------------------------------------------------------

    def _busy_lock(self, project: str, env_name: str) -> _Held:
        """The environment's lock, already acquired. Conflict at once while a deployment of it is in progress;
        otherwise wait a little (the reconciler holds it briefly on each pass) before giving up."""
        busy = f"environment {env_name!r} is busy with another deployment or operation; try again when it ends"
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            running = s.scalars(select(m.Deployment.id).where(m.Deployment.environment_id == env.id,
                                                              m.Deployment.status.in_(m.IN_PROGRESS))).all()
        if any(dep_id in self._in_progress for dep_id in running):
            raise Conflict(busy)
        lock = self.lock(project, env_name)
        if not lock.acquire(timeout=LOCK_WAIT):
            raise Conflict(busy)
        return _Held(lock)

    def redeploy(self, project: str, env_name: str, deployment_id: str, *, trigger: str = "redeploy",
                 resolve_again: bool = False) -> str:
        """Bring back a retained deployment's release and variables (no rebuild), health-checked, zero downtime."""
        held = self._busy_lock(project, env_name)
        try:
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                source = self.store.deployment(s, deployment_id, env)
                if not _retained(source):
                    raise NotFound(
                        f"deployment {source.id} can no longer be rolled back to: its release is not retained "
                        f"(branchyard keeps the last {self.settings.releases_retained} per environment)"
                    )
                env_id, release_dir = env.id, Path(source.release_dir)
            variables_json = None
            if resolve_again:  # same release, variables resolved again from the spec + what is set now
                cfg = load_project(release_dir).environment(env_name)
                raw, namespaces = self._variables_for(env_id, cfg)
                values = resolve(raw, namespaces=namespaces, port=PORT_PLACEHOLDER).values  # BadInput before any change
                from . import promotions

                promotions.isolation_guard(self, project, env_name, values, production=cfg.production)
                variables_json = self.data.box.encrypt(json.dumps(values))
            with self.store.session() as s:
                p = self.store.project(s, project)
                env = self.store.environment(s, p, env_name)
                source = self.store.deployment(s, deployment_id, env)
                dep = self._new_deployment(s, p, env, sha=source.commit_sha, branch=source.branch, trigger=trigger,
                                           source=source)
                if variables_json is not None:
                    dep.variables_json = variables_json
            if not resolve_again:
                DeployLog(Path(dep.log_path))("       note: database state is not reverted by a redeploy or rollback")
        except BaseException:
            held.lock.release()
            raise
        self._start_worker(project, env_name, dep.id, self._roll_out, holding_lock=True)  # the worker releases it
        return dep.id

    def rollback(self, project: str, env_name: str) -> str:
        """Redeploy the previous successful deployment."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            if current is None:
                raise NotFound(f"environment {env_name!r} has no current deployment to roll back from")
            candidates = s.scalars(
                select(m.Deployment)
                .where(m.Deployment.environment_id == env.id, m.Deployment.status == m.REMOVED,
                       m.Deployment.created_at < current.created_at, m.Deployment.release_dir != current.release_dir)
                .order_by(m.Deployment.created_at.desc())
            ).all()
            target = next((d for d in candidates if _retained(d)), None)
            if target is None:
                raise NotFound(f"environment {env_name!r} has no earlier successful deployment still retained")
            target_id = target.id
        return self.redeploy(project, env_name, target_id, trigger="rollback")

    def down(self, project: str, env_name: str) -> dict:
        """Stop the app processes and route a clear 503 page; data, variables and releases are kept."""
        with self._busy_lock(project, env_name):
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state == m.ENV_SLEEPING:
                    raise Conflict(f"environment {env_name!r} is already down")
                env.state = m.ENV_SLEEPING
                if env.current_deployment_id:
                    s.get(m.Deployment, env.current_deployment_id).status = m.SLEEPING
                ids = list(s.scalars(select(m.Replica.id).where(m.Replica.environment_id == env.id,
                                                                m.Replica.state != m.REPLICA_STOPPED)))
                self.store.record(s, project, "environment.down", f"{env_name} stopped (sleeping)", environment=env_name)
            self.sync_routes()  # first the 503 page, then stop: no request reaches a dying process
            failpoints.hit("down.after_route")
            self.replicas.stop(ids, grace=DEFAULT_DRAINING_SECONDS)
        return self.environment_info(project, env_name)

    def wake(self, project: str, env_name: str) -> str:
        """`up` for a sleeping environment: bring back its last successful deployment."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            if env.state != m.ENV_SLEEPING:
                raise Conflict(f"environment {env_name!r} is not down")
            if not env.current_deployment_id:
                raise NotFound(f"environment {env_name!r} has no deployment to bring back")
            current = env.current_deployment_id
        return self.redeploy(project, env_name, current, trigger="up")

    def scale(self, project: str, env_name: str, replicas: int) -> dict:
        """Change the web replica count without a rebuild; returns when the new count is serving."""
        if replicas < 1:
            raise BadInput(f"scale: web={replicas}: expected at least 1 replica (use `branchyard down` to stop)")
        with self._busy_lock(project, env_name):
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state == m.ENV_SLEEPING:
                    raise Conflict(f"environment {env_name!r} is down; run `branchyard up -e {env_name}` first")
                if not env.current_deployment_id:
                    raise Conflict(f"environment {env_name!r} has no deployment to scale")
                env.replicas_override = replicas
                self.store.record(s, project, "environment.scaled", f"web scaled to {replicas}", environment=env_name)
            self.reconciler.reconcile_env(project, env_name, wait_healthy=True)
        return self.environment_info(project, env_name)

    # --- variables -----------------------------------------------------------------------------------

    def effective_variables(self, project: str, env_name: str, *, reveal: bool = False) -> dict:
        """What the environment's processes get, resolved; secrets (and values containing them) masked unless `reveal`.

        Resolved against the current deployment's config when there is one, else only what was set by hand."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            env_id = env.id
            current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        plain, secrets = self.data.stored_variables(env_id)
        cfg = None
        if release_dir is not None and release_dir.is_dir():
            cfg = load_project(release_dir).environment(env_name)
        raw = (dict(cfg.variables) if cfg else {}) | plain | {k: f"${{{{ secrets.{k} }}}}" for k in secrets}
        namespaces = self.data.service_variables(env_id) | {"secrets": secrets, "shared": raw}
        pending = {} if cfg is None else {svc.name: "not provisioned yet" for svc in (cfg.postgres, cfg.redis)
                                            if svc is not None and svc.name not in namespaces}
        resolved = resolve(raw, namespaces=namespaces, pending_namespaces=pending, port=PORT_PLACEHOLDER)
        redact = (lambda v: v) if reveal else self.data.redactor(env_id)
        return {
            "variables": {k: redact(v) for k, v in sorted(resolved.values.items())},
            "secrets": sorted(secrets),
            "pending": resolved.pending,
        }

    def set_variables(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool, deploy: bool) -> dict:
        """`variables set`: guard, store, then redeploy the current release with the new values (unless skipped).

        Refused whole (nothing stored) when the environment's variables would then reach production's data."""
        self._guard_variables(project, env_name, pairs, secret=secret)
        keys = self.data.set_variables(project, env_name, pairs, secret=secret)
        return {"set": keys, "deployment_id": self._redeploy_for_variables(project, env_name) if deploy else None}

    def _guard_variables(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool,
                         deleted: str | None = None) -> None:
        """The isolation guard over env_name's variables as they would be after `variables set` of `pairs` (or
        `variables delete` of `deleted`): the current release's spec variables, what is stored, the change,
        resolved as a deploy would (BadInput)."""
        from . import promotions
        from .variables import after_set, environment_variables

        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
            production, env_id, release_dir = env_name == "production", None, None
            if env is None:
                names.environment_name(env_name)  # NameRefused before a refusal could be recorded under it
            else:
                production, env_id = env.production, env.id
                current = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
                if current is not None and _retained(current):
                    release_dir = Path(current.release_dir)
        cfg = None
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
        raw, namespaces = environment_variables(cfg.variables if cfg is not None else {}, plain, secrets, services)
        values = resolve(raw, namespaces=namespaces, port=PORT_PLACEHOLDER, lenient=True).values
        promotions.isolation_guard(self, project, env_name, values, production=False, kind="variables.refused")

    def delete_variable(self, project: str, env_name: str, key: str, *, deploy: bool) -> dict:
        """`variables delete`: refused whole, like `set`, when what shows through would reach production's data."""
        self._guard_variables(project, env_name, {}, secret=False, deleted=key)
        self.data.delete_variable(project, env_name, key)
        return {"deleted": key, "deployment_id": self._redeploy_for_variables(project, env_name) if deploy else None}

    def _redeploy_for_variables(self, project: str, env_name: str) -> str | None:
        """A new deployment of the current release whose variables are resolved again (no rebuild)."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            if not env.current_deployment_id or env.state == m.ENV_SLEEPING:
                return None  # nothing running: the next deploy picks the values up
            current_id = env.current_deployment_id
        dep_id = self.redeploy(project, env_name, current_id, trigger="variables", resolve_again=True)
        return dep_id

    def add_plugin(self, project: str, env_name: str, plugin: str) -> dict:
        """`branchyard add --plugin postgresql|redis -e ENV`: provision now; references can use it at the next deploy."""
        with self._busy_lock(project, env_name):
            return {"plugin": plugin, "variables": self.data.add_plugin(project, env_name, plugin)}

    def connection(self, project: str, env_name: str, kind: str) -> dict[str, str]:
        """The connection variables of one environment's service (for `connect`)."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            rows = s.scalars(select(m.Service).where(m.Service.environment_id == env.id, m.Service.kind == kind)).all()
            names_ = [r.name for r in rows]
        spaces = self.data.service_variables(env.id)
        if not names_:
            raise NotFound(f"environment {env_name!r} has no {kind} (add one with `branchyard add --plugin "
                           f"{'postgresql' if kind == 'postgres' else 'redis'} -e {env_name}`)")
        return spaces[names_[0]]

    # --- database refresh ----------------------------------------------------------------------------

    def refresh_database(self, project: str, target: str, source: str) -> dict:
        """Copy SOURCE's database into TARGET through the [sanitize] rules of SOURCE's running release.

        Production is never a target, and nothing is copied without rules."""
        from ..data.sanitize import refresh

        if target == source:
            raise BadInput(f"db refresh: {target} cannot be refreshed from itself")
        with self.store.session() as s:
            p = self.store.project(s, project)
            src_env, dst_env = self.store.environment(s, p, source), self.store.environment(s, p, target)
            if dst_env.production:
                raise BadInput(f"db refresh: {target} is production; refreshing production from anything is refused")
            current = s.get(m.Deployment, src_env.current_deployment_id) if src_env.current_deployment_id else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
        if release_dir is None or not release_dir.is_dir():
            raise NotFound(f"db refresh: {source} has no running release to read its [sanitize] rules from")
        rules = load_project(release_dir).sanitize
        if rules is None:
            raise BadInput(f"db refresh: {source}'s branchyard.toml has no [sanitize] section; refusing to copy its data "
                           "unsanitized (declare rules, `keep` where a column holds no personal data)")
        with self._busy_lock(project, target):
            lines: list[str] = []
            result = refresh(self.data.admin_for(project, source), database_name(project, source),
                             self.data.admin_for(project, target), database_name(project, target),
                             database_name(project, target), rules,
                             workdir=self.settings.home / "backups" / ".refresh", log=lines.append)
            with self.store.session() as s:
                self.store.record(s, project, "database.refreshed", f"{target} refreshed from {source} (sanitized)",
                                  environment=target)
        return result | {"log": lines}

    # --- routes ------------------------------------------------------------------------------------

    def hostname(self, p: m.Project, env: m.Environment) -> str:
        return names.hostname(p.name, env.name, p.domain or self.settings.domain, production=env.production)

    def desired_routes(self) -> list[Route]:
        routes = []
        with self.store.session() as s:  # two column queries: this runs on every reconcile pass
            envs = s.execute(
                select(m.Project.name, m.Project.domain, m.Environment.name, m.Environment.production,
                       m.Environment.state, m.Environment.current_deployment_id)
                .join(m.Environment).order_by(m.Project.name, m.Environment.id)
            ).all()
            ports: dict[str, list[int]] = {}
            for deployment_id, port in s.execute(
                select(m.Replica.deployment_id, m.Replica.port)
                .join(m.Environment, m.Environment.current_deployment_id == m.Replica.deployment_id)
                .where(m.Replica.state == m.REPLICA_RUNNING)
                .order_by(m.Replica.slot)
            ):
                ports.setdefault(deployment_id, []).append(port)
        for project, domain, env_name, production, state, current in envs:
            host = names.hostname(project, env_name, domain or self.settings.domain, production=production)
            if state == m.ENV_SLEEPING:
                routes.append(Route(host=host, project=project, environment=env_name, upstreams=(), state="sleeping"))
                continue
            ups = tuple(f"127.0.0.1:{port}" for port in ports.get(current, ())) if current else ()
            routes.append(Route(host=host, project=project, environment=env_name, upstreams=ups,
                                state="serving" if ups else "unavailable"))
        return routes

    def sync_routes(self) -> None:
        """Make Caddy serve exactly what the state says (one admin call, skipped when nothing changed)."""
        self.router.apply(self.desired_routes())

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
            env_id = env.id
        redact = self.data.redactor(env_id)  # apps may print their secrets; the logs never show them
        result = {"deployment_id": dep.id, "status": dep.status, "build": [], "runtime": {}}
        if deploy_log is not None:
            result["build"] = [redact(line) for line in processes.tail(deploy_log, lines if not build else 10_000)]
        if not build:
            result["runtime"] = {name: [redact(line) for line in processes.tail(path, lines)] for name, path in runtime.items()}
        return result

    # --- whole-machine teardown (tests, uninstall) -------------------------------------------------

    def stop_everything(self) -> None:
        """Stop every app process this control plane knows about, the router, every Redis and PostgreSQL server.

        Nothing is deleted: `branchyard server --detach` brings it all back (data included)."""
        with self.store.session() as s:
            ids = list(s.scalars(select(m.Replica.id).where(m.Replica.state != m.REPLICA_STOPPED)))
        self.replicas.stop(ids, grace=3)
        self.router.stop()
        self.data.stop_all()


@dataclass(frozen=True)
class _Ready:
    """A deployment's release checked and its variables gathered, ready to be built or applied."""

    release_dir: Path
    sha: str
    spec: object  # ProjectSpec
    cfg: object  # EnvironmentConfig
    src: Path
    env_id: int
    raw: dict[str, str]
    namespaces: dict[str, dict[str, str]]


class _Held:
    """Context manager releasing an already-acquired lock."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _shown_upstream(upstream: str | None) -> str | None:
    """The upstream URL as API answers show it: without the credentials it may carry (https://***@host/...)."""
    return names.scrub_credentials(upstream) if upstream else upstream


def _retained(d: m.Deployment) -> bool:
    """Whether a deployment can still be brought back: a finished build whose release is kept."""
    return bool(d.release_dir and d.config_json and release.release_complete(Path(d.release_dir)))


class _AnyKey(dict):
    """A namespace whose variables are not known yet (a service about to be provisioned): any key is fine."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return ""


def _check_references(raw: dict[str, str], namespaces: dict[str, dict[str, str]], cfg) -> None:  # noqa: ANN001
    """Every reference must name a declared service, a set secret, a variable, or PORT (else BadInput)."""
    services = {svc.name: _AnyKey() for svc in (cfg.postgres, cfg.redis) if svc is not None}
    resolve(raw, namespaces=namespaces | services, port=PORT_PLACEHOLDER)


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
