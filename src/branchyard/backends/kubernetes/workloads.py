"""The app's workloads: web as a Deployment, Procfile workers as Deployments without a Service, a `cronSchedule`
service as a CronJob, preDeployCommand and seedCommand as Jobs, and a `run` command as a one-off Job. Pure: inputs →
dicts.

Every app pod runs the release: a release archive (code + virtualenv built once for the runtime image) that an init
container fetches with the release's own token into an emptyDir, checked against its SHA-256 — or a prebuilt image.
Its variables come from the release's own immutable Secret (`variables-<release>`): a rollback or a promotion points
the pods at an earlier snapshot and never rebuilds.

Where Kubernetes differs from the local backend (docs/kubernetes.md says it to users):
- restartPolicyType: a Deployment's pods only know `restartPolicy: Always`. ALWAYS is exact; ON_FAILURE also
  restarts a replica that exited 0, and NEVER restarts too (Kubernetes keeps a Deployment's replicas running);
  restartPolicyMaxRetries has no equivalent (CrashLoopBackOff backs off up to 5 minutes between tries, forever).
  One-shot work (cron runs, hooks) is `restartPolicy: Never` with `backoffLimit: 0`, as locally: it runs once.
- Without a healthcheckPath a replica is healthy once its port accepts connections (a TCP probe): the local
  backend's "GET / below 500" has no probe type in Kubernetes (an httpGet probe fails on 4xx).
- A replica leaving service sleeps `drainingSeconds` (at least 5 s) before its SIGTERM, so the ingress controller
  stops sending it requests first: endpoint removal is asynchronous in a cluster, unlike Caddy's one config swap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from ...errors import BadInput
from ...release_variables import prefixed, release_facts
from . import naming, quantities, security
from .inputs import APP_PORT, HOOK_TIMEOUT, RUN_TIMEOUT, EnvironmentInputs

APP_DIR = "/app"  # where a release archive is unpacked: the service's root, its virtualenv at /app/.venv
APP_USER = 1000  # the uid app containers run as (never root); releases are built to run as it
MIN_DRAIN = 5  # seconds a leaving replica keeps serving while endpoints propagate (drainingSeconds when larger)
RUN_SERVICE = "run"  # a `run` command's Job: its service label and its container's name
RUN_KEEP = 600  # seconds the cluster keeps a finished `run` Job the control plane could not delete (it died under it)
_RUN_ID = re.compile(r"[a-z0-9]{1,16}")

# The init container's program (python3 is in every runtime image): fetch the archive with the release's token,
# check its digest, unpack it with tarfile's "data" filter (no absolute paths, links out, devices or setuid bits),
# then link the virtualenvs' interpreters to the image's own (the one link the filter refuses to unpack:
# build/archive.py leaves it out).
FETCH_RELEASE = """\
import hashlib, os, sys, tarfile, urllib.request
app = os.environ.get("BRANCHYARD_APP_DIR", "/app")
url, want = os.environ["BRANCHYARD_RELEASE_URL"], os.environ["BRANCHYARD_RELEASE_SHA256"]
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + os.environ["BRANCHYARD_RELEASE_TOKEN"]})
digest, path = hashlib.sha256(), os.path.join(app, ".release.tar.gz")
with urllib.request.urlopen(req, timeout=120) as answer, open(path, "wb") as out:
    while chunk := answer.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
if digest.hexdigest() != want:
    sys.exit(f"release archive {url}: SHA-256 {digest.hexdigest()}, expected {want}")
with tarfile.open(path) as archive:
    archive.extractall(app, filter="data")
os.remove(path)
for bin_dir in (os.path.join(app, ".venv", "bin"), os.path.join(app, ".deps", "bin")):
    for name in ("python", "python3", "python%d.%d" % sys.version_info[:2]):
        link = os.path.join(bin_dir, name)
        if os.path.isdir(bin_dir) and not os.path.lexists(link):
            os.symlink(sys.executable, link)
