"""What the controller needs from a machine, as small Protocols. The controller imports only these.

The local backend (backends/local/) implements them with Caddy, PostgreSQL, Redis and plain processes;
a Kubernetes backend implements the same ports with cluster objects (docs/architecture.md maps each one).
Adapters convert third-party and subprocess errors into branchyard's own (errors.py) at this boundary.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import BadInput
from ..transfers import Transfers

ROUTE_ID_PREFIX = "branchyard-route-"
STATES = ("serving", "sleeping", "unavailable")

_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DIAL = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


# --------------------------------------------------------------------------------------------- router

@dataclass(frozen=True)
class Route:
    """One hostname served by the router, and where its requests go."""

    host: str  # e.g. "yoto.localhost", "yoto-staging.localhost" (no port)
    project: str
    environment: str
    upstreams: tuple[str, ...]  # ("127.0.0.1:41234", ...) when serving; () otherwise
    state: str = "serving"  # "serving" | "sleeping" | "unavailable"
    hsts: bool = False  # its responses carry Strict-Transport-Security (TLS on; production hosts by default)
    # sleeping for want of requests (issue 17): a request is held while the control plane wakes the environment, then
    # proxied to it; without `wake` a sleeping route answers the 503 "sleeping" page (`branchyard down`)
    wake: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.upstreams, tuple):
            object.__setattr__(self, "upstreams", tuple(self.upstreams))
        where = f"route {self.host!r}"
        if not _HOST.match(self.host):
            raise BadInput(f"{where}: not a valid lowercase hostname (no port, no scheme)")
        for label, value in (("project", self.project), ("environment", self.environment)):
            if not _NAME.match(value):
                raise BadInput(f"{where}: {label} {value!r} is not a slug (a-z, 0-9, '-')")
        if self.state not in STATES:
            raise BadInput(f"{where}: state must be one of {', '.join(STATES)}, got {self.state!r}")
        if self.state == "serving" and not self.upstreams:
            raise BadInput(f"{where}: a serving route needs at least one upstream")
        if self.state != "serving" and self.upstreams:
            raise BadInput(f"{where}: a {self.state} route has no upstreams, got {list(self.upstreams)}")
        if self.wake and self.state != "sleeping":
            raise BadInput(f"{where}: only a sleeping route wakes on a request, not a {self.state} one")
        if len(set(self.upstreams)) != len(self.upstreams):
            raise BadInput(f"{where}: duplicate upstreams {list(self.upstreams)}")
        for dial in self.upstreams:
            m = _DIAL.match(dial)
            if not m or not 1 <= int(m.group(2)) <= 65535:
                raise BadInput(f"{where}: upstream {dial!r} is not host:port")

    @property
    def id(self) -> str:
        """The route's @id in Caddy's config: unique per host, since an environment has several (its generated host
        and its custom domains)."""
        return route_id(self.project, self.environment, self.host)


def route_id(project: str, environment: str, host: str) -> str:
    """`branchyard-route-<project>.<environment>@<host>`: a slug has no dot and a host no "@", so ids never clash."""
    return f"{ROUTE_ID_PREFIX}{project}.{environment}@{host}"



class RouterPort(Protocol):
    """Public hosts → an environment's serving replicas (local: two Caddy tiers; Kubernetes: Ingress + Service)."""

    def ensure_running(self) -> None:
        """Bring the router up if it is not (cheap when it is)."""

    def apply(self, routes: Sequence[Route]) -> None:
        """Serve exactly these routes (one change for all of them; nothing when they are already served)."""

    def stop(self) -> None:
        """Stop serving (whole-machine teardown)."""


# --------------------------------------------------------------------------------------------- tasks


class TaskLedger(Protocol):
    """Short-lived work run for a deployment (build steps, hooks), killed on the next start if the control plane
    died under it (local: process groups recorded on disk; Kubernetes: Jobs labelled with the deployment)."""

    def running(self, pid: int, label: str) -> AbstractContextManager[None]:
        """Record the work led by `pid` while the block runs."""

    def kill_leftovers(self) -> list[str]:
        """Stop what a previous control plane left running; what was stopped, by label."""


