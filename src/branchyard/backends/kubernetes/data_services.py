"""An environment's own PostgreSQL and Redis: a StatefulSet, a Service and a Secret each, inside its namespace (so
its NetworkPolicy keeps every other environment out), and the daily backup as a CronJob. Pure: inputs → dicts.

Chosen over CloudNativePG's `Cluster`: a StatefulSet needs nothing installed in the cluster first and behaves the
same on kind, k3d and a cloud; an operator who runs CloudNativePG (or a managed server) points
BRANCHYARD_POSTGRES_URL at it instead, as on the local backend, and the environment's database lives there.

Sizes: `memory` is the container's memory (requests = limits); Redis's maxmemory is 80% of it, so that the server
evicts keys (or refuses writes) before the kernel kills it. `storage` is the PersistentVolumeClaim's size (1 GB when
unset). CPU is not in the spec for data services: they get the web service's, or half a vCPU.
"""

from __future__ import annotations

from typing import Any

from . import data_jobs, naming, quantities, security
from .data_jobs import POSTGRES_UID
from .inputs import POSTGRES_PORT, REDIS_PORT, EnvironmentInputs

DEFAULT_STORAGE_MB = 1024
DEFAULT_CPU = 0.5
BACKUP_SCHEDULE = "0 3 * * *"  # daily, 03:00 UTC
REDIS_UID = 999  # the redis user of the alpine images


def postgres_variables(host: str, user: str, password: str, database: str) -> dict[str, str]:
    """What `${{Postgres.X}}` resolves to for the environment's own server (Railway's names)."""
    return {
        "DATABASE_URL": f"postgresql://{user}:{password}@{host}:{POSTGRES_PORT}/{database}",
        "PGHOST": host, "PGPORT": str(POSTGRES_PORT), "PGUSER": user, "PGPASSWORD": password, "PGDATABASE": database,
    }


def redis_variables(host: str, password: str) -> dict[str, str]:
    """What `${{Redis.X}}` resolves to (Railway's names)."""
    return {
        "REDIS_URL": f"redis://default:{password}@{host}:{REDIS_PORT}",
        "REDISHOST": host, "REDISPORT": str(REDIS_PORT), "REDISUSER": "default", "REDISPASSWORD": password,
    }


def postgres(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """Secret, Service, StatefulSet — none with the operator's server (the database lives there)."""
    pg = inputs.config.postgres
    if pg is None or inputs.external_postgres:
        return []
    creds = inputs.credentials
    env_from_secret = [{"name": key, "valueFrom": {"secretKeyRef": {"name": "postgres", "key": key}}}
                       for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")]
    container = {
        "name": "postgres",
        "image": inputs.settings.postgres_image,
        "env": env_from_secret,
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", creds.postgres_user, "-d", creds.postgres_database]},
                           "periodSeconds": 5, "timeoutSeconds": 5},
        "resources": _resources(inputs, pg.memory_mb),
        "securityContext": security.container(),
        # the images' own data directory is inside the claim whatever their version: /var/lib/postgresql/data up to
        # 17, /var/lib/postgresql/<major>/docker from 18 (where the images want the volume at /var/lib/postgresql)
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}],
    }
    return [
        _secret(inputs, "postgres", {"POSTGRES_USER": creds.postgres_user, "POSTGRES_DB": creds.postgres_database,
                                     "POSTGRES_PASSWORD": creds.postgres_password}),
        _service(inputs, "postgres", POSTGRES_PORT),
        _stateful_set(inputs, "postgres", container, POSTGRES_UID, claim_mb=pg.storage_mb or DEFAULT_STORAGE_MB),
    ]


