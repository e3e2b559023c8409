"""The controller: composes the services of one control plane and runs their lifecycle. Nothing else.

Who does what (docs/architecture.md has the picture):
- `deployer` — deployments: triggers record a target, the deploy planner reaches it (build, hooks, roll-out);
- `reconciler` — the loop: replicas, deployments, routes, data services, every second;
- `environments`, `variables`, `databases`, `projects`, `oneoffs`, `domains` — what users read and operate;
- `pushes`, `webhooks`, `previews`, `promotions` — the triggers;
- `git_follow` — production's branch follows promotions (a store listener, and housekeeping);
- `tests` — post-deploy tests after each deployment goes live (a store listener, and housekeeping);
- `logship` — raw logs → each environment's structured records (a thread), pruned in housekeeping;
- `cron` — cron services' runs on their schedule (a thread);
- `routes`, `guards`, `backups`, `data`, `replicas` — what the others share.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from ..access import Actor
from ..backends.ports import Machine
from ..monitoring import HttpEntry
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .alerts import Alerts, Notifier
from .backups import Backups
from .costs import Costs
from .cron import Cron, scaled_clock
from .databases import Databases
from .dataplane import DataPlane
from .deployer import Deployer
from .domains import Domains
from .env_vars import EnvVariables
from .environments import Environments
from .git_follow import GitFollow
from .guards import Guards
from .liveness import Liveness
from .locks import EnvLocks
from .logship import EnvFacts, LogShipper
from .metrics import Metrics
from .oneoff import OneOffs
from .podlogs import PodLogs
from .previews import Previews
from .projects import Projects
from .promotions import VERIFIER, Promotions
from .push_rules import PushRules
from .pushes import Pushes
from .reconciler import Reconciler
from .replicas import Replicas
from .routes import Routes
from .sleep import Sleeper
from .teardown import Teardown
from .uptime import Uptime
from .users import Users
from .verify import PostDeployTests
from .webhooks import Webhooks


class Controller:
    def __init__(self, settings: Settings, store: Store, machine: Machine) -> None:
        self.settings = settings
        self.store = store
        self.router = machine.router
        self.on_cluster = machine.environments is not None  # Kubernetes: environments are namespaces (issue 19)
        self.transfers = machine.transfers  # Kubernetes: dumps to and from data jobs (api/routes/releases.py)
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

        self.data = DataPlane(settings, store, machine.data)
        self.backups = Backups(store, self.data, settings.home / "backups",
                               cluster_takes_daily=machine.environments is not None)
        self.replicas = Replicas(settings, store, self.data.box, machine.runtime)
        # issue 16: replica, data-service and HTTP series (the log shipper is handed `metrics.observe_http`)
        self.metrics = Metrics(store, machine.runtime, service_variables=self.data.service_variables)
        # issue 16: raw logs → each environment's records; the router's access entries → the metrics
        self.log_facts = EnvFacts(store, self.data)
        self.logship = LogShipper(settings.logs_dir, redactor=self.log_facts.redactor, http_sink=self._observe_http,
                                  cap_bytes=settings.log_cap_mb * 1024 * 1024)
        self.routes = Routes(settings, store, machine.router)
        self.domains = Domains(settings, store, routes=self.routes, certificates=machine.certificates)
        self.guards = Guards(store, self.data)
        self.locks = EnvLocks()
        self.projects = Projects(settings, store, self.data.box)
        self.users = Users(store)
        self.deployer = Deployer(settings, store, data=self.data, replicas=self.replicas, backups=self.backups,
                                 routes=self.routes, guards=self.guards, locks=self.locks, runtime=machine.runtime,
                                 tasks=machine.tasks, environments=machine.environments)
        # issue 17: idle environments sleep, a request (or `up`) wakes them
        self.sleeper = Sleeper(settings, store, replicas=self.replicas, routes=self.routes, locks=self.locks,
                               running=self.deployer.running)
        # issue 17: cron services (cronSchedule) run their start command on schedule, one run at a time
        self.cron = Cron(settings, store, runtime=machine.runtime, tasks=machine.tasks, replicas=self.replicas,
                         host_of=self.routes.host_of, redactor=self.data.redactor,
                         clock=scaled_clock(settings.cron_clock_speed))
        self.teardown = Teardown(settings, store, deployer=self.deployer, replicas=self.replicas, data=self.data,
                                 backups=self.backups, routes=self.routes, cron=self.cron,
                                 environments=machine.environments)
        self.previews = Previews(settings, store, deployer=self.deployer, teardown=self.teardown, stop=self._stop)
        self.pushes = Pushes(settings, store, deployer=self.deployer, previews=self.previews, rules=PushRules(store))
        self.webhooks = Webhooks(settings, store, box=self.data.box, pushes=self.pushes, previews=self.previews)
        self.liveness = Liveness(store, machine.runtime)
        self.reconciler = Reconciler(store, router=machine.router, runtime=machine.runtime, routes=self.routes, replicas=self.replicas,
                                     deployer=self.deployer, locks=self.locks, previews=self.previews, data=self.data,
                                     liveness=self.liveness, housekeeping=self._housekeeping,
                                     replicas_are_pods=self.on_cluster)
        self.uptime = Uptime(settings, store)  # issue 16: the public URL probed through the router
        self.environments = Environments(settings, store, runtime=machine.runtime, deployer=self.deployer, replicas=self.replicas,
                                         data=self.data, routes=self.routes, records=self.logship,
                                         reconcile_env=self._reconcile_now, on_cluster=self.on_cluster,
                                         pods=machine.environments.pods if machine.environments else None,
                                         preview_infos=self.previews.infos, uptime=self.uptime.summary,
                                         measures=self.metrics.current,
                                         cron=self.cron.status,
                                         sleeper=self.sleeper)
        self.variables = EnvVariables(store, data=self.data, deployer=self.deployer, guards=self.guards)
        # `run`: on a cluster, a Job from the current deployment as its rollouts render it
        self.oneoffs = OneOffs(store, variables=self.variables, cluster=self.deployer.attempts.cluster)
        self.databases = Databases(settings, store, data=self.data, deployer=self.deployer,
                                   cluster=self.deployer.attempts.cluster)
        self.promotions = Promotions(settings, store, runtime=machine.runtime, data=self.data, deployer=self.deployer,
                                     environments=self.environments, guards=self.guards, routes=self.routes)
        self.git_follow = GitFollow(store)
        # issue 16: alert rules over the metrics and the uptime probe's `up` (notifications on worker threads)
        self.notifier = Notifier(store, lookup=self._webhook_variable)
        self.alerts = Alerts(settings, store, uptime=self.uptime, notifier=self.notifier, metrics=self.metrics,
                             url_of=self.routes.url)
        self.costs = Costs(store, settings.prices)  # issue 17: projected and measured cost per environment
        self.tests = PostDeployTests(store, runtime=machine.runtime, routes=self.routes, data=self.data,
                                     rollback=lambda p, e: self.deployer.rollback(p, e, actor=Actor(VERIFIER)),
                                     stop=self._stop)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Stop what a crash left half-done, converge once (resuming cut-off deployments), then keep reconciling."""
        for d in (self.settings.repos_dir, self.settings.releases_dir, self.settings.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.projects.repair_repositories()
        self.router.ensure_running()
        self.deployer.recover()
        self.data.ensure_running()
        self.reconciler.run_once()
        self.store.listeners.append(self.git_follow.notify)  # production's branch follows each promotion that succeeds
        self.store.listeners.append(self.tests.notify)  # post-deploy tests after each deployment that goes live
        self.store.listeners.append(self.costs.notify)  # measured cost: advanced at once when what runs changes
        # …and those a crash cut off (RUNNING), or a switch just before it, run again now
        threading.Thread(target=self.tests.converge_all, name="post-deploy-tests", daemon=True).start()
        self.promotions.recover()  # after the first pass: the deployments it waits for are being resumed
        # …and one that succeeded just before a crash is followed now, not at the first housekeeping a minute later
        threading.Thread(target=self.git_follow.converge_all, name="git-follow", daemon=True).start()
        self._loop = threading.Thread(target=self.reconciler.run_forever, args=(self._stop,), name="reconciler", daemon=True)
        self._loop.start()
        threading.Thread(target=self.previews.run_forever, args=(self._stop,), name="previews", daemon=True).start()
        # WAITING promotions start when their waitTimer ends: a loop of its own, as a start runs smoke tests
        threading.Thread(target=self.promotions.run_forever, args=(self._stop,), name="promotions", daemon=True).start()
        if not self.on_cluster:  # the replicas' and data servers' own figures: on a cluster, its metrics (not yet)
            threading.Thread(target=self.metrics.run_forever, args=(self._stop,), name="metrics", daemon=True).start()
        self.webhooks.resume()  # deliveries accepted before a crash and not yet acted on
        # issue 16: public URLs probed through the router, alert rules evaluated (notifications on their own threads)
        threading.Thread(target=self.uptime.run_forever, args=(self._stop,), name="uptime", daemon=True).start()
        threading.Thread(target=self.alerts.run_forever, args=(self._stop,), name="alerts", daemon=True).start()
        threading.Thread(target=self.logship.run_forever, args=(self._stop,), name="logship", daemon=True).start()
        # after deployer.recover() killed the runs a dead control plane left (task ledger): their rows fail first
        if self.on_cluster:  # issue 19: what the pods write joins the environment's logs (`logs -e ENV -f`)
            threading.Thread(target=PodLogs(self.store, self.settings.logs_dir, self.deployer.attempts.cluster.environments)
                             .run_forever, args=(self._stop,), name="pod-logs", daemon=True).start()
        if not self.on_cluster:  # on a cluster: a CronJob runs a cron service; idle sleep is the local edge's (not yet)
            threading.Thread(target=self.cron.run_forever, args=(self._stop,), name="cron", daemon=True).start()
            threading.Thread(target=self.sleeper.run_forever, args=(self._stop,), name="sleep", daemon=True).start()

    def shutdown(self, *, wait: float = 5.0) -> None:
        self._stop.set()
        self.previews.shutdown()
        if self._loop:
            self._loop.join(timeout=wait)
        self.liveness.shutdown()
        self.metrics.shutdown()
        self.notifier.shutdown()
        self.uptime.shutdown()
        self.sleeper.shutdown()

    def _reconcile_now(self, project: str, environment: str) -> None:
        """`scale`, `down`: one environment's replicas converged now, waiting until they serve (on a cluster: its
        workloads applied again with the new count, and awaited)."""
        if self.deployer.attempts.cluster is not None:
            self.deployer.attempts.cluster.rescale(project, environment)
        else:
            self.reconciler.reconcile_env(project, environment, wait_healthy=True)

    def _observe_http(self, project: str, environment: str, entry: HttpEntry) -> None:
        """The log shipper's HttpSink: each request the router served, to the metrics and to the sleeper."""
        self.metrics.observe_http(project, environment, entry)
        self.sleeper.observe_http(project, environment, entry)

    def _webhook_variable(self, env_id: int, name: str) -> str | None:
        """An alert webhook's `${{NAME}}`: the environment's secret or variable of that name (never printed)."""
        plain, secrets = self.data.stored_variables(env_id)
        return secrets.get(name) or plain.get(name)

    def _housekeeping(self) -> None:
        self.git_follow.converge_all()  # first: cheap, and a failing backup below must not hold it up
        self.metrics.housekeeping()  # metric rollups (10 s → 1 min → 1 h) and retention: cheap, never raises
        self.costs.tick()  # measured cost: every environment's running time, to now (one small transaction)
        self.tests.converge_all()  # post-deploy tests left undecided (level-triggered; each run on a thread of its own)
        self.cron.prune()  # ended cron runs' raw log files after a day, their rows after 30 days
        self.backups.scheduled(m.utcnow())
        self.webhooks.prune(m.utcnow())
        self.deployer.prune_layers()
        self.deployer.prune_virtualenvs()
        # records past their tier's retention (the cap holds always), ended deployments' raw files
        self.logship.prune(self.log_facts.retention, self.log_facts.finished)

    def stop_everything(self) -> None:
        """Stop every app process this control plane knows about, the router, every Redis and PostgreSQL server.

        Nothing is deleted: `branchyard server --detach` brings it all back (data included)."""
        with self.store.session() as s:
            ids = list(s.scalars(select(m.Replica.id).where(m.Replica.state != m.REPLICA_STOPPED)))
        self.replicas.stop(ids, grace=3)
        self.cron.stop_all(grace=3)
        self.router.stop()
        self.data.stop_all()
