"""`branchyard run -e ENV -- CMD` on Kubernetes: the one-off Job (workloads.one_off_job, as tables and against
Kubernetes' OpenAPI schemas), the cluster reads that run it (Cluster.wait_started, follow_log, ending) against the fake
API with the kubelet played by hand, ClusterEnvironments.run_one_off with the Autopilot in a thread, and the
controller's side (OneOffs on a cluster backend: the run context, the NDJSON stream from a thread, the Job deleted when
the client goes away)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from fakes.kube_api import FakeKube, condition, running, terminated, waiting
from fakes.kube_autopilot import Autopilot, _expand

from branchyard import settings as settings_module
from branchyard.backends.kubernetes import naming
from branchyard.backends.kubernetes.cluster import Cluster, Ending, PodStart
from branchyard.backends.kubernetes.environments import CANNOT_RUN, LOST, ClusterEnvironments
from branchyard.backends.kubernetes.inputs import RUN_TIMEOUT, Credentials, EnvironmentInputs, Release
from branchyard.backends.kubernetes.manifests import one_off_job, render_environment
from branchyard.backends.kubernetes.offline import inputs_from_files
from branchyard.backends.kubernetes.workloads import RUN_KEEP
from branchyard.backends.ports import DesiredEnvironment, EnvironmentSecrets, ReleaseArtifact
from branchyard.controller import oneoff
from branchyard.controller.oneoff import OneOffs
from branchyard.errors import BackendError, BadInput, NotFound
from branchyard.store import models as m
from branchyard.store.db import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
VERSIONS = ("1.30.0", "1.34.0")  # as tests/unit/test_kube_render_golden.py
NS = "branchyard-yoto-production"
CREDENTIALS = Credentials(postgres_password="pg-Secret-4f1c", redis_password="redis-Secret-9a2b",
                          release_token="release-Token-77e0", backup_token="backup-Token-51d3")
RELEASE = Release(id="4d2c0f6e9b", commit="a" * 40, branch="main", archive_url="https://deploy.example.com/r/4d2c",
                  archive_sha256="b" * 64)
SECRET_VALUES = ("pg-Secret-4f1c", "redis-Secret-9a2b", "release-Token-77e0", "backup-Token-51d3", "yoto-Secret-c0ffee")


def inputs(environment: str = "production", **changes: Any) -> EnvironmentInputs:
    base = inputs_from_files(EXAMPLE, environment, settings_module.load({"BRANCHYARD_HOME": "/nonexistent"}))
    variables = dict(base.variables) | {"YOTO_CLIENT_SECRET": "yoto-Secret-c0ffee"}
    return dataclasses.replace(base, **({"release": RELEASE, "credentials": CREDENTIALS, "variables": variables} | changes))


def job(argv: list[str] | None = None, run_id: str = "1a2b3c4d", i: EnvironmentInputs | None = None) -> dict:
    return one_off_job(i or inputs(), argv or ["python", "manage.py", "shell"], run_id)


def web_pod(i: EnvironmentInputs) -> dict:
    web = next(o for o in render_environment(i) if o["kind"] == "Deployment" and o["metadata"]["name"] == "web")
    return web["spec"]["template"]["spec"]


def strings(node: Any):
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


# --- the Job ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "command"), [
    (["python", "manage.py", "migrate"], ["python", "manage.py", "migrate"]),  # no shell: the argv as it is
    (["sh", "-c", "echo $HOME && ls"], ["sh", "-c", "echo $$HOME && ls"]),
    (["python", "-c", "print('$(POD_NAME)')"], ["python", "-c", "print('$$(POD_NAME)')"]),  # never expanded
    (["echo", "$$", "a b", "", "cost: 5$"], ["echo", "$$$$", "a b", "", "cost: 5$$"]),
])
def test_the_command_is_the_argv_exactly(argv, command):
    container = job(argv)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == command and "args" not in container
    env = {"POD_NAME": "run-1a2b3c4d-x7k2p", "HOME": "/tmp"}
    assert [_expand(arg, env) for arg in container["command"]] == argv  # what the kubelet runs: the argv again


def test_the_job_runs_once_in_the_release_as_the_web_pods_do():
    i = inputs()
    obj = job(i=i)
    spec, pod = obj["spec"], obj["spec"]["template"]["spec"]
    container, web = pod["containers"][0], web_pod(i)["containers"][0]
    assert (obj["metadata"]["name"], obj["metadata"]["namespace"]) == ("run-1a2b3c4d", NS)
    labels = naming.service_labels("yoto", "production", "run") | {naming.RELEASE: RELEASE.id}
    assert obj["metadata"]["labels"] == spec["template"]["metadata"]["labels"] == labels
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (0, RUN_TIMEOUT, RUN_KEEP)
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["initContainers"] == web_pod(i)["initContainers"]  # the same release archive, fetched the same way
    assert pod["securityContext"] == web_pod(i)["securityContext"] and pod["volumes"] == web_pod(i)["volumes"]
    for key in ("image", "envFrom", "resources", "securityContext", "workingDir", "volumeMounts"):
        assert container[key] == web[key], key
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PATH"].startswith("/app/.venv/bin:") and env["VIRTUAL_ENV"] == "/app/.venv"
    assert env["BRANCHYARD_SERVICE_NAME"] == "run" and "PORT" not in env
    assert not {"stdin", "stdinOnce", "tty", "ports", "readinessProbe", "livenessProbe"} & container.keys()


def test_a_prebuilt_image_runs_the_command_without_fetching_a_release():
    i = inputs(release=dataclasses.replace(RELEASE, archive_url=None, archive_sha256=None,
                                           image="registry.example/yoto:7"))
    pod = job(["./manage", "check"], i=i)["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "volumes" not in pod
    assert pod["containers"][0]["image"] == "registry.example/yoto:7"
    assert pod["containers"][0]["command"] == ["./manage", "check"]


def test_no_secret_value_is_in_the_job():
    found = [s for s in strings(job()) if any(v in s for v in SECRET_VALUES)]
    assert found == []  # they come from the release's Secrets (envFrom, secretKeyRef)


@pytest.mark.parametrize("run_id", ["", "ABC123", "a-b", "a_b", "a" * 17, "é"])
def test_a_run_id_must_be_a_short_lowercase_name(run_id):
    with pytest.raises(BadInput, match=r"^run id .*: 1 to 16 lowercase letters and digits$"):
        job(run_id=run_id)


@pytest.mark.parametrize("argv", [[], ["python", "-c", "print(1)\x00"]])
def test_an_empty_command_or_a_nul_character_is_refused(argv):
    with pytest.raises(BadInput, match=r"^run: the command is empty or has an argument with a NUL character$"):
        one_off_job(inputs(), argv, "1a2b")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("environment", ["production", "pr-12"])
def test_the_job_is_valid_for_kubernetes(environment, version):
    kubernetes_validate.validate(job(["sh", "-c", "echo $(x)"], i=inputs(environment)), version, strict=True)


def test_the_validator_refuses_what_kubernetes_would():
    """The check above could not fail if the validator accepted anything."""
    obj = job()
    obj["spec"]["template"]["spec"]["containers"][0]["argv"] = ["python"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


# --- the cluster's side, the kubelet played by hand -----------------------------------------------------------------

NAME, POD = "run-1a2b3c4d", "run-1a2b3c4d-x7k2p"


@pytest.fixture()
def fake(kube_fake):
    return kube_fake


@pytest.fixture()
def cluster(fake, tmp_path):
    c = Cluster.connect(fake.kubeconfig(tmp_path / "kubeconfig"))
    c.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, job()])
    yield c
    c.close()


class Kubelet:
    """An injected sleep that plays the next kubelet action on each call (then time moves on one second)."""

    def __init__(self, *actions):
        self.actions, self.now = list(actions), 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.actions:
            self.actions.pop(0)()


def start_pod(fake: FakeKube, *, init: dict | None = None) -> None:
    fake.add_pod(NS, POD, labels={"batch.kubernetes.io/job-name": NAME, "job-name": NAME}, owner=("Job", NAME),
                 containers=[waiting("run", "PodInitializing")], init_containers=[init or running("release")],
                 phase="Pending")


def started(fake: FakeKube) -> None:
    fake.set_container(NS, POD, terminated("release", "Completed", 0), init=True)
    fake.set_container(NS, POD, running("run"))


def test_wait_started_waits_for_the_container_to_run(fake, cluster):
    kubelet = Kubelet(lambda: None, lambda: start_pod(fake), lambda: started(fake))
    result = cluster.wait_started(NS, NAME, "run", timeout=60, clock=kubelet.clock, sleep=kubelet.sleep)
    assert result == PodStart(POD)
    assert kubelet.now == 3.0  # no pod; the init container fetching; then running
    assert fake.get("pods", NS, POD)["status"]["phase"] == "Running"


def test_a_failed_release_fetch_says_why_with_its_log(fake, cluster):
    def fetch_fails():
        fake.set_log(NS, POD, ["release archive http://cp/r: SHA-256 0f0f, expected b" + "b" * 63], container="release")
        fake.set_container(NS, POD, terminated("release", "Error", 1), init=True)

    kubelet = Kubelet(lambda: start_pod(fake), fetch_fails)
    result = cluster.wait_started(NS, NAME, "run", timeout=60, clock=kubelet.clock, sleep=kubelet.sleep)
    assert result.pod is None
    assert result.detail == f"job {NAME} cannot run: pod {POD}: init container release terminated: Error (exit 1)"
    assert result.problems[0].startswith("release archive http://cp/r: SHA-256 0f0f, expected bbb")
    assert fake.get("pods", NS, POD)["status"]["phase"] == "Failed"


def test_a_pod_that_cannot_pull_its_image_fails_at_once_with_its_events(fake, cluster):
    def pull_fails():
        fake.set_container(NS, POD, waiting("release", "ImagePullBackOff", message='Back-off pulling image "python:3.11-slim"'),
                           init=True)
        fake.add_event(NS, kind="Pod", name=POD, reason="Failed", message="Failed to pull image: not found")

    kubelet = Kubelet(lambda: start_pod(fake), pull_fails)
    result = cluster.wait_started(NS, NAME, "run", timeout=600, clock=kubelet.clock, sleep=kubelet.sleep)
    assert result.detail == (f'job {NAME} cannot run: pod {POD}: init container release waiting: ImagePullBackOff: '
                             'Back-off pulling image "python:3.11-slim"')
    assert f"pod {POD}: event Failed: Failed to pull image: not found" in result.problems
    assert kubelet.now == 2.0


def test_no_pod_at_all_times_out_naming_the_jobs_warnings(fake, cluster):
    fake.add_event(NS, kind="Job", name=NAME, reason="FailedCreate",
                   message='pods "run-1a2b3c4d-x" is forbidden: exceeded quota: environment', count=4)
    kubelet = Kubelet()
    result = cluster.wait_started(NS, NAME, "run", timeout=5, clock=kubelet.clock, sleep=kubelet.sleep)
    assert result == PodStart(None, f"job {NAME} has no pod running after 5s: 0 active, 0 succeeded, 0 failed", (
        f'job {NAME}: event FailedCreate: pods "run-1a2b3c4d-x" is forbidden: exceeded quota: environment (x4)',))


def test_a_job_that_ended_without_its_pod_says_so(fake, cluster):
    fake.set_job_status(NS, NAME, failed=1, conditions=[condition("Failed", reason="DeadlineExceeded",
                                                                  message="Job was active longer than specified deadline")])
    result = cluster.wait_started(NS, NAME, "run", timeout=60, clock=lambda: 0.0, sleep=lambda s: None)
    assert result.detail == (f"job {NAME} ended before its pod ran: job {NAME} failed: DeadlineExceeded: "
                             "Job was active longer than specified deadline")


def writer(fake: FakeKube, got: list[str], steps: list) -> threading.Thread:
    """The container's side, on a thread: each step once the reader has what the step before wrote."""
    def run():
        for want, action in steps:
            deadline = time.monotonic() + 10
            while len(got) < want and time.monotonic() < deadline:
                time.sleep(0.01)
            action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_follow_log_gives_each_line_as_it_is_written_until_the_container_ended(fake, cluster):
    start_pod(fake)
    started(fake)
    fake.set_log(NS, POD, ["migrating…"])
    got: list[str] = []
    thread = writer(fake, got, [
        (1, lambda: fake.append_log(NS, POD, ["applied 0001_initial"])),  # written only once line 1 was read
        (2, lambda: fake.append_log(NS, POD, ["", "done"])),
        (4, lambda: fake.set_container(NS, POD, terminated("run", "Completed", 0))),
    ])
    for line in cluster.follow_log(NS, POD, "run", poll=0.01):
        got.append(line)
    thread.join(5)
    assert got == ["migrating…", "applied 0001_initial", "", "done"]
    [request] = [r for r in fake.requests("GET") if r.path.endswith("/log")]
    assert request.path == f"/api/v1/namespaces/{NS}/pods/{POD}/log"
    assert (request.query["follow"], request.query["timestamps"], request.query["container"]) == ("true", "true", "run")
    assert cluster.ending(NS, POD, "run") == Ending(0)