def redis(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """Secret, Service, StatefulSet: append-only persistence on a volume when `persistence`, else in memory only."""
    rd = inputs.config.redis
    if rd is None:
        return []
    args = ["--requirepass", "$(REDIS_PASSWORD)", "--save", "", "--appendonly", "yes" if rd.persistence else "no",
            "--appendfsync", "everysec", "--dir", "/data"]
    if rd.memory_mb:
        args += ["--maxmemory", f"{max(1, rd.memory_mb * 8 // 10)}mb", "--maxmemory-policy", "allkeys-lru"]
    container = {
        "name": "redis",
        "image": inputs.settings.redis_image,
        "command": ["redis-server"],
        "args": args,
        "env": [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "REDIS_PASSWORD"}}}],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
        "resources": _resources(inputs, rd.memory_mb),
        "securityContext": security.container(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    claim_mb = max(DEFAULT_STORAGE_MB, 2 * (rd.memory_mb or 0)) if rd.persistence else None
    return [
        _secret(inputs, "redis", {"REDIS_PASSWORD": inputs.credentials.redis_password}),
        _service(inputs, "redis", REDIS_PORT),
        _stateful_set(inputs, "redis", container, REDIS_UID, claim_mb=claim_mb),
    ]


def backups(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """`backups = "daily"`: a CronJob dumps the database (pg_dump's custom format) and uploads it to the control plane
    with the environment's backup token, where `backup list/restore` find it. Not with the operator's server: the
    control plane reaches that one itself and backs it up as on the local backend."""
    pg = inputs.config.postgres
    if pg is None or pg.backups != "daily" or inputs.external_postgres:
        return []
    url = f"{inputs.control_url}/internal/backups/{inputs.project}/{inputs.config.name}"
    script = ('pg_dump --format=custom --file=/tmp/backup.dump && '
              'wget -q -O /dev/null --header "Authorization: Bearer $BRANCHYARD_BACKUP_TOKEN" '
              '--header "Content-Type: application/octet-stream" --post-file=/tmp/backup.dump "$BRANCHYARD_BACKUP_URL"')
    place = data_jobs.place_of(inputs, "")
    env = [{"name": "BRANCHYARD_BACKUP_URL", "value": url},
           {"name": "BRANCHYARD_BACKUP_TOKEN", "valueFrom": {"secretKeyRef": {"name": "backup-upload", "key": "token"}}}]
    # pg_dump of the server's own version; busybox wget uploads
    pod = data_jobs.tool_pod(place, "backup", script, env, limits=_resources(inputs, 256)["limits"])
    labels = naming.service_labels(inputs.project, inputs.config.name, "backup")
    return [
        _secret(inputs, "backup-upload", {"token": inputs.credentials.backup_token}),
        {
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "postgres-backup", "labels": labels},
            "spec": {
                "schedule": BACKUP_SCHEDULE,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {"backoffLimit": 2, "activeDeadlineSeconds": 3600,
                                         "template": {"metadata": {"labels": labels}, "spec": pod}}},
            },
        },
    ]


def _stateful_set(inputs: EnvironmentInputs, name: str, container: dict[str, Any], uid: int, *,
                  claim_mb: int | None) -> dict[str, Any]:
    labels = naming.service_labels(inputs.project, inputs.config.name, name)
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": security.pod(uid),
            "terminationGracePeriodSeconds": 60,  # a clean shutdown (a checkpoint, an AOF flush) before the kill
            "containers": [container],
        }},
    }
    if claim_mb is None:
        spec["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    else:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": quantities.memory(claim_mb)}}}
        if inputs.settings.storage_class:
            claim["storageClassName"] = inputs.settings.storage_class
        spec["volumeClaimTemplates"] = [{"metadata": {"name": "data", "labels": labels}, "spec": claim}]
        # a preview's claims go with it; a persistent environment's stay when its StatefulSet is deleted by hand
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Delete" if inputs.config.ephemeral else "Retain", "whenScaled": "Retain"}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": labels}, "spec": spec}


def _service(inputs: EnvironmentInputs, name: str, port: int) -> dict[str, Any]:
    labels = naming.service_labels(inputs.project, inputs.config.name, name)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": name, "port": port, "targetPort": name}]}}


def _secret(inputs: EnvironmentInputs, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": naming.environment_labels(inputs.project, inputs.config.name)},
            "type": "Opaque", "stringData": data}


def _resources(inputs: EnvironmentInputs, memory_mb: int | None) -> dict[str, Any]:
    limits = {"cpu": quantities.cpu(inputs.config.web.cpu or DEFAULT_CPU)}
    if memory_mb is not None:
        limits["memory"] = quantities.memory(memory_mb)
    return {"requests": dict(limits), "limits": dict(limits)}

