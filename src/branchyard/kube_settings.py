"""The Kubernetes backend's operator settings (issue 19): BRANCHYARD_BACKEND=kubernetes and BRANCHYARD_KUBE_*.

Read with the rest of the settings (settings.load), checked at start-up, one line naming the variable on a bad value.
`render` reads them too, so what it prints is what this operator's control plane would apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput

BACKENDS = ("local", "kubernetes")

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PREFIX = re.compile(r"^([a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?-)?$")  # "" or up to 22 characters ending in "-"
# An image reference: [registry[:port]/]path[:tag][@digest]; checked loosely (the cluster checks it for real), but no
# spaces, no quotes, nothing YAML could read as something else.
_IMAGE = re.compile(r"^[a-z0-9]([a-z0-9._/:-]{0,253})(@sha256:[0-9a-f]{64})?$", re.IGNORECASE)
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass(frozen=True)
class KubeSettings:
    """Where and how the Kubernetes backend runs environments (defaults in parentheses)."""

    kubeconfig: Path | None = None  # BRANCHYARD_KUBECONFIG (None: in-cluster, else $KUBECONFIG / ~/.kube/config)
    context: str | None = None  # BRANCHYARD_KUBE_CONTEXT: a context of that kubeconfig (its current one)
    namespace_prefix: str = "branchyard-"  # BRANCHYARD_KUBE_NAMESPACE_PREFIX: environments' namespaces are
    #                                        <prefix><project>-<environment>
    ingress_class: str | None = None  # BRANCHYARD_KUBE_INGRESS_CLASS (the cluster's default IngressClass)
    ingress_namespace: str = "ingress-nginx"  # BRANCHYARD_KUBE_INGRESS_NAMESPACE: the ingress controller's pods, the
    #                                           only ones outside an environment that may reach its web pods
    cluster_issuer: str | None = None  # BRANCHYARD_KUBE_CLUSTER_ISSUER: cert-manager's ClusterIssuer (None: plain HTTP)
    control_namespace: str = "branchyard"  # BRANCHYARD_KUBE_CONTROL_NAMESPACE: where the control plane runs in-cluster
    control_url: str | None = None  # BRANCHYARD_KUBE_CONTROL_URL: how pods reach the control plane (release archives,
    #                                 backups); None: BRANCHYARD_PUBLIC_URL, else its in-cluster Service
    runtime_image: str = "python:3.11-slim"  # BRANCHYARD_KUBE_RUNTIME_IMAGE: what releases run on (the slug model)
    postgres_image: str = "postgres:18-alpine"  # BRANCHYARD_KUBE_POSTGRES_IMAGE
    redis_image: str = "redis:7-alpine"  # BRANCHYARD_KUBE_REDIS_IMAGE
    storage_class: str | None = None  # BRANCHYARD_KUBE_STORAGE_CLASS (the cluster's default StorageClass)

    def pods_reach_control_plane_at(self, public_url: str | None) -> str:
        """The URL an environment's pods fetch releases from and send backups to."""
        return self.control_url or public_url or f"http://branchyard.{self.control_namespace}.svc.cluster.local"


def load_kube(env: dict[str, str]) -> KubeSettings:
    """BRANCHYARD_KUBE* from `env`; BadInput naming the variable on a bad value."""
    kubeconfig = (env.get("BRANCHYARD_KUBECONFIG") or "").strip()
    return KubeSettings(
        kubeconfig=Path(kubeconfig).expanduser() if kubeconfig else None,
        context=_optional(env, "BRANCHYARD_KUBE_CONTEXT", re.compile(r"^\S{1,253}$"), "a context name"),
        namespace_prefix=_prefix(env),
        ingress_class=_optional(env, "BRANCHYARD_KUBE_INGRESS_CLASS", _LABEL, "an IngressClass name"),
        ingress_namespace=_required(env, "BRANCHYARD_KUBE_INGRESS_NAMESPACE", "ingress-nginx", _LABEL, "a namespace name"),
        cluster_issuer=_optional(env, "BRANCHYARD_KUBE_CLUSTER_ISSUER", _LABEL, "a ClusterIssuer name"),
        control_namespace=_required(env, "BRANCHYARD_KUBE_CONTROL_NAMESPACE", "branchyard", _LABEL, "a namespace name"),
        control_url=_control_url(env),
        runtime_image=_required(env, "BRANCHYARD_KUBE_RUNTIME_IMAGE", "python:3.11-slim", _IMAGE, "an image reference"),
        postgres_image=_required(env, "BRANCHYARD_KUBE_POSTGRES_IMAGE", "postgres:18-alpine", _IMAGE, "an image reference"),
        redis_image=_required(env, "BRANCHYARD_KUBE_REDIS_IMAGE", "redis:7-alpine", _IMAGE, "an image reference"),
        storage_class=_optional(env, "BRANCHYARD_KUBE_STORAGE_CLASS", re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"),
                                "a StorageClass name"),
    )


def _optional(env: dict[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not pattern.match(raw):
        raise BadInput(f"{name}: expected {what}, got {raw!r}")
    return raw


def _required(env: dict[str, str], name: str, default: str, pattern: re.Pattern[str], what: str) -> str:
    return _optional(env, name, pattern, what) or default


def _prefix(env: dict[str, str]) -> str:
    raw = env.get("BRANCHYARD_KUBE_NAMESPACE_PREFIX")
    if raw is None:
        return "branchyard-"
    raw = raw.strip()
    if not _PREFIX.match(raw):
        raise BadInput(f"BRANCHYARD_KUBE_NAMESPACE_PREFIX: expected up to 22 lowercase letters, digits and dashes ending "
                       f"in '-' (or nothing), got {raw!r}")
    return raw


def _control_url(env: dict[str, str]) -> str | None:
    raw = (env.get("BRANCHYARD_KUBE_CONTROL_URL") or "").strip().rstrip("/")
    if not raw:
        return None
    if not _URL.match(raw):
        shown = "a URL with credentials (not shown)" if "@" in raw else repr(raw)
        raise BadInput(f"BRANCHYARD_KUBE_CONTROL_URL: expected an http(s):// URL without a path, got {shown}")
    return raw.lower()
