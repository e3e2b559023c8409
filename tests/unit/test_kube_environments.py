"""ClusterEnvironments (backends/kubernetes/environments.py): an environment deployed in phases against the fake
Kubernetes API (tests/fakes/kube_api.py). The fake runs no controllers: `Autopilot` plays them on every injected sleep
— StatefulSets become ready, Jobs succeed (or fail, when told), Deployments roll out (or crash) — so each test
asserts what the backend applied, in which order, and what the deploy log heard."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fakes.kube_api import FakeKube
from fakes.kube_autopilot import Autopilot

from branchyard import settings as settings_module
from branchyard.backends.kubernetes import naming
from branchyard.backends.kubernetes.cluster import Cluster
from branchyard.backends.kubernetes.environments import ClusterEnvironments
from branchyard.backends.kubernetes.inputs import for_cluster
from branchyard.backends.kubernetes.manifests import phases, render_environment
from branchyard.backends.kubernetes.offline import inputs_from_files
from branchyard.backends.ports import DesiredEnvironment, EnvironmentSecrets, ReleaseArtifact
from branchyard.errors import BackendError, DeployFailed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
SECRETS = EnvironmentSecrets(postgres_password="pg-Secret-4f1c", redis_password="redis-Secret-9a2b",
                             release_token="release-Token-77e0", backup_token="backup-Token-51d3",
                             postgres_user="by_yoto_staging", postgres_database="by_yoto_staging")


def desired(environment: str = "staging", release: str = "d1", **changes) -> DesiredEnvironment:
    settings = settings_module.load({"BRANCHYARD_HOME": "/nonexistent"})
    base = inputs_from_files(EXAMPLE, environment, settings)
    d = DesiredEnvironment(
        project=base.project, config=base.config, hosts=base.hosts,
        release=ReleaseArtifact(id=release, commit="c" * 40, branch="develop", archive_url=f"http://cp/r/{release}",
                                archive_sha256="e" * 64),
        variables=dict(base.variables) | {"YOTO_CLIENT_SECRET": "yoto-Secret-c0ffee"}, secrets=SECRETS,
        public_domain=base.public_domain, new_database=True)
    return dataclasses.replace(d, **changes)


@pytest.fixture()
def fake(kube_fake):
    return kube_fake


def environments(fake: FakeKube, tmp_path: Path, pilot: Autopilot) -> ClusterEnvironments:
    settings = settings_module.load({"BRANCHYARD_HOME": "/nonexistent"}).kubernetes
    return ClusterEnvironments(Cluster.connect(fake.kubeconfig(tmp_path / "kubeconfig")), settings, "http://cp",
                               clock=pilot.clock, sleep=pilot.sleep, poll=1.0)


def applied(fake: FakeKube) -> list[str]:
    """Kind/name of each apply, in order."""
    out = []
    for r in fake.requests("PATCH"):
        body = json.loads(r.body)
        out.append(f"{body['kind']}/{body['metadata']['name']}")
    return out


def deploy(envs: ClusterEnvironments, d: DesiredEnvironment, log: list[str]) -> None:
    envs.prepare(d, log.append)
    envs.run_hooks(d, log.append)
    envs.roll_out(d, log.append)


def test_a_deployment_in_phases(fake, tmp_path):
    pilot = Autopilot(fake)
    envs, log = environments(fake, tmp_path, pilot), []
    deploy(envs, desired(), log)
    order = applied(fake)
    assert order[0] == "Namespace/branchyard-yoto-staging"
    assert order.index("StatefulSet/postgres") < order.index("Job/predeploy-d1") < order.index("Job/seed-d1")
    assert order.index("Job/seed-d1") < order.index("Deployment/web") < order.index("Ingress/web-yoto-staging-localhost")
    rendered = render_environment(for_cluster(desired(), envs.settings, "http://cp"))
    assert order == [f"{o['kind']}/{o['metadata']['name']}" for group in phases(rendered) for o in group]  # each once
    assert "-----> postgres: ready" in log and "-----> redis: ready" in log
    assert "-----> preDeployCommand: job predeploy-d1" in log and "-----> seedCommand: job seed-d1" in log
    assert any(line.endswith("predeploy-d1: done") for line in log)  # the Job's own log, in the deploy log
    assert any(line.startswith("-----> web: deployment \"web\" successfully rolled out") for line in log), log


def test_a_failed_hook_stops_the_deployment_before_the_rollout(fake, tmp_path):
    pilot = Autopilot(fake, fail_job="predeploy-d1")
    envs, log = environments(fake, tmp_path, pilot), []
    with pytest.raises(DeployFailed, match=r"preDeployCommand failed: .*BackoffLimitExceeded"):
        deploy(envs, desired(), log)
    assert not [a for a in applied(fake) if a.startswith(("Deployment/", "Ingress/", "Job/seed"))]
    assert any(line.endswith("predeploy-d1: done") for line in log)  # its log is shown all the same


def test_a_crashing_release_fails_with_the_pods_reasons_and_is_not_routed(fake, tmp_path):
    pilot = Autopilot(fake, crash=True)
    envs, log = environments(fake, tmp_path, pilot), []
    with pytest.raises(DeployFailed, match=r'web: deployment "web" cannot roll out: pod web-5d9c1-p0: .*CrashLoopBackOff'):
        deploy(envs, desired(), log)
    assert any("CrashLoopBackOff" in line and "last terminated: Error (exit 1)" in line for line in log), log
    assert not [a for a in applied(fake) if a.startswith("Ingress/")]


def test_a_data_service_that_cannot_start_fails_naming_it(fake, tmp_path):
    pilot = Autopilot(fake, stuck="postgres")
    envs, log = environments(fake, tmp_path, pilot), []
    with pytest.raises(DeployFailed, match=r'postgres: statefulset "postgres" cannot start: pod postgres-0: .*ImagePullBackOff'):
        envs.prepare(desired(), log.append)
    assert not [a for a in applied(fake) if a.startswith(("Job/", "Deployment/"))]


def test_secret_values_travel_in_secrets_only(fake, tmp_path):
    envs = environments(fake, tmp_path, Autopilot(fake))
    deploy(envs, desired(), [])
    values = ("pg-Secret-4f1c", "redis-Secret-9a2b", "release-Token-77e0", "backup-Token-51d3", "yoto-Secret-c0ffee")
    carriers = {json.loads(r.body)["kind"] for r in fake.requests("PATCH") if any(v in r.body for v in values)}
    assert carriers == {"Secret"}


def test_old_releases_lose_their_secrets_and_jobs(fake, tmp_path):
    pilot = Autopilot(fake)
    envs = environments(fake, tmp_path, pilot)
    for release in ("d1", "d2", "d3"):
        deploy(envs, desired(release=release, new_database=release == "d1"), [])
    # d3 is current; d1 and d2 were not kept (keep=()): their Secrets and Jobs are gone
    left = {(p, n) for (_, p, ns, n) in fake.objects if ns == "branchyard-yoto-staging" and p in ("secrets", "jobs")}
    assert {n for p, n in left if p == "secrets"} == {"variables-d3", "release-d3", "postgres", "redis", "backup-upload"}
    assert {n for p, n in left if p == "jobs"} == {"predeploy-d3"}
    assert envs.prune("yoto", "staging", keep={"d3"}) == []


def test_destroy_waits_for_the_namespace_and_checks_for_leftovers(fake, tmp_path):
    pilot = Autopilot(fake)
    envs = environments(fake, tmp_path, pilot)
    deploy(envs, desired("pr-12"), [])
    envs.destroy("yoto", "pr-12")
    assert fake.get("namespaces", None, "branchyard-yoto-pr-12") is None
    assert envs.cluster.leftovers(naming.selector("yoto", "pr-12")) == []


def test_destroy_refuses_to_call_it_done_while_something_labelled_remains(fake, tmp_path):
    envs = environments(fake, tmp_path, Autopilot(fake))
    envs.prepare(desired("pr-12"), [].append)
    stray = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "copied", "namespace": "elsewhere",
             "labels": naming.environment_labels("yoto", "pr-12")}, "stringData": {"a": "b"}}
    envs.cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}}, stray])
    with pytest.raises(BackendError, match=r"yoto/pr-12: left in the cluster after its namespace was deleted: "
                                           r"Secret elsewhere/copied"):
        envs.destroy("yoto", "pr-12")