print("release unpacked into " + app)
"""


def variables_secret_name(release_id: str) -> str:
    return f"variables-{naming.release_label(release_id)}"


def release_secret_name(release_id: str) -> str:
    return f"release-{naming.release_label(release_id)}"


def secrets(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """The release's variables (Railway's built-in names, then the app's own: the app may override them, as on
    Railway) and, for an archive, its fetch token. Immutable: a release's snapshot never changes."""
    rel = inputs.release
    facts = release_facts(inputs.project, inputs.config.name, rel.id, rel.commit, rel.branch)
    railway, _ = prefixed(facts | {"PUBLIC_DOMAIN": inputs.public_domain})
    data = railway | dict(inputs.variables)
    out = [_secret(inputs, variables_secret_name(rel.id), data)]
    if rel.image is None:
        out.append(_secret(inputs, release_secret_name(rel.id), {"token": inputs.credentials.release_token}))
    return out


def _secret(inputs: EnvironmentInputs, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": _labels(inputs) | {naming.RELEASE: naming.release_label(inputs.release.id)}},
        "type": "Opaque",
        "immutable": True,
        "stringData": dict(sorted(data.items())),
    }


def web(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """The web Deployment, or, for a `cronSchedule` service, its CronJob (a cron deployment runs no replicas)."""
    cfg = inputs.config.web
    command = cfg.start_command or "echo 'no start command' >&2; exit 1"
    if cfg.cron_schedule:
        return [_cron_job(inputs, command)]
    replicas = cfg.replicas if inputs.replicas is None else inputs.replicas
    drain = max(cfg.draining_seconds, MIN_DRAIN)
    container = _app_container(inputs, "web", command, port=True) | {
        "startupProbe": _probe(cfg.healthcheck_path) | {
            "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": max(1, math.ceil(cfg.healthcheck_timeout / 2))},
        "readinessProbe": _liveness(inputs),
        "livenessProbe": _liveness(inputs),
        # Kubernetes' own sleep (1.30+): no `sleep` binary needed in the image
        "lifecycle": {"preStop": {"sleep": {"seconds": drain}}},
    }
    return [_deployment(inputs, "web", container, replicas, extra_spec={
        "progressDeadlineSeconds": cfg.healthcheck_timeout + 60,  # the health check's time, plus pulling and fetching
        "minReadySeconds": cfg.overlap_seconds,
    }, grace=drain + 30)]


def workers(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """A Deployment per Procfile process type besides web and release: web's limits, no Service, no probes."""
    out = []
    for name, process in sorted(inputs.config.processes.items()):
        service = f"worker-{naming.release_label(name)}"
        replicas = process.replicas if inputs.replicas != 0 else 0
        out.append(_deployment(inputs, service, _app_container(inputs, service, process.command, port=False),
                               replicas, extra_spec={}, grace=30))
    return out


def hook_jobs(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    """preDeployCommand (each command in order; the first to fail fails the Job, and the rollout never starts),
    then, for a new database, seedCommand. Run once: no retries."""
    cfg = inputs.config.web
    out = []
    if cfg.pre_deploy_command:
        out.append(_job(inputs, "predeploy", cfg.pre_deploy_command))
    if inputs.new_database and cfg.seed_command:
        out.append(_job(inputs, "seed", (cfg.seed_command,)))
    return out


def _job(inputs: EnvironmentInputs, service: str, commands: tuple[str, ...]) -> dict[str, Any]:
    script = "set -e\n" + "".join(f"echo {_shell_quote('-----> running: ' + c)}\n{c}\n" for c in commands)
    pod = _pod_spec(inputs, _app_container(inputs, service, script, port=False), restart="Never", grace=30)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{service}-{naming.release_label(inputs.release.id)}", "labels": _workload_labels(inputs, service)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": HOOK_TIMEOUT,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": _workload_labels(inputs, service)}, "spec": pod},
        },
    }


def one_off_job_name(run_id: str) -> str:
    """`run-<run_id>`: the Job of one `run` command. BadInput unless `run_id` is 1–16 lowercase letters and digits
    (a DNS label with room for the pod's suffix)."""
    if not _RUN_ID.fullmatch(run_id):
        raise BadInput(f"run id {run_id!r}: 1 to 16 lowercase letters and digits")
    return f"{RUN_SERVICE}-{run_id}"


def one_off_job(inputs: EnvironmentInputs, argv: Sequence[str], run_id: str) -> dict[str, Any]:
    """`run -e ENV -- CMD`: `argv` run once in the release's pod (its archive fetched, its variables Secret, web's
    size), exactly as given: no shell, and `$` escaped from Kubernetes' own `$(VAR)` expansion. Stdin stays closed.
    Deleted by the control plane once it has the exit code; by the cluster RUN_KEEP seconds after it ended else."""
    if not argv or any("\x00" in arg for arg in argv):
        raise BadInput("run: the command is empty or has an argument with a NUL character")
    name = one_off_job_name(run_id)
    container = _app_container(inputs, RUN_SERVICE, [_unexpanded(arg) for arg in argv], port=False)
    pod = _pod_spec(inputs, container, restart="Never", grace=30)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": _workload_labels(inputs, RUN_SERVICE)},
        "spec": {
            "backoffLimit": 0,  # a command runs once, as locally: never again behind the user's back
            "activeDeadlineSeconds": RUN_TIMEOUT,
            "ttlSecondsAfterFinished": RUN_KEEP,
            "template": {"metadata": {"labels": _workload_labels(inputs, RUN_SERVICE)}, "spec": pod},
        },
    }