# --------------------------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class ProcessHandle:
    """One replica as the runtime knows it; stored in the state so that a restarted control plane adopts it."""

    pid: int
    start_time: int  # local: field 22 of /proc/<pid>/stat, the identity guard against PID reuse
    port: int
    log_path: str
    host: str = "127.0.0.1"  # the address the router and the health probes reach it at (its namespace's, isolated)


@dataclass(frozen=True)
class Placement:
    """Where one app process runs and what it may use (issue 17): the environment it belongs to (its network
    namespace when the runtime isolates networks), its service and slot (its cgroup `<project>/<env>/<service>.<slot>`
    when the runtime enforces limits), and the limits from the spec (`memory` in MB, `cpu` in vCPUs; None: none)."""

    project: str
    environment: str
    service: str = "web"  # "web", a Procfile process type ("worker"), "cron", "hook", "check"
    slot: int = 0
    memory_mb: int | None = None
    cpu: float | None = None


@dataclass(frozen=True)
class Isolation:
    """What the runtime enforces on this machine, and why not where it does not (said once at start, and in
    `status`/`check`): resource limits (cgroups) and network isolation (a namespace per environment)."""

    limits: bool
    network: bool
    limits_why_not: str | None = None  # "not root: cgroups need root or a delegated subtree"
    network_why_not: str | None = None
    by: str | None = None  # who enforces them when not this machine: "kubernetes"


@dataclass(frozen=True)
class ResourceUsage:
    """What one replica uses now, over its whole process group (an app may fork workers)."""

    cpu_seconds: float  # cumulative CPU time (user + system) of its live processes
    rss_bytes: int  # resident memory of its live processes, summed
    processes: int  # how many live processes were counted


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str  # "GET /health → 200 in 0.4s", "process exited with code 1", "timed out after 100s: connection refused"


class RuntimePort(Protocol):
    """App replicas and one-shot commands (local: process groups that outlive the control plane; Kubernetes:
    pods of a Deployment, and Jobs for hooks)."""

    def free_port(self) -> int:
        """A port a new replica can listen on."""

    def isolation(self) -> Isolation:
        """What this runtime enforces here (limits, network), and why not."""

    def spawn(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path, port: int,
              placement: Placement | None = None) -> ProcessHandle:
        """Start one replica of `command` (DeployFailed if it cannot start). Its stdout is appended to `log_path`
        and its stderr to `log_path`'s `NAME.stderr.log` sibling (local: files the process holds itself), which the
        log shipper reads into records. `placement`: its environment and limits, enforced where `isolation()` says."""

    def adopt(self, pid: int, start_time: int, port: int, log_path: str, host: str = "127.0.0.1") -> ProcessHandle | None:
        """The replica recorded earlier (maybe by a previous control plane), or None when it is gone."""

    def forget(self, project: str, environment: str) -> None:
        """The environment is deleted and its processes are stopped: free what the runtime held for it (local: its
        network namespace and veth)."""

    def is_alive(self, h: ProcessHandle) -> bool: ...

    def exit_code(self, h: ProcessHandle) -> int | None:
        """How it ended, when known (negative: killed by that signal)."""

    def exit_reason(self, h: ProcessHandle) -> str | None:
        """Why it ended when the runtime knows better than its exit code: "exceeded its 512 MB memory limit" (killed
        by the OOM killer in its cgroup); None otherwise."""

    def stop(self, h: ProcessHandle, *, grace: float) -> None:
        """Ask it to stop, kill it after `grace` seconds; return once it is gone."""

    def tail(self, log_path: Path, lines: int) -> list[str]:
        """The last lines of a replica's (or a deployment's) log."""

    def usage(self, h: ProcessHandle) -> ResourceUsage | None:
        """CPU time and memory of the replica's whole process group (metrics), None when it is gone."""

    def probe(self, port: int, path: str | None, *, timeout: float, host: str = "127.0.0.1") -> HealthResult:
        """One health check (`GET path` → 200; without a path `GET /` → below 500)."""

    def wait_healthy(self, h: ProcessHandle, path: str | None, *, timeout: float,
                     progress: Callable[[str], None] | None = None) -> HealthResult:
        """Health-check until healthy, dead (failing fast with why) or `timeout` seconds; `progress` hears every ~10 s
        what the last probe got while it waits."""

    def run_hook(self, command: str, *, cwd: Path, env: dict[str, str], out: Callable[[str], None], timeout: float,
                 placement: Placement | None = None) -> None:
        """Run a lifecycle command to completion, output to `out`; DeployFailed naming it unless it exits 0."""

    def run_check(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                  placement: Placement | None = None) -> tuple[int | None, str]:
        """Run a check (a smoke test) to completion: (exit code, output); (None, output so far) when it had to be
        killed after `timeout` seconds, with everything it started. BackendError (why) when it cannot start."""


