"""Cluster (backends/kubernetes/cluster.py) against a fake Kubernetes API (tests/fakes/kube_api.py): the requests it
makes, and how it reads what the API answers. The fake runs no controller: each test plays the controllers' part
through the fake's hooks, and the waiting loops get an injected clock whose every sleep plays the next step."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import yaml
from fakes.kube_api import FakeKube, condition, running, terminated, waiting
from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.config.models import Cluster as ClusterConfig
from lightkube.config.models import User
from lightkube.core.selector import build_selector
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace

from branchyard import settings as settings_module
from branchyard.backends.kubernetes.cluster import (
    MODELS,
    Cluster,
    JobResult,
    PodState,
    Rollout,
    label_requirements,
    rollout_status,
)
from branchyard.backends.kubernetes.manifests import render_environment
from branchyard.backends.kubernetes.offline import inputs_from_files
from branchyard.errors import BackendError, BadInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
NS = "yoto-production"
LABELS = {"branchyard.dev/project": "yoto", "branchyard.dev/environment": "production"}
SELECTOR = "branchyard.dev/project=yoto,branchyard.dev/environment=production"
APPLY = "application/apply-patch+yaml"


# --- manifests, as the renderer writes them ----------------------------------------------------------------------


def namespace(name: str = NS, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": LABELS if labels is None else labels}}


def deployment(replicas: int = 2, image: str = "registry.example/yoto:1", labels: dict[str, str] | None = None) -> dict:
    selector = LABELS | {"branchyard.dev/service": "web"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "labels": selector | (labels or {})},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def secret(name: str = "variables", ns: str = NS, labels: dict[str, str] | None = None) -> dict:
    metadata = {"name": name, "namespace": ns, "labels": LABELS if labels is None else labels}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "type": "Opaque", "stringData": {"DATABASE_URL": "postgresql://db/yoto"}}


def service() -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS, "labels": LABELS},
            "spec": {"selector": LABELS | {"branchyard.dev/service": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}


def job(name: str = "predeploy") -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS, "labels": LABELS},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": name, "image": "registry.example/yoto:1", "command": ["python", "manage.py", "migrate"]}]}}}}


def certificate() -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web-tls", "namespace": NS, "labels": LABELS},
            "spec": {"secretName": "web-tls", "dnsNames": ["yoto.example.com"],
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}}


# --- the fake, a client, and time --------------------------------------------------------------------------------


@pytest.fixture()
def fake(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # lightkube trusts the environment's proxies, as kubectl does
    with FakeKube() as f:
        yield f


def write_kubeconfig(path: Path, server: str, *, user: bool = True, current: str | None = "fake",
                     cluster_name: str = "fake") -> Path:
    context = {"cluster": cluster_name} | ({"user": "tester"} if user else {})
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", **({"current-context": current} if current else {}),
        "clusters": [{"name": "fake", "cluster": {"server": server}},
                     {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "tester", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "fake", "context": context}, {"name": "elsewhere", "context": {"cluster": "elsewhere"}}],
    }))  # fmt: skip
    return path


@pytest.fixture()
def cluster(fake, tmp_path):
    c = Cluster.connect(write_kubeconfig(tmp_path / "kubeconfig", fake.url))
    yield c
    c.close()


class Ticker:
    """The injected clock and sleep: each sleep moves the clock on, then plays the next step of the script. A loop that
    never stops fails at its 1000th sleep, instead of hanging until pytest's timeout."""

    def __init__(self, *steps: Callable[[], object]) -> None:
        self.now = 0.0
        self.steps = list(steps)
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if len(self.slept) >= 1000:
            raise AssertionError(f"still waiting after 1000 sleeps ({self.now:g}s of the injected clock)")
        self.slept.append(seconds)
        self.now += seconds
        if self.steps:
            self.steps.pop(0)()


def patches(fake: FakeKube) -> list[tuple[str, dict, str, int]]:
    return [(r.path, r.query, r.headers.get("content-type"), r.status) for r in fake.requests("PATCH")]


def new_pod(fake: FakeKube, replicaset: str, name: str, *containers: dict) -> None:
    """A pod of a ReplicaSet, as the ReplicaSet controller makes it and the kubelet reports it."""
    labels = fake.get("replicasets", NS, replicaset)["spec"]["selector"]["matchLabels"]
    fake.add_pod(NS, name, labels=labels, owner=("ReplicaSet", replicaset), containers=containers or [running("web")])


def job_pod(fake: FakeKube, name: str, *containers: dict, job_name: str = "predeploy") -> None:
    labels = {"batch.kubernetes.io/job-name": job_name, "job-name": job_name}
    fake.add_pod(NS, name, labels=labels, owner=("Job", job_name), containers=containers or [running(job_name)])


# --- apply -------------------------------------------------------------------------------------------------------


def test_apply_sends_each_object_as_a_server_side_apply_in_the_given_order(fake, cluster):
    applied = cluster.apply([namespace(), secret(), deployment(), service()])

    assert applied == [f"Namespace {NS}", f"Secret {NS}/variables", f"Deployment {NS}/web", f"Service {NS}/web"]
    manager = {"fieldManager": "branchyard"}
    assert patches(fake) == [
        (f"/api/v1/namespaces/{NS}", manager, APPLY, 201),
        (f"/api/v1/namespaces/{NS}/secrets/variables", manager, APPLY, 201),
        (f"/apis/apps/v1/namespaces/{NS}/deployments/web", manager, APPLY, 201),
        (f"/api/v1/namespaces/{NS}/services/web", manager, APPLY, 201),
    ]
    sent = [json.loads(r.body) for r in fake.requests("PATCH")]  # JSON under the YAML content type: JSON is YAML
    assert sent == [namespace(), secret(), deployment(), service()]  # the manifests as rendered: nothing dropped or added
    assert fake.get("deployments", NS, "web")["metadata"]["managedFields"][0]["manager"] == "branchyard"