def _unexpanded(arg: str) -> str:
    """An argument as Kubernetes must be given it to pass it on unchanged: it expands `$(VAR)` in a container's
    command and reads `$$` as `$`, so every `$` is doubled."""
    return arg.replace("$", "$$")


def _cron_job(inputs: EnvironmentInputs, command: str) -> dict[str, Any]:
    """Railway's cronSchedule as Kubernetes runs it: UTC; a run still going when the next is due → that one is skipped
    (Forbid, as locally); slots missed while the controller was down → the newest only, when at most an hour late
    (startingDeadlineSeconds, as locally)."""
    pod = _pod_spec(inputs, _app_container(inputs, "cron", command, port=False), restart="Never", grace=30)
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "cron", "labels": _workload_labels(inputs, "cron")},
        "spec": {
            "schedule": inputs.config.web.cron_schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "suspend": inputs.replicas == 0,  # `down`: no runs until `up`
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": _workload_labels(inputs, "cron")}, "spec": pod}}},
        },
    }


def _deployment(inputs: EnvironmentInputs, service: str, container: dict[str, Any], replicas: int, *,
                extra_spec: dict[str, Any], grace: int) -> dict[str, Any]:
    selector = naming.service_labels(inputs.project, inputs.config.name, service)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service, "labels": _workload_labels(inputs, service)},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,  # rollback is branchyard's (release snapshots), not `kubectl rollout undo`
            "selector": {"matchLabels": selector},
            # zero downtime: a new replica must be ready before an old one goes (Kubernetes' maxUnavailable: 0)
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            **extra_spec,
            "template": {"metadata": {"labels": _workload_labels(inputs, service)},
                         "spec": _pod_spec(inputs, container, restart="Always", grace=grace)},
        },
    }


def _pod_spec(inputs: EnvironmentInputs, container: dict[str, Any], *, restart: str, grace: int) -> dict[str, Any]:
    rel = inputs.release
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # app code (a preview runs any pull request's) never talks to the API
        "enableServiceLinks": False,  # no environment variables about the namespace's other Services
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": grace,
        "securityContext": security.pod(APP_USER if rel.image is None else None),
    }
    if rel.image is None:
        spec["initContainers"] = [_fetch_container(inputs)]
    spec["containers"] = [container]
    if rel.image is None:
        spec["volumes"] = [{"name": "app", "emptyDir": {}}]
    return spec


