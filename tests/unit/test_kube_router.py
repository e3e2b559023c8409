"""IngressRouter (backends/kubernetes/router.py): the route table as Ingresses, against the fake Kubernetes API. The
cluster is only asked when the table changed; a host of an environment not deployed yet waits for its first roll-out;
an Ingress branchyard made for a host no longer routed goes; nothing else is touched."""

from __future__ import annotations

import pytest
from fakes.kube_api import FakeKube

from branchyard import settings as settings_module
from branchyard.backends.kubernetes import naming
from branchyard.backends.kubernetes.cluster import Cluster
from branchyard.backends.kubernetes.router import IngressRouter
from branchyard.backends.ports import Route


@pytest.fixture()
def fake(kube_fake):
    return kube_fake


@pytest.fixture()
def router(fake, tmp_path):
    cluster = Cluster.connect(fake.kubeconfig(tmp_path / "kubeconfig"))
    settings = settings_module.load({"BRANCHYARD_HOME": "/x", "BRANCHYARD_KUBE_INGRESS_CLASS": "nginx"}).kubernetes
    yield IngressRouter(cluster, settings), cluster
    cluster.close()


def namespace(project: str, env: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": f"branchyard-{project}-{env}", "labels": naming.environment_labels(project, env)}}


def route(host: str, env: str = "staging", state: str = "unavailable") -> Route:
    return Route(host=host, project="shop", environment=env, upstreams=(), state=state)


def ingress_hosts(fake: FakeKube) -> dict[tuple[str, str], str]:
    return {(ns, name): obj["spec"]["rules"][0]["host"] for (_, plural, ns, name), obj in fake.objects.items()
            if plural == "ingresses"}


def test_routes_become_ingresses_in_deployed_environments_only(fake, router):
    ingress, cluster = router
    cluster.apply([namespace("shop", "staging")])
    ingress.apply([route("shop-staging.example.com"), route("shop.app"), route("shop-pr-3.example.com", env="pr-3")])
    assert ingress_hosts(fake) == {("branchyard-shop-staging", "web-shop-staging-example-com"): "shop-staging.example.com",
                                   ("branchyard-shop-staging", "web-shop-app"): "shop.app"}  # pr-3: no namespace yet
    obj = fake.get("ingresses", "branchyard-shop-staging", "web-shop-app")
    assert obj["spec"]["ingressClassName"] == "nginx"
    assert obj["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "web"


def test_an_unchanged_table_asks_nothing(fake, router):
    ingress, cluster = router
    cluster.apply([namespace("shop", "staging")])
    routes = [route("shop-staging.example.com", state="sleeping")]
    ingress.apply(routes)
    before = len(fake.requests())
    ingress.apply([route("shop-staging.example.com", state="unavailable")])  # states do not matter here
    assert len(fake.requests()) == before


def test_a_host_no_longer_routed_loses_its_ingress_and_others_stay(fake, router):
    ingress, cluster = router
    cluster.apply([namespace("shop", "staging"), {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "theirs", "namespace": "branchyard-shop-staging", "labels": {"team": "other"}},
        "spec": {"rules": [{"host": "theirs.example.com"}]}}])
    ingress.apply([route("shop-staging.example.com"), route("shop.app")])
    ingress.apply([route("shop-staging.example.com")])  # `domain delete shop.app`
    assert ingress_hosts(fake) == {("branchyard-shop-staging", "web-shop-staging-example-com"): "shop-staging.example.com",
                                   ("branchyard-shop-staging", "theirs"): "theirs.example.com"}
