"""What the manifests of one environment are made from. Pure data.

The backend fills these from the control plane's state (a `DesiredEnvironment`: the release it built, the variables
it resolved, the passwords it generated); `render` from the project's files alone, with placeholders where only the
control plane knows the value (offline.py). The same `manifests.render_environment` turns either into objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...kube_settings import KubeSettings
from ...spec.model import EnvironmentConfig
from ..ports import DesiredEnvironment, EnvironmentSecrets, ReleaseArtifact

APP_PORT = 8080  # every app container listens here ($PORT); the Service maps port 80 to it
POSTGRES_PORT = 5432
REDIS_PORT = 6379
HOOK_TIMEOUT = 600  # seconds a preDeployCommand or seedCommand Job may run (as on the local backend)
RUN_TIMEOUT = 3600  # seconds a `run` command's Job may take, its start included (the local backend sets none)

Release = ReleaseArtifact
Credentials = EnvironmentSecrets


@dataclass(frozen=True)
class EnvironmentInputs:
    """A DesiredEnvironment (the same fields), with where it runs: the operator's settings and the control plane's
    URL as pods reach it."""

    project: str
    config: EnvironmentConfig
    settings: KubeSettings
    control_url: str  # where pods fetch releases from and send backups to
    hosts: tuple[str, ...]
    release: Release
    variables: Mapping[str, str]
    credentials: Credentials
    public_domain: str
    pull_request: int | None = None
    replicas: int | None = None  # web's replicas now, when not the spec's (`scale`); 0: `down` or asleep, when
    #                              the workers stop and the cron schedule is suspended too
    external_postgres: bool = False
    new_database: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)  # on the Namespace


def for_cluster(desired: DesiredEnvironment, settings: KubeSettings, control_url: str) -> EnvironmentInputs:
    fields = {f.name: getattr(desired, f.name) for f in dataclasses.fields(desired)}
    fields["credentials"] = fields.pop("secrets")
    return EnvironmentInputs(settings=settings, control_url=control_url, **fields)


def service_host(service: str, namespace: str) -> str:
    """`postgres.<namespace>`: resolves from the environment's own pods and from the control plane's namespace (the
    cluster's DNS search path completes it), whatever the cluster's domain."""
    return f"{service}.{namespace}"
