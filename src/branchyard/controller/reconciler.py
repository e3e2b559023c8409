"""The level-triggered loop: observe each environment, plan (pure), apply. Repairs whatever drifted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from .. import failpoints, plan
from ..backends.ports import ProcessHandle, RouterPort, RuntimePort
from ..errors import BranchyardError
from ..spec.model import WebConfig
from ..store import models as m
from ..store.db import Store
from .dataplane import DataPlane
from .deployer import Deployer
from .liveness import Liveness
from .locks import EnvLocks
from .previews import Previews
from .replicas import Replicas
from .routes import Routes
from .snapshot import DeploymentConfig
from .workers import counts

log = logging.getLogger("branchyard.reconciler")

INTERVAL = 1.0  # seconds between passes
HOUSEKEEPING_EVERY = 60  # passes between scheduled-backup checks


class Reconciler:
    """Every pass: the router is up, each environment runs exactly its current deployment's replicas (healthy,
    restarted per policy), each unfinished deployment is being worked on (deploy_plan), routes match."""

    def __init__(self, store: Store, *, router: RouterPort, runtime: RuntimePort, routes: Routes, replicas: Replicas, deployer: Deployer,
                 locks: EnvLocks, previews: Previews, data: DataPlane, liveness: Liveness, housekeeping: Callable[[], None],
                 replicas_are_pods: bool = False) -> None:
        self.store = store
        self.router = router
        self.runtime = runtime
        self.routes = routes
        self.replicas = replicas
        self.deployer = deployer
        self.locks = locks
        self.previews = previews
        self.data = data  # its PostgreSQL and Redis servers: revived when found dead
        self.liveness = liveness  # probes RUNNING replicas in its own threads; this loop reads the results
        self.housekeeping = housekeeping  # scheduled backups, old deliveries: in a thread of its own
        # a cluster backend (Kubernetes): its controllers keep each environment's pods, not this loop
        self.replicas_are_pods = replicas_are_pods

    def run_forever(self, stop: threading.Event) -> None:
        passes = 0
        housekeeping: threading.Thread | None = None
        while not stop.wait(INTERVAL):
            passes += 1
            try:
                self.run_once()
            except Exception:  # keep the loop alive; the next pass starts from fresh state
                log.exception("reconcile pass failed")
            # In a thread of its own: a daily pg_dump of a big database must not hold up restarts and routes.
            if passes % HOUSEKEEPING_EVERY == 0 and (housekeeping is None or not housekeeping.is_alive()):
                housekeeping = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
                housekeeping.start()

    def _housekeeping(self) -> None:
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping (scheduled backups, old deliveries) failed")

    def run_once(self) -> None:
        """One pass over every environment whose lock is free, then its deployments, then make the routes match."""
        self.router.ensure_running()  # a router tier that died comes back (cheap when both answer)
        for revived in self.data.revive_dead():  # so does a PostgreSQL or Redis (cheap while they live)
            with self.store.session() as s:
                self.store.record(s, revived.project, revived.event, revived.message, environment=revived.environment)
        self.previews.kick()  # previews: create missing ones, destroy closed and idle ones (its own thread)
        with self.store.session() as s:
            envs = s.execute(select(m.Project.name, m.Environment.name).join(m.Environment)).all()
        for project, env_name in envs:
            lock = self.locks.lock(project, env_name)
            if not lock.acquire(blocking=False):
                continue  # a deploy or an operation is working on it and will leave a consistent state
            try:
                self.reconcile_env(project, env_name)
            except BranchyardError as err:
                log.warning("reconcile %s/%s: %s", project, env_name, err)
            finally:
                lock.release()
        self.deployer.converge_all()  # after the replicas: leftovers of an interrupted attempt are stopped first
        self.routes.sync()

    def reconcile_env(self, project: str, env_name: str, *, wait_healthy: bool = False) -> None:
        """Observe, plan, apply for one environment; the caller holds its lock.

        With `wait_healthy`, replicas started now are health-checked before returning (for `scale`)."""
        if self.replicas_are_pods:
            return
        obs, rows = self._observe(project, env_name)
        if obs is None:
            return
        actions = plan.plan_environment(obs, time.time())
        for action in actions:
            log.info("%s/%s: %s", project, env_name, action)
        # Batched so that a scale changes the routes once, not once per replica.
        self._stop([a.replica_id for a in actions if isinstance(a, plan.StopReplica)])
        starts = [a for a in actions if isinstance(a, plan.StartReplica)]
        self._start(project, env_name, [a.slot for a in starts if a.service == plan.WEB], wait_healthy,
                    [(a.service, a.slot) for a in starts if a.service != plan.WEB])
        for action in actions:
            if not isinstance(action, (plan.StopReplica, plan.StartReplica)):
                self._apply(project, env_name, action, rows)
        if actions:
            self.routes.sync()

    def _observe(self, project: str, env_name: str) -> tuple[plan.EnvObs | None, dict[int, m.Replica]]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            rows = {
                r.id: r
                for r in s.scalars(
                    select(m.Replica).where(
                        m.Replica.environment_id == env.id,
                        m.Replica.state.in_(plan.HELD_STATES | {m.REPLICA_DRAINING, m.REPLICA_STANDBY}),
                    )
                )
            }
            current = self.store.current_deployment(s, env)
            config = DeploymentConfig.from_json(current.config_json) if current is not None and current.config_json else None
            web = config.web if config is not None else WebConfig()
            desired = (env.replicas_override or web.replicas) if current is not None else None
            if current is not None and web.cron_schedule:
                desired = 0  # a cron service: its runs are controller/cron.py's, no replica serves
            services = tuple(counts(config.processes, env.services_scale).items()) if config is not None else ()
            state, current_id, current_status = env.state, env.current_deployment_id, current.status if current else None
        in_progress = self.deployer.running()
        now = time.time()
        observed = []
        for r in rows.values():
            h = ProcessHandle(r.pid, r.start_time, r.port, r.log_path, r.host)
            alive = self.runtime.is_alive(h)  # reaps our own children, so exit_code() below knows their status
            healthy, overdue = None, False
            if alive and r.state == m.REPLICA_STARTING and r.deployment_id not in in_progress and r.service == plan.WEB:
                healthy = self.runtime.probe(r.port, web.healthcheck_path, timeout=1.0, host=r.host).ok
                timeout = web.healthcheck_timeout
                overdue = (m.utcnow() - r.started_at).total_seconds() > timeout
            # Liveness: only what the current deployment serves, once no deploy owns it; without a path, being alive is it.
            watched = (alive and r.state == m.REPLICA_RUNNING and r.deployment_id == current_id and state == m.ENV_ACTIVE
                       and r.deployment_id not in in_progress and bool(web.healthcheck_path) and r.service == plan.WEB)
            if watched:
                self.liveness.check(r, web, now)
            observed.append(
                plan.ReplicaObs(
                    id=r.id, deployment_id=r.deployment_id, slot=r.slot, alive=alive, state=r.state, restarts=r.restarts,
                    exit_code=None if alive else self.runtime.exit_code(h), healthy=healthy, overdue=overdue,
                    exit_reason=None if alive else self.runtime.exit_reason(h),
                    restart_after=r.restart_after,
                    standby_open=r.state == m.REPLICA_STANDBY and self.replicas.standby_left(r.id) > 0,
                    health_failures=r.health_failures if watched else 0, failure_threshold=web.healthcheck_failures,
                    health_detail=r.health_detail, service=r.service,
                )
            )
        obs = plan.EnvObs(
            name=env_name, state=state, current_deployment_id=current_id, in_progress=in_progress,
            replicas=tuple(sorted(observed, key=lambda o: o.id)),
            restart_policy=web.restart_policy_type,
            max_retries=web.restart_policy_max_retries,
            desired_replicas=desired, current_status=current_status, desired_services=services,
        )
        return obs, rows

    def _stop(self, replica_ids: list[int]) -> None:
        """Out of the route first (one route change for all), then stop: no request reaches a dying process."""
        if not replica_ids:
            return
        with self.store.session() as s:
            routed = False
            for rid in replica_ids:
                r = s.get(m.Replica, rid)
                routed = routed or r.state == m.REPLICA_RUNNING
                r.state = m.REPLICA_DRAINING
        if routed:
            self.routes.sync()
        self.replicas.stop(replica_ids, grace=10)

    def _start(self, project: str, env_name: str, slots: list[int], wait_healthy: bool,
               others: list[tuple[str, int]] = ()) -> None:
        """Start missing slots of the current deployment (web's, then other services'); with `wait_healthy`, return
        once the web ones serve."""
        if not slots and not others:
            return
        with self.store.session() as s:
            dep_id = self.store.environment(s, self.store.project(s, project), env_name).current_deployment_id
        ctx = self.replicas.context(dep_id, self._host(project, env_name))
        for service, slot in others:  # a Procfile service: RUNNING once started, nothing to wait for
            self.replicas.spawn(ctx, slot, service=service)
        if not slots:
            return
        if wait_healthy:
            self.replicas.start(ctx, slots, lambda line: log.info("%s/%s %s", project, env_name, line.strip()))
            failpoints.hit("scale.after_health")
        else:
            for slot in slots:
                self.replicas.spawn(ctx, slot)  # the next passes health-check it, then route it

    def _apply(self, project: str, env_name: str, action: plan.Action, rows: dict[int, m.Replica]) -> None:
        if isinstance(action, plan.KillUnhealthy):
            with self.store.session() as s:
                r = s.get(m.Replica, action.replica_id)
                routed = r.state == m.REPLICA_RUNNING
                # STARTING is out of the route (only RUNNING is routed) yet still live to the planner: once stopped, the
                # next pass sees it exited and applies the restart policy; restarted, it is routed again once healthy.
                r.state = m.REPLICA_STARTING
                r.health_failures = 0
                r.last_exit = self._last_exit(action.reason, r.log_path)
                h = ProcessHandle(r.pid, r.start_time, r.port, r.log_path, r.host)
                slot, deployment_id = f"{r.service}.{r.slot}", r.deployment_id
            if routed:
                self.routes.sync()  # out of the route before it is stopped: no new request reaches it
            with self.store.session() as s:  # recorded once true: when the event is seen, the route no longer has it
                self.store.record(s, project, "replica.unhealthy", f"{slot} {action.reason}",
                                  environment=env_name, deployment_id=deployment_id)
            self.runtime.stop(h, grace=5)
        elif isinstance(action, plan.MarkReplica):
            if action.state in (m.REPLICA_CRASHED, m.REPLICA_EXITED, m.REPLICA_STOPPED):
                self.replicas.reap_group(action.replica_id)  # its leader exited: orphaned forked workers go too
            with self.store.session() as s:
                r = s.get(m.Replica, action.replica_id)
                r.state = action.state
                if action.state == m.REPLICA_RUNNING:
                    # it just passed its check; failures of the process it replaced (restarted in this row) are not its own
                    r.health_failures, r.health_checked_at = 0, time.time()
                if action.state in (m.REPLICA_CRASHED, m.REPLICA_EXITED):
                    r.last_exit = self._last_exit(action.reason, r.log_path)
                    self.store.record(s, project, f"replica.{action.state.lower()}", f"{r.service}.{r.slot} {action.reason}",
                                      environment=env_name, deployment_id=r.deployment_id)
        elif isinstance(action, plan.MarkCrashed):
            with self.store.session() as s:
                dep = s.get(m.Deployment, action.deployment_id)
                reasons = [r.last_exit for r in s.scalars(select(m.Replica).where(m.Replica.deployment_id == dep.id)) if r.last_exit]
                dep.status = m.CRASHED
                dep.error = action.reason + (f": {reasons[-1]}" if reasons else "")
                self.store.record(s, project, "deploy.crashed", dep.error, environment=env_name, deployment_id=dep.id)
        elif isinstance(action, plan.ScheduleRestart):
            self.replicas.reap_group(action.replica_id)  # its leader exited: orphaned forked workers go too
            with self.store.session() as s:
                r = s.get(m.Replica, action.replica_id)
                r.restart_after = action.at
                r.last_exit = self._last_exit(action.reason, r.log_path)
                self.store.record(s, project, "replica.exited", f"{r.service}.{r.slot} {action.reason}",
                                  environment=env_name, deployment_id=r.deployment_id)
        elif isinstance(action, plan.RestartReplica):
            r = rows[action.replica_id]
            ctx = self.replicas.context(r.deployment_id, self._host(project, env_name))
            rid, h = self.replicas.spawn(ctx, action.slot, replica_id=action.replica_id, service=action.service)
            with self.store.session() as s:
                s.get(m.Replica, rid).restart_after = None
                self.store.record(s, project, "replica.restarted", f"{action.service}.{action.slot} {action.reason} (pid {h.pid})",
                                  environment=env_name, deployment_id=r.deployment_id)

    def _last_exit(self, reason: str, log_path: str) -> str:
        """Why a replica stopped, with the last lines it printed (what `status` shows)."""
        tail = [line.rstrip() for line in self.runtime.tail(Path(log_path), 5) if line.strip()]
        return reason + (" — last output: " + " | ".join(tail)[-500:] if tail else "")

    def _host(self, project: str, env_name: str) -> str:
        return self.routes.host_of(project, env_name)
