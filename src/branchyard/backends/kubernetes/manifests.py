"""Everything one environment is on a cluster, as plain manifest dicts in the order they are applied. Pure.

`render_environment` is the one mapping from a spec to objects: the backend applies its output (server-side apply,
field manager "branchyard"), and `branchyard render` prints it. The order is the apply order: the Namespace, what
bounds it (LimitRange, ResourceQuota, NetworkPolicies), Secrets, Services, the data services' StatefulSets, the
hook Jobs (awaited: the rollout starts only once they succeeded), the app's Deployments and CronJobs, the Ingresses.
"""

from __future__ import annotations

from typing import Any

from . import data_jobs, data_services, naming, network, sizing, workloads
from .inputs import EnvironmentInputs


def render_environment(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    ns = namespace_of(inputs)
    labels = naming.environment_labels(inputs.project, inputs.config.name)
    secrets = workloads.secrets(inputs)
    postgres, redis, backups = (data_services.postgres(inputs), data_services.redis(inputs),
                                data_services.backups(inputs))
    data = [*postgres, *redis, *backups]
    app = [*workloads.hook_jobs(inputs), *workloads.web(inputs), *workloads.workers(inputs)]
    body = [
        *network.policies(inputs),
        *secrets, *(o for o in data if o["kind"] == "Secret"),
        *network.web_service(inputs), *(o for o in data if o["kind"] == "Service"),
        *(o for o in data if o["kind"] not in ("Secret", "Service")),
        *app,
        *network.ingresses(inputs),
    ]
    bounds = sizing.quota_and_limits(body, labels, one_off=_one_off_pods(inputs, ns, app))
    objects = [_namespace(inputs, ns), *_bounds_first(bounds), *body]
    for obj in objects[1:]:
        obj["metadata"] = {"name": obj["metadata"]["name"], "namespace": ns,
                           **{k: v for k, v in obj["metadata"].items() if k != "name"}}
    return objects


def _one_off_pods(inputs: EnvironmentInputs, namespace: str, app: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods started on demand beside the environment's own: a `run` command (the web service's pod) and, with the
    namespace's own PostgreSQL, a dump or restore job."""
    pods = [o["spec"]["template"]["spec"] for o in app if o["kind"] == "Deployment" and o["metadata"]["name"] == "web"]
    if inputs.config.postgres is not None and not inputs.external_postgres:
        pods.append(data_jobs.pod_template(data_jobs.place_of(inputs, namespace)))
    return pods


def one_off_job(inputs: EnvironmentInputs, argv: list[str], run_id: str) -> dict[str, Any]:
    """A `run` command's Job in the environment's namespace: started on demand, never one of the objects above."""
    job = workloads.one_off_job(inputs, argv, run_id)
    job["metadata"] = {"name": job["metadata"]["name"], "namespace": namespace_of(inputs),
                       **{k: v for k, v in job["metadata"].items() if k != "name"}}
    return job


def namespace_of(inputs: EnvironmentInputs) -> str:
    return naming.namespace(inputs.settings.namespace_prefix, inputs.project, inputs.config.name)


def _namespace(inputs: EnvironmentInputs, name: str) -> dict[str, Any]:
    labels = naming.environment_labels(inputs.project, inputs.config.name) | {
        naming.EPHEMERAL: "true" if inputs.config.ephemeral else "false",
        # app pods meet the "restricted" Pod Security Standard; the data services' images need "baseline"'s leeway
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    if inputs.pull_request is not None:
        labels[naming.PULL_REQUEST] = str(inputs.pull_request)
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if inputs.annotations:
        metadata["annotations"] = dict(inputs.annotations)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def _bounds_first(bounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LimitRange before ResourceQuota: a quota on limits refuses pods without them, which the LimitRange defaults."""
    return sorted(bounds, key=lambda o: o["kind"] != "LimitRange")


def phases(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(prepare, hooks, roll out): how the backend applies an environment's objects, waiting between the phases.

    prepare — the Namespace, its bounds and policies, Secrets, Services, the data services (awaited until ready) and
    their backup CronJob; hooks — the Jobs (preDeployCommand, seedCommand), one at a time, each awaited; roll out — the
    app's Deployments (awaited: rolled out and healthy), its cron CronJob, the Ingresses (only once it serves)."""
    prepare, hooks, roll_out = [], [], []
    for obj in objects:
        kind, service = obj["kind"], obj["metadata"].get("labels", {}).get(naming.SERVICE)
        if kind == "Job":
            hooks.append(obj)
        elif kind in ("Deployment", "Ingress") or (kind == "CronJob" and service != "backup"):
            roll_out.append(obj)
        else:
            prepare.append(obj)
    return prepare, hooks, roll_out
