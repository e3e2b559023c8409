"""A Kubernetes cluster as the controller sees it (BRANCHYARD_BACKEND=kubernetes): environments as namespaces
(ClusterEnvironments), hosts as Ingresses (IngressRouter), data services as StatefulSets (ClusterDataServers).
What the control plane still runs itself — smoke tests and post-deploy checks against the public URL, its build
steps — runs on its own machine through the local runtime and task records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...settings import Settings
from ...transfers import Transfers
from ..local.runtime import LocalRuntime
from ..local.tasks import TaskRecords
from ..ports import Isolation, Machine
from .certificates import ClusterCertificates
from .cluster import Cluster
from .data import ClusterDataServers, DataJobs
from .environments import ClusterEnvironments
from .router import IngressRouter


class ClusterRuntime(LocalRuntime):
    """The control plane's own processes (checks, smoke tests); app replicas are pods, limited and isolated by the
    cluster (ResourceQuota, LimitRange, NetworkPolicy: manifests.py)."""

    def isolation(self) -> Isolation:
        return Isolation(limits=True, network=True, by="kubernetes")


def kubernetes_machine(settings: Settings, *, cluster: Cluster | None = None,
                       wait: Mapping[str, Any] | None = None) -> Machine:
    """`cluster`: one already connected (tests: a fake API server); else from BRANCHYARD_KUBECONFIG / in-cluster.
    `wait`: how data jobs are awaited (tests: clock, sleep, poll)."""
    kube = settings.kubernetes
    cluster = cluster or Cluster.connect(kube.kubeconfig, context=kube.context)
    tasks = TaskRecords(settings.home / "tasks")
    control_url = kube.pods_reach_control_plane_at(settings.control_url)
    transfers = Transfers()
    jobs = DataJobs(cluster, transfers, control_url, kube.postgres_image, wait=wait or {})
    return Machine(router=IngressRouter(cluster, kube), runtime=ClusterRuntime(tasks), tasks=tasks,
                   certificates=ClusterCertificates(cluster, kube),
                   data=ClusterDataServers(settings, jobs), transfers=transfers,
                   environments=ClusterEnvironments(cluster, kube, control_url))
