"""One attempt at a deployment: build (or reuse a release), provision, guard, hooks, start, health-check, switch,
drain. The deployer (deployer.py) decides when an attempt runs and runs it under the environment's lock.

Writes are ordered so that a SIGKILL at any instant leaves state the deployer converges from: replicas are
recorded before they are waited on; the switch (new current deployment, old one REMOVED) is one transaction;
an attempt cut off before its switch leaves its deployment unfinished, and the next start resumes it (after
stopping the build steps, hooks and replicas it left behind). At each step the attempt checks that its
deployment is still its environment's target: a newer one supersedes it there.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import failpoints, names
from ..backends.ports import EnvironmentsPort, Placement, RuntimePort, TaskLedger
from ..build import archive, detect, interpreters, release, requirements
from ..build.detect import with_inferred_start
from ..data import templates
from ..errors import BadInput, BranchyardError
from ..settings import Settings
from ..spec import load_project
from ..spec.loader import NO_START_COMMAND
from ..spec.model import EnvironmentConfig, ProjectSpec
from ..store import models as m
from ..store.db import Store
from ..variables import resolve
from .backups import Backups
from .cluster_rollout import ClusterRollouts, runtime_python
from .dataplane import DataPlane
from .domains import reconcile_declared
from .guards import Guards
from .projects import remember_spec
from .replicas import PORT_PLACEHOLDER, Replicas, release_facts
from .routes import Routes
from .snapshot import DeploymentConfig
from .workers import roll

DEFAULT_DRAINING_SECONDS = 10
HOOK_TIMEOUT = 600  # seconds a preDeployCommand or seedCommand may take
_BUILD_META = ("python", "python_version", "python_source", "installer", "dependencies")  # kept by a promotion


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


class Attempts:
    """Runs attempts at deployments; one instance per control plane, no state of its own."""

    def __init__(self, settings: Settings, store: Store, *, data: DataPlane, replicas: Replicas, backups: Backups,
                 routes: Routes, guards: Guards, runtime: RuntimePort, tasks: TaskLedger,
                 on_finished: Callable[[], None], environments: EnvironmentsPort | None = None) -> None:
        self.settings = settings
        self.store = store
        self.data = data
        self.replicas = replicas
        self.backups = backups
        self.routes = routes
        self.guards = guards
        self.runtime = runtime
        self.tasks = tasks
        self.on_finished = on_finished  # a deployment reached a final status (waiters are woken)
        # a cluster backend (Kubernetes): hooks and replicas are the cluster's (cluster_rollout.py)
        self.cluster = None if environments is None else ClusterRollouts(
            settings, store, data=data, backups=backups, routes=routes, environments=environments,
            set_status=self.set_status,
            finish=self.finish, check_wanted=self.check_wanted, prune_releases=self._prune_releases)

    def run(self, work: str, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        """One attempt at `dep_id` (the caller holds its environment's lock); Superseded if no longer wanted."""
        self.check_wanted(dep_id)
        steps = {m.WORK_BUILD: self._build_and_roll_out, m.WORK_PROMOTE: self._promote_and_roll_out,
                 m.WORK_ROLLOUT: self._roll_out}
        steps[work](project, env_name, dep_id, out)

    def check_wanted(self, dep_id: str) -> None:
        """Superseded unless this deployment is still its environment's target."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:
                raise Superseded("cancelled: the environment was deleted")
            target = s.get(m.Environment, dep.environment_id).target_deployment_id
        if target == dep_id:
            return
        raise Superseded(f"superseded by newer deployment {target}" if target else "cancelled: the environment is being destroyed")

    def set_status(self, dep_id: str, status: str) -> None:
        with self.store.session() as s:
            s.get(m.Deployment, dep_id).status = status

    def finish(self, dep_id: str, status: str, error: str | None = None) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:  # its environment was deleted meanwhile
                return
            dep.status, dep.finished_at = status, m.utcnow()
            if error is not None:
                dep.error = error
        self.on_finished()

    def _build_and_roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        ready = self._prepare(project, env_name, dep_id, out)
        build_vars = _build_variables(ready)
        log = lambda line: out(f"       {line}")  # noqa: E731
        python, request = self._choose_python(ready, build_vars, out)  # refused here, before anything is built
        if self.cluster is not None:  # the runtime image must run the same Python (refused before building too)
            runtime_python(self.settings.kubernetes.runtime_image, python.version_text)
        out(f"-----> building {ready.sha[:12]} (python virtualenv)")
        started = time.monotonic()
        built = release.build(ready.src, ready.cfg.web.build_command, cache_dir=self.settings.cache_dir,
                              python=python.path, log=log, tasks=self.tasks, env=build_vars,
                              index_url=requirements.operator_index(self.settings.pip_index_url),
                              layer_dir=self.settings.cache_dir / "layers" / dep_id)
        out(f"-----> build done in {time.monotonic() - started:.1f}s" + (" (dependencies cached)" if built.cached else ""))
        meta = {"python": python.path, "python_version": python.version_text,
                "python_source": request.source if request else "default", "installer": built.installer,
                "dependencies": str(built.dependencies or built.venv)}
        self._apply(project, env_name, dep_id, out, ready, built.venv, meta)

    def _choose_python(self, ready: _Ready, build_vars: Mapping[str, str],
                       out: DeployLog) -> tuple[interpreters.Interpreter, detect.PythonRequest | None]:
        """The interpreter the app asks for (BadInput, one line, when this machine has none), and the request."""
        request = detect.python_request(ready.src, build_vars)
        python = interpreters.choose(request, default=self.settings.python, allow_downloads=self.settings.python_downloads,
                                     uv=interpreters.uv_binary(), log=lambda line: out(f"       {line}"))
        asked = f"asked by {request.source}: {request.spec}" if request else "the app names none: BRANCHYARD_PYTHON's default"
        out(f"-----> python: {python.describe()}; {asked}")
        return python, request

    def _promote_and_roll_out(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> None:
        """A promotion: the source's release as it is (no rebuild), with this environment's own variables and data."""
        ready = self._prepare(project, env_name, dep_id, out)
        meta = release.read_release_meta(ready.release_dir) or {}
        venv = Path(str(meta.get("venv", "")))
        if not meta.get("venv") or not (venv / "bin").is_dir():
            raise BranchyardError(f"the promoted release's virtualenv {venv} is gone; push the commit again to rebuild")
        out(f"-----> promoted release of {ready.sha[:12]} (built once, not rebuilt; virtualenv {venv.name[:12]})")
        self._apply(project, env_name, dep_id, out, ready, venv, {k: v for k, v in meta.items() if k in _BUILD_META})

    def _prepare(self, project: str, env_name: str, dep_id: str, out: DeployLog) -> _Ready:
        """Read the release's spec for this environment and check it before anything is built or changed."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            release_dir, sha, trigger = Path(dep.release_dir or ""), dep.commit_sha, dep.trigger
        self.set_status(dep_id, m.BUILDING)
        spec = load_project(release_dir)
        for note in (*spec.warnings, *spec.ignored):
            out(f"       note: {note}")
        cfg = spec.environment(env_name)
        src = release_dir if cfg.web.root_dir in ("", ".") else names.safe_join(release_dir, cfg.web.root_dir)
        if not cfg.web.start_command:
            inferred = detect.infer_start_command(src)
            if inferred is None:
                raise BadInput(f"{NO_START_COMMAND} (none could be inferred: {detect.INFERENCE_HINT})")
            cfg = with_inferred_start(cfg, inferred)
            out(f"       start command: {inferred.command} (inferred: {inferred.reason})")
        if trigger in ("push", "up", "webhook"):
            self.guards.require_source_first(project, env_name, spec, sha)  # the git path keeps the gates
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            env_id = env.id
            env.branch = env.branch if env.branch_pinned else cfg.branch or env.branch  # the user's choice stays
            env.production, env.ephemeral = cfg.production, cfg.ephemeral
            decl = None if spec.is_preview_instance(env_name) else spec.environments.get(env_name)
            # the domains this commit's files declare for the environment (one refused: the deployment fails here)
            declared = reconcile_declared(self.store, s, self.store.project(s, project), env,
                                          decl.domains if decl is not None else (), base_domain=self.settings.domain)
        for line in declared:
            out(f"       {line}")
        raw, namespaces = self.data.layered_variables(env_id, cfg)
        out.redact = self.data.redactor(env_id)
        _check_references(raw, namespaces, cfg)  # refuse a bad reference before anything is built or created
        return _Ready(release_dir=release_dir, sha=sha, spec=spec, cfg=cfg, src=src, env_id=env_id, raw=raw,
                      namespaces=namespaces)

    def _apply(self, project: str, env_name: str, dep_id: str, out: DeployLog, ready: _Ready, venv: Path,
               build_meta: Mapping[str, object]) -> None:
        """Provision, resolve, guard isolation, back up and migrate, then roll out (health-checked, zero downtime)."""
        cfg, env_id, sha, release_dir, src = ready.cfg, ready.env_id, ready.sha, ready.release_dir, ready.src
        # The template key follows the shared dependencies, not the release's own layer (new with every push).
        key = None if self.cluster is not None else self._template_key(ready, Path(str(build_meta.get("dependencies") or venv)), out)
        provisioned = self.data.provision(project, env_name, cfg, template_key=key)
        for name in provisioned.namespaces:
            cloned = provisioned.cloned_from and cfg.postgres is not None and name == cfg.postgres.name
            out(f"-----> {name}: ready" + (f" (cloned from template {provisioned.cloned_from})" if cloned else ""))
        out.redact = self.data.redactor(env_id)  # now including the service passwords
        values = resolve(ready.raw, namespaces=ready.namespaces | provisioned.namespaces, port=PORT_PLACEHOLDER).values
        self.guards.isolation_guard(project, env_name, values, production=cfg.production)  # before any hook
        release.mark_release_complete(release_dir, {**build_meta, "deployment": dep_id, "commit": sha, "venv": str(venv)})
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.config_json = DeploymentConfig.from_environment(cfg).to_json()
            dep.variables_json = self.data.box.encrypt(json.dumps(values))  # values include secrets: encrypted at rest
            branch = dep.branch
            s.get(m.Project, dep.project_id).domain = ready.spec.domain  # the deployed commit says which domain to use
        if not ready.spec.is_preview_instance(env_name):  # a preview's own files never change who gets a preview
            remember_spec(self.store, project, ready.spec)
        failpoints.hit("deploy.after_build")
        self.check_wanted(dep_id)
        backup_first = bool(cfg.production and cfg.web.pre_deploy_command and cfg.postgres is not None
                            and not provisioned.new_database)
        if self.cluster is not None:
            self.cluster.deploy(project, env_name, dep_id, out, src=src, venv=venv, build_meta=build_meta,
                                new_database=bool(cfg.web.seed_command and self.data.needs_seed(env_id)),
                                backup_first=backup_first)
            return
        hook_env = self.replicas.hook_env(venv, values, release_facts(project, env_name, dep_id, sha, branch))
        # hooks run within the web service's limits (their own cgroup), like a replica would
        hook_at = Placement(project=project, environment=env_name, service="hook", memory_mb=cfg.web.memory_mb, cpu=cfg.web.cpu)
        if backup_first:
            backup = self.backups.create(project, env_name, kind="pre-deploy")
            out(f"-----> backup {backup['id']} taken before migrations ({backup['size']} bytes, sha256 {backup['sha256'][:12]})")
        if provisioned.cloned_from:
            out("-----> preDeployCommand and seedCommand skipped: the template was made by these same commands, "
                "files and dependencies")
            self.data.mark_seeded(project, env_name)
        else:
            for command in cfg.web.pre_deploy_command:
                out(f"-----> preDeployCommand: {command}")
                self.runtime.run_hook(command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT, placement=hook_at)
            if cfg.web.seed_command and self.data.needs_seed(env_id):
                out(f"-----> seedCommand (new database): {cfg.web.seed_command}")
                self.runtime.run_hook(cfg.web.seed_command, cwd=src, env=hook_env, out=out, timeout=HOOK_TIMEOUT,
                                      placement=hook_at)
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
        if self.cluster is not None:
            self.cluster.roll_out(project, env_name, dep_id, out)
            return
        began = time.monotonic()
        self.set_status(dep_id, m.DEPLOYING)
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
        with self.store.session() as s:
            cron = DeploymentConfig.from_json(s.get(m.Deployment, dep_id).config_json or "{}").web.cron_schedule
        if cron:  # issue 17: a cron service (controller/cron.py runs it): no replicas, no health check, no route
            out(f"-----> cron service: `{ctx.start_command}` runs on \"{cron}\" (UTC), one run at a time; "
                "no replicas, no health check, no route")
            handles = []
        else:
            n = ctx.replicas
            out(f"-----> starting {n} replica{'s' if n != 1 else ''}: {ctx.start_command}")
            path = ctx.healthcheck_path
            out(f"-----> health check: {'GET ' + path + ' → 200' if path else 'GET / → status < 500'} within {ctx.healthcheck_timeout}s")
            handles = self.replicas.start(ctx, list(range(n)), out)
        healthy = time.monotonic()
        failpoints.hit("deploy.after_health")
        self.check_wanted(dep_id)
        with self.store.session() as s:
            env = s.get(m.Environment, ctx.env_id)
            old_id = env.current_deployment_id if env.current_deployment_id != dep_id else None
            env.current_deployment_id, env.state = dep_id, m.ENV_ACTIVE
            env.slept_at = env.sleep_kind = None  # awake (issue 17)
            if old_id:
                old = s.get(m.Deployment, old_id)
                if old.status in (m.SUCCESS, m.CRASHED, m.SLEEPING):
                    old.status = m.REMOVED
        failpoints.hit("deploy.after_switch")
        self.routes.sync()
        routed = time.monotonic()
        if not cron:
            out(f"-----> routed {self.settings.public_url(host)} → {', '.join(str(h.port) for _, h in handles)} "
                f"({_ms(queued + routed - began)} after it was queued: roll-out began at +{_ms(queued)}, replicas "
                f"healthy in {_ms(healthy - began)}, switch and route in {_ms(routed - healthy)})")
            # Procfile services: the new release's workers start, then every older worker stops (workers.py)
            roll(self.store, self.replicas, ctx, ctx.draining_seconds or DEFAULT_DRAINING_SECONDS, out)
        if old_id:
            self._drain(ctx.env_id, old_id, ctx.overlap_seconds, ctx.draining_seconds, out)
        self._prune_releases(ctx.env_id)
        out(f"-----> deployment SUCCESS: {self.settings.public_url(host)}")  # before the status: followers stop there
        self.finish(dep_id, m.SUCCESS)
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
                archive.remove(path)  # a cluster release's archive and its digest (issue 19)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _build_variables(ready: _Ready) -> dict[str, str]:
    """What build steps get, as on Railway: the environment's variables, except those not resolvable yet (a service
    about to be provisioned) or per replica (PORT). Secrets among them are masked in the log by DeployLog."""
    values = resolve(ready.raw, namespaces=ready.namespaces, port=PORT_PLACEHOLDER, lenient=True).values
    return {k: v for k, v in values.items() if PORT_PLACEHOLDER not in v}


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