# --------------------------------------------------------------------------------------------- data services


class Credentials(Protocol):
    """How an environment's processes reach one service of theirs."""

    def variables(self) -> dict[str, str]:
        """Railway's variable set: DATABASE_URL, PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE for PostgreSQL."""


class DatabaseAdmin(Protocol):
    """One PostgreSQL server as the controller administers it: a database and a role of its own per environment,
    template copies, dumps (local: the embedded server, or the operator's; Kubernetes: a StatefulSet's, or a
    managed server)."""

    def create_database(self, name: str, owner: str, *, password: str | None = None,
                        template: str | None = None) -> Credentials:
        """Create (or adopt, when it exists) database `name` owned by role `owner`; a copy of `template` if given."""

    def adopt_database(self, spare: str, from_owner: str, name: str, owner: str, *,
                       password: str | None = None) -> Credentials | None:
        """Rename a ready spare copy to `name` for `owner`; None when there is no spare or `name` exists."""

    def copy_database(self, template: str, name: str) -> None: ...

    def drop_copy(self, name: str) -> None: ...

    def limit_connections(self, owner: str, limit: int | None) -> None:
        """At most `limit` connections for role `owner` at once (None: no limit): issue 17's per-environment limit."""

    def seal_template(self, name: str) -> None:
        """Nobody connects to it any more: it is only copied from."""

    def drop_database(self, name: str, owner: str) -> None: ...

    def databases(self) -> list[str]: ...

    def dump(self, db: str, path: Path) -> str:
        """Write a dump of `db` to `path`; its checksum."""

    def restore(self, path: Path, db_name: str, owner: str) -> None: ...


@dataclass(frozen=True)
class DataServer:
    """A server of environments' data services that the backend runs itself, and so must bring back if it dies."""

    kind: str  # "postgres" | "redis"
    key: str  # its identity: the data directory (local), the StatefulSet (Kubernetes)
    description: str  # "the shared PostgreSQL server", "the environment's redis-server"