def test_a_stream_cut_short_is_followed_again_without_repeating_a_line(fake, cluster):
    start_pod(fake)
    started(fake)
    fake.set_log(NS, POD, ["a", "b", "c"], seconds_apart=0)  # one timestamp for three lines: counted, not compared
    got: list[str] = []
    thread = writer(fake, got, [
        (3, fake.cut_log_streams),
        (3, lambda: fake.append_log(NS, POD, ["d"])),
        (4, lambda: fake.set_container(NS, POD, terminated("run", "Error", 3))),
    ])
    for line in cluster.follow_log(NS, POD, "run", poll=0.01):
        got.append(line)
    thread.join(5)
    assert got == ["a", "b", "c", "d"]
    assert len([r for r in fake.requests("GET") if r.path.endswith("/log")]) >= 2
    assert cluster.ending(NS, POD, "run") == Ending(3)


def test_follow_log_ends_when_the_pod_is_gone(fake, cluster):
    start_pod(fake)
    started(fake)
    got: list[str] = []
    thread = writer(fake, got, [(0, lambda: fake.append_log(NS, POD, ["working"])),
                                (1, lambda: fake.remove("pods", NS, POD))])
    for line in cluster.follow_log(NS, POD, "run", poll=0.01):
        got.append(line)
    thread.join(5)
    assert got == ["working"]
    assert cluster.ending(NS, POD, "run") is None


