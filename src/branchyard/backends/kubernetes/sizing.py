"""An environment's ResourceQuota and LimitRange, computed from its own workloads (the seed's per-tier RAM, CPU and
storage), so that the namespace can hold exactly what branchyard runs there and no more. Pure: objects → dicts.

The quota is the peak the environment's workloads can reach together: every Deployment at its replicas plus the one
extra replica its rolling update adds (maxSurge 1), every StatefulSet's replicas, one pod for each Job and CronJob
(hooks run one at a time; cron runs never overlap), each pod counted at max(sum of its containers, largest init
container) as the scheduler counts it; the claims' storage summed; and room for one pod more, the largest of the
`one_off` pods (a `run` command or an on-demand dump or restore, started beside whatever else is running). A
dimension is in the quota only when every container states it (a spec without `memory` sets no memory quota —
nothing to derive it from). No LoadBalancer and
no NodePort Service: an environment is reached through the ingress controller only.

The LimitRange gives a container created by hand in the namespace (`kubectl run`) the web service's size, and caps
any container at the largest branchyard runs there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import quantities

_DIMENSIONS = ("cpu", "memory")


def quota_and_limits(objects: Iterable[Mapping[str, Any]], labels: Mapping[str, str], *,
                     one_off: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    pods: list[tuple[int, Mapping[str, Any]]] = []
    claims: list[float] = []
    containers: list[Mapping[str, Any]] = []
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind == "Deployment":
            replicas = spec["replicas"]
            pods.append((replicas + (1 if replicas else 0), spec["template"]["spec"]))
        elif kind == "StatefulSet":
            pods.append((spec["replicas"], spec["template"]["spec"]))
            claims += [quantities.parse(t["spec"]["resources"]["requests"]["storage"]) * spec["replicas"]
                       for t in spec.get("volumeClaimTemplates", ())]
        elif kind == "Job":
            pods.append((1, spec["template"]["spec"]))
        elif kind == "CronJob":
            pods.append((1, spec["jobTemplate"]["spec"]["template"]["spec"]))
        else:
            continue
        template = pods[-1][1]
        containers += [*template.get("initContainers", ()), *template["containers"]]
    spare = list(one_off)
    for template in spare:
        containers += [*template.get("initContainers", ()), *template["containers"]]
    hard: dict[str, str] = {"pods": str(sum(n for n, _ in pods) + (1 if spare else 0)), "services.loadbalancers": "0",
                            "services.nodeports": "0"}
    for dim in _DIMENSIONS:
        if containers and all(dim in c.get("resources", {}).get("limits", {}) for c in containers):
            total = sum(n * _pod_amount(p, dim) for n, p in pods) + max((_pod_amount(p, dim) for p in spare), default=0.0)
            shown = quantities.cpu_of(total) if dim == "cpu" else quantities.memory_of(total)
            hard |= {f"requests.{dim}": shown, f"limits.{dim}": shown}
    if claims:
        hard |= {"requests.storage": quantities.memory_of(sum(claims)),
                 "persistentvolumeclaims": str(len(claims))}
    out: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "ResourceQuota",
                                  "metadata": {"name": "environment", "labels": dict(labels)}, "spec": {"hard": hard}}]
    limits = _limit_range(containers, claims)
    if limits:
        out.append({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "environment", "labels": dict(labels)},
                    "spec": {"limits": limits}})
    return out


def _pod_amount(pod: Mapping[str, Any], dim: str) -> float:
    """What the scheduler reserves for a pod: its containers together, or its largest init container if more."""
    main = sum(_amount(c, dim) for c in pod["containers"])
    init = max((_amount(c, dim) for c in pod.get("initContainers", ())), default=0.0)
    return max(main, init)


def _amount(container: Mapping[str, Any], dim: str) -> float:
    value = container.get("resources", {}).get("limits", {}).get(dim)
    return quantities.parse(value) if value is not None else 0.0


def _limit_range(containers: list[Mapping[str, Any]], claims: list[float]) -> list[dict[str, Any]]:
    web = next((c for c in containers if c["name"] == "web"), containers[0] if containers else None)
    out: list[dict[str, Any]] = []
    default = dict(web.get("resources", {}).get("limits", {})) if web is not None else {}
    largest = {}
    for dim in _DIMENSIONS:
        if containers and all(dim in c.get("resources", {}).get("limits", {}) for c in containers):
            top = max(_amount(c, dim) for c in containers)
            largest[dim] = quantities.cpu_of(top) if dim == "cpu" else quantities.memory_of(top)
    if default or largest:
        item: dict[str, Any] = {"type": "Container"}
        if default:
            item |= {"default": default, "defaultRequest": dict(default)}
        if largest:
            item["max"] = largest
        out.append(item)
    if claims:
        out.append({"type": "PersistentVolumeClaim", "max": {"storage": quantities.memory_of(max(claims))}})
    return out
