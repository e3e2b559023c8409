"""Starting, health-checking and stopping one deployment's replicas (process slots `<env>.web.<n>`, and
`<env>.<type>.<n>` for the Procfile's other process types: see workers.py).

Everything a replica needs is read from the deployment's snapshot (release directory, virtualenv,
config and variables), never from the spec again, so a rollback, a restart or a scale brings back
exactly what was deployed.

Standby: after a switch, the replaced deployment's replicas may be kept running out of the route for
its `overlapSeconds` (`park`). A deployment whose snapshot is identical (a rollback or a redeploy of
that deployment) re-adopts them instead of starting new processes (`start`), after a health check
like any new replica. At most one deployment per environment is on standby; the windows live in
this object's memory only, so a restarted control plane stops every standby replica (the
reconciler does, on its first pass).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import failpoints, names
from ..backends.ports import HealthResult, Placement, ProcessHandle, RuntimePort
from ..build import release
from ..errors import BranchyardError, DeployFailed
from ..release_variables import prefixed, public_domain, release_facts
from ..secrets import SecretBox
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .snapshot import DeploymentConfig

PORT_PLACEHOLDER = "${{PORT}}"


@dataclass(frozen=True)
class ReleaseCtx:
    """One deployment, ready to run: what to start, where, with which variables."""

    project: str
    env_id: int
    env_name: str
    dep_id: str
    host: str
    src: Path
    venv: Path
    start_command: str
    variables: dict[str, str]  # snapshot; PORT_PLACEHOLDER stands for each replica's own port
    sha: str
    branch: str | None
    healthcheck_path: str | None
    healthcheck_timeout: int
    draining_seconds: int
    overlap_seconds: int
    replicas: int
    memory_mb: int | None = None  # the web service's limits (`memory`, `cpu`), enforced where the runtime can
    cpu: float | None = None
    services: tuple[tuple[str, str], ...] = ()  # the Procfile's other process types: (name, command), same limits


class Replicas:
    def __init__(self, settings: Settings, store: Store, box: SecretBox, runtime: RuntimePort) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.box = box  # deployments' variable snapshots are encrypted
        self._standby: dict[int, float] = {}  # replica id → time.monotonic() at which its standby window ends
        self._standby_guard = threading.Lock()

    def context(self, dep_id: str, host: str) -> ReleaseCtx:
        """The deployment's snapshot; BranchyardError if its release is no longer retained."""
        with self.store.session() as s:
            dep = self.store.deployment(s, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            project = s.get(m.Project, dep.project_id).name
            meta = release.read_release_meta(Path(dep.release_dir)) if dep.release_dir else None
            if meta is None or not dep.config_json or dep.variables_json is None:
                raise BranchyardError(f"deployment {dep.id} has no retained release to run")
            config = DeploymentConfig.from_json(dep.config_json)
            web = config.web
            variables = json.loads(self.box.decrypt(dep.variables_json))
            root = web.root_dir or "."
            release_dir = Path(dep.release_dir)
            src = release_dir if root in ("", ".") else names.safe_join(release_dir, root)
            venv = Path(str(meta["venv"]))
            if not (venv / "bin").is_dir():
                raise BranchyardError(f"deployment {dep.id}: its virtualenv {venv} is gone; push again to rebuild")
            return ReleaseCtx(
                project=project,
                env_id=env.id,
                env_name=env.name,
                dep_id=dep.id,
                host=host,
                src=src,
                venv=venv,
                start_command=web.start_command or "",
                variables=variables,
                sha=dep.commit_sha,
                branch=dep.branch,
                healthcheck_path=web.healthcheck_path,
                healthcheck_timeout=web.healthcheck_timeout,
                draining_seconds=web.draining_seconds,
                overlap_seconds=web.overlap_seconds,
                replicas=env.replicas_override or web.replicas,
                memory_mb=web.memory_mb,
                cpu=web.cpu,
                services=tuple((name, p.command) for name, p in config.processes.items()),
            )

    def log_path(self, ctx: ReleaseCtx, slot: int, service: str = "web") -> Path:
        return names.safe_join(self.settings.logs_dir, ctx.project, ctx.env_name, ctx.dep_id, f"{service}.{slot}.log")

    def spawn(self, ctx: ReleaseCtx, slot: int, *, replica_id: int | None = None,
              service: str = "web") -> tuple[int, ProcessHandle]:
        """Start one replica and record it at once (so a crash right after cannot orphan it). A replica of another
        service (a Procfile worker) runs its command with web's limits and is RUNNING once started: no HTTP check."""
        command = ctx.start_command if service == "web" else dict(ctx.services).get(service)
        if command is None:
            raise BranchyardError(f"deployment {ctx.dep_id} has no process type {service!r} in its Procfile")
        if replica_id is not None:
            self.reap_group(replica_id)
        port = self.runtime.free_port()  # a worker gets a PORT too (it may serve metrics); nothing routes to it
        log_path = self.log_path(ctx, slot, service)
        placement = Placement(project=ctx.project, environment=ctx.env_name, service=service, slot=slot,
                              memory_mb=ctx.memory_mb, cpu=ctx.cpu)
        h = self.runtime.spawn(command, cwd=ctx.src, env=self.process_env(ctx, slot, port, service), log_path=log_path,
                               port=port, placement=placement)
        state = m.REPLICA_STARTING if service == "web" else m.REPLICA_RUNNING
        with self.store.session() as s:
            if replica_id is None:
                r = m.Replica(deployment_id=ctx.dep_id, environment_id=ctx.env_id, slot=slot, pid=h.pid,
                              start_time=h.start_time, port=port, host=h.host, log_path=str(log_path), service=service,
                              state=state)
                s.add(r)
                s.flush()
                replica_id = r.id
            else:
                r = s.get(m.Replica, replica_id)
                r.pid, r.start_time, r.port, r.host, r.started_at = h.pid, h.start_time, port, h.host, m.utcnow()
                r.state, r.restarts = state, r.restarts + 1
        return replica_id, h

    def reap_group(self, replica_id: int) -> None:
        """What is left of a replica's process group once its leader exited (and again before its slot restarts): a
        leader that died alone (SIGKILL, the OOM killer) leaves its forked workers (uvicorn --workers, gunicorn, a
        celery pool) running, orphaned, maybe still accepting on its port."""
        with self.store.session() as s:
            r = s.get(m.Replica, replica_id)
            old = ProcessHandle(r.pid, r.start_time, r.port, r.log_path) if r is not None else None
        if old is not None:
            self.runtime.stop(old, grace=2)

    def wait_healthy(self, ctx: ReleaseCtx, handles: list[tuple[int, ProcessHandle]], slots: list[int] | None = None,
                     out: Callable[[str], None] | None = None) -> list[HealthResult]:
        """Health-check every new replica in parallel; `out` hears how each is doing while it waits."""
        def one(slot: int, h: ProcessHandle) -> HealthResult:
            progress = (lambda line: out(f"       web.{slot} {line}")) if out is not None else None
            return self.runtime.wait_healthy(h, ctx.healthcheck_path, timeout=ctx.healthcheck_timeout, progress=progress)

        slots = slots if slots is not None else list(range(len(handles)))
        with ThreadPoolExecutor(max_workers=max(1, len(handles))) as pool:
            return list(pool.map(one, slots, [h for _, h in handles]))

    def start(self, ctx: ReleaseCtx, slots: list[int], out: Callable[[str], None]) -> list[tuple[int, ProcessHandle]]:
        """Start `slots` (re-adopting identical standby replicas), wait until all are healthy and mark them
        RUNNING; on failure stop them all."""
        adopted = self.adopt_standby(ctx, slots)
        for slot, (_, h) in sorted(adopted.items()):
            out(f"       web.{slot} re-adopted from standby: pid {h.pid}, port {h.port} (same release and variables)")
        if adopted:
            failpoints.hit("deploy.after_adopt")
        handles = [adopted[slot] if slot in adopted else self.spawn(ctx, slot) for slot in slots]
        results = self.wait_healthy(ctx, handles, slots, out)
        failed = [(slot, res, h) for slot, (_, h), res in zip(slots, handles, results) if not res.ok]
        if failed:
            slot, res, h = failed[0]
            tail = self.runtime.tail(Path(h.log_path), 10)
            for line in tail:
                out(f"       web.{slot} | {line.rstrip()}")
            self.stop([rid for rid, _ in handles], grace=2)
            detail = f"replica web.{slot} failed its health check: {res.detail}"
            if tail:
                detail += f" — last log line: {tail[-1].strip()[:200]}"
            raise DeployFailed(detail)
        for slot, res in zip(slots, results):
            out(f"       web.{slot} healthy: {res.detail}")
        with self.store.session() as s:
            for rid, _ in handles:
                s.get(m.Replica, rid).state = m.REPLICA_RUNNING
        return handles

    # --- standby ------------------------------------------------------------------------------------

    def park(self, env_id: int, replica_ids: list[int], *, seconds: float, grace: float) -> None:
        """Keep `replica_ids` (out of the route already) running for `seconds` as STANDBY.

        Any other standby replica of the environment is stopped first: one deployment on standby at most."""
        with self.store.session() as s:
            older = list(s.scalars(select(m.Replica.id).where(
                m.Replica.environment_id == env_id, m.Replica.state == m.REPLICA_STANDBY, m.Replica.id.not_in(replica_ids))))
        if older:
            self.stop(older, grace=grace)
        until = time.monotonic() + seconds
        with self._standby_guard:
            self._standby.update((rid, until) for rid in replica_ids)
        with self.store.session() as s:
            for rid in replica_ids:
                s.get(m.Replica, rid).state = m.REPLICA_STANDBY

    def standby_left(self, replica_id: int) -> float:
        """Seconds left in the replica's standby window; 0 when it has none (or this process never parked it)."""
        with self._standby_guard:
            until = self._standby.get(replica_id)
        return max(0.0, until - time.monotonic()) if until is not None else 0.0

    def adopt_standby(self, ctx: ReleaseCtx, slots: list[int]) -> dict[int, tuple[int, ProcessHandle]]:
        """Hand live standby replicas whose deployment snapshot equals `ctx`'s over to `ctx`'s deployment.

        Only a replica of the same slot (its REPLICA_ID is part of its environment) and only while its
        window is open. They come back as STARTING: `start` health-checks them like new ones."""
        with self.store.session() as s:
            rows = [(r.id, r.deployment_id, r.slot, r.pid, r.start_time, r.port, r.log_path, r.host) for r in s.scalars(
                select(m.Replica).where(m.Replica.environment_id == ctx.env_id, m.Replica.state == m.REPLICA_STANDBY,
                                    m.Replica.service == "web"))]
        same: dict[str, bool] = {}
        found: dict[int, tuple[int, ProcessHandle]] = {}
        for rid, dep_id, slot, pid, start_time, port, log_path, host in rows:
            if slot not in slots or slot in found or self.standby_left(rid) <= 0:
                continue
            if dep_id not in same:
                try:
                    other = self.context(dep_id, ctx.host)
                except BranchyardError:  # its release is gone: nothing to compare with
                    same[dep_id] = False
                else:
                    same[dep_id] = dataclasses.replace(other, dep_id=ctx.dep_id, replicas=ctx.replicas) == ctx
            h = self.runtime.adopt(pid, start_time, port, log_path, host) if same[dep_id] else None
            if h is not None and self.runtime.is_alive(h):
                found[slot] = (rid, h)
        with self._standby_guard:
            for rid, _ in found.values():
                self._standby.pop(rid, None)
        with self.store.session() as s:
            for rid, _ in found.values():
                r = s.get(m.Replica, rid)
                r.deployment_id, r.state = ctx.dep_id, m.REPLICA_STARTING
        return found

    def stop(self, replica_ids: list[int], *, grace: float) -> None:
        """SIGTERM, wait up to `grace`, SIGKILL; all replicas in parallel; mark them STOPPED."""
        with self.store.session() as s:
            rows = [s.get(m.Replica, rid) for rid in replica_ids]
            # Every recorded group, its leader alive or not: a dead leader's forked workers may still run (stop
            # signals them one by one, and returns at once when nothing of the group is left).
            live = [ProcessHandle(r.pid, r.start_time, r.port, r.log_path, r.host) for r in rows if r is not None]
        if live:
            with ThreadPoolExecutor(max_workers=len(live)) as pool:
                list(pool.map(lambda h: self.runtime.stop(h, grace=grace), live))
        with self.store.session() as s:
            for rid in replica_ids:
                r = s.get(m.Replica, rid)
                if r is not None:
                    r.state = m.REPLICA_STOPPED
        with self._standby_guard:
            for rid in replica_ids:
                self._standby.pop(rid, None)

    def hook_env(self, venv: Path, variables: dict[str, str], facts: dict[str, str] | None = None) -> dict[str, str]:
        """For preDeployCommand / seedCommand / `run`: the variables, without a PORT (no replica); with `facts`
        (release_facts) also the deployment's RAILWAY_*/BRANCHYARD_* names (a hook may create a Sentry release)."""
        railway, own = prefixed(facts) if facts else ({}, {})
        return layered(base_env(venv), railway, {k: v for k, v in variables.items() if PORT_PLACEHOLDER not in v}, own)

    def process_env(self, ctx: ReleaseCtx, slot: int, port: int, service: str = "web") -> dict[str, str]:
        """A replica's environment: a clean base, the deployment's variables, then built-ins."""
        variables = {k: v.replace(PORT_PLACEHOLDER, str(port)) for k, v in ctx.variables.items()}
        railway, builtins = builtin_variables(ctx, slot, port=port, router_port=self.settings.public_port, service=service)
        return layered(base_env(ctx.venv), railway, variables, builtins)


def layered(base: dict[str, str], railway: dict[str, str], variables: dict[str, str],
            own: dict[str, str]) -> dict[str, str]:
    """The one layering of what a release runs with: the clean base, Railway's names (the app's own variables may
    set them: a user's RAILWAY_GIT_COMMIT_SHA wins, as on Railway where the user's variable shadows the provided
    one), the app's variables, then branchyard's own names and PORT, which nothing overrides."""
    return base | railway | variables | own


def builtin_variables(ctx: ReleaseCtx, slot: int, *, port: int, router_port: int,
                      service: str = "web") -> tuple[dict[str, str], dict[str, str]]:
    """(RAILWAY_* , BRANCHYARD_* + PORT) of one replica: the same facts under both names, as Railway documents them
    (docs.railway.com/reference/variables) where branchyard has the fact. The app's own variables override the
    RAILWAY_* ones (it may set them itself); nothing overrides BRANCHYARD_* and PORT."""
    facts = release_facts(ctx.project, ctx.env_name, ctx.dep_id, ctx.sha, ctx.branch) | {
        "PUBLIC_DOMAIN": public_domain(ctx.host, router_port),
        "REPLICA_ID": f"{ctx.env_name}.{service}.{slot}",
    }
    if service != "web":  # a Procfile service is a service of its own, as on Railway
        facts |= {"SERVICE_NAME": service, "SERVICE_ID": f"{ctx.project}/{ctx.env_name}/{service}"}
    railway, own = prefixed(facts)
    return railway, own | {"PORT": str(port)}


def base_env(venv: Path | None) -> dict[str, str]:
    """The one clean base for what runs a release (replicas, hooks, smoke tests): nothing of the control plane's
    own environment leaks in but HOME and LANG; the release's virtualenv first on PATH when it has one."""
    env = {
        "PATH": (f"{venv / 'bin'}:" if venv is not None else "") + "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
    }
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    return env