@pytest.mark.parametrize(("status", "expected"), [
    (terminated("run", "Completed", 0), Ending(0)),
    (terminated("run", "Error", 2), Ending(2)),
    (terminated("run", "OOMKilled", 137), Ending(137, "container run terminated: OOMKilled (exit 137)")),
    (terminated("run", "StartError", 128, message='exec: "nope": executable file not found in $PATH'),
     Ending(128, 'container run terminated: StartError (exit 128): exec: "nope": executable file not found in $PATH')),
    (running("run"), None),
])
def test_ending_reads_the_exit_code_and_says_why_when_it_is_not_plain(fake, cluster, status, expected):
    start_pod(fake)
    fake.set_container(NS, POD, status)
    assert cluster.ending(NS, POD, "run") == expected


# --- ClusterEnvironments.run_one_off, the Autopilot playing the cluster ----------------------------------------------

SECRETS = EnvironmentSecrets(postgres_password="pg-Secret-4f1c", redis_password="redis-Secret-9a2b",
                             release_token="release-Token-77e0", backup_token="backup-Token-51d3",
                             postgres_user="by_yoto_production", postgres_database="by_yoto_production")


def desired() -> DesiredEnvironment:
    base = inputs()
    return DesiredEnvironment(
        project=base.project, config=base.config, hosts=base.hosts,
        release=ReleaseArtifact(id="d1", commit="c" * 40, branch="main", archive_url="http://cp/r/d1",
                                archive_sha256="e" * 64),
        variables=dict(base.variables) | {"GREETING": "hello $(POD_NAME)"}, secrets=SECRETS,
        public_domain=base.public_domain)


