"""What the manifests of one environment are made from. Pure data.

The backend fills these from the control plane's state (the release it built, the variables it resolved, the
passwords it generated); `render` from the project's files alone, with placeholders where only the control plane
knows the value (offline.py). The same `manifests.render_environment` turns either into objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...kube_settings import KubeSettings
from ...spec.model import EnvironmentConfig

APP_PORT = 8080  # every app container listens here ($PORT); the Service maps port 80 to it
POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_USER = "app"  # the role and database of an environment's own PostgreSQL server
POSTGRES_DB = "app"
HOOK_TIMEOUT = 600  # seconds a preDeployCommand or seedCommand Job may run (as on the local backend)


@dataclass(frozen=True)
class Release:
    """The artifact every pod of a deployment runs: a release archive (code + virtualenv, built once for the
    runtime image) fetched by an init container with a per-release token, or a prebuilt image used as is."""

    id: str  # the deployment's id (names its variables Secret and hook Jobs)
    commit: str  # the commit it was built from
    branch: str | None
    archive_url: str | None = None  # GET with "Authorization: Bearer <token>"; None with `image`
    archive_sha256: str | None = None
    image: str | None = None  # a prebuilt image: no init container, its own entrypoint's working directory


@dataclass(frozen=True)
class Credentials:
    """The values only the control plane holds: the environment's data service passwords and its tokens. Only ever
    written into Secrets."""

    postgres_password: str
    redis_password: str
    release_token: str  # lets this release's pods fetch its archive, nothing else
    backup_token: str  # lets the environment's backup CronJob upload a dump of its own database, nothing else


@dataclass(frozen=True)
class EnvironmentInputs:
    project: str
    config: EnvironmentConfig
    settings: KubeSettings
    control_url: str  # where pods fetch releases from and send backups to
    hosts: tuple[str, ...]  # its generated host first, then its custom domains
    release: Release
    variables: Mapping[str, str]  # the app's variables, resolved (references expanded), built-ins not included
    credentials: Credentials
    public_domain: str  # RAILWAY_PUBLIC_DOMAIN: the generated host (with the edge's port when not a default one)
    pull_request: int | None = None
    replicas: int | None = None  # web's replicas now, when not the spec's (`scale`); 0: `down` or asleep, when
    #                              the workers stop and the cron schedule is suspended too
    external_postgres: bool = False  # the database lives on the operator's server (BRANCHYARD_POSTGRES_URL)
    new_database: bool = False  # the database is new: the seedCommand runs (once) after the preDeployCommand
    annotations: Mapping[str, str] = field(default_factory=dict)  # on the Namespace (render says where values come from)
