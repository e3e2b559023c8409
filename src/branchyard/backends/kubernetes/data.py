"""The data-servers port on Kubernetes: an environment's PostgreSQL and Redis run in its own namespace, as the
StatefulSets its manifests declare (data_services.py); the cluster's controllers start and revive them, and its
namespace deletion destroys them. What the control plane does here is name them: the credentials it generates,
records (encrypted) and writes into the environment's Secrets, at the addresses `postgres.<namespace>` and
`redis.<namespace>`.

The role the app connects as is the server's own (the image's POSTGRES_USER): a server holds one environment's one
database, and nothing outside its namespace but the ingress controller and the control plane may reach it.

An operator's server (BRANCHYARD_POSTGRES_URL) is used as on the local backend: a database and a role of their own
per environment, made by the control plane over the network.

Dumps and restores (`backup create`, `restore`, both sides of `db refresh`) run as Jobs in the environment's namespace
(data_jobs.py), which send or fetch the file through a one-time transfer of the control plane (transfers.py): the
control plane never needs to reach the namespace's PostgreSQL itself. The daily backup is the environment's CronJob.

Not yet here (said, not faked): database templates (postgres.templateFiles: every preview migrates and seeds its own
database).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...data.dumps import sha256_of
from ...errors import BackendError, NotFound
from ...names import check_name
from ...settings import Settings
from ...transfers import Transfers
from ..local.postgres import Admin, LocalServer
from ..ports import DatabaseAdmin, DataServer
from . import data_jobs, naming
from .cluster import Cluster
from .data_services import postgres_variables, redis_variables
from .inputs import service_host

CLUSTER = "cluster"  # a service's location: inside the environment's namespace
EXTERNAL = "external"
JOB_WAIT = data_jobs.DATA_JOB_TIMEOUT + 120.0  # the job's own deadline, and time to pull its image


class _Credentials:
    def __init__(self, variables: dict[str, str]) -> None:
        self._variables = variables

    def variables(self) -> dict[str, str]:
        return dict(self._variables)


@dataclass(frozen=True)
class DataJobs:
    """What running a data job takes: the cluster, the open transfers the API serves, the control plane's URL as
    pods reach it, the PostgreSQL image, and how to wait (tests: a fake clock)."""

    cluster: Cluster
    transfers: Transfers
    control_url: str
    image: str
    wait: Mapping[str, Any] = field(default_factory=dict)


class ClusterDatabaseAdmin:
    """The environment's own server, as the control plane knows it: credentials (no connection), and dumps and
    restores by data jobs in its namespace. Its role and its database both have the environment's database name
    (DataPlane creates it so)."""

    def __init__(self, host: str, *, project: str = "", environment: str = "", namespace: str = "",
                 jobs: DataJobs | None = None) -> None:
        self.host = host
        self._where = (project, environment, namespace)
        self._jobs = jobs

    def create_database(self, name: str, owner: str, *, password: str | None = None,
                        template: str | None = None) -> _Credentials:
        if template is not None:
            raise BackendError("postgres.templateFiles: database templates are not supported on Kubernetes yet")
        return _Credentials(postgres_variables(self.host, owner, password or secrets.token_urlsafe(24), name))

    def adopt_database(self, spare: str, from_owner: str, name: str, owner: str, *,
                       password: str | None = None) -> _Credentials | None:
        return None

    def copy_database(self, template: str, name: str) -> None:
        raise BackendError("database templates are not supported on Kubernetes yet")

    def drop_copy(self, name: str) -> None:
        raise BackendError("database templates are not supported on Kubernetes yet")

    def seal_template(self, name: str) -> None:
        raise BackendError("database templates are not supported on Kubernetes yet")

    def limit_connections(self, owner: str, limit: int | None) -> None:
        """The server is the environment's alone: its own max_connections is the limit."""

    def drop_database(self, name: str, owner: str) -> None:
        """Dropped with the namespace (Teardown deletes it)."""

    def databases(self) -> list[str]:
        return []

    def dump(self, db: str, path: Path) -> str:
        """A dump job pg_dumps `db` in the namespace and uploads it into `path` (0600); the file's sha256."""
        jobs, place = self._place(db, db)
        path = Path(path)
        transfer = jobs.transfers.expect_upload(path)
        try:
            objects = data_jobs.dump_job(place, transfer.id, self._url(transfer.id), transfer.token)
            self._run(objects, f"pg_dump of {db}")
        finally:
            jobs.transfers.close(transfer)
        if not path.is_file():  # the job ended well, yet nothing arrived: never a backup without its file
            raise BackendError(f"pg_dump of {db} in {place.namespace}: the job succeeded but its upload never arrived")
        return sha256_of(path)

    def restore(self, path: Path, db_name: str, owner: str) -> None:
        """A restore job fetches the dump at `path`, checks its sha256, and replaces `db_name`'s content with it in one
        transaction (nothing changes when any step fails)."""
        jobs, place = self._place(db_name, owner)
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"dump file {path} does not exist")
        transfer = jobs.transfers.offer_download(path)
        try:
            objects = data_jobs.restore_job(place, transfer.id, self._url(transfer.id), transfer.token,
                                            sha256_of(path))
            self._run(objects, f"restore of {path.name} into {db_name}")
        finally:
            jobs.transfers.close(transfer)

    def _place(self, database: str, user: str) -> tuple[DataJobs, data_jobs.DatabasePlace]:
        project, environment, namespace = self._where
        if self._jobs is None or not namespace:
            raise BackendError(f"{database}: no cluster to run a data job in")
        return self._jobs, data_jobs.DatabasePlace(project=project, environment=environment, namespace=namespace,
                                                   image=self._jobs.image, user=check_name(user, "role"),
                                                   database=check_name(database, "database"))

    def _url(self, transfer_id: str) -> str:
        assert self._jobs is not None
        return f"{self._jobs.control_url}/internal/transfers/{transfer_id}"

    def _run(self, objects: list[dict[str, Any]], what: str) -> None:
        """Apply the transfer's Secret and Job, wait for the Job, delete both whatever happened; BackendError with
        the job's last log lines when it failed."""
        assert self._jobs is not None
        cluster, namespace = self._jobs.cluster, self._where[2]
        job = next(o for o in objects if o["kind"] == "Job")["metadata"]["name"]
        secret = next(o for o in objects if o["kind"] == "Secret")["metadata"]["name"]
        try:
            cluster.apply(objects)
            result = cluster.wait_job(namespace, job, timeout=JOB_WAIT, **self._jobs.wait)
        finally:
            for kind, name in (("Job", job), ("Secret", secret)):
                with contextlib.suppress(BackendError):  # the Job's ttlSecondsAfterFinished cleans up if this fails
                    cluster.delete(kind, namespace, name)
        if not result.ok:
            tail = [line for line in result.logs.splitlines() if line.strip()][-3:]
            raise BackendError(f"{what} failed (job {namespace}/{job}): {result.detail}"
                               + (f": {' / '.join(tail)}" if tail else ""))


