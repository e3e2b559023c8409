"""The Kubernetes backend against a real cluster (kind, k3d, a cloud cluster): a deploy the app answers through the
ingress controller, a rollback, a promotion, `run` as a Job of the namespace, and a pull request's preview created
and destroyed with nothing left.

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


def test_run_executes_in_the_namespace_from_the_current_release(kube, kplane, repo):
    """`run` as a Job: the release's code and variables, the namespace's own PostgreSQL reachable (it is from nowhere
    else), the argv exactly, its output and exit code the CLI's, and the Job gone afterwards."""
    code = ("import os, socket, sys, urllib.parse; print('hello from', os.environ['RAILWAY_ENVIRONMENT_NAME']); "
            "db = urllib.parse.urlsplit(os.environ['DATABASE_URL']); socket.create_connection((db.hostname, db.port), 10); "
            "print('database reachable'); print('$(POD_NAME) $$HOME'); sys.exit(3)")
    done = kplane.run("run", "-e", "production", "--", "python", "-c", code, cwd=repo, check=False, timeout=600)
    assert (done.returncode, done.stdout) == (3, "hello from production\ndatabase reachable\n$(POD_NAME) $$HOME\n"), \
        done.stderr
    jobs = kube.names("Job", f"{PREFIX}{PROJECT}-production", f"branchyard.dev/project={PROJECT},branchyard.dev/service=run")
    assert jobs == []


def test_backup_and_restore_run_as_data_jobs(kube, kplane, repo):
    """`backup` and `restore` as Jobs of production's namespace (pg_dump / pg_restore of its server's image), the dump
    uploaded to and fetched from the control plane: a row added after the backup is gone after the restore."""
    def sql(statement: str) -> str:
        code = ("import os, psycopg; c = psycopg.connect(os.environ['DATABASE_URL'], autocommit=True); "
                f"r = c.execute({statement!r}); print(r.fetchall() if r.description else 'ok')")
        return kplane.run("run", "-e", "production", "--", "python", "-c", code, cwd=repo, timeout=600).stdout.strip()

    sql("CREATE TABLE IF NOT EXISTS restore_probe (x int)")
    sql("INSERT INTO restore_probe VALUES (1)")
    kplane.run("backup", "-e", "production", cwd=repo, timeout=900)
    backup = kplane.json("backup", "list", "-e", "production", cwd=repo)[0]
    sql("INSERT INTO restore_probe VALUES (2)")
    kplane.run("restore", backup["id"], "-e", "production", "--yes", cwd=repo, timeout=900)
    assert sql("SELECT x FROM restore_probe ORDER BY x") == "[(1,)]"
    left = [name for kind in ("Job", "Secret")
            for name in kube.names(kind, f"{PREFIX}{PROJECT}-production", f"branchyard.dev/project={PROJECT}")
            if name.startswith(("dump-", "restore-", "transfer-"))]
    assert left == []


def test_a_preview_is_created_and_destroyed_leaving_nothing(kube, kplane, repo, tmp_path):
    pr = PullRequest(kplane, repo, PROJECT, SECRET, tmp_path)
    assert pr.open() == 202
    wait_for(answers(f"{PROJECT}-pr-12.localhost", pr.head), timeout=600, interval=2)
    assert pr.close() == 202
    wait_for(lambda: f"{PREFIX}{PROJECT}-pr-12" not in kube.namespaces("app.kubernetes.io/managed-by=branchyard"),
             timeout=600, interval=2)
    assert kube.leftovers(f"branchyard.dev/project={PROJECT},branchyard.dev/environment=pr-12") == []
