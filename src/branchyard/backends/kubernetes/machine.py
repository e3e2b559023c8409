"""A Kubernetes cluster as the controller sees it (BRANCHYARD_BACKEND=kubernetes): environments as namespaces
(ClusterEnvironments), hosts as Ingresses (IngressRouter), data services as StatefulSets (ClusterDataServers).
What the control plane still runs itself — smoke tests and post-deploy checks against the public URL, its build
steps — runs on its own machine through the local runtime and task records."""

from __future__ import annotations

from ...settings import Settings
from ..local.runtime import LocalRuntime
from ..local.tasks import TaskRecords
from ..ports import Isolation, Machine
from .cluster import Cluster
from .data import ClusterDataServers
from .environments import ClusterEnvironments
from .router import IngressRouter


class ClusterRuntime(LocalRuntime):
    """The control plane's own processes (checks, smoke tests); app replicas are pods, limited and isolated by the
    cluster (ResourceQuota, LimitRange, NetworkPolicy: manifests.py)."""

    def isolation(self) -> Isolation:
        return Isolation(limits=True, network=True, by="kubernetes")


def kubernetes_machine(settings: Settings, *, cluster: Cluster | None = None) -> Machine:
    """`cluster`: one already connected (tests: a fake API server); else from BRANCHYARD_KUBECONFIG / in-cluster."""
    kube = settings.kubernetes
    cluster = cluster or Cluster.connect(kube.kubeconfig, context=kube.context)
    tasks = TaskRecords(settings.home / "tasks")
    return Machine(router=IngressRouter(cluster, kube), runtime=ClusterRuntime(tasks), tasks=tasks,
                   data=ClusterDataServers(settings),
                   environments=ClusterEnvironments(cluster, kube, kube.pods_reach_control_plane_at(settings.control_url)))
