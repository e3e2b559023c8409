"""The data-servers port on Kubernetes: an environment's PostgreSQL and Redis run in its own namespace, as the
StatefulSets its manifests declare (data_services.py); the cluster's controllers start and revive them, and its
namespace deletion destroys them. What the control plane does here is name them: the credentials it generates,
records (encrypted) and writes into the environment's Secrets, at the addresses `postgres.<namespace>` and
`redis.<namespace>`.

The role the app connects as is the server's own (the image's POSTGRES_USER): a server holds one environment's one
database, and nothing outside its namespace but the ingress controller and the control plane may reach it.

An operator's server (BRANCHYARD_POSTGRES_URL) is used as on the local backend: a database and a role of their own
per environment, made by the control plane over the network.

Not yet here (said, not faked): database templates (postgres.templateFiles: every preview migrates and seeds its own
database), dumps and restores by the control plane (`backup create`, `restore`, `db refresh`: the daily backup is
the environment's CronJob, uploaded to the control plane).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import BackendError
from ...settings import Settings
from ..local.postgres import Admin
from ..ports import DatabaseAdmin, DataServer
from . import naming
from .data_services import postgres_variables, redis_variables
from .inputs import service_host

CLUSTER = "cluster"  # a service's location: inside the environment's namespace
EXTERNAL = "external"
_NOT_YET = ("on Kubernetes the control plane does not dump or restore databases yet: the daily backup is the "
            "environment's own CronJob, uploaded to the control plane")


class _Credentials:
    def __init__(self, variables: dict[str, str]) -> None:
        self._variables = variables

    def variables(self) -> dict[str, str]:
        return dict(self._variables)


class ClusterDatabaseAdmin:
    """The environment's own server, as the control plane knows it: credentials, no connection."""

    def __init__(self, host: str) -> None:
        self.host = host

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
        raise BackendError(f"backup of {db}: {_NOT_YET}")

    def restore(self, path: Path, db_name: str, owner: str) -> None:
        raise BackendError(f"restore of {db_name}: {_NOT_YET}")


class ClusterDataServers:
    def __init__(self, settings: Settings) -> None:
        self._prefix = settings.kubernetes.namespace_prefix
        self._postgres_url = settings.postgres_url

    def _host(self, service: str, project: str, environment: str) -> str:
        return service_host(service, naming.namespace(self._prefix, project, environment))

    def database(self, project: str, environment: str, settings: Mapping[str, Any],
                 location: str | None) -> tuple[DatabaseAdmin, str]:
        if self._postgres_url or location == EXTERNAL:
            return Admin(str(self._postgres_url)), EXTERNAL
        return ClusterDatabaseAdmin(self._host("postgres", project, environment)), CLUSTER

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