@pytest.mark.parametrize(("force", "query"), [
    (False, {"fieldManager": "branchyard"}),
    (True, {"fieldManager": "branchyard", "force": "true"}),
])
def test_force_is_sent_as_the_force_query_parameter(fake, cluster, force, query):
    cluster.apply([namespace()], force=force)

    assert [r.query for r in fake.requests("PATCH")] == [query]


@pytest.mark.parametrize(("second", "generation"), [
    (deployment(), 1),  # the same object again: nothing changes
    (deployment(image="registry.example/yoto:2"), 2),  # a new pod template
    (deployment(replicas=3), 2),
    (deployment(labels={"branchyard.dev/release": "4d2c"}), 1),  # metadata only: no new generation
])
def test_a_reapply_bumps_the_generation_only_when_the_spec_changes(fake, cluster, second, generation):
    cluster.apply([namespace(), deployment()])
    before = fake.get("deployments", NS, "web")["metadata"]

    cluster.apply([second])

    after = fake.get("deployments", NS, "web")["metadata"]
    assert after["generation"] == generation
    assert (after["resourceVersion"] == before["resourceVersion"]) == (second == deployment())


@pytest.mark.parametrize(("theirs", "message"), [
    (deployment(replicas=5),
     f'apply Deployment {NS}/web: conflict with field manager "kubectl" over .spec.replicas (re-apply with force to take it over)'),
    (deployment(replicas=5, image="registry.example/yoto:hotfix"),
     f'apply Deployment {NS}/web: conflict with field manager "kubectl" over .spec.replicas, '
     ".spec.template.spec.containers (re-apply with force to take them over)"),
])
def test_a_conflict_names_the_other_field_manager_and_its_fields_and_force_takes_them_over(fake, cluster, theirs, message):
    cluster.apply([namespace()])
    kubectl = Client(KubeConfig.from_one(cluster=ClusterConfig(server=fake.url), user=User(token="t")), field_manager="kubectl")
    kubectl.apply(from_dict(theirs))  # someone applied by hand first

    with pytest.raises(BackendError) as refused:
        cluster.apply([deployment(replicas=2)])

    assert str(refused.value) == message
    assert fake.get("deployments", NS, "web")["spec"]["replicas"] == 5
    cluster.apply([deployment(replicas=2)], force=True)
    stored = fake.get("deployments", NS, "web")
    assert stored["spec"] == deployment(replicas=2)["spec"]
    owners = {m["manager"]: m["fieldsV1"] for m in stored["metadata"]["managedFields"]}
    assert "f:replicas" in owners["branchyard"]["f:spec"] and "f:replicas" not in owners["kubectl"]["f:spec"]


def without_namespace() -> dict:
    obj = deployment()
    del obj["metadata"]["namespace"]
    return obj


def with_spec(**changes) -> dict:
    obj = deployment()
    obj["spec"] = obj["spec"] | changes
    return obj


