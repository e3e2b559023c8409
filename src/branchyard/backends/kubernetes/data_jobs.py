"""The Jobs that move an environment's database in and out of its namespace on demand: `backup create`, `restore`,
and both sides of `db refresh`. Pure: where → manifests.

A dump job runs pg_dump (custom format) against the namespace's own PostgreSQL and uploads the file to the control
plane; a restore job downloads a dump from the control plane, checks its SHA-256, and replaces the database's
content with it in one transaction (the same SQL around pg_restore as on the local backend: restore_sql.py). Both
reach the control plane at BRANCHYARD_KUBE_CONTROL_URL with a one-time transfer token (transfers.py), which each job
reads from a Secret of its own: the Job's spec names the Secret, never the token. They run the PostgreSQL image of
the environment's server, so pg_dump and pg_restore are the server's own version.

The daily backup stays the environment's CronJob (data_services.backups); these are its on-demand siblings, sized the
same, and the namespace's quota keeps room for one of them (manifests.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...restore_sql import restore_epilogue, restore_prelude
from . import naming, quantities, security
from .inputs import POSTGRES_PORT, EnvironmentInputs

DATA_JOB_TIMEOUT = 3600  # seconds a dump or restore may take, pulling the image included
DATA_JOB_MEMORY_MB = 256
DATA_JOB_CPU = 0.5
POSTGRES_UID = 70  # the postgres user of the alpine images
TRANSFER_KEEP = 3600  # seconds the cluster keeps a finished job when the control plane could not delete it
DUMP = "dump"
RESTORE = "restore"

_UPLOAD = """\
set -e
dump="${TMPDIR:-/tmp}/dump"
pg_dump --format=custom --no-password --file="$dump"
echo "dumped $(wc -c < "$dump") bytes; uploading"
wget -q -O /dev/null --header "Authorization: Bearer $BRANCHYARD_TRANSFER_TOKEN" \\
  --header "Content-Type: application/octet-stream" --post-file="$dump" "$BRANCHYARD_TRANSFER_URL"
echo "uploaded"
"""

_RESTORE = """\
set -e
dump="${TMPDIR:-/tmp}/dump"
script="${TMPDIR:-/tmp}/restore.sql"
wget -q -O "$dump" --header "Authorization: Bearer $BRANCHYARD_TRANSFER_TOKEN" "$BRANCHYARD_TRANSFER_URL"
actual=$(sha256sum "$dump" | cut -d ' ' -f 1)
if [ "$actual" != "$BRANCHYARD_TRANSFER_SHA256" ]; then
  echo "the dump's sha256 is $actual, not $BRANCHYARD_TRANSFER_SHA256: not restored" >&2
  exit 1
fi
pg_restore --no-owner --no-privileges --role="$PGUSER" --file="$script" "$dump"
echo "restoring $(wc -c < "$dump") bytes into $PGDATABASE"
{ printf '%s' "$BRANCHYARD_RESTORE_PRELUDE"; cat "$script"; printf '%s' "$BRANCHYARD_RESTORE_EPILOGUE"; } \\
  | psql -X -q --no-password
echo "restored"
"""


@dataclass(frozen=True)
class DatabasePlace:
    """An environment's own PostgreSQL as a data job reaches it: its namespace, its server's image, the role the
    control plane created and its database (the server's Secret `postgres` holds the password)."""

    project: str
    environment: str
    namespace: str
    image: str
    user: str
    database: str


def place_of(inputs: EnvironmentInputs, namespace: str) -> DatabasePlace:
    return DatabasePlace(project=inputs.project, environment=inputs.config.name, namespace=namespace,
                         image=inputs.settings.postgres_image, user=inputs.credentials.postgres_user,
                         database=inputs.credentials.postgres_database)


def job_name(verb: str, transfer_id: str) -> str:
    return f"{verb}-{transfer_id}"


def secret_name(transfer_id: str) -> str:
    return f"transfer-{transfer_id}"


def dump_job(place: DatabasePlace, transfer_id: str, url: str, token: str) -> list[dict[str, Any]]:
    """The transfer's Secret and a Job that dumps the database and uploads it to `url`."""
    return [_secret(place, transfer_id, token), _job(place, DUMP, transfer_id, _UPLOAD, _transfer_env(transfer_id, url))]


def restore_job(place: DatabasePlace, transfer_id: str, url: str, token: str, sha256: str) -> list[dict[str, Any]]:
    """The transfer's Secret and a Job that downloads the dump at `url`, checks it is `sha256`, and restores it."""
    env = [*_transfer_env(transfer_id, url),
           {"name": "BRANCHYARD_TRANSFER_SHA256", "value": sha256},
           {"name": "BRANCHYARD_RESTORE_PRELUDE", "value": restore_prelude(place.user)},
           {"name": "BRANCHYARD_RESTORE_EPILOGUE", "value": restore_epilogue(place.user)}]
    return [_secret(place, transfer_id, token), _job(place, RESTORE, transfer_id, _RESTORE, env)]


def pod_template(place: DatabasePlace) -> dict[str, Any]:
    """The pod a data job runs (without its transfer's variables): what the namespace's quota keeps room for."""
    return tool_pod(place, "data", "true", [])


def tool_pod(place: DatabasePlace, name: str, script: str, env: list[dict[str, Any]], *,
             limits: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod whose one container runs `script` with the PostgreSQL tools of the server's image, connected to the
    namespace's server as its role (the password from the server's Secret), a scratch /tmp: a data job's, and the
    daily backup CronJob's (data_services.backups). `limits`: a data job's size unless given."""
    limits = limits or {"cpu": quantities.cpu(DATA_JOB_CPU), "memory": quantities.memory(DATA_JOB_MEMORY_MB)}
    container = {
        "name": name,
        "image": place.image,
        "command": ["/bin/sh", "-c", script],
        "env": [
            {"name": "PGHOST", "value": "postgres"},
            {"name": "PGPORT", "value": str(POSTGRES_PORT)},
            {"name": "PGUSER", "value": place.user},
            {"name": "PGDATABASE", "value": place.database},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "postgres", "key": "POSTGRES_PASSWORD"}}},
            *env,
        ],
        "resources": {"requests": dict(limits), "limits": dict(limits)},
        "securityContext": security.container(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "securityContext": security.pod(POSTGRES_UID),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def _job(place: DatabasePlace, verb: str, transfer_id: str, script: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    labels = naming.service_labels(place.project, place.environment, verb)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(verb, transfer_id), "namespace": place.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,  # a failed dump or restore is reported, not retried behind the user's back
            "activeDeadlineSeconds": DATA_JOB_TIMEOUT,
            "ttlSecondsAfterFinished": TRANSFER_KEEP,
            "template": {"metadata": {"labels": labels}, "spec": tool_pod(place, verb, script, env)},
        },
    }


def _transfer_env(transfer_id: str, url: str) -> list[dict[str, Any]]:
    return [{"name": "BRANCHYARD_TRANSFER_URL", "value": url},
            {"name": "BRANCHYARD_TRANSFER_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": secret_name(transfer_id), "key": "token"}}}]


def _secret(place: DatabasePlace, transfer_id: str, token: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name(transfer_id), "namespace": place.namespace,
                         "labels": naming.environment_labels(place.project, place.environment)},
            "type": "Opaque", "stringData": {"token": token}}