@pytest.fixture()
def envs(fake, tmp_path):
    settings = settings_module.load({"BRANCHYARD_HOME": "/nonexistent"}).kubernetes
    cluster = Cluster.connect(fake.kubeconfig(tmp_path / "kubeconfig"))
    yield ClusterEnvironments(cluster, settings, "http://cp", poll=0.02)
    cluster.close()


def run_in(envs: ClusterEnvironments, pilot: Autopilot, argv: list[str]) -> tuple[int, list[str]]:
    out: list[str] = []
    with pilot.in_thread(interval=0.02):
        envs.prepare(desired(), [].append)
        code = envs.run_one_off(desired(), argv, run_id="abc123", out=out.append)
    return code, out


def test_a_command_runs_in_the_release_and_its_job_goes(fake, envs):
    code = ("import os, sys; print(os.environ['GREETING']); print(os.environ['RAILWAY_ENVIRONMENT_NAME']); "
            "print(sys.argv[1:]); sys.exit(4)")
    exit_code, out = run_in(envs, Autopilot(fake), ["python", "-c", code, "$(POD_NAME)", "a b"])
    # the variables Secret's own values are never expanded; an argument is the user's, exactly
    assert out == ["hello $(POD_NAME)\n", "production\n", "['$(POD_NAME)', 'a b']\n"]
    assert exit_code == 4
    assert fake.get("jobs", NS, "run-abc123") is None
    [delete] = [r for r in fake.requests("DELETE") if r.path.endswith("/jobs/run-abc123")]
    assert delete.query["propagationPolicy"] == "Background"  # its pod goes with it