@pytest.mark.parametrize(("bad", "message"), [
    (without_namespace(), "apply Deployment web: metadata.namespace is missing (the kubeconfig's default namespace is never used)"),
    (with_spec(replicaz=3), f"apply Deployment {NS}/web: .spec.replicaz unknown to {MODELS} (a typo, or a field newer than the "
                            "models): it would be left out silently"),
    (with_spec(replicas="2"), f"apply Deployment {NS}/web: Expected `int | null`, got `str` - at `$.spec.replicas`"),
    ({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": NS}},
     f"apply Widget {NS}/w: Cannot find resource Widget of group example.com/v1. If using a CRD, ensure a generic resource "
     f"is defined. (known: {MODELS}'s kinds and Certificate)"),
])
def test_a_bad_manifest_is_refused_before_any_request(fake, cluster, bad, message):
    with pytest.raises(BackendError) as refused:
        cluster.apply([namespace(), bad])

    assert str(refused.value) == message
    assert fake.requests() == []  # the valid Namespace before it was not applied either


def test_a_namespaced_object_needs_its_namespace_applied_first(fake, cluster):
    with pytest.raises(BackendError) as refused:
        cluster.apply([deployment()])

    assert str(refused.value) == f'apply Deployment {NS}/web: namespaces "{NS}" not found'


def test_nothing_new_can_be_applied_into_a_terminating_namespace(fake, cluster):
    cluster.apply([namespace()])
    fake.terminating_gets = None
    cluster.client.delete(Namespace, NS)

    with pytest.raises(BackendError) as refused:
        cluster.apply([secret()])

    assert str(refused.value) == (f'apply Secret {NS}/variables: secrets "variables" is forbidden: unable to create new content '
                                  f"in namespace {NS} because it is being terminated")


def test_a_cert_manager_certificate_is_applied_as_a_generic_resource(fake, cluster):
    assert cluster.apply([namespace(), certificate()]) == [f"Namespace {NS}", f"Certificate {NS}/web-tls"]

    assert patches(fake)[1] == (f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates/web-tls", {"fieldManager": "branchyard"},
                                APPLY, 201)
    assert json.loads(fake.requests("PATCH")[1].body) == certificate()


def test_a_rendered_environment_applies_as_rendered(fake, cluster):
    objects = render_environment(inputs_from_files(EXAMPLE, "pr-7", settings_module.load({"BRANCHYARD_HOME": "/nonexistent"})))
    names = [f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" if "namespace" in o["metadata"]
             else f"{o['kind']} {o['metadata']['name']}" for o in objects]

    assert cluster.apply(objects) == names
    expected = copy.deepcopy(objects)
    for obj in expected:  # lightkube's PVC model stamps its type into each claim template (the API shows it there too)
        for claim in obj["spec"].get("volumeClaimTemplates", []) if obj["kind"] == "StatefulSet" else []:
            claim |= {"apiVersion": "v1", "kind": "PersistentVolumeClaim"}
    assert [json.loads(r.body) for r in fake.requests("PATCH")] == expected  # every field reached the API
    assert any(o["kind"] == "StatefulSet" and o["spec"]["volumeClaimTemplates"] for o in expected)
    assert cluster.apply(objects) == names  # and a second apply of the same is accepted


# --- rollout -----------------------------------------------------------------------------------------------------


def test_a_rollout_completes_when_the_status_says_so(fake, cluster):
    cluster.apply([namespace(), deployment(replicas=2)])
    status = lambda **kw: lambda: fake.set_deployment_status(NS, "web", **kw)  # noqa: E731
    ticker = Ticker(
        lambda: fake.add_replicaset(NS, "web", pod_template_hash="5d9c"),
        status(replicas=1, updated=1, available=0),
        status(replicas=2, updated=2, available=1),
        status(replicas=2, updated=2, available=2),
    )
    heard: list[str] = []

    result = cluster.rollout(NS, "web", timeout=60, progress=heard.append, poll=2.0, clock=ticker.clock, sleep=ticker.sleep)

    assert result == Rollout(True, 'deployment "web" successfully rolled out')
    assert ticker.slept == [2.0, 2.0, 2.0, 2.0]
    assert heard == ["Waiting for deployment spec update to be observed..."]  # at 0 s; the next report is due at 10 s


def test_progress_hears_the_state_every_ten_seconds_of_the_clock(fake, cluster):
    cluster.apply([namespace(), deployment(replicas=2)])
    fake.set_deployment_status(NS, "web", replicas=2, updated=1, available=1)
    ticker = Ticker(*[lambda: None] * 24, lambda: fake.set_deployment_status(NS, "web", replicas=2, updated=2, available=2))
    heard: list[str] = []

    result = cluster.rollout(NS, "web", timeout=60, progress=heard.append, clock=ticker.clock, sleep=ticker.sleep)

    assert result.ok and ticker.now == 25.0
    assert heard == ['Waiting for deployment "web" rollout to finish: 1 out of 2 new replicas have been updated...'] * 3  # 0, 10, 20 s


@pytest.mark.parametrize(("container", "line"), [
    (waiting("web", "CrashLoopBackOff", message="back-off 40s restarting failed container=web", last=("OOMKilled", 137), restarts=4),
     "container web waiting: CrashLoopBackOff; last terminated: OOMKilled (exit 137)"),
    (waiting("web", "CrashLoopBackOff", last=("Error", 1), restarts=2),
     "container web waiting: CrashLoopBackOff; last terminated: Error (exit 1)"),
    (terminated("web", "OOMKilled", 137), "container web terminated: OOMKilled (exit 137)"),
    (waiting("web", "ImagePullBackOff", message='Back-off pulling image "registry.example/yoto:nope"'),
     'container web waiting: ImagePullBackOff: Back-off pulling image "registry.example/yoto:nope"'),
    (waiting("web", "ErrImagePull", message="manifest unknown"), "container web waiting: ErrImagePull: manifest unknown"),
    (waiting("web", "CreateContainerConfigError", message='secret "variables-4d2c" not found'),
     'container web waiting: CreateContainerConfigError: secret "variables-4d2c" not found'),
    (waiting("web", "InvalidImageName", message='Failed to apply default image tag "Yoto:1"'),
     'container web waiting: InvalidImageName: Failed to apply default image tag "Yoto:1"'),
])
def test_a_rollout_fails_fast_on_a_new_pod_that_waiting_will_not_cure(fake, cluster, container, line):
    cluster.apply([namespace(), deployment()])
    fake.set_deployment_status(NS, "web", replicas=2, updated=1, available=0)
    replicaset = fake.add_replicaset(NS, "web", pod_template_hash="5d9c")
    new_pod(fake, replicaset, "web-5d9c-abcde", container)
    fake.add_event(NS, kind="Pod", name="web-5d9c-abcde", reason="BackOff", message="Back-off restarting failed container web", count=3)
    fake.add_event(NS, kind="Pod", name="web-5d9c-abcde", reason="Pulled", message="Successfully pulled image", type="Normal")
    fake.add_event(NS, kind="Pod", name="worker-1", reason="BackOff", message="another workload's")
    ticker = Ticker()

    result = cluster.rollout(NS, "web", timeout=300, clock=ticker.clock, sleep=ticker.sleep)

    assert result == Rollout(False, f'deployment "web" cannot roll out: pod web-5d9c-abcde: {line}', (
        f"pod web-5d9c-abcde: {line}",
        "pod web-5d9c-abcde: event BackOff: Back-off restarting failed container web (x3)",
    ))
    assert ticker.slept == []  # at the first look


def test_only_the_pods_of_the_new_replicaset_decide(fake, cluster):
    cluster.apply([namespace(), deployment()])
    old = fake.add_replicaset(NS, "web", pod_template_hash="1a2b")  # listed first: its name sorts first
    new_pod(fake, old, "web-1a2b-aaaaa", waiting("web", "CrashLoopBackOff", last=("Error", 1)))  # being replaced
    new = fake.add_replicaset(NS, "web", pod_template_hash="9f8e")
    new_pod(fake, new, "web-9f8e-bbbbb")
    labels = fake.get("replicasets", NS, new)["spec"]["selector"]["matchLabels"]
    fake.add_pod(NS, "web-stray", labels=labels, containers=[waiting("web", "ErrImagePull")])  # its labels, not its pod
    fake.set_deployment_status(NS, "web", replicas=3, updated=2, available=2)
    ticker = Ticker(lambda: fake.set_deployment_status(NS, "web", replicas=2, updated=2, available=2))

    result = cluster.rollout(NS, "web", timeout=60, clock=ticker.clock, sleep=ticker.sleep)

    assert result == Rollout(True, 'deployment "web" successfully rolled out')
    assert ticker.slept == [1.0]


def test_a_rollout_fails_when_its_progress_deadline_passed(fake, cluster):
    cluster.apply([namespace(), deployment()])
    replicaset = fake.add_replicaset(NS, "web", pod_template_hash="5d9c")
    quota = ('pods "web-5d9c-x7k2p" is forbidden: exceeded quota: environment, requested: limits.memory=512Mi, '
             "used: limits.memory=1Gi, limited: limits.memory=1Gi")
    fake.add_event(NS, kind="ReplicaSet", name=replicaset, reason="FailedCreate", message=quota, count=7)
    fake.set_deployment_status(NS, "web", replicas=1, updated=1, available=1, conditions=[
        condition("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{replicaset}" has timed out progressing.')])

    result = cluster.rollout(NS, "web", timeout=300, clock=Ticker().clock, sleep=Ticker().sleep)

    assert result == Rollout(False, 'deployment "web" exceeded its progress deadline: ReplicaSet "web-5d9c" has timed out progressing.',
                             (f"replicaset web-5d9c: event FailedCreate: {quota} (x7)",))


def test_a_rollout_times_out_on_the_injected_clock(fake, cluster):
    cluster.apply([namespace(), deployment()])
    replicaset = fake.add_replicaset(NS, "web", pod_template_hash="5d9c")
    new_pod(fake, replicaset, "web-5d9c-abcde", waiting("web", "ContainerCreating"))
    fake.add_event(NS, kind="Pod", name="web-5d9c-abcde", reason="FailedMount",
                   message='MountVolume.SetUp failed for volume "release" : secret "release-4d2c" not found')
    fake.set_deployment_status(NS, "web", replicas=2, updated=1, available=1)
    ticker = Ticker()

    result = cluster.rollout(NS, "web", timeout=30, poll=5.0, clock=ticker.clock, sleep=ticker.sleep)

    assert result == Rollout(False, 'deployment "web" not rolled out after 30s: Waiting for deployment "web" rollout to finish: '
                                    "1 out of 2 new replicas have been updated...", (
        "pod web-5d9c-abcde: container web waiting: ContainerCreating",
        'pod web-5d9c-abcde: event FailedMount: MountVolume.SetUp failed for volume "release" : secret "release-4d2c" not found',
    ))
    assert ticker.slept == [5.0] * 6


def test_the_rollout_of_a_missing_deployment_is_a_backend_error(fake, cluster):
    cluster.apply([namespace()])

    with pytest.raises(BackendError) as failed:
        cluster.rollout(NS, "web", timeout=5, clock=Ticker().clock, sleep=Ticker().sleep)

    assert str(failed.value) == f'get Deployment {NS}/web: deployments.apps "web" not found'


def a_deployment(generation: int, spec_replicas: int, **status) -> Deployment:
    body = deployment(replicas=spec_replicas)
    body["metadata"]["generation"] = generation
    if status:
        body["status"] = status
    return Deployment.from_dict(body)


WAITING = 'Waiting for deployment "web" rollout to finish: '
DEADLINE = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]


@pytest.mark.parametrize(("d", "expected"), [
    (a_deployment(1, 2), (None, "Waiting for deployment spec update to be observed...")),
    (a_deployment(2, 2, observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2),
     (None, "Waiting for deployment spec update to be observed...")),
    (a_deployment(2, 2, observedGeneration=1, conditions=DEADLINE),  # a deadline of the previous generation
     (None, "Waiting for deployment spec update to be observed...")),
    (a_deployment(1, 2, observedGeneration=1, conditions=DEADLINE), (False, 'deployment "web" exceeded its progress deadline')),
    (a_deployment(1, 3, observedGeneration=1, replicas=3, updatedReplicas=1, availableReplicas=3),
     (None, WAITING + "1 out of 3 new replicas have been updated...")),
    (a_deployment(1, 2, observedGeneration=1, replicas=3, updatedReplicas=2, availableReplicas=2),
     (None, WAITING + "1 old replicas are pending termination...")),
    (a_deployment(1, 2, observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=1),
     (None, WAITING + "1 of 2 updated replicas are available...")),
    (a_deployment(3, 2, observedGeneration=3, replicas=2, updatedReplicas=2, availableReplicas=2),
     (True, 'deployment "web" successfully rolled out')),
    (a_deployment(1, 0, observedGeneration=1), (True, 'deployment "web" successfully rolled out')),  # scaled to zero
])
def test_rollout_status_reads_a_deployment_as_kubectl_does(d, expected):
    assert rollout_status(d) == expected


# --- wait_job ----------------------------------------------------------------------------------------------------


def test_wait_job_succeeds_with_its_pods_log(fake, cluster):
    cluster.apply([namespace(), job()])
    job_pod(fake, "predeploy-x7k2p", terminated("predeploy", "Completed", 0))
    fake.set_log(NS, "predeploy-x7k2p", ["Operations to perform:", "  Apply all migrations: app", "No migrations to apply."])
    ticker = Ticker(lambda: fake.set_job_status(NS, "predeploy", succeeded=1, conditions=[condition("Complete")]))

    result = cluster.wait_job(NS, "predeploy", timeout=600, clock=ticker.clock, sleep=ticker.sleep)

    assert result == JobResult(True, "job predeploy succeeded",
                               "Operations to perform:\n  Apply all migrations: app\nNo migrations to apply.")
    assert ticker.slept == [1.0]
    log = fake.requests("GET")[-1]
    assert (log.path, log.query) == (f"/api/v1/namespaces/{NS}/pods/predeploy-x7k2p/log", {"timestamps": "false", "follow": "false"})


def test_a_failed_job_says_why_with_the_log_of_its_last_attempt(fake, cluster):
    cluster.apply([namespace(), job()])
    job_pod(fake, "predeploy-zzzzz", terminated("predeploy", "Error", 1))  # the first attempt (names sort the other way)
    fake.set_log(NS, "predeploy-zzzzz", ["attempt 1: connection refused"])
    job_pod(fake, "predeploy-aaaaa", terminated("predeploy", "Error", 1))
    fake.set_log(NS, "predeploy-aaaaa", ["Traceback (most recent call last):", 'psycopg.errors.UndefinedTable: relation "x"'])
    fake.set_job_status(NS, "predeploy", failed=2, conditions=[
        condition("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")])

    result = cluster.wait_job(NS, "predeploy", timeout=600, clock=Ticker().clock, sleep=Ticker().sleep)

    assert result == JobResult(False, "job predeploy failed: BackoffLimitExceeded: Job has reached the specified backoff limit",
                               'Traceback (most recent call last):\npsycopg.errors.UndefinedTable: relation "x"')


def test_wait_job_reads_no_log_of_an_earlier_job_of_the_same_name(fake, cluster):
    cluster.apply([namespace(), job()])
    job_pod(fake, "predeploy-old11", terminated("predeploy", "Completed", 0))
    fake.set_log(NS, "predeploy-old11", ["the previous release's migrations"])
    cluster.client.delete(Job, "predeploy", namespace=NS)  # the fake collects no garbage: its pod stays, as it may
    cluster.apply([job()])
    fake.set_job_status(NS, "predeploy", failed=1, conditions=[
        condition("Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline")])

    result = cluster.wait_job(NS, "predeploy", timeout=600, clock=Ticker().clock, sleep=Ticker().sleep)

    assert result == JobResult(False, "job predeploy failed: DeadlineExceeded: Job was active longer than specified deadline "
                                      "(no pod to read a log from)", "")


def test_wait_job_fails_fast_on_an_image_that_cannot_be_pulled(fake, cluster):
    cluster.apply([namespace(), job()])
    job_pod(fake, "predeploy-x7k2p", waiting("predeploy", "ErrImagePull", message="manifest unknown"))
    fake.set_job_status(NS, "predeploy", active=1)
    ticker = Ticker()

    result = cluster.wait_job(NS, "predeploy", timeout=600, clock=ticker.clock, sleep=ticker.sleep)

    assert result == JobResult(False, "job predeploy cannot run: pod predeploy-x7k2p: container predeploy waiting: ErrImagePull: "
                                      'manifest unknown (no log: container "predeploy" in pod "predeploy-x7k2p" is waiting to '
                                      "start: ErrImagePull)", "")
    assert ticker.slept == []


def test_wait_job_times_out_on_the_injected_clock_with_the_log_so_far(fake, cluster):
    cluster.apply([namespace(), job()])
    job_pod(fake, "predeploy-x7k2p")
    fake.set_log(NS, "predeploy-x7k2p", ["Applying app.0042_big_backfill..."])
    fake.set_job_status(NS, "predeploy", active=1)
    ticker = Ticker()

    result = cluster.wait_job(NS, "predeploy", timeout=10, poll=5.0, clock=ticker.clock, sleep=ticker.sleep)

    assert result == JobResult(False, "job predeploy not finished after 10s: 1 active, 0 succeeded, 0 failed",
                               "Applying app.0042_big_backfill...")
    assert ticker.slept == [5.0, 5.0]


# --- delete_namespace and leftovers -------------------------------------------------------------------------------


def namespace_gets(fake: FakeKube) -> list[int]:
    return [r.status for r in fake.requests("GET") if r.path == f"/api/v1/namespaces/{NS}"]


@pytest.mark.parametrize("already_deleted", [False, True])
def test_delete_namespace_waits_until_it_is_gone_with_its_content(fake, cluster, already_deleted):
    cluster.apply([namespace(), secret(), deployment()])
    fake.terminating_gets = 2
    if already_deleted:  # a second DELETE of a Terminating namespace is a 409: waited for all the same
        cluster.client.delete(Namespace, NS)
    ticker = Ticker()

    cluster.delete_namespace(NS, timeout=60, clock=ticker.clock, sleep=ticker.sleep)

    assert [(r.path, r.query, r.status) for r in fake.requests("DELETE")][-1] == (
        f"/api/v1/namespaces/{NS}", {"propagationPolicy": "Background"}, 409 if already_deleted else 200)
    assert namespace_gets(fake) == [200, 200, 404]
    assert ticker.slept == [1.0, 1.0]
    assert fake.get("deployments", NS, "web") is None
    assert cluster.leftovers(SELECTOR) == []


def test_delete_namespace_times_out_naming_what_is_left(fake, cluster):
    cluster.apply([namespace(), secret(), deployment()])
    fake.add_pod(NS, "web-5d9c-abcde", labels=LABELS)
    fake.terminating_gets = None  # a finalizer nobody removes
    stuck = condition("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
                      "Some content in the namespace has finalizers remaining: kubernetes.io/pvc-protection in 1 resource instances")
    ticker = Ticker(lambda: fake.set_status("namespaces", None, NS, conditions=[stuck]))

    with pytest.raises(BackendError) as failed:
        cluster.delete_namespace(NS, timeout=3, clock=ticker.clock, sleep=ticker.sleep)

    assert str(failed.value) == (
        f"delete Namespace {NS}: still Terminating after 3s; left: Deployment {NS}/web, Secret {NS}/variables, "
        f"Pod {NS}/web-5d9c-abcde (NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: "
        "kubernetes.io/pvc-protection in 1 resource instances)")
    assert ticker.slept == [1.0, 1.0, 1.0]


def test_deleting_an_absent_namespace_is_fine(fake, cluster):
    cluster.delete_namespace(NS, timeout=60, clock=Ticker().clock, sleep=Ticker().sleep)

    assert [(r.method, r.status) for r in fake.requests()] == [("DELETE", 404)]


def test_leftovers_finds_every_labelled_object_in_every_namespace(fake, cluster):
    other_env = LABELS | {"branchyard.dev/environment": "staging"}
    cluster.apply([namespace(), secret(), deployment(), namespace("yoto-staging", other_env),
                   secret(ns="yoto-staging", labels=other_env), namespace("certificates", {}),
                   secret("yoto-production-tls", ns="certificates"),  # ours, outside our namespace: a leak
                   secret("unlabelled", labels={})])
    fake.add_pod(NS, "web-5d9c-abcde", labels=LABELS)

    assert cluster.leftovers(SELECTOR) == [
        f"Namespace {NS}", f"Deployment {NS}/web", "Secret certificates/yoto-production-tls", f"Secret {NS}/variables",
        f"Pod {NS}/web-5d9c-abcde"]
    lists = [(r.path, r.query) for r in fake.requests("GET")]
    assert ("/apis/apps/v1/deployments", {"labelSelector": SELECTOR}) in lists  # one cluster-wide list per kind
    assert len(lists) == 14

    fake.terminating_gets = 0
    cluster.delete_namespace(NS, timeout=60, clock=Ticker().clock, sleep=Ticker().sleep)
    assert cluster.leftovers(SELECTOR) == ["Secret certificates/yoto-production-tls"]


@pytest.mark.parametrize(("selector", "sent"), [
    (SELECTOR, SELECTOR),
    ("a==b", "a=b"),
    ("a!=b", "a!=b"),
    ("a", "a"),
    ("!a", "!a"),
    (" a = b , c ", "a=b,c"),
])
def test_a_label_selector_reaches_the_api_as_written(selector, sent):
    assert build_selector(label_requirements(selector)) == sent


@pytest.mark.parametrize(("selector", "message"), [
    ("", "leftovers: an empty label selector would match every object in the cluster"),
    ("env in (pr-1,pr-2)", "label selector 'env in (pr-1,pr-2)': only equality (=, ==, !=) and existence (key, !key) are supported"),
])
def test_leftovers_refuses_a_selector_that_would_not_say_what_it_means(fake, cluster, selector, message):
    with pytest.raises(BadInput) as refused:
        cluster.leftovers(selector)

    assert str(refused.value) == message
    assert fake.requests() == []


# --- scale -------------------------------------------------------------------------------------------------------


def test_scale_is_a_merge_patch_of_the_scale_subresource(fake, cluster):
    cluster.apply([namespace(), deployment(replicas=2)])

    cluster.scale(NS, "web", 4)

    sent = fake.requests("PATCH")[-1]
    assert (sent.path, sent.query, sent.headers["content-type"], json.loads(sent.body), sent.status) == (
        f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale", {"fieldManager": "branchyard"}, "application/merge-patch+json",
        {"spec": {"replicas": 4}}, 200)
    stored = fake.get("deployments", NS, "web")
    assert (stored["spec"]["replicas"], stored["metadata"]["generation"]) == (4, 2)


@pytest.mark.parametrize(("replicas", "conflict"), [(4, False), (2, True)])
def test_after_a_scale_only_an_apply_with_another_count_conflicts(fake, cluster, replicas, conflict):
    cluster.apply([namespace(), deployment(replicas=2)])
    cluster.scale(NS, "web", 4)

    if not conflict:
        cluster.apply([deployment(replicas=replicas)])
        return
    with pytest.raises(BackendError) as refused:
        cluster.apply([deployment(replicas=replicas)])
    assert re.fullmatch(rf'apply Deployment {NS}/web: conflict with field manager "branchyard" with subresource "scale" using '
                        r"apps/v1 at \S+Z over \.spec\.replicas \(re-apply with force to take it over\)", str(refused.value))


def test_scaling_a_missing_deployment_is_a_backend_error(fake, cluster):
    cluster.apply([namespace()])

    with pytest.raises(BackendError) as failed:
        cluster.scale(NS, "web", 1)

    assert str(failed.value) == f'scale Deployment {NS}/web: deployments.apps "web" not found'


# --- logs and pods -----------------------------------------------------------------------------------------------


def stamp(fake: FakeKube, seconds_ago: int) -> str:
    """The kubelet's timestamp of a line written `seconds_ago` on the fake's clock."""
    return f"{fake.now - dt.timedelta(seconds=seconds_ago):%Y-%m-%dT%H:%M:%S}.000000000Z"


@pytest.fixture()
def three_pods(fake, cluster):
    cluster.apply([namespace()])
    for name in ("web-a", "web-b"):
        fake.add_pod(NS, name, labels=LABELS, containers=[running("web")])
    fake.add_pod(NS, "web-c", labels=LABELS, containers=[waiting("web", "ContainerCreating")])
    fake.add_pod(NS, "worker-a", labels={"branchyard.dev/service": "worker"})
    fake.set_log(NS, "web-a", ["a1", "a2", "a3"], seconds_apart=2)  # 4, 2 and 0 s ago
    fake.set_log(NS, "web-b", ["b1", "b2"], seconds_apart=3)  # 3 and 0 s ago
    fake.set_log(NS, "worker-a", ["not web"])
    return fake


NO_LOG = ("web-c", '(no log: container "web" in pod "web-c" is waiting to start: ContainerCreating)')


@pytest.mark.parametrize(("tail", "since", "expected"), [
    (None, None, [NO_LOG, ("web-a", 4, "a1"), ("web-b", 3, "b1"), ("web-a", 2, "a2"), ("web-a", 0, "a3"), ("web-b", 0, "b2")]),
    (1, None, [NO_LOG, ("web-a", 0, "a3"), ("web-b", 0, "b2")]),
    (None, 2, [NO_LOG, ("web-a", 2, "a2"), ("web-a", 0, "a3"), ("web-b", 0, "b2")]),
])
def test_logs_merge_the_pods_lines_in_time_order(three_pods, cluster, tail, since, expected):
    fake = three_pods

    lines = cluster.logs(NS, SELECTOR, tail_lines=tail, since_seconds=since)

    assert lines == [e if len(e) == 2 else (e[0], f"{stamp(fake, e[1])} {e[2]}") for e in expected]
    query = {"container": "web", "timestamps": "true", "follow": "false"} | (
        {"tailLines": str(tail)} if tail is not None else {}) | ({"sinceSeconds": str(since)} if since is not None else {})
    assert [(r.path, r.query) for r in fake.requests("GET") if r.path.endswith("/log")] == [
        (f"/api/v1/namespaces/{NS}/pods/web-{x}/log", query) for x in "abc"]


def test_the_logs_of_a_pod_of_two_containers_name_each(fake, cluster):
    cluster.apply([namespace()])
    fake.add_pod(NS, "web-a", labels=LABELS, containers=[running("web"), running("proxy")])
    fake.set_log(NS, "web-a", ["GET / 200"], container="web")
    fake.set_log(NS, "web-a", ["upstream ok"], container="proxy")

    assert cluster.logs(NS, SELECTOR) == [("web-a/web", f"{stamp(fake, 0)} GET / 200"), ("web-a/proxy", f"{stamp(fake, 0)} upstream ok")]


def test_pods_reports_phase_readiness_restarts_and_why_containers_do_not_run(fake, cluster):
    cluster.apply([namespace()])
    fake.add_pod(NS, "web-b", labels=LABELS, containers=[running("web", restarts=1)],
                 init_containers=[terminated("fetch-release", "Completed", 0)])
    fake.add_pod(NS, "web-a", labels=LABELS, containers=[waiting("web", "CrashLoopBackOff", last=("OOMKilled", 137), restarts=4),
                                                         running("proxy")])
    fake.add_pod(NS, "web-c", labels=LABELS, phase="Pending", containers=[waiting("web", "PodInitializing")],
                 init_containers=[terminated("fetch-release", "Error", 22)])
    fake.add_pod(NS, "worker-a", labels={"branchyard.dev/service": "worker"})

    assert cluster.pods(NS, SELECTOR) == [
        PodState("web-a", "Running", False, 4, ("container web waiting: CrashLoopBackOff; last terminated: OOMKilled (exit 137)",)),
        PodState("web-b", "Running", True, 1, ()),
        PodState("web-c", "Pending", False, 0, ("init container fetch-release terminated: Error (exit 22)",
                                                 "container web waiting: PodInitializing")),
    ]
    assert [r.query for r in fake.requests("GET")] == [{"labelSelector": SELECTOR}]


# --- the API unreachable, and connecting ------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "prefix"), [
    (lambda c: c.apply([namespace()]), f"apply Namespace {NS}"),
    (lambda c: c.leftovers(SELECTOR), f"list Namespace {SELECTOR}"),
    (lambda c: c.pods(NS, SELECTOR), f"list Pod {NS} {SELECTOR}"),
    (lambda c: c.rollout(NS, "web", timeout=5, clock=Ticker().clock, sleep=Ticker().sleep), f"get Deployment {NS}/web"),
    (lambda c: c.delete_namespace(NS, timeout=5, clock=Ticker().clock, sleep=Ticker().sleep), f"delete Namespace {NS}"),
])
def test_a_stopped_api_server_is_a_backend_error(fake, cluster, call, prefix):
    cluster.apply([namespace()])  # a connection is open, and kept alive
    url = fake.url
    fake.stop()

    with pytest.raises(BackendError) as failed:
        call(cluster)

    assert re.fullmatch(rf"{re.escape(prefix)}: cannot reach the Kubernetes API at {re.escape(url)}: "
                        r"(ConnectError|ReadError|RemoteProtocolError): .+", str(failed.value)), str(failed.value)
    assert isinstance(failed.value.__cause__, httpx2.TransportError)


def test_connect_uses_the_named_context_and_its_credentials(fake, tmp_path):
    path = write_kubeconfig(tmp_path / "kubeconfig", fake.url, current="elsewhere")
    cluster = Cluster.connect(path, context="fake")

    cluster.apply([namespace()])

    assert cluster.server == fake.url
    assert fake.requests()[0].headers["authorization"] == "Bearer t0ken"


def test_a_context_without_a_user_connects_without_credentials(fake, tmp_path):
    cluster = Cluster.connect(write_kubeconfig(tmp_path / "kubeconfig", fake.url, user=False))  # lightkube alone asserts

    cluster.apply([namespace()])

    assert "authorization" not in fake.requests()[0].headers


def test_connect_without_a_path_reads_the_environment(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "from-env", fake.url)))

    Cluster.connect(None).apply([namespace()])

    assert len(fake.requests("PATCH")) == 1