def _fetch_container(inputs: EnvironmentInputs) -> dict[str, Any]:
    rel = inputs.release
    return {
        "name": "release",
        "image": inputs.settings.runtime_image,
        "command": ["python3", "-c", FETCH_RELEASE],
        "env": [
            {"name": "BRANCHYARD_RELEASE_URL", "value": rel.archive_url or ""},
            {"name": "BRANCHYARD_RELEASE_SHA256", "value": rel.archive_sha256 or ""},
            {"name": "BRANCHYARD_RELEASE_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": release_secret_name(rel.id), "key": "token"}}},
        ],
        "resources": _resources(inputs),
        "securityContext": security.container(),
        "volumeMounts": [{"name": "app", "mountPath": APP_DIR}],
    }


def _app_container(inputs: EnvironmentInputs, service: str, command: str | list[str], *, port: bool) -> dict[str, Any]:
    """`command`: a line for the shell (a start command, a hook), or an argv run as it is (`run`)."""
    rel = inputs.release
    facts = release_facts(inputs.project, inputs.config.name, rel.id, rel.commit, rel.branch)
    if service != "web":  # a Procfile service, a cron run or a hook is a service of its own, as on Railway
        facts |= {"SERVICE_NAME": service, "SERVICE_ID": f"{inputs.project}/{inputs.config.name}/{service}"}
    _, own = prefixed(facts | {"PUBLIC_DOMAIN": inputs.public_domain})
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "RAILWAY_REPLICA_ID", "value": "$(POD_NAME)"},
        {"name": "BRANCHYARD_REPLICA_ID", "value": "$(POD_NAME)"},
        *({"name": k, "value": v} for k, v in sorted(own.items())),
        {"name": "HOME", "value": "/tmp"},
        {"name": "LANG", "value": "C.UTF-8"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if port:
        env.append({"name": "PORT", "value": str(APP_PORT)})
    container: dict[str, Any] = {
        "name": service,
        "image": rel.image or inputs.settings.runtime_image,
        "command": ["/bin/sh", "-c", command] if isinstance(command, str) else list(command),
        "envFrom": [{"secretRef": {"name": variables_secret_name(rel.id)}}],
        "env": env,
        "resources": _resources(inputs),
        "securityContext": security.container(),
    }
    if rel.image is None:
        env += [{"name": "VIRTUAL_ENV", "value": f"{APP_DIR}/.venv"},
                {"name": "PATH", "value": f"{APP_DIR}/.venv/bin:/usr/local/bin:/usr/bin:/bin"}]
        container |= {"workingDir": APP_DIR, "volumeMounts": [{"name": "app", "mountPath": APP_DIR}]}
    if port:
        container["ports"] = [{"name": "http", "containerPort": APP_PORT}]
    return container


def _resources(inputs: EnvironmentInputs) -> dict[str, Any]:
    """The spec's `memory`/`cpu` as requests = limits: the seed's sizes are allocations, reserved and enforced."""
    cfg = inputs.config.web
    limits: dict[str, str] = {}
    if cfg.memory_mb is not None:
        limits["memory"] = quantities.memory(cfg.memory_mb)
    if cfg.cpu is not None:
        limits["cpu"] = quantities.cpu(cfg.cpu)
    return {"requests": dict(limits), "limits": dict(limits)} if limits else {}


def _probe(path: str | None) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}} if path else {"tcpSocket": {"port": "http"}}


def _liveness(inputs: EnvironmentInputs) -> dict[str, Any]:
    """healthcheckInterval/healthcheckFailures: a running replica failing that many probes in a row leaves the
    Service (readiness) and is restarted (liveness), as locally."""
    cfg = inputs.config.web
    return _probe(cfg.healthcheck_path) | {"periodSeconds": cfg.healthcheck_interval,
                                           "timeoutSeconds": min(cfg.healthcheck_interval, 5),
                                           "failureThreshold": cfg.healthcheck_failures}


def _labels(inputs: EnvironmentInputs) -> dict[str, str]:
    return naming.environment_labels(inputs.project, inputs.config.name)


def _workload_labels(inputs: EnvironmentInputs, service: str) -> dict[str, str]:
    return naming.service_labels(inputs.project, inputs.config.name, service) | {
        naming.RELEASE: naming.release_label(inputs.release.id)}


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