def test_a_pod_that_cannot_start_is_reported_and_its_job_goes(fake, envs):
    exit_code, out = run_in(envs, Autopilot(fake, stuck="run"), ["python", "-c", "print(1)"])
    assert exit_code == CANNOT_RUN
    assert out[0] == ("job run-abc123 cannot run: pod run-abc123-r7k2p: init container release waiting: "
                      'ImagePullBackOff: Back-off pulling image "python:3.11-slim"\n')
    assert fake.get("jobs", NS, "run-abc123") is None


def test_a_program_the_image_lacks_is_the_runtimes_start_error(fake, envs):
    exit_code, out = run_in(envs, Autopilot(fake), ["pyhton", "manage.py"])
    assert exit_code == 128
    assert out == ['container run terminated: StartError (exit 128): failed to create containerd task: failed to create '
                   'shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: '
                   '"pyhton": executable file not found in $PATH: unknown\n']


def test_stopping_a_run_deletes_its_job_and_ends_it(fake, envs):
    pilot, out, result = Autopilot(fake), [], {}
    with pilot.in_thread(interval=0.02):
        envs.prepare(desired(), [].append)
        argv = ["python", "-c", "for i in range(1000): print(i)"]  # a line per autopilot step: 20 s
        thread = threading.Thread(target=lambda: result.update(code=envs.run_one_off(
            desired(), argv, run_id="abc123", out=out.append)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not out and time.monotonic() < deadline:
            time.sleep(0.01)
        envs.stop_one_off("yoto", "production", "abc123")
        thread.join(10)
    assert not thread.is_alive() and result["code"] == LOST
    assert out[0] == "0\n" and out[-1] == "job run-abc123: pod run-abc123-r7k2p went away before its command ended\n"
    assert len(out) < 100
    assert fake.get("jobs", NS, "run-abc123") is None and fake.get("pods", NS, "run-abc123-r7k2p") is None


def test_a_job_that_cannot_be_applied_raises_naming_it(fake, envs):
    with pytest.raises(BackendError, match=rf"^apply Job {NS}/run-abc123: namespaces \"{NS}\" not found"):
        envs.run_one_off(desired(), ["true"], run_id="abc123", out=[].append)


# --- the controller: OneOffs on a cluster backend ---------------------------------------------------------------------


class FakeEnvironments:
    """The EnvironmentsPort's one-off side: `run_one_off` writes `lines`, then waits for `stop_one_off` when told to."""

    def __init__(self, lines=("one\n", "two\n"), code=0, *, block=False, error=None):
        self.lines, self.code, self.block, self.error = lines, code, block, error
        self.stopped = threading.Event()
        self.ran: list[tuple] = []

    def run_one_off(self, desired, argv, *, run_id, out):
        self.ran.append((desired, argv, run_id))
        for line in self.lines:
            out(line)
        if self.error:
            raise self.error
        if self.block:
            assert self.stopped.wait(10), "never stopped"
        return self.code

    def stop_one_off(self, project, environment, run_id):
        self.ran.append(("stop", project, environment, run_id))
        self.stopped.set()


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    with s.session() as session:
        p = m.Project(name="yoto", repo_path="/nonexistent")
        session.add(p)
        session.flush()
        session.add(m.Environment(project_id=p.id, name="production", production=True, branch="main"))
    yield s
    s.close()


def deploy(store: Store) -> str:
    with store.session() as s:
        env = s.query(m.Environment).one()
        d = m.Deployment(project_id=env.project_id, environment_id=env.id, status=m.SUCCESS, commit_sha="c" * 40,
                         trigger="push", release_dir="/releases/d1")
        s.add(d)
        s.flush()
        env.current_deployment_id = d.id
        return d.id


def one_offs(store: Store, environments: FakeEnvironments) -> OneOffs:
    asked: list[tuple] = []

    def desired_of(project, env_name, dep_id, *, new_database):
        asked.append((project, env_name, dep_id, new_database))
        return desired()

    rollouts = SimpleNamespace(desired=desired_of, environments=environments, asked=asked)
    return OneOffs(store, variables=None, cluster=rollouts)  # type: ignore[arg-type]


def streamed(stream, *, close_after: int | None = None) -> list[dict]:
    async def read():
        got = []
        async for chunk in stream:
            got.append(json.loads(chunk))
            if close_after is not None and len(got) == close_after:
                await stream.aclose()
                break
        return got

    return asyncio.run(read())


def test_on_a_cluster_the_run_context_says_where_and_reveals_nothing(store):
    offs = one_offs(store, FakeEnvironments())
    with pytest.raises(NotFound, match=r"^run: environment 'production' has no deployment yet; commands run in its "
                                       r"current release \(deploy one first: `git push branchyard main`\)$"):
        offs.context("yoto", "production")
    dep_id = deploy(store)
    assert offs.context("yoto", "production") == {"where": "cluster", "deployment_id": dep_id}
    assert offs.in_cluster


def test_a_cluster_run_is_the_current_deployment_as_the_cluster_runs_it(store):
    environments = FakeEnvironments(("hello\n",), 7)
    offs = one_offs(store, environments)
    dep_id = deploy(store)
    run = offs.cluster_run("yoto", "production", ["python", "-c", "print('hello')"])
    assert offs.cluster.asked == [("yoto", "production", dep_id, False)]
    assert run.argv == ("python", "-c", "print('hello')") and re.fullmatch(r"[0-9a-f]{8}", run.run_id)
    assert streamed(offs.stream_in_cluster(run)) == [{"output": "hello\n"}, {"exit": 7}]
    assert environments.ran == [(run.desired, run.argv, run.run_id)]  # never stopped: it ended by itself


def test_an_error_in_the_cluster_is_output_and_exit_1(store):
    offs = one_offs(store, FakeEnvironments(("partial\n",), error=BackendError("get Pod ns/p: boom")))
    deploy(store)
    run = offs.cluster_run("yoto", "production", ["true"])
    assert streamed(offs.stream_in_cluster(run)) == [{"output": "partial\n"}, {"output": "error: get Pod ns/p: boom\n"},
                                                      {"exit": 1}]


def test_the_client_going_away_stops_the_run(store):
    environments = FakeEnvironments(("started\n",), block=True)
    offs = one_offs(store, environments)
    deploy(store)
    run = offs.cluster_run("yoto", "production", ["sleep", "600"])
    assert streamed(offs.stream_in_cluster(run), close_after=1) == [{"output": "started\n"}]
    assert environments.stopped.wait(5)
    assert environments.ran[-1] == ("stop", "yoto", "production", run.run_id)


def test_the_stream_never_blocks_the_event_loop():
    """`work` blocks on its thread; the loop keeps serving others meanwhile."""
    release = threading.Event()

    def work(out):
        out("a\n")
        assert release.wait(5)
        return 0

    async def both():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while not release.is_set():
                ticks += 1
                if ticks == 5:
                    release.set()
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        got = [json.loads(c) async for c in oneoff._stream_from_thread(work, stop=lambda: None, name="run-x")]
        await task
        return got, ticks

    got, ticks = asyncio.run(both())
    assert got == [{"output": "a\n"}, {"exit": 0}] and ticks >= 5
