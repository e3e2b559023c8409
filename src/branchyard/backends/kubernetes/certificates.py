"""The Certificates port on Kubernetes: what cert-manager holds for a public host (BRANCHYARD_KUBE_CLUSTER_ISSUER set).

An environment's Ingress for a host asks cert-manager for a certificate through its annotation (network.py); the
ingress-shim then makes a Certificate named after the Ingress's TLS Secret (`tls-<host>`), in the environment's
namespace. `domain list` reads its Ready condition and `notAfter`: issued (and until when), pending, or the issuer's
refusal. Without a ClusterIssuer no certificate is asked for: every domain stays "pending" (plain HTTP)."""

from __future__ import annotations

import datetime as dt

from ...kube_settings import KubeSettings
from ..ports import CertificateStatus
from . import naming
from .cluster import Cluster


class ClusterCertificates:
    def __init__(self, cluster: Cluster, settings: KubeSettings) -> None:
        self.cluster = cluster
        self.settings = settings

    def certificate(self, host: str) -> CertificateStatus | None:
        """The host's Certificate as cert-manager reports it; None when there is none (no issuer configured, cert-manager
        not installed, or the Ingress not made yet)."""
        if not self.settings.cluster_issuer:
            return None
        found = self.cluster.certificates(naming.for_host("tls", host))
        if not found:
            return None
        cert = found[0]  # one Ingress per host: one Certificate
        not_after = _naive_utc(cert.not_after) if cert.ready else None
        error = None if cert.ready or cert.ready is None else (cert.message or "not ready")
        return CertificateStatus(host=host, not_after=not_after, issuer=cert.issuer, error=error)

    def local_root(self) -> str | None:
        """No branchyard-run CA on Kubernetes: an issuer's root is cert-manager's business."""
        return None

    def forget(self, host: str) -> None:
        """Delete the host's TLS Secret (its certificate and key) wherever branchyard's namespaces hold one: the
        Certificate goes with its Ingress (its owner, deleted by the router), but cert-manager leaves the Secret."""
        name = naming.for_host("tls", host)
        for namespace in self.cluster.holding("Secret", name):
            if namespace.startswith(self.settings.namespace_prefix):
                self.cluster.delete("Secret", namespace, name)


def _naive_utc(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None)
