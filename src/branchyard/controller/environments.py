"""Environments as users see and operate them: status, deployments, events, logs; add, down, up, scale."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session

from .. import failpoints, isolation, names, verification
from .. import logrecords as lr
from .. import monitoring as mon
from ..access import SYSTEM, Actor
from ..backends.ports import PodStatus, RuntimePort
from ..errors import BadInput, Conflict, NotFound
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .attempt import DEFAULT_DRAINING_SECONDS
from .dataplane import DataPlane
from .deployer import Deployer, retained
from .logship import LogShipper
from .replicas import Replicas
from .routes import Routes
from .sleep import Sleeper
from .snapshot import DeploymentConfig
from .workers import check_scale, scaled, services_status

DEGRADED = "DEGRADED"  # some replicas of the current deployment serve, not all
DOWN = "DOWN"  # none does: the route answers "unavailable"


def replica_health(state: str, *, alive: bool, failures: int, checked: bool) -> str:
    """healthy | unhealthy | starting | unknown, from what the reconciler and the liveness probes recorded."""
    if not alive:
        return "unhealthy"
    if state == m.REPLICA_STARTING:
        return "starting"  # out of the route until its health check passes
    if state != m.REPLICA_RUNNING:
        return "unknown"
    if failures:
        return "unhealthy"  # still routed until healthcheckFailures in a row
    return "healthy" if checked else "unknown"


def serving_status(replicas: list[dict[str, Any]], desired: int) -> str:
    """SUCCESS while every wanted replica runs and passes its checks; DEGRADED when only some do; DOWN when none."""
    serving = [r for r in replicas if r["alive"] and r["state"] == m.REPLICA_RUNNING and r["health"] != "unhealthy"]
    if not serving:
        return DOWN
    return DEGRADED if len(serving) < max(desired, len(replicas)) else m.SUCCESS


@dataclasses.dataclass
class _Facts:
    """What `_env_dict` reads about a set of environments, in four queries whatever their number (the board of a
    project with 50 previews made ~370 one environment at a time): their current and target deployments, the newest
    deployment of each, their replicas not stopped (the current deployment's, and standby ones), their domains."""

    deployments: dict[str, m.Deployment]
    latest: dict[int, m.Deployment]
    replicas: dict[int, list[m.Replica]]  # by environment, by slot
    domains: dict[int, list[str]]  # by environment, sorted

    @classmethod
    def load(cls, s: Session, envs: list[m.Environment]) -> _Facts:
        ids = [e.id for e in envs]
        wanted = {d for e in envs for d in (e.current_deployment_id, e.target_deployment_id) if d}
        deployments = {d.id: d for d in s.scalars(select(m.Deployment).where(m.Deployment.id.in_(wanted)))} if wanted else {}
        newest = (select(m.Deployment.environment_id, func.max(m.Deployment.created_at).label("at"))
                  .where(m.Deployment.environment_id.in_(ids)).group_by(m.Deployment.environment_id).subquery())
        latest: dict[int, m.Deployment] = {}
        for d in s.scalars(select(m.Deployment).join(newest, and_(m.Deployment.environment_id == newest.c.environment_id,
                                                                  m.Deployment.created_at == newest.c.at))):
            latest.setdefault(d.environment_id, d)
        replicas: dict[int, list[m.Replica]] = {}
        for r in s.scalars(select(m.Replica).where(m.Replica.environment_id.in_(ids), m.Replica.state != m.REPLICA_STOPPED)
                           .order_by(m.Replica.slot, m.Replica.id)):
            replicas.setdefault(r.environment_id, []).append(r)
        domains: dict[int, list[str]] = {}
        for env_id, host in s.execute(select(m.Domain.environment_id, m.Domain.host)
                                      .where(m.Domain.environment_id.in_(ids)).order_by(m.Domain.host)):
            domains.setdefault(env_id, []).append(host)
        return cls(deployments, latest, replicas, domains)


class Environments:
    def __init__(self, settings: Settings, store: Store, *, runtime: RuntimePort, deployer: Deployer, replicas: Replicas,
                 data: DataPlane,
                 routes: Routes, records: LogShipper, reconcile_env: Callable[[str, str], None],
                 preview_infos: Callable[[str], dict[str, dict[str, Any]]],
                 uptime: Callable[[Session, m.Environment, str | None], dict[str, Any] | None] | None = None,
                 measures: Callable[[str, str], dict[str, float]] | None = None,
                 cron: Callable[[str | None], dict[str, Any] | None] | None = None,
                 sleeper: Sleeper | None = None, on_cluster: bool = False,
                 pods: Callable[[str, str], list[PodStatus]] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.deployer = deployer
        self.records = records
        self.replicas = replicas
        self.data = data
        self.routes = routes
        self.reconcile_env = reconcile_env  # converge one environment's replicas now, waiting until they serve
        self.on_cluster = on_cluster  # Kubernetes: `down` re-applies the workloads at zero (reconcile_env)
        self.pods = pods  # Kubernetes: an environment's pods, for `status` (its replicas are pods, not processes)
        self.preview_infos = preview_infos  # a project's previews by environment: pull request or branch, decision
        self.uptime = uptime  # availability and incidents of the probed public URL (controller/uptime.py)
        self.measures = measures  # an environment's latest metric values (controller/metrics.py: the database's size)
        self.cron = cron  # a cron service's schedule and next run (controller/cron.py)
        self.sleeper = sleeper  # issue 17: idle sleep and wake (controller/sleep.py)

    # --- reading -----------------------------------------------------------------------------------

    def list(self, project: str) -> list[dict[str, Any]]:
        """Every environment of the project as `status` shows it (without asking unchecked replicas: `info` does).
        The board lists 50 previews and more: what each needs is read for all of them at once (`_Facts`)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            envs = list(s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)))
            facts = _Facts.load(s, envs)
            rows = [self._env_dict(s, p, e, facts, probe_health=False) for e in envs]
        previews = self.preview_infos(project) if any(row["ephemeral"] for row in rows) else {}
        for row in rows:
            if row["ephemeral"]:
                row["preview"] = previews.get(row["name"])
        return rows

    def info(self, project: str, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, name)
            info = self._env_dict(s, p, env, _Facts.load(s, [env]), probe_health=True)
        if self.pods is not None:  # a cluster: the pods, and whether the web ones serve
            info["pods"] = [dataclasses.asdict(pod) for pod in self.pods(project, name)]
            if info["status"] == m.SUCCESS:
                web = [pod for pod in info["pods"] if pod["service"] == "web"]
                ready = sum(1 for pod in web if pod["ready"])
                info["status"] = DOWN if not ready else DEGRADED if ready < len(web) else m.SUCCESS
        return info

    def _env_dict(self, s: Session, p: m.Project, env: m.Environment, facts: _Facts, *,
                  probe_health: bool) -> dict[str, Any]:
        current = facts.deployments.get(env.current_deployment_id) if env.current_deployment_id else None
        latest = facts.latest.get(env.id)
        config = DeploymentConfig.from_json(current.config_json) if current is not None and current.config_json else None
        web = config.web if config is not None else None
        health_path = web.healthcheck_path if web is not None else None
        replicas = []
        if current is not None:
            rows = [r for r in facts.replicas.get(env.id, ()) if r.deployment_id == current.id]
            for r in rows:
                h = self.runtime.adopt(r.pid, r.start_time, r.port, r.log_path, r.host)
                alive = h is not None and self.runtime.is_alive(h)
                health = replica_health(r.state, alive=alive, failures=r.health_failures, checked=r.health_checked_at is not None)
                if r.service != "web" and health == "unknown" and alive and r.state == m.REPLICA_RUNNING:
                    health = "healthy"  # a Procfile worker has no HTTP check: being alive is its health
                elif health == "unknown" and probe_health and alive and r.state == m.REPLICA_RUNNING:
                    # not yet checked by the liveness probes (or no path: nothing records it): ask it now
                    health = "healthy" if self.runtime.probe(r.port, health_path, timeout=1.0, host=r.host).ok else "unhealthy"
                replicas.append(
                    {
                        "service": r.service,
                        "slot": r.slot,
                        "name": f"{env.name}.{r.service}.{r.slot}",
                        "pid": r.pid,
                        "port": r.port,
                        "host": r.host,  # where the router reaches it: its environment's namespace address (issue 17)
                        "state": r.state,
                        "alive": alive,
                        "health": health,  # healthy | unhealthy | starting | unknown
                        "health_failures": r.health_failures,  # failed liveness checks in a row (healthcheckFailures evicts)
                        "health_detail": r.health_detail,  # what the last failed check got
                        "restarts": r.restarts,
                        "uptime_seconds": round((m.utcnow() - r.started_at).total_seconds(), 1) if alive else 0,
                        "last_exit": r.last_exit,
                    }
                )
        standby = [
            {"deployment_id": r.deployment_id, "slot": r.slot, "pid": r.pid, "port": r.port,
             "seconds_left": round(self.replicas.standby_left(r.id), 1)}
            for r in facts.replicas.get(env.id, ()) if r.state == m.REPLICA_STANDBY
        ]
        target = facts.deployments.get(env.target_deployment_id) if env.target_deployment_id else None
        status = current.status if current else (latest.status if latest else "NO DEPLOYMENTS")
        if env.state == m.ENV_SLEEPING:
            status = m.SLEEPING
        elif current is not None and status == m.SUCCESS and web is not None and web.cron_schedule:
            pass  # a cron service runs no replicas: SUCCESS once built and recorded (its runs: `cron runs`)
        elif current is not None and status == m.SUCCESS and web is not None and not self.on_cluster:
            status = serving_status([r for r in replicas if r["service"] == "web"], env.replicas_override or web.replicas)
            if status == m.SUCCESS and current.tests_status == verification.FAILED:
                status = verification.UNHEALTHY  # serving, but its post-deploy tests failed (staging, previews)
        return {
            "project": p.name,
            "name": env.name,
            "branch": env.branch,
            "branch_pinned": env.branch_pinned,  # set by the user (`environment add --branch`): a deploy keeps it
            "production": env.production,
            "ephemeral": env.ephemeral,
            "protected": env.protected,  # admins only deploy, configure or open a shell (issue 10)
            "state": env.state,
            # issue 17: SLEEPING since when, and how: idle (its next request wakes it) or down (`branchyard down`)
            "sleeping": {"since": env.slept_at.isoformat() + "Z" if env.slept_at else None,
                         "kind": env.sleep_kind or m.SLEEP_DOWN} if env.state == m.ENV_SLEEPING else None,
            "url": self.routes.url(p, env),
            "hostname": self.routes.hostname(p, env),
            "domains": facts.domains.get(env.id, []),  # custom domains, routed like the hostname (`domain list` has their certificates)
            "status": status,
            "replicas_override": env.replicas_override,
            "current_deployment": deployment_dict(current) if current else None,
            "latest_deployment": deployment_dict(latest) if latest else None,
            # what the environment should run, when it does not yet: its progress, or why it failed to get there
            "target_deployment": deployment_dict(target) | {"attempts": target.attempts}
            if target is not None and target.id != env.current_deployment_id else None,
            "replicas": [r for r in replicas if r["service"] == "web"],  # web's, as before issue 17
            # issue 17: every service (web and the Procfile's worker …): desired, running/total, restarts, its replicas
            "services": services_status(replicas, env.services_scale, config.processes if config else {},
                                        env.replicas_override or (web.replicas if web else 1)),
            "standby": standby,  # the previous deployment's replicas kept warm for overlapSeconds
            # issue 16: availability over 24h/7d/30d, incidents, last check (None: its URL is not probed)
            "uptime": self.uptime(s, env, current.config_json if current else None) if self.uptime else None,
            # issue 17: what this machine enforces (limits, network) and why not; the database's size against `storage`
            "isolation": isolation.to_json(self.runtime.isolation()),
            "database_storage": self._storage(p.name, env.name, current.config_json if current else None),
            # issue 17: a cron service's schedule and next run (None: a web service)
            "cron": self.cron(current.config_json if current else None) if self.cron else None,
            # the data services its current deployment has (the dashboard's board card): postgres, redis
            "data_services": [kind for kind in ("postgres", "redis") if config is not None and config.raw.get(kind)],
        }

    def _storage(self, project: str, env_name: str, config_json: str | None) -> dict[str, Any] | None:
        """The database's last measured size against its postgres `storage` (None: no storage set, or not measured)."""
        try:
            storage_mb = (json.loads(config_json or "{}").get("postgres") or {}).get("storage_mb")
        except ValueError:
            return None
        if not storage_mb or self.measures is None:
            return None
        return isolation.storage(self.measures(project, env_name).get(mon.POSTGRES_DATABASE_BYTES), storage_mb)

    def deployments(self, project: str, env_name: str, limit: int = 50) -> list[dict[str, Any]]:
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
                deployment_dict(d) | {"current": d.id == env.current_deployment_id, "can_rollback": retained(d)}
                for d in rows
            ]

    def protected(self, project: str, env_name: str) -> bool:
        """Whether the environment is protected (admins only deploy, configure or open a shell); False when unknown.
        Asked on the API's event loop for every environment-scoped request: one prepared read, no lock."""
        with self.store.engine.connect() as connection:
            return bool(connection.execute(_PROTECTED, {"project": project, "env": env_name}).scalar())

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            return deployment_dict(self.store.deployment(s, deployment_id))

    def events(self, project: str | None = None, env_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
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
                    "actor_id": e.actor_id,
                    "message": e.message,
                }
                for e in s.scalars(q)
            ]

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
        return data.decode("utf-8", errors="replace"), offset + len(data), done and deployment_id not in self.deployer.running()

    def logs(self, project: str, env_name: str, *, lines: int = 100, build: bool = False,
             deployment_id: str | None = None, query: lr.Query | None = None, cursor: int | None = None,
             limit: int | None = None) -> dict[str, Any]:
        """An environment's logs: its structured records (`records`, filtered by `query`: the last `limit`, or those
        after `cursor` — give back `cursor` to follow), and a deployment's (default: current, else latest) deploy
        log as lines read from its file (`build`). With a cursor (a follow's next poll) only the records are read.
        (Replicas' output, `runtime` before, is in the records: stream stdout/stderr, service, replica.)"""
        q = query or lr.Query()
        limit = limit or lines
        if cursor is not None:
            with self.store.session() as s:
                self.store.environment(s, self.store.project(s, project), env_name)  # NotFound for a wrong name
            records, cursor = self.records.query(project, env_name, q, limit=limit, cursor=cursor)
            return {"records": records, "cursor": cursor, "build": []}
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            if deployment_id:
                dep = self.store.deployment(s, deployment_id, env)
            else:
                dep = (self.store.current_deployment(s, env)) or s.scalar(
                    select(m.Deployment).where(m.Deployment.environment_id == env.id).order_by(m.Deployment.created_at.desc())
                )
            if dep is None:
                raise NotFound(f"environment {env_name!r} has no deployments yet")
            deploy_log = Path(dep.log_path) if dep.log_path else None
            env_id, dep_id, status = env.id, dep.id, dep.status
        if deployment_id or build:
            q = lr.Query(**{**q.__dict__, "deployment": dep_id if deployment_id or build else q.deployment,
                            "build": build or q.build})
        records, cursor = self.records.query(project, env_name, q, limit=limit)
        result: dict[str, Any] = {"deployment_id": dep_id, "status": status, "build": [], "records": records,
                                  "cursor": cursor}
        if deploy_log is not None and build:
            redact = self.data.redactor(env_id)  # apps may print their secrets; the logs never show them
            result["build"] = [redact(line) for line in self.runtime.tail(deploy_log, 10_000)]
        return result

    # --- operating ---------------------------------------------------------------------------------

    def add(self, project: str, name: str, *, branch: str | None = None, actor: Actor = SYSTEM) -> dict[str, Any]:
        """`environment add NAME [--branch B]`: a branch given here is the user's, never overwritten by a deploy.

        An environment that exists with a branch the user never set (declared by the project files, or made by
        `variables set`) takes the branch given; any other existing environment is a Conflict."""
        name = names.environment_name(name)
        if branch is not None and not names.is_safe_git_ref(f"refs/heads/{branch}"):
            raise BadInput(f"environment add: --branch {branch!r} is not a branch name")
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, name)
            if env is not None and (branch is None or env.branch_pinned or env.ephemeral):
                raise Conflict(f"environment {name!r} already exists in project {project!r}")
            created = env is None
            if env is not None:
                was, env.branch, env.branch_pinned = env.branch, branch, True
                self.store.record(s, project, "environment.branch_set", f"{name} deploys branch {branch}"
                                  + (f" (instead of {was}, as the project files say)" if was and was != branch else ""),
                                  environment=name, actor=actor)
            else:
                s.add(m.Environment(project_id=p.id, name=name, branch=branch, branch_pinned=branch is not None,
                                    production=name == "production", protected=name == "production"))
                self.store.record(s, project, "environment.created", f"environment {name} created", environment=name,
                                  actor=actor)
        self.routes.sync()
        return self.info(project, name) | {"created": created}

    def down(self, project: str, env_name: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Stop the app processes and route a clear 503 page; data, variables and releases are kept."""
        with self.deployer.exclusive(project, env_name):
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state == m.ENV_SLEEPING and env.sleep_kind in (None, m.SLEEP_DOWN):
                    raise Conflict(f"environment {env_name!r} is already down")
                if env.state != m.ENV_SLEEPING:
                    env.slept_at = m.utcnow()
                env.state, env.sleep_kind = m.ENV_SLEEPING, m.SLEEP_DOWN  # idle sleep included: no wake on request now
                if env.current_deployment_id:
                    s.get(m.Deployment, env.current_deployment_id).status = m.SLEEPING
                ids = list(s.scalars(select(m.Replica.id).where(m.Replica.environment_id == env.id,
                                                                m.Replica.state != m.REPLICA_STOPPED)))
                self.store.record(s, project, "environment.down", f"{env_name} stopped (sleeping)", environment=env_name,
                                  actor=actor)
            self.routes.sync()  # first the 503 page, then stop: no request reaches a dying process
            failpoints.hit("down.after_route")
            self.replicas.stop(ids, grace=DEFAULT_DRAINING_SECONDS)
            if self.on_cluster:
                self.reconcile_env(project, env_name)
        return self.info(project, env_name)

    def wake(self, project: str, env_name: str, *, actor: Actor = SYSTEM) -> str:
        """`up` for a sleeping environment: bring back its last successful deployment (asleep for want of requests:
        its replicas straight from the snapshot, as a request would, and the id of that same deployment)."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            if env.state != m.ENV_SLEEPING:
                raise Conflict(f"environment {env_name!r} is not down")
            if not env.current_deployment_id:
                raise NotFound(f"environment {env_name!r} has no deployment to bring back")
            current, idle = env.current_deployment_id, env.sleep_kind == m.SLEEP_IDLE
        if idle and self.sleeper is not None:
            self.sleeper.wake(project, env_name, trigger="up", actor=actor).result()
            return current
        return self.deployer.redeploy(project, env_name, current, trigger="up", actor=actor)

    def scale(self, project: str, env_name: str, replicas: int, *, service: str = "web",
              actor: Actor = SYSTEM) -> dict[str, Any]:
        """Change a service's replica count without a rebuild (web, or a Procfile process type such as worker; 0 stops
        a worker); returns when the new count is serving."""
        if service == "web":
            check_scale(service, replicas, {})  # refused before the lock, as before issue 17
        with self.deployer.exclusive(project, env_name):
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state == m.ENV_SLEEPING:
                    raise Conflict(f"environment {env_name!r} is down; run `branchyard up -e {env_name}` first")
                if not env.current_deployment_id:
                    raise Conflict(f"environment {env_name!r} has no deployment to scale")
                current = self.store.current_deployment(s, env)
                config = DeploymentConfig.from_json(current.config_json) if current and current.config_json else None
                if service == "web":
                    if config is not None and config.web.cron_schedule:
                        raise Conflict(f"scale: web={replicas}: environment {env_name!r} runs a cron service "
                                       f"(cronSchedule {config.web.cron_schedule!r}): no web replica serves")
                    env.replicas_override = replicas
                else:
                    check_scale(service, replicas, config.processes if config else {})
                    env.services_scale = scaled(env.services_scale, service, replicas)
                self.store.record(s, project, "environment.scaled", f"{service} scaled to {replicas}", environment=env_name,
                                  actor=actor)
            self.reconcile_env(project, env_name)
        return self.info(project, env_name)


_PROTECTED = (select(m.Environment.protected).join(m.Project, m.Project.id == m.Environment.project_id)
              .where(m.Project.name == bindparam("project"), m.Environment.name == bindparam("env")))


def deployment_dict(d: m.Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "status": d.status,
        "commit": d.commit_sha,
        "branch": d.branch,
        "trigger": d.trigger,
        "actor": d.actor,
        "error": d.error,
        "created_at": d.created_at.isoformat() + "Z",
        "finished_at": d.finished_at.isoformat() + "Z" if d.finished_at else None,
        # the post-deploy tests ([environments.<env>.tests]): passed | failed | running | skipped; None: not decided yet
        "tests": {"status": d.tests_status, "detail": d.tests_detail,
                  "at": d.tests_at.isoformat() + "Z" if d.tests_at else None} if d.tests_status else None,
    }
