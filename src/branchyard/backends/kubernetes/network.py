"""How requests reach an environment and nothing else does: the web Service, an Ingress per public host (TLS from
cert-manager when the operator names a ClusterIssuer), and NetworkPolicies that keep other environments out —
the seed's "Network: Isolated from other environments". Pure: inputs → dicts.

Ingress rather than Gateway API's HTTPRoute: every cluster's ingress controller serves Ingress (networking.k8s.io/v1,
GA since 1.19), while Gateway API needs its CRDs and a Gateway installed first; cert-manager issues an Ingress's
certificates from one annotation. One Ingress per host, so that a custom domain whose certificate cannot be issued
(its DNS not pointing here yet) holds up nobody else's.

NetworkPolicies (enforced by the cluster's network plugin — Calico, Cilium, …; kind's default one enforces none, and
docs/kubernetes.md says so):
- `same-environment`: every pod accepts traffic from its own namespace only (ingress rules are additive, so this is
  the deny-all-other-namespaces baseline the next two widen);
- `from-ingress-controller`: web pods accept the ingress controller's pods (BRANCHYARD_KUBE_INGRESS_NAMESPACE), on the
  app's port only;
- `from-control-plane`: PostgreSQL and Redis accept the control plane's namespace (refresh, restore, metrics), on
  their ports only.
"""

from __future__ import annotations

from typing import Any

from ...kube_settings import KubeSettings
from . import naming
from .inputs import APP_PORT, POSTGRES_PORT, REDIS_PORT, EnvironmentInputs

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace (1.21+)


def web_service(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    if inputs.config.web.cron_schedule:
        return []  # a cron service serves no requests
    labels = naming.service_labels(inputs.project, inputs.config.name, "web")
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": labels},
             "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}]


def ingresses(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    if inputs.config.web.cron_schedule:
        return []
    return [ingress(inputs.settings, inputs.project, inputs.config.name, host) for host in inputs.hosts]


def ingress(settings: KubeSettings, project: str, environment: str, host: str) -> dict[str, Any]:
    """One public host of an environment → its web Service (the router applies the same object for a custom domain
    added later: one definition for both)."""
    metadata: dict[str, Any] = {"name": naming.for_host("web", host),
                                "labels": naming.service_labels(project, environment, "web")}
    spec: dict[str, Any] = {"rules": [{"host": host, "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    if settings.cluster_issuer:
        metadata["annotations"] = {"cert-manager.io/cluster-issuer": settings.cluster_issuer}
        spec["tls"] = [{"hosts": [host], "secretName": naming.for_host("tls", host)}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}


def policies(inputs: EnvironmentInputs) -> list[dict[str, Any]]:
    labels = naming.environment_labels(inputs.project, inputs.config.name)
    out = [_policy("same-environment", labels, {}, [{"from": [{"podSelector": {}}]}])]
    if not inputs.config.web.cron_schedule:
        out.append(_policy("from-ingress-controller", labels, {"matchLabels": {naming.SERVICE: "web"}}, [{
            "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: inputs.settings.ingress_namespace}}}],
            "ports": [{"protocol": "TCP", "port": APP_PORT}]}]))
    data = [(name, port) for name, port, there in (
        ("postgres", POSTGRES_PORT, inputs.config.postgres is not None and not inputs.external_postgres),
        ("redis", REDIS_PORT, inputs.config.redis is not None)) if there]
    if data:
        out.append(_policy("from-control-plane", labels, {"matchExpressions": [
            {"key": naming.SERVICE, "operator": "In", "values": [name for name, _ in data]}]}, [{
                "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: inputs.settings.control_namespace}}}],
                "ports": [{"protocol": "TCP", "port": port} for _, port in data]}]))
    return out


def _policy(name: str, labels: dict[str, str], pods: dict[str, Any], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "labels": labels},
            "spec": {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress}}