class DataServers(Protocol):
    """Where environments' PostgreSQL databases and Redis servers live (local: embedded PostgreSQL clusters and
    redis-server processes under the home; Kubernetes: StatefulSets with a Service and a PersistentVolumeClaim).
    `settings` are the service's spec (memory_mb, persistence, dedicated); `location` is what an earlier call
    returned and the controller recorded."""

    def database(self, project: str, environment: str, settings: Mapping[str, Any],
                 location: str | None) -> tuple[DatabaseAdmin, str]:
        """The running server the environment's database lives on (started if need be), and its location:
        "shared", "dedicated:<project>-<environment>" or "external" (the operator's server)."""

    def cache(self, project: str, environment: str, settings: Mapping[str, Any],
              password: str | None) -> tuple[dict[str, str], str]:
        """The environment's own Redis, running with these settings (same password when given): its variables
        (REDIS_URL, REDISHOST …) and its location."""

    def server_of(self, kind: str, project: str, environment: str, settings: Mapping[str, Any],
                  location: str | None) -> DataServer | None:
        """The server holding one environment's service, when the backend runs it; None when it is not ours
        to run (the operator's PostgreSQL). BadInput for settings it could never have started with."""

    def revive(self, server: DataServer) -> int | None:
        """Start `server` again if it died without being stopped: the dead process's pid, or None when there was
        nothing to do. Cheap while it runs (the reconciler asks every second). BackendError when it cannot start."""

    def destroy(self, kind: str, project: str, environment: str, location: str) -> None:
        """Delete what the environment's service had of its own: its Redis and that data, a dedicated PostgreSQL
        server (a database on a shared server is dropped through its DatabaseAdmin)."""

    def stop_all(self) -> None:
        """Stop every server (their data stays): whole-machine teardown."""

    def scratch(self) -> AbstractContextManager[DatabaseAdmin | None]:
        """Where a sanitized refresh's scratch database lives, for the refresh's duration: None for the source's own
        server (the control plane reaches it), or a server of the control plane's own (a cluster's, which it may
        not reach), gone with its data when the block ends."""


# --------------------------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class CertificateStatus:
    """What the edge holds for one host name: its certificate's expiry, and the CA's last error when it has one."""

    host: str
    not_after: dt.datetime | None  # naive UTC; None: no certificate stored yet
    issuer: str | None = None  # local: the issuer's storage key ("acme-v02.api.letsencrypt.org-directory", "local")
    error: str | None = None  # the CA's last refusal for the host (local: to come from the edge's log; see docs)


class Certificates(Protocol):
    """The edge's TLS certificates, read-only (local: Caddy's certificate storage; Kubernetes: cert-manager's
    Certificate objects). Optional: a machine without TLS has none, and every domain stays "pending"."""

    def certificate(self, host: str) -> CertificateStatus | None:
        """The newest certificate the edge holds for `host` (or its last error), None when it knows nothing of it."""

    def local_root(self) -> str | None:
        """The PEM of the root certificate the edge's own CA signs with (BRANCHYARD_TLS=internal); None before it
        exists."""

    def forget(self, host: str) -> None:
        """Delete what the edge stores for `host` (its certificates and keys): a deleted domain keeps none."""


# --------------------------------------------------------------------------------------------- environments on a cluster


@dataclass(frozen=True)
class ReleaseArtifact:
    """What every pod of a deployment runs (issue 19, the slug model): a release archive (code + virtualenv, built
    once for the runtime image) fetched with a per-release token, or a prebuilt image used as is."""

    id: str  # the deployment's id
    commit: str
    branch: str | None
    archive_url: str | None = None  # GET with "Authorization: Bearer <release token>"; None with `image`
    archive_sha256: str | None = None
    image: str | None = None


@dataclass(frozen=True)
class EnvironmentSecrets:
    """What only the control plane holds for one environment: its data services' credentials and its tokens. A
    cluster backend writes them into Secrets only."""

    postgres_password: str
    redis_password: str
    release_token: str  # lets this release's pods fetch its archive, nothing else
    backup_token: str  # lets the environment's backup job upload a dump of its own database, nothing else
    postgres_user: str = "app"
    postgres_database: str = "app"


@dataclass(frozen=True)
class DesiredEnvironment:
    """One environment as a cluster should run it: its effective spec, its release, its resolved variables."""

    project: str
    config: Any  # spec.model.EnvironmentConfig
    hosts: tuple[str, ...]  # its generated host first, then its custom domains
    release: ReleaseArtifact
    variables: Mapping[str, str]  # the app's variables, resolved; built-ins not included
    secrets: EnvironmentSecrets
    public_domain: str  # RAILWAY_PUBLIC_DOMAIN
    pull_request: int | None = None
    replicas: int | None = None  # web's replicas when not the spec's (`scale`); 0: down or asleep (workers too)
    external_postgres: bool = False  # the database lives on the operator's server
    new_database: bool = False  # the seedCommand runs (once)


