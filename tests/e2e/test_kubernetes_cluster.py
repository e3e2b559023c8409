"""The Kubernetes backend against a real cluster (kind, k3d, a cloud cluster): a deploy the app answers through the
ingress controller, a rollback, a promotion, and a pull request's preview created and destroyed with nothing left.

Needs BRANCHYARD_TEST_KUBECONFIG; skipped otherwise, saying why (the machines this suite usually runs on have no
kube-apiserver and no container engine: tests/e2e/test_kubernetes_backend.py runs the same flows there against a fake
API). docs/kubernetes.md says how to run it:

    BRANCHYARD_TEST_KUBECONFIG        the cluster (its current context)
    BRANCHYARD_TEST_KUBE_CONTROL_HOST an address of this machine the cluster's pods reach (kind: the docker bridge's
                                      gateway, e.g. 172.18.0.1): the control plane listens there for archive fetches
    BRANCHYARD_TEST_KUBE_INGRESS_URL  where this machine reaches the ingress controller (e.g. http://127.0.0.1:80)
    BRANCHYARD_TEST_KUBE_INGRESS_CLASS, BRANCHYARD_TEST_KUBE_INGRESS_NAMESPACE   when not the cluster's defaults

Everything runs in namespaces of a prefix of its own (`bytest-<random>-`), deleted at the end whatever happened.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import free_port, new_home, start_plane, stop_plane, wait_for
from kube_flows import PullRequest, project_repo

KUBECONFIG = os.environ.get("BRANCHYARD_TEST_KUBECONFIG", "")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not KUBECONFIG, reason=(
        "BRANCHYARD_TEST_KUBECONFIG is not set: no Kubernetes cluster to run against (this machine has no "
        "kube-apiserver and no container engine); see docs/kubernetes.md to run it on kind, k3d or a cloud cluster")),
]
SECRET = "kube-e2e-webhook-secret"
RUN = uuid.uuid4().hex[:6]
PREFIX = f"bytest-{RUN}-"
PROJECT = f"k{RUN}"  # its own labels: a leftover check never sees another run's objects


@pytest.fixture(scope="module")
def kube():
    from branchyard.backends.kubernetes.cluster import Cluster

    cluster = Cluster.connect(Path(KUBECONFIG).expanduser())
    try:
        yield cluster
    finally:
        for name in cluster.namespaces("app.kubernetes.io/managed-by=branchyard"):
            if name.startswith(PREFIX):
                cluster.delete_namespace(name, timeout=600)
        cluster.close()


@pytest.fixture(scope="module")
def kplane(kube, venv_cache):
    host = os.environ.get("BRANCHYARD_TEST_KUBE_CONTROL_HOST", "")
    if not host:
        pytest.fail("BRANCHYARD_TEST_KUBE_CONTROL_HOST: the address of this machine the cluster's pods reach")
    api_port = free_port()
    env = {"BRANCHYARD_BACKEND": "kubernetes", "BRANCHYARD_KUBECONFIG": os.path.expanduser(KUBECONFIG),
           "BRANCHYARD_KUBE_NAMESPACE_PREFIX": PREFIX, "BRANCHYARD_API_HOST": "0.0.0.0",
           "BRANCHYARD_API_PORT": str(api_port), "BRANCHYARD_KUBE_CONTROL_URL": f"http://{host}:{api_port}",
           "BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET}
    for name in ("INGRESS_CLASS", "INGRESS_NAMESPACE"):
        if os.environ.get(f"BRANCHYARD_TEST_KUBE_{name}"):
            env[f"BRANCHYARD_KUBE_{name}"] = os.environ[f"BRANCHYARD_TEST_KUBE_{name}"]
    p = start_plane(new_home(), venv_cache, extra_env=env)
    p.api_url = p.json("server", "status")["api_url"]
    try:
        yield p
    finally:
        stop_plane(p)


@pytest.fixture(scope="module")
def repo(kplane, tmp_path_factory):
    return project_repo(kplane, tmp_path_factory.mktemp("app"), PROJECT)


def through_ingress(host: str, path: str = "/") -> httpx.Response | None:
    url = os.environ.get("BRANCHYARD_TEST_KUBE_INGRESS_URL", "http://127.0.0.1:80")
    try:
        return httpx.get(url + path, headers={"Host": host}, timeout=10)
    except httpx.HTTPError:
        return None


def answers(host: str, commit: str | None = None):
    def check():
        r = through_ingress(host)
        return r is not None and r.status_code == 200 and (commit is None or r.json().get("commit") == commit)
    return check


def test_a_deploy_answers_through_the_ingress_controller(kplane, repo):
    [dep] = kplane.json("deployments", "-e", "staging", cwd=repo)
    assert dep["status"] == "SUCCESS"
    wait_for(answers(f"{PROJECT}-staging.localhost", dep["commit"]), timeout=180, interval=1)
    health = through_ingress(f"{PROJECT}-staging.localhost", "/health")
    assert health is not None and health.status_code == 200
    status = kplane.json("status", "-e", "staging", cwd=repo)
    assert status["status"] == "SUCCESS" and any(p["service"] == "postgres" and p["ready"] for p in status["pods"])


def test_rollback_brings_back_the_previous_release(kplane, repo):
    v1 = kplane.json("deployments", "-e", "staging", cwd=repo)[0]["commit"]
    (repo / "VERSION").write_text("2\n")
    v2 = kplane.commit(repo, "v2")
    kplane.git(repo, "push", "branchyard", "develop")
    wait_for(answers(f"{PROJECT}-staging.localhost", v2), timeout=180, interval=1)
    kplane.run("rollback", "-e", "staging", cwd=repo)
    wait_for(answers(f"{PROJECT}-staging.localhost", v1), timeout=180, interval=1)


def test_promotion_serves_stagings_release_in_production(kplane, repo):
    commit = kplane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["commit"]
    kplane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo)
    wait_for(answers(f"{PROJECT}.localhost", commit), timeout=300, interval=1)


def test_a_preview_is_created_and_destroyed_leaving_nothing(kube, kplane, repo, tmp_path):
    pr = PullRequest(kplane, repo, PROJECT, SECRET, tmp_path)
    assert pr.open() == 202
    wait_for(answers(f"{PROJECT}-pr-12.localhost", pr.head), timeout=600, interval=2)
    assert pr.close() == 202
    wait_for(lambda: f"{PREFIX}{PROJECT}-pr-12" not in kube.namespaces("app.kubernetes.io/managed-by=branchyard"),
             timeout=600, interval=2)
    assert kube.leftovers(f"branchyard.dev/project={PROJECT},branchyard.dev/environment=pr-12") == []
