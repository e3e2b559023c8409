"""Sleep and wake (issue 17): environments idle for their `sleepAfter` stop their app processes, and the next request
wakes them (held by the router meanwhile, never failed).

- Activity: the last request per environment, from the router's access log (the log shipper's `HttpSink`, teed to
  `observe_http`), and in memory only: after a restart, the restart counts as activity (an environment gets a whole
  `sleepAfter` again). A deploy counts (its current deployment's `finished_at`, from the store), and so does a wake.
- The idle pass (`run_forever`, a thread of its own, every INTERVAL s): each ACTIVE environment whose current
  deployment serves and none is on its way, with `spec.sleep.effective` seconds to sleep after (pure) and
  `spec.sleep.should_sleep` (pure) → `sleep`: state SLEEPING, kind `idle`, `slept_at`; the route turns into a wake
  route first, then the replicas stop (0 processes); event `environment.slept`.
- Wake (`wake`): one future per environment, however many requests wait (the API's internal wake endpoint and `up`).
  Under the environment's lock it starts the current deployment's replicas straight from its snapshot
  (`Replicas.start`: no build, no hooks, no new deployment), health-checks them, then switches the state to ACTIVE
  and syncs the routes, and only then resolves: the router serves the woken replicas before a held request goes on.
  Event `environment.woke` (trigger: request or up), or `environment.wake_failed` with why.
`branchyard down` sleeps with kind `down` (the 503 page, no wake on request); `up` wakes either kind.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import select

from .. import monitoring as mon
from ..access import SYSTEM, Actor
from ..errors import BranchyardError, Conflict, NotFound
from ..settings import Settings
from ..spec import sleep as rule
from ..store import models as m
from ..store.db import Store
from .attempt import DEFAULT_DRAINING_SECONDS
from .locks import EnvLocks
from .replicas import Replicas
from .routes import Routes
from .snapshot import web_of

log = logging.getLogger("branchyard.sleep")

INTERVAL = 1.0  # seconds between idle passes (one small query each)
LOCK_WAIT = 120.0  # a wake waits this long for the environment's lock (a deploy or a sleep holding it)


class Sleeper:
    def __init__(self, settings: Settings, store: Store, *, replicas: Replicas, routes: Routes, locks: EnvLocks,
                 running: Callable[[], set[str]], clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.replicas = replicas
        self.routes = routes
        self.locks = locks
        self.running = running  # ids of the deployments a worker is on now (Deployer.running)
        self.clock = clock
        self.started = clock()  # a restart counts as activity: nobody knows what came before it
        self._activity: dict[tuple[str, str], float] = {}
        self._wakes: dict[tuple[str, str], Future[str]] = {}
        self._guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="wake")
        self._said_blind = False

    # --- activity ---------------------------------------------------------------------------------

    def observe_http(self, project: str, environment: str, entry: mon.HttpEntry) -> None:
        """The log shipper's HttpSink (beside the metrics'): a request the router served. Quick, never raises."""
        self.touch(project, environment, entry.ts)

    def touch(self, project: str, environment: str, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        with self._guard:
            key = (project, environment)
            if at > self._activity.get(key, 0.0):
                self._activity[key] = at

    def last_request(self, project: str, environment: str) -> float | None:
        """When the router last served the environment a request (or it last woke), as seen since this start."""
        with self._guard:
            return self._activity.get((project, environment))

    def last_activity(self, project: str, environment: str, deployed_at: float | None) -> float:
        return max(self.started, self.last_request(project, environment) or 0.0, deployed_at or 0.0)

    # --- going to sleep ---------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(INTERVAL):
            try:
                self.pass_once()
            except Exception:  # a store hiccup must not end sleeping
                log.exception("sleep pass failed")

    def pass_once(self) -> list[str]:
        """Put every environment idle for its sleepAfter to sleep; the names of those it did."""
        if not self.settings.access_log:
            if not self._said_blind:  # it cannot see requests: it would put busy environments to sleep
                log.warning("BRANCHYARD_ACCESS_LOG=off: no request is seen, so no environment sleeps for want of them")
                self._said_blind = True
            return []
        now = self.clock()
        with self.store.session() as s:
            rows = s.execute(
                select(m.Project.name, m.Environment.name, m.Environment.production, m.Environment.ephemeral,
                       m.Environment.target_deployment_id, m.Deployment.id, m.Deployment.config_json,
                       m.Deployment.finished_at)
                .join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
                .where(m.Environment.state == m.ENV_ACTIVE, m.Deployment.status == m.SUCCESS)
            ).all()
        running = self.running()
        slept = []
        for project, env_name, production, ephemeral, target, current, config_json, finished_at in rows:
            if current in running or (target is not None and target != current):
                continue  # a deployment is on its way: its end is activity
            after = self.sleep_after(config_json, production=production, ephemeral=ephemeral)
            deployed = finished_at.replace(tzinfo=dt.timezone.utc).timestamp() if finished_at else None
            if rule.should_sleep(self.last_activity(project, env_name, deployed), now, after):
                if self.sleep(project, env_name, after or 0):
                    slept.append(f"{project}/{env_name}")
        return slept

    def sleep_after(self, config_json: str | None, *, production: bool, ephemeral: bool) -> int | None:
        """The deployment snapshot's effective sleepAfter (None: never)."""
        web = web_of(config_json)
        if web is None:
            return None
        declared = json.loads(config_json or "{}").get("sleep_after")
        after, _ = rule.effective(declared if isinstance(declared, int) else None, sleep_application=web.sleep_application,
                                  production=production, ephemeral=ephemeral,
                                  preview_default=self.settings.preview_sleep_after, cron=bool(web.cron_schedule))
        return after

    def sleep(self, project: str, env_name: str, after: int) -> bool:
        """Sleep now (kind idle) unless someone works on the environment; whether it did."""
        lock = self.locks.lock(project, env_name)
        if not lock.acquire(blocking=False):
            return False  # a deploy or an operation: try again on the next pass
        try:
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state != m.ENV_ACTIVE or not env.current_deployment_id:
                    return False
                env.state, env.sleep_kind, env.slept_at = m.ENV_SLEEPING, m.SLEEP_IDLE, m.utcnow()
                s.get(m.Deployment, env.current_deployment_id).status = m.SLEEPING
                ids = list(s.scalars(select(m.Replica.id).where(m.Replica.environment_id == env.id,
                                                                m.Replica.state != m.REPLICA_STOPPED)))
                self.store.record(s, project, "environment.slept",
                                  f"{env_name} slept after {after} s without a request (its next request wakes it)",
                                  environment=env_name)
            self.routes.sync()  # first the wake route, then stop: a request from now on is held, not failed
            self.replicas.stop(ids, grace=DEFAULT_DRAINING_SECONDS)
            return True
        finally:
            lock.release()

    # --- waking -----------------------------------------------------------------------------------

    def wake(self, project: str, env_name: str, *, trigger: str = "request", actor: Actor = SYSTEM) -> Future[str]:
        """The environment's wake, started now or already under way: resolves once its replicas are healthy and
        routed (to a one-line detail), or fails with why (BranchyardError)."""
        key = (project, env_name)
        with self._guard:
            wake = self._wakes.get(key)
            if wake is None or wake.done():
                wake = self._wakes[key] = self._pool.submit(self._wake, project, env_name, trigger, actor)
            return wake

    def _wake(self, project: str, env_name: str, trigger: str, actor: Actor) -> str:
        began = time.monotonic()
        lock = self.locks.lock(project, env_name)
        if not lock.acquire(timeout=LOCK_WAIT):
            raise Conflict(f"environment {env_name!r} stayed busy for {LOCK_WAIT:.0f} s; it was not woken")
        try:
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                if env.state == m.ENV_ACTIVE:
                    return f"{env_name} is awake"  # woken (or deployed) while this waited for the lock
                if env.sleep_kind != m.SLEEP_IDLE and trigger == "request":
                    raise Conflict(f"environment {env_name!r} is down (`branchyard down`); "
                                   f"`branchyard up -e {env_name}` brings it back")
                if not env.current_deployment_id:
                    raise NotFound(f"environment {env_name!r} has no deployment to wake")
                dep_id = env.current_deployment_id
            try:
                ctx = self.replicas.context(dep_id, self.routes.host_of(project, env_name))
                self.replicas.start(ctx, list(range(ctx.replicas)),
                                    lambda line: log.info("%s/%s wake: %s", project, env_name, line.strip()))
            except BranchyardError as err:
                with self.store.session() as s:
                    self.store.record(s, project, "environment.wake_failed", f"{env_name} did not wake: {err}",
                                      environment=env_name, deployment_id=dep_id, actor=actor)
                raise
            healthy = time.monotonic() - began
            with self.store.session() as s:
                env = self.store.environment(s, self.store.project(s, project), env_name)
                env.state, env.sleep_kind, env.slept_at = m.ENV_ACTIVE, None, None
                s.get(m.Deployment, dep_id).status = m.SUCCESS
            self.routes.sync()  # resolved only after this: the held requests go on to the woken replicas
            took = time.monotonic() - began
            with self.store.session() as s:
                self.store.record(s, project, "environment.woke",
                                  f"{env_name} woke on {'a request' if trigger == 'request' else '`up`'} in {took:.2f} s "
                                  f"(replicas healthy at {healthy:.2f} s, then routed)",
                                  environment=env_name, deployment_id=dep_id, actor=actor)
            self.touch(project, env_name)
            return f"{env_name} woke in {took:.2f} s"
        finally:
            lock.release()

    def health_timeout(self, project: str, env_name: str) -> float | None:
        """The current deployment's health check timeout (how long a wake may take), None without one."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            dep = s.get(m.Deployment, env.current_deployment_id) if env.current_deployment_id else None
            web = web_of(dep.config_json) if dep is not None else None
        return float(web.healthcheck_timeout) if web is not None else None

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