@dataclass(frozen=True)
class PodStatus:
    """One pod of an environment on a cluster, as `status` shows it."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    ready: bool
    restarts: int
    service: str  # web, worker-<type>, postgres, redis, predeploy, seed, cron, backup
    problems: tuple[str, ...] = ()  # one line per container not running: "container web waiting: CrashLoopBackOff"


@dataclass(frozen=True)
class PodLogLine:
    """One line a pod of an environment wrote (stdout and stderr together, as the cluster keeps them)."""

    pod: str
    service: str  # web, worker-<type>, postgres …
    release: str  # the deployment it runs ("" for the data services)
    time: str  # the kubelet's RFC 3339 timestamp (fixed width: it sorts as text)
    text: str


class EnvironmentsPort(Protocol):
    """Environments as a cluster runs them (Kubernetes: a namespace each, docs/kubernetes.md). A backend with this port
    deploys a whole environment declaratively, in phases the controller drives and logs; one without it (local) has
    its replicas started one by one by the controller through the RuntimePort."""

    app_port: int  # the port app containers listen on: what ${{PORT}} resolves to

    def prepare(self, desired: DesiredEnvironment, out: Callable[[str], None]) -> None:
        """The environment's namespace, bounds, Secrets, Services and data services, awaited until ready."""

    def run_hooks(self, desired: DesiredEnvironment, out: Callable[[str], None]) -> None:
        """preDeployCommand (and seedCommand for a new database) run to completion; DeployFailed naming it otherwise."""

    def roll_out(self, desired: DesiredEnvironment, out: Callable[[str], None], *, keep: Sequence[str] = ()) -> None:
        """The release rolled out with zero downtime and routed; DeployFailed with the pods' reasons otherwise. The
        Secrets and Jobs of releases other than this one and `keep` are dropped."""

    def destroy(self, project: str, environment: str) -> None:
        """Everything of the environment deleted and gone (BackendError naming what is left)."""

    def pods(self, project: str, environment: str) -> list[PodStatus]:
        """The environment's pods now (BackendError when the cluster cannot be asked)."""

    def pod_logs(self, project: str, environment: str, *, since_seconds: int) -> list[PodLogLine]:
        """What the environment's pods wrote in the last `since_seconds`, oldest first."""

    def run_one_off(self, desired: DesiredEnvironment, argv: Sequence[str], *, run_id: str,
                    out: Callable[[str], None]) -> int:
        """`run`: `argv` run once in the cluster from the desired release (stdin closed); its output into `out` as it
        comes; its exit code. Nothing of it is left once it returns."""

    def stop_one_off(self, project: str, environment: str, run_id: str) -> None:
        """The `run` command `run_id` stopped (its caller went away); nothing of it left."""


@dataclass(frozen=True)
class Machine:
    """Everything the controller needs from where it runs, one implementation per backend."""

    router: RouterPort
    runtime: RuntimePort
    tasks: TaskLedger
    data: DataServers
    certificates: Certificates | None = None
    environments: EnvironmentsPort | None = None  # a cluster backend (Kubernetes); None: replicas run locally
    transfers: Transfers | None = None  # a cluster backend's data jobs send and fetch dumps through these


__all__ = ["ROUTE_ID_PREFIX", "STATES", "CertificateStatus", "Certificates", "Credentials", "DataServer", "DataServers",
           "DatabaseAdmin", "DesiredEnvironment", "EnvironmentSecrets", "EnvironmentsPort", "HealthResult", "Isolation",
           "Machine", "Placement", "PodLogLine", "PodStatus", "ProcessHandle", "ReleaseArtifact", "ResourceUsage", "Route", "RouterPort",
           "RuntimePort", "TaskLedger", "route_id"]
