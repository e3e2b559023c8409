"""The router port on Kubernetes: every routed host is an Ingress in its environment's namespace, to its web Service
(the cluster's ingress controller is the router; TLS is cert-manager's, from the Ingress's annotation).

The controller asks for the whole route table every second; the cluster is only touched when the table changed
(a deploy, a custom domain added or removed): then the hosts of environments whose namespace exists get their
Ingress (server-side apply, idempotent), and any Ingress branchyard made for a host no longer routed is deleted.
Route states do not matter here: a sleeping or unavailable environment has no ready pod behind its Service, so the
ingress controller answers 503 for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ...kube_settings import KubeSettings
from ..ports import Route
from . import naming
from .cluster import Cluster
from .network import ingress

log = logging.getLogger("branchyard.kubernetes.router")
MANAGED = f"{naming.MANAGED_BY[0]}={naming.MANAGED_BY[1]}"


class IngressRouter:
    def __init__(self, cluster: Cluster, settings: KubeSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self._served: frozenset[tuple[str, str, str]] | None = None  # (project, environment, host) last made so

    def ensure_running(self) -> None:
        """Nothing to start: the ingress controller is the cluster's. Reachability shows at the first apply."""

    def apply(self, routes: Sequence[Route]) -> None:
        wanted = frozenset((r.project, r.environment, r.host) for r in routes)
        if wanted == self._served:
            return
        existing = set(self.cluster.namespaces(MANAGED))
        objects, keep = [], set()
        for project, environment, host in sorted(wanted):
            namespace = naming.namespace(self.settings.namespace_prefix, project, environment)
            if namespace not in existing:
                continue  # not deployed to the cluster yet: its first roll-out applies its Ingresses
            obj = ingress(self.settings, project, environment, host)
            obj["metadata"]["namespace"] = namespace
            objects.append(obj)
            keep.add((namespace, obj["metadata"]["name"]))
        if objects:
            self.cluster.apply(objects)
        for namespace, name, hosts in self.cluster.ingresses(f"{MANAGED},{naming.SERVICE}=web"):
            if (namespace, name) not in keep:
                log.info("ingress %s/%s (%s) no longer routed: deleted", namespace, name, ", ".join(hosts))
                self.cluster.delete("Ingress", namespace, name)
        self._served = wanted

    def stop(self) -> None:
        """Whole-machine teardown does not delete the cluster's Ingresses: environments keep serving without us."""
