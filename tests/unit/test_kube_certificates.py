"""ClusterCertificates (backends/kubernetes/certificates.py): `domain list`'s certificate states from cert-manager's
Certificates, against the fake Kubernetes API (which serves cert-manager.io/v1 Certificates as if its CRD were
installed): issued until notAfter, pending, the issuer's refusal; a forgotten host's TLS Secret deleted in branchyard's
namespaces only."""

from __future__ import annotations

import datetime as dt

import pytest
from fakes.kube_api import condition

from branchyard import settings as settings_module
from branchyard.backends.kubernetes import naming
from branchyard.backends.kubernetes.certificates import ClusterCertificates
from branchyard.backends.kubernetes.cluster import Cluster

HOST = "shop.example.com"
NS = "branchyard-shop-production"


@pytest.fixture()
def cluster(kube_fake, tmp_path):
    cluster = Cluster.connect(kube_fake.kubeconfig(tmp_path / "kubeconfig"))
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in (NS, "other")])
    yield cluster
    cluster.close()


def certificates(cluster: Cluster, issuer: str | None = "letsencrypt") -> ClusterCertificates:
    env = {"BRANCHYARD_HOME": "/x"} | ({"BRANCHYARD_KUBE_CLUSTER_ISSUER": issuer} if issuer else {})
    return ClusterCertificates(cluster, settings_module.load(env).kubernetes)


def certificate(cluster: Cluster, namespace: str = NS) -> str:
    """The Certificate cert-manager's ingress-shim makes for the host's Ingress (named after its TLS Secret)."""
    name = naming.for_host("tls", HOST)
    cluster.apply([{"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"secretName": name, "dnsNames": [HOST], "issuerRef": {"name": "letsencrypt",
                                                                                   "kind": "ClusterIssuer"}}}])
    return name


@pytest.mark.parametrize(("status", "expected"), [
    ({"conditions": [condition("Ready", reason="Ready", message="Certificate is up to date and has not expired")],
      "notAfter": "2027-03-01T10:00:00Z"}, (dt.datetime(2027, 3, 1, 10, 0), None)),
    ({"conditions": [condition("Ready", "False", reason="DoesNotExist", message="Issuing certificate as Secret does "
                                                                                "not exist")]},
     (None, "Issuing certificate as Secret does not exist")),
    ({}, (None, None)),  # just made: no condition yet — pending, no error
])
def test_a_hosts_state_is_its_certificates_ready_condition(kube_fake, cluster, status, expected):
    name = certificate(cluster)
    if status:
        kube_fake.set_status("certificates", NS, name, **status)
    found = certificates(cluster).certificate(HOST)
    assert (found.not_after, found.error) == expected and found.issuer == "letsencrypt"


def test_nothing_without_a_cluster_issuer_or_a_certificate(kube_fake, cluster):
    assert certificates(cluster).certificate(HOST) is None  # no Ingress made yet: no Certificate
    certificate(cluster)
    assert certificates(cluster, issuer=None).certificate(HOST) is None  # plain HTTP: nothing is asked for


def test_forgetting_a_host_deletes_its_tls_secret_in_branchyards_namespaces_only(kube_fake, cluster):
    name = naming.for_host("tls", HOST)
    cluster.apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                    "type": "Opaque", "stringData": {"tls.crt": "x"}} for ns in (NS, "other")])
    certificates(cluster).forget(HOST)
    assert kube_fake.get("secrets", NS, name) is None
    assert kube_fake.get("secrets", "other", name) is not None  # not branchyard's namespace: not ours to delete