class ClusterDataServers:
    def __init__(self, settings: Settings, jobs: DataJobs | None = None) -> None:
        self._prefix = settings.kubernetes.namespace_prefix
        self._postgres_url = settings.postgres_url
        self._jobs = jobs
        self._scratch_dir = settings.home / "scratch-postgres"
        self._scratch_lock = threading.Lock()

    def _host(self, service: str, project: str, environment: str) -> str:
        return service_host(service, naming.namespace(self._prefix, project, environment))

    def database(self, project: str, environment: str, settings: Mapping[str, Any],
                 location: str | None) -> tuple[DatabaseAdmin, str]:
        if self._postgres_url or location == EXTERNAL:
            return Admin(str(self._postgres_url)), EXTERNAL
        namespace = naming.namespace(self._prefix, project, environment)
        return ClusterDatabaseAdmin(service_host("postgres", namespace), project=project, environment=environment,
                                    namespace=namespace, jobs=self._jobs), CLUSTER

    def cache(self, project: str, environment: str, settings: Mapping[str, Any],
              password: str | None) -> tuple[dict[str, str], str]:
        return redis_variables(self._host("redis", project, environment), password or secrets.token_urlsafe(24)), CLUSTER

    def server_of(self, kind: str, project: str, environment: str, settings: Mapping[str, Any],
                  location: str | None) -> DataServer | None:
        return None  # the cluster's StatefulSet controller restarts them, not us

    def revive(self, server: DataServer) -> int | None:
        return None

    def destroy(self, kind: str, project: str, environment: str, location: str) -> None:
        """Nothing of its own outside the namespace, which Teardown deletes."""

    def stop_all(self) -> None:
        """The cluster's servers keep running without the control plane."""

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Admin]:
        """A PostgreSQL of the control plane's own (the embedded one, in BRANCHYARD_HOME/scratch-postgres) for one
        refresh: the control plane may not reach the namespaces' servers, and raw data must never enter the target's.
        Stopped and deleted, data and all, when the refresh ends. Its major version must be the data jobs' (the
        sanitized dump it makes is restored by the target's pg_restore): BRANCHYARD_KUBE_POSTGRES_IMAGE's default
        is the same major as the embedded server. One refresh at a time: a second waits for the first."""
        with self._scratch_lock:
            server = LocalServer(data_dir=self._scratch_dir)
            try:
                server.stop()  # what a control plane killed during a refresh left running
                shutil.rmtree(self._scratch_dir, ignore_errors=True)
                server.ensure_running()
                yield Admin(server.admin_url())
            finally:
                server.stop()
                shutil.rmtree(self._scratch_dir, ignore_errors=True)