@pytest.mark.parametrize(("kubeconfig", "context", "why"), [
    (None, None, "Configuration file {path} not found"),
    ({}, "nope", "Context 'nope' not found"),
    ({"current": None}, None, "No current context set and no default provided"),
    ({"cluster_name": "ghost"}, None, "KeyError: 'ghost'"),
])
def test_a_kubeconfig_that_cannot_be_used_is_a_backend_error(tmp_path, kubeconfig, context, why):
    path = tmp_path / "kubeconfig"
    if kubeconfig is not None:
        write_kubeconfig(path, "http://127.0.0.1:9", **kubeconfig)

    with pytest.raises(BackendError) as failed:
        Cluster.connect(path, context=context)

    assert str(failed.value) == f"kubeconfig {path}: " + why.format(path=path)


# --- the fake itself: it refuses what would let a client bug hide ---------------------------------------------------


@pytest.mark.parametrize(("method", "path", "query", "headers", "body", "status", "reason", "message"), [
    ("PATCH", f"/api/v1/namespaces/{NS}", {"fieldManager": "x"}, {"Content-Type": "application/merge-patch+json"},
     namespace(), 415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types "
                                               "include: application/apply-patch+yaml (the fake serves only server-side apply here)"),
    ("PATCH", f"/api/v1/namespaces/{NS}", {}, {"Content-Type": APPLY}, namespace(), 422, "Invalid",
     'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'),
    ("PATCH", f"/api/v1/namespaces/{NS}", {"fieldManager": "x"}, {"Content-Type": APPLY}, namespace() | {"status": {}}, 400,
     "BadRequest", "status in an apply to the main resource would be ignored by the API (fake)"),
    ("PATCH", f"/api/v1/namespaces/{NS}", {"fieldManager": "x"}, {"Content-Type": APPLY},
     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "resourceVersion": "7"}}, 400, "BadRequest",
     "metadata.resourceVersion is set by the server: an apply configuration must not carry it (fake)"),
    ("PATCH", f"/api/v1/namespaces/{NS}", {"fieldManager": "x"}, {"Content-Type": APPLY}, namespace("other"), 400, "BadRequest",
     f"the name of the object (other) does not match the name on the URL ({NS})"),
    ("GET", "/api/v1/pods", {"labelSelector": "env in (a,b)"}, {}, None, 400, "BadRequest",
     "unable to parse requirement: 'env in (a' (the fake parses equality and existence only)"),
    ("GET", "/api/v1/pods", {"fieldSelector": "spec.containers=x"}, {}, None, 400, "BadRequest",
     "field label not supported: spec.containers"),
    ("GET", "/api/v1/pods", {"watch": "true"}, {}, None, 400, "BadRequest",
     "query parameter 'watch' is not served by the fake here (it serves labelSelector, fieldSelector)"),
    ("GET", "/apis/apps/v1/widgets", {}, {}, None, 404, "NotFound", "the server could not find the requested resource"),
    ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web", {}, {}, None, 404, "NotFound", 'deployments.apps "web" not found'),
    ("POST", "/api/v1/namespaces", {}, {"Content-Type": "application/json"}, namespace(), 405, "MethodNotAllowed",
     "the fake serves no POST on /api/v1/namespaces"),
])
def test_the_fake_refuses_with_a_kubernetes_status(fake, method, path, query, headers, body, status, reason, message):
    answer = httpx2.request(method, fake.url + path, params=query, headers=headers, timeout=5, trust_env=False,
                            content=None if body is None else json.dumps(body))

    assert (answer.status_code, answer.headers["content-type"]) == (status, "application/json")
    assert {k: v for k, v in answer.json().items() if k != "details"} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason,
        "code": status}
    assert fake.requests()[-1].status == status
