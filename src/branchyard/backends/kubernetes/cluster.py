"""The Kubernetes backend's I/O: server-side apply of rendered manifests, the reads that watch them land, and a
container's log followed as it is written (a `run` command's output).

The manifests come from the pure renderer (manifests.py); this module only talks to the API through lightkube and
turns what it sees into branchyard's words: one-line `BackendError`s (`verb Kind namespace/name: why`) and plain
values (`Rollout`, `JobResult`, `PodStart`, `Ending`, `PodState`). Nothing above it sees an `ApiError` or an httpx2
exception. Waiting loops take `clock` and `sleep`, so tests drive time instead of spending it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import yaml
from lightkube import ALL_NS, ApiError, Client, ConfigError, KubeConfig, operators
from lightkube.codecs import from_dict
from lightkube.config.models import User
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, DeploymentScale, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    LimitRange,
    Namespace,
    PersistentVolumeClaim,
    Pod,
    ResourceQuota,
    Secret,
    Service,
)
from lightkube.resources.networking_v1 import Ingress, NetworkPolicy
from lightkube.types import CascadeType, PatchType

from branchyard.errors import BackendError, BadInput

FIELD_MANAGER = "branchyard"
PROGRESS_EVERY = 10.0  # seconds of the injected clock between two progress reports
REVISION = "deployment.kubernetes.io/revision"  # the deployment controller's revision, on a Deployment and its ReplicaSets
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # Kubernetes ≥ 1.27 sets both; older ones the second
# A container in one of these states will not get better by waiting: a rollout or a Job fails fast on it.
FATAL_WAITING = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                           "InvalidImageName"})
FATAL_TERMINATED = frozenset({"OOMKilled"})
PLAIN_ENDINGS = frozenset({"Completed", "Error"})  # a command that exited by itself: its exit code says it all
LEFTOVER_KINDS = (Namespace, Deployment, StatefulSet, Service, Ingress, Secret, ConfigMap, Job, CronJob, NetworkPolicy,
                  ResourceQuota, LimitRange, PersistentVolumeClaim, Pod)
MODELS = f"lightkube-models {version('lightkube-models')}"

# lightkube builds objects only for kinds it has a class for: lightkube-models' (Kubernetes' own), and generic ones
# registered by (group, version, kind, plural). A custom resource's plural is its URL segment, which a manifest does
# not carry, so the custom kinds branchyard may render are registered here, once, at import.
CUSTOM_KINDS = (("cert-manager.io", "v1", "Certificate", "certificates"),)
_CUSTOM = {_kind: create_namespaced_resource(_group, _version, _kind, _plural)
           for _group, _version, _kind, _plural in CUSTOM_KINDS}


@dataclass(frozen=True)
class Rollout:
    """How waiting for a Deployment ended. `problems`: the new pods' container reasons and the namespace's Warning events
    about them (and their ReplicaSet and Deployment), one line each — what a user needs to see why it failed."""

    ok: bool
    detail: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobResult:
    """How waiting for a Job ended, and the log of its newest pod (the last attempt)."""

    ok: bool
    detail: str
    logs: str = ""


@dataclass(frozen=True)
class PodStart:
    """How waiting for a Job's pod to start its container ended: the pod (the container runs, or ran already), or
    why no pod will run it (`detail`) and what tells more (`problems`: the init container's log, Warning events)."""

    pod: str | None
    detail: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ending:
    """How a container ended: its exit code and, when it did not simply exit, why (`note`: OOMKilled, or the
    runtime's StartError when the command could not be started at all)."""

    exit_code: int
    note: str = ""


@dataclass(frozen=True)
class PodState:
    """A pod as `status` shows it. `containers`: one line per container that is not running, e.g.
    `container web waiting: CrashLoopBackOff; last terminated: OOMKilled (exit 137)`."""

    name: str
    phase: str
    ready: bool
    restarts: int
    containers: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)  # which service of its environment, …


@dataclass(frozen=True)
class CertificateState:
    """A cert-manager Certificate as `domain list` shows it: whether it is Ready, until when, and why not."""

    namespace: str
    name: str
    ready: bool | None  # None: no Ready condition yet (just created)
    not_after: str | None  # RFC 3339, as cert-manager writes it
    issuer: str | None
    message: str | None  # the Ready condition's message when it is not ready


class Cluster:
    """One Kubernetes cluster, through a lightkube `Client` the caller built (tests point it at a fake API server)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def connect(cls, kubeconfig: Path | None, *, context: str | None = None) -> Cluster:
        """From a kubeconfig file, or else the environment (in-cluster service account, $KUBECONFIG, ~/.kube/config).
        A context without a user (a `kubectl proxy` kubeconfig) means no credentials: lightkube would assert."""
        source = f"kubeconfig {kubeconfig}" if kubeconfig else "kubeconfig (in-cluster, $KUBECONFIG or ~/.kube/config)"
        try:
            config = (KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()).get(context)
            if config.user is None:
                config = config._replace(user=User())
            return cls(Client(config))
        except ConfigError as err:
            raise BackendError(f"{source}: {_one_line(str(err))}") from err
        except (KeyError, TypeError, ValueError, OSError, yaml.YAMLError, httpx2.InvalidURL) as err:
            raise BackendError(f"{source}: {type(err).__name__}: {_one_line(str(err))}") from err

    def close(self) -> None:
        self.client.close()

    @property
    def server(self) -> str:
        return self.client.config.cluster.server

    # --- writes ---------------------------------------------------------------------------------------

    def apply(self, objects: Sequence[Mapping[str, Any]], *, force: bool = False) -> list[str]:
        """Server-side apply of each object in the given order; "Kind namespace/name" of each. Every manifest is built
        and checked before the first request, so a bad one late in the list leaves the cluster untouched."""
        resources = [_resource(obj) for obj in objects]
        applied = []
        for resource in resources:
            what = _name_of(resource.kind, resource.metadata)
            with self._errors("apply", what):
                self.client.apply(resource, field_manager=FIELD_MANAGER, force=force)
            applied.append(what)
        return applied

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """A merge patch of the Deployment's scale subresource (what `kubectl scale` and autoscalers use): it writes
        spec.replicas and nothing else, with only `deployments/scale` rights. Not an apply: an apply of a partial object
        as "branchyard" would drop every other field branchyard applied. The API records the replicas as branchyard's
        Update via scale, so a later apply with another count conflicts until it is forced or re-rendered to match."""
        with self._errors("scale", f"Deployment {namespace}/{name}"):
            self.client.patch(DeploymentScale, name, {"spec": {"replicas": replicas}}, namespace=namespace,
                              patch_type=PatchType.MERGE, field_manager=FIELD_MANAGER)

    def delete_namespace(self, name: str, *, timeout: float, poll: float = 1.0, clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> None:
        """Delete a namespace and wait until it is gone (404): the namespace controller empties it first, so gone means
        its content is gone too. Background propagation, because the namespace controller deletes the content whatever
        the policy; Foreground would only add the garbage collector's finalizer for ownerReference dependents, which a
        namespace has none of. An absent namespace is fine; an already Terminating one (409) is waited for."""
        what = f"Namespace {name}"
        with self._errors("delete", what):
            try:
                self.client.delete(Namespace, name, cascade=CascadeType.BACKGROUND)
            except ApiError as err:
                if err.status.code == 404:
                    return
                if err.status.code != 409:
                    raise
        deadline = clock() + timeout
        while True:
            with self._errors("get", what):
                try:
                    namespace = self.client.get(Namespace, name)
                except ApiError as err:
                    if err.status.code == 404:
                        return
                    raise
            if clock() >= deadline:
                raise BackendError(f"delete {what}: {self._still_there(namespace, timeout)}")
            sleep(poll)

    # --- waiting --------------------------------------------------------------------------------------

    def rollout(self, namespace: str, name: str, *, timeout: float, progress: Callable[[str], None] | None = None,
                poll: float = 1.0, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> Rollout:
        """Poll a Deployment until `kubectl rollout status` would call it done, or it fails: its progress deadline
        passed, or a pod of its new ReplicaSet is in a state waiting will not cure (FATAL_WAITING, FATAL_TERMINATED),
        or `timeout` seconds of `clock` passed. `progress` hears the current state every PROGRESS_EVERY seconds."""
        deadline = clock() + timeout
        next_report = clock()
        while True:
            deployment = self._get(Deployment, namespace, name)
            done, detail = rollout_status(deployment)
            if done:
                return Rollout(True, detail)
            replicaset = self._new_replicaset(deployment)
            pods = self._pods_of(replicaset) if replicaset is not None else []
            if done is None:
                stuck = _stuck(pods)
                if stuck:
                    done, detail = False, f'deployment "{name}" cannot roll out: {stuck[0]}'
                elif clock() >= deadline:
                    done, detail = False, f'deployment "{name}" not rolled out after {timeout:g}s: {detail}'
            if done is False:
                return Rollout(False, detail, self._problems(deployment, replicaset, pods))
            if progress is not None and clock() >= next_report:
                progress(detail)
                next_report = clock() + PROGRESS_EVERY
            sleep(poll)

    def wait_job(self, namespace: str, name: str, *, timeout: float, poll: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> JobResult:
        """Poll a Job until it succeeded, failed (condition Failed), one of its pods is stuck (as in `rollout`), or
        `timeout` seconds of `clock` passed; then read its newest pod's log. Only pods the Job owns count: the labels
        alone would also match the pods of an earlier Job of the same name."""
        deadline = clock() + timeout
        while True:
            job = self._get(Job, namespace, name)
            pods = self._job_pods(job)
            ok, detail = job_outcome(job)
            if ok is None:
                stuck = _stuck(pods)
                if stuck:
                    ok, detail = False, f"job {name} cannot run: {stuck[0]}"
                elif clock() >= deadline:
                    ok, detail = False, f"job {name} not finished after {timeout:g}s: {detail}"
            if ok is not None:
                logs, note = self._job_log(namespace, pods)
                return JobResult(ok, detail + note, logs)
            sleep(poll)

    def wait_started(self, namespace: str, name: str, container: str, *, timeout: float, poll: float = 1.0,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> PodStart:
        """Poll a Job until `container` of its newest pod runs or ended (its log can be followed), or no pod will run
        it: its init container failed, a container is stuck (as in `rollout`), the Job ended, or `timeout` seconds of
        `clock` passed (a quota, the scheduler: the Warning events say which)."""
        deadline = clock() + timeout
        while True:
            job = self._get(Job, namespace, name)
            pods = self._job_pods(job)
            if pods and _has_started(pods[-1], container):
                return PodStart(pods[-1].metadata.name)
            init = _failed_init(pods[-1]) if pods else None
            stuck = _stuck(pods)
            ended, detail = job_outcome(job)
            if init is not None:
                why = f"job {name} cannot run: pod {pods[-1].metadata.name}: {container_line('init container', init)}"
                log = self._log(namespace, pods[-1].metadata.name, init.name, tail_lines=20)
                return PodStart(None, why, tuple(log) + self._job_warnings(namespace, name, pods))
            if stuck:
                why = f"cannot run: {stuck[0]}"
            elif ended is not None:
                why = f"ended before its pod ran: {detail}"
            elif clock() >= deadline:
                why = f"has no pod running after {timeout:g}s: {detail}"
            else:
                sleep(poll)
                continue
            return PodStart(None, f"job {name} {why}", self._job_warnings(namespace, name, pods))

    def follow_log(self, namespace: str, pod: str, container: str, *, poll: float = 1.0,
                   sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
        """The container's log lines as they are written, each once, until it ended or its pod is gone. A stream that
        stops while the container still runs (a proxy's idle timeout, an API server restarting) is followed again from
        the start, the lines already given skipped by their kubelet timestamps."""
        last, given = "", 0  # the newest timestamp given, and how many lines carrying it were given
        while True:
            again = 0
            for stamp, text in self._follow(namespace, pod, container):
                if stamp < last:
                    continue
                if stamp == last:
                    again += 1
                    if again <= given:
                        continue
                    given += 1
                else:
                    last, given, again = stamp, 1, 1
                yield text
            if self._container_ended(namespace, pod, container):
                return
            sleep(poll)

    def ending(self, namespace: str, pod: str, container: str) -> Ending | None:
        """How the container ended, as the kubelet reported it; None while it has not, or when its pod is gone."""
        status = self._container_status(namespace, pod, container)
        terminated = status.state.terminated if status is not None and status.state is not None else None
        if terminated is None:
            return None
        if terminated.reason in PLAIN_ENDINGS or not terminated.reason:
            return Ending(terminated.exitCode)
        note = f"container {container} terminated: {_ending(terminated)}"
        return Ending(terminated.exitCode, note + (f": {_one_line(terminated.message)}" if terminated.message else ""))

    def wait_stateful_set(self, namespace: str, name: str, *, timeout: float, poll: float = 1.0,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> Rollout:
        """Poll a StatefulSet (an environment's PostgreSQL or Redis) until every replica of its current revision is
        ready, or one of its pods is stuck (as in `rollout`), or `timeout` seconds of `clock` passed."""
        deadline = clock() + timeout
        while True:
            stateful_set = self._get(StatefulSet, namespace, name)
            done, detail = stateful_set_status(stateful_set)
            pods = self._pods_of(stateful_set)
            if not done:
                stuck = _stuck(pods)
                if stuck or clock() >= deadline:
                    why = f"cannot start: {stuck[0]}" if stuck else f"not ready after {timeout:g}s: {detail}"
                    lines = [f"pod {pod.metadata.name}: {line}" for pod in pods for label, s in _statuses(pod)
                             if (line := container_line(label, s)) is not None]
                    subjects = {("StatefulSet", name)} | {("Pod", p.metadata.name) for p in pods}
                    return Rollout(False, f'statefulset "{name}" {why}',
                                   tuple(lines + self._warnings(namespace, subjects)))
            if done:
                return Rollout(True, detail)
            sleep(poll)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete one object (a Secret or Job a release left behind, an Ingress no longer routed); gone already is
        fine. A Job's pods go with it."""
        resource = {"Secret": Secret, "Job": Job, "Ingress": Ingress}[kind]
        with self._errors("delete", f"{kind} {namespace}/{name}"):
            try:
                self.client.delete(resource, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
            except ApiError as err:
                if err.status.code != 404:
                    raise

    def names(self, kind: str, namespace: str, selector: str) -> list[str]:
        """The names of the Secrets or Jobs in `namespace` matching `selector`, sorted."""
        resource = {"Secret": Secret, "Job": Job}[kind]
        found = self._list(resource, f"{namespace} {selector}", namespace=namespace, labels=label_requirements(selector))
        return sorted(obj.metadata.name for obj in found)

    # --- reads ----------------------------------------------------------------------------------------

    def leftovers(self, selector: str) -> list[str]:
        """"Kind namespace/name" of every object of LEFTOVER_KINDS labelled with `selector`, in any namespace: what is
        left of an environment after its destroy (a leak check)."""
        labels = label_requirements(selector)
        if not labels:
            raise BadInput("leftovers: an empty label selector would match every object in the cluster")
        found = []
        for kind in LEFTOVER_KINDS:
            scope = ALL_NS if issubclass(kind, NamespacedResource) else None
            found += [_name_of(kind.__name__, obj.metadata) for obj in self._list(kind, selector, namespace=scope, labels=labels)]
        return found

    def holding(self, kind: str, name: str) -> list[str]:
        """The namespaces that hold a Secret called `name`, sorted."""
        resource = {"Secret": Secret}[kind]
        found = self._list(resource, f"(all namespaces) {name}", namespace=ALL_NS, fields={"metadata.name": name})
        return sorted(obj.metadata.namespace for obj in found)

    def namespaces(self, selector: str) -> list[str]:
        """The names of the namespaces matching `selector`, sorted."""
        found = self._list(Namespace, selector, labels=label_requirements(selector))
        return sorted(ns.metadata.name for ns in found)

    def ingresses(self, selector: str) -> list[tuple[str, str, tuple[str, ...]]]:
        """(namespace, name, hosts) of every Ingress matching `selector`, in any namespace."""
        found = self._list(Ingress, f"(all namespaces) {selector}", namespace=ALL_NS, labels=label_requirements(selector))
        return sorted((i.metadata.namespace, i.metadata.name, tuple(r.host for r in (i.spec.rules or []) if r.host))
                      for i in found)

    def certificates(self, name: str) -> list[CertificateState]:
        """cert-manager's Certificates called `name` in any namespace (its ingress-shim names an Ingress's Certificate
        after the TLS Secret); [] when cert-manager is not installed (its API group unknown: 404)."""
        with self._errors("list", f"Certificate (all namespaces) {name}"):
            try:
                found = list(self.client.list(_CUSTOM["Certificate"], namespace=ALL_NS, fields={"metadata.name": name}))
            except ApiError as err:
                if err.status.code != 404:
                    raise
                return []
        out = []
        for cert in found:
            status, spec = cert.status or {}, cert.spec or {}
            ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
            out.append(CertificateState(
                namespace=cert.metadata.namespace, name=cert.metadata.name,
                ready=None if ready is None else ready.get("status") == "True", not_after=status.get("notAfter"),
                issuer=(spec.get("issuerRef") or {}).get("name"),
                message=ready.get("message") if ready is not None and ready.get("status") != "True" else None))
        return sorted(out, key=lambda c: (c.namespace, c.name))

    def pods(self, namespace: str, selector: str) -> list[PodState]:
        """The pods matching `selector`, by name."""
        found = self._list(Pod, f"{namespace} {selector}", namespace=namespace, labels=label_requirements(selector))
        return [pod_state(pod) for pod in sorted(found, key=lambda p: p.metadata.name)]

    def logs(self, namespace: str, selector: str, *, tail_lines: int | None = None,
             since_seconds: int | None = None) -> list[tuple[str, str]]:
        """(source, line) for every container of every pod matching `selector`, each line starting with its timestamp,
        merged in time order (the kubelet's timestamps are fixed-width RFC3339, so they sort as text). The source is the
        pod's name, or `pod/container` for a pod of several containers. A container that has no log yet (waiting to
        start) gives one `(no log: …)` line instead of failing the others."""
        pods = self._list(Pod, f"{namespace} {selector}", namespace=namespace, labels=label_requirements(selector))
        found: list[tuple[str, str]] = []
        for pod in sorted(pods, key=lambda p: p.metadata.name):
            containers = [c.name for c in pod.spec.containers]
            for container in containers:
                source = pod.metadata.name if len(containers) == 1 else f"{pod.metadata.name}/{container}"
                lines = self._log(namespace, pod.metadata.name, container, tail_lines=tail_lines, since=since_seconds,
                                  timestamps=True)
                found += [(source, line) for line in lines]
        return sorted(found, key=lambda pair: pair[1].split(" ", 1)[0])

    # --- inside ---------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, verb: str, what: str) -> Iterator[None]:
        """Every lightkube/httpx2 failure inside becomes one BackendError line: `verb what: why`."""
        try:
            yield
        except ApiError as err:
            raise BackendError(f"{verb} {what}: {status_text(err.status)}") from err
        except httpx2.HTTPStatusError as err:  # an error answer that is no JSON Status: a proxy, a load balancer
            answer = _one_line(err.response.text)[:200]
            raise BackendError(f"{verb} {what}: HTTP {err.response.status_code} from {self.server}: {answer}") from err
        except httpx2.HTTPError as err:
            raise BackendError(f"{verb} {what}: cannot reach the Kubernetes API at {self.server}: "
                               f"{type(err).__name__}: {_one_line(str(err))}") from err
        except msgspec.ValidationError as err:  # an answer that does not fit the models
            raise BackendError(f"{verb} {what}: unexpected answer from the Kubernetes API: {err}") from err

    def _get(self, kind: type, namespace: str, name: str) -> Any:
        with self._errors("get", f"{kind.__name__} {namespace}/{name}"):
            return self.client.get(kind, name, namespace=namespace)

    def _list(self, kind: type, where: str, **selection: Any) -> list[Any]:
        """All of a list, read inside the error boundary (lightkube's lists are lazy: the request is made on iteration)."""
        with self._errors("list", f"{kind.__name__} {where}"):
            return list(self.client.list(kind, **selection))

    def _log(self, namespace: str, pod: str, container: str | None, **options: Any) -> list[str]:
        with self._errors("log", f"Pod {namespace}/{pod}"):
            try:
                return list(self.client.log(pod, namespace=namespace, container=container, newlines=False, **options))
            except ApiError as err:
                if err.status.code != 400:  # 400: the container has not started (or the pod has several)
                    raise
                return [f"(no log: {status_text(err.status)})"]

    def _new_replicaset(self, deployment: Deployment) -> ReplicaSet | None:
        """The ReplicaSet of the Deployment's current revision (None until the controller made it)."""
        revision = (deployment.metadata.annotations or {}).get(REVISION)
        if revision is None:
            return None
        namespace = deployment.metadata.namespace
        labels = deployment.spec.selector.matchLabels or {}
        for replicaset in self._list(ReplicaSet, f"{namespace} of Deployment {deployment.metadata.name}",
                                     namespace=namespace, labels=labels):
            if _owned_by(replicaset, deployment) and (replicaset.metadata.annotations or {}).get(REVISION) == revision:
                return replicaset
        return None

    def _pods_of(self, owner: Any) -> list[Pod]:
        namespace = owner.metadata.namespace
        labels = owner.spec.selector.matchLabels or {}
        pods = self._list(Pod, f"{namespace} of {owner.kind} {owner.metadata.name}", namespace=namespace, labels=labels)
        return sorted((p for p in pods if _owned_by(p, owner)), key=lambda p: p.metadata.name)

    def _job_pods(self, job: Job) -> list[Pod]:
        namespace = job.metadata.namespace
        for label in JOB_NAME_LABELS:
            pods = self._list(Pod, f"{namespace} of Job {job.metadata.name}", namespace=namespace,
                              labels={label: job.metadata.name})
            if pods:
                return sorted((p for p in pods if _owned_by(p, job)), key=lambda p: (p.metadata.creationTimestamp, p.metadata.name))
        return []

    def _job_log(self, namespace: str, pods: list[Pod]) -> tuple[str, str]:
        """The newest pod's log, and a note for the detail when there is none."""
        if not pods:
            return "", " (no pod to read a log from)"
        lines = self._log(namespace, pods[-1].metadata.name, None)
        if len(lines) == 1 and lines[0].startswith("(no log: "):
            return "", f" {lines[0]}"
        return "\n".join(lines), ""

    def _job_warnings(self, namespace: str, name: str, pods: list[Pod]) -> tuple[str, ...]:
        """Each container of the Job's pods that is not running, and the Warning events about the Job and its pods."""
        lines = [f"pod {pod.metadata.name}: {line}" for pod in pods for label, s in _statuses(pod)
                 if (line := container_line(label, s)) is not None]
        subjects = {("Job", name)} | {("Pod", p.metadata.name) for p in pods}
        return tuple(lines + self._warnings(namespace, subjects))

    def _follow(self, namespace: str, pod: str, container: str) -> Iterator[tuple[str, str]]:
        """(timestamp, text) of each line of one followed log stream, until the API ends it. A stream cut short ends
        it too (the caller looks at the container, and follows again); so does the pod being gone."""
        with self._errors("log", f"Pod {namespace}/{pod}"):
            try:
                for line in self.client.log(pod, namespace=namespace, container=container, follow=True,
                                            timestamps=True, newlines=False):
                    stamp, _, text = line.partition(" ")
                    yield stamp, text
            except ApiError as err:
                if err.status.code != 404:
                    raise
            except httpx2.TransportError:
                return

    def _container_ended(self, namespace: str, pod: str, container: str) -> bool:
        status = self._container_status(namespace, pod, container)
        return status is None or (status.state is not None and status.state.terminated is not None)

    def _container_status(self, namespace: str, pod: str, container: str) -> Any:
        """The kubelet's status of one container of a pod; None when the pod is gone (or does not report it yet)."""
        with self._errors("get", f"Pod {namespace}/{pod}"):
            try:
                found = self.client.get(Pod, pod, namespace=namespace)
            except ApiError as err:
                if err.status.code == 404:
                    return None
                raise
        return next((s for label, s in _statuses(found) if label == "container" and s.name == container), None)

    def _problems(self, deployment: Deployment, replicaset: ReplicaSet | None, pods: list[Pod]) -> tuple[str, ...]:
        lines = [f"pod {pod.metadata.name}: {line}" for pod in pods for label, s in _statuses(pod)
                 if (line := container_line(label, s)) is not None]
        subjects = {("Deployment", deployment.metadata.name)} | {("Pod", p.metadata.name) for p in pods}
        if replicaset is not None:
            subjects.add(("ReplicaSet", replicaset.metadata.name))
        return tuple(lines + self._warnings(deployment.metadata.namespace, subjects))

    def _warnings(self, namespace: str, subjects: set[tuple[str, str]]) -> list[str]:
        """The namespace's Warning events about these (kind, name)s, one line each (core v1 Events: their
        `involvedObject` field selectors work on every supported Kubernetes version)."""
        events = self._list(Event, f"{namespace} (type=Warning)", namespace=namespace, fields={"type": "Warning"})
        return [f"{event.involvedObject.kind.lower()} {event.involvedObject.name}: event {event.reason}: "
                f"{_one_line(event.message or '')}" + (f" (x{event.count})" if (event.count or 1) > 1 else "")
                for event in events if (event.involvedObject.kind, event.involvedObject.name) in subjects]

    def _still_there(self, namespace: Namespace, timeout: float) -> str:
        """Why a namespace is not gone: its phase, what is left in it, and its conditions that say so."""
        name = namespace.metadata.name
        left = [_name_of(kind.__name__, obj.metadata) for kind in LEFTOVER_KINDS if kind is not Namespace
                for obj in self._list(kind, name, namespace=name)]
        status = namespace.status
        text = f"still {status.phase if status and status.phase else 'there'} after {timeout:g}s"
        if left:
            text += f"; left: {', '.join(left[:5])}" + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        reasons = [f"{c.type}: {_one_line(c.message or c.reason or '')}" for c in (status.conditions or []) if c.status == "True"]
        return text + (f" ({'; '.join(reasons)})" if reasons else "")


# --- pure readings of what the API answers -----------------------------------------------------------------------


def rollout_status(deployment: Deployment) -> tuple[bool | None, str]:
    """`kubectl rollout status`'s reading of a Deployment: (True, done), (False, failed) or (None, what it waits for),
    in its own words. Nothing counts before the controller observed the current generation."""
    name, spec, status = deployment.metadata.name, deployment.spec, deployment.status
    if status is None or (deployment.metadata.generation or 0) > (status.observedGeneration or 0):
        return None, "Waiting for deployment spec update to be observed..."
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return False, f'deployment "{name}" exceeded its progress deadline' + (f": {_one_line(cond.message)}" if cond.message else "")
    updated, replicas, available = status.updatedReplicas or 0, status.replicas or 0, status.availableReplicas or 0
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if spec.replicas is not None and updated < spec.replicas:
        return None, waiting + f"{updated} out of {spec.replicas} new replicas have been updated..."
    if replicas > updated:
        return None, waiting + f"{replicas - updated} old replicas are pending termination..."
    if available < updated:
        return None, waiting + f"{available} of {updated} updated replicas are available..."
    return True, f'deployment "{name}" successfully rolled out'


def stateful_set_status(stateful_set: StatefulSet) -> tuple[bool, str]:
    """(ready, what it is waiting for), as `kubectl rollout status statefulset` judges a RollingUpdate one."""
    spec, status = stateful_set.spec, stateful_set.status
    want = spec.replicas if spec.replicas is not None else 1
    name = stateful_set.metadata.name
    if status is None or (status.observedGeneration or 0) < (stateful_set.metadata.generation or 0):
        return False, f'waiting for statefulset "{name}" spec update to be observed...'
    ready = status.readyReplicas or 0
    if ready < want:
        return False, f"Waiting for {want - ready} pods to be ready..."
    if status.updateRevision and status.currentRevision != status.updateRevision:
        return False, f"waiting for statefulset rolling update to complete {status.updatedReplicas or 0} pods at revision " \
                      f"{status.updateRevision}..."
    return True, f"statefulset rolling update complete {ready} pods at revision {status.currentRevision or status.updateRevision}..."


def job_outcome(job: Job) -> tuple[bool | None, str]:
    """(True, …) once `completions` pods succeeded (1 unless set), (False, …) on condition Failed, else (None, counts)."""
    name, status = job.metadata.name, job.status
    succeeded = (status.succeeded or 0) if status else 0
    if succeeded >= (job.spec.completions or 1):
        return True, f"job {name} succeeded"
    for cond in (status.conditions or []) if status else []:
        if cond.type == "Failed" and cond.status == "True":
            return False, f"job {name} failed: {cond.reason or 'Failed'}" + (f": {_one_line(cond.message)}" if cond.message else "")
    active, failed = (status.active or 0, status.failed or 0) if status else (0, 0)
    return None, f"{active} active, {succeeded} succeeded, {failed} failed"


def pod_state(pod: Pod) -> PodState:
    status = pod.status
    ready = any(c.type == "Ready" and c.status == "True" for c in (status.conditions or [])) if status else False
    restarts = sum(s.restartCount for s in (status.containerStatuses or [])) if status else 0
    lines = tuple(line for label, s in _statuses(pod) if (line := container_line(label, s)) is not None)
    return PodState(pod.metadata.name, (status.phase if status else None) or "Unknown", ready, restarts, lines,
                    dict(pod.metadata.labels or {}))


def container_line(label: str, status: Any) -> str | None:
    """One line for a container that is not running: why it waits (with how it last ended, which says more than
    the back-off message) or how it ended; None when it runs, or is an init container that finished well."""
    state = status.state
    if state is not None and state.waiting is not None:
        line = f"{label} {status.name} waiting: {state.waiting.reason or 'unknown reason'}"
        last = status.lastState.terminated if status.lastState is not None else None
        if last is not None:
            return f"{line}; last terminated: {_ending(last)}"
        return line + (f": {_one_line(state.waiting.message)}" if state.waiting.message else "")
    if state is not None and state.terminated is not None:
        if label == "init container" and state.terminated.exitCode == 0:
            return None
        return f"{label} {status.name} terminated: {_ending(state.terminated)}"
    return None


def status_text(status: Any) -> str:
    """A Status as one line; an apply conflict names each conflicting manager and its fields (from `details.causes`,
    where the API puts them; its `message` lists them over several lines)."""
    causes = (status.details.causes or []) if status.details is not None else []
    conflicts = [c for c in causes if c.reason == "FieldManagerConflict"]
    if not conflicts:
        return _one_line(status.message or status.reason or f"HTTP {status.code}")
    fields: dict[str, list[str]] = {}
    for cause in conflicts:  # cause.message is 'conflict with "kubectl"' (and for an Update: 'using apps/v1 at …')
        manager = (cause.message or "conflict with another field manager").replace("conflict with ", "conflict with field manager ", 1)
        fields.setdefault(manager, []).append(cause.field or "?")
    them = "it" if len(conflicts) == 1 else "them"
    return "; ".join(f"{m} over {', '.join(f)}" for m, f in fields.items()) + f" (re-apply with force to take {them} over)"


def label_requirements(selector: str) -> list[tuple[str, Any]]:
    """`a=b,c!=d,e,!f` as lightkube's label arguments (it writes them back as the same text). Set-based requirements
    (`in`, `notin`) are refused: branchyard's selectors are equalities."""
    if "(" in selector:
        raise BadInput(f"label selector {selector!r}: only equality (=, ==, !=) and existence (key, !key) are supported")
    found: list[tuple[str, Any]] = []
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            found.append((key.strip(), operators.not_equal(value.strip())))
        elif "=" in term:
            key, value = term.replace("==", "=", 1).split("=", 1)
            found.append((key.strip(), value.strip()))
        elif term.startswith("!"):
            found.append((term[1:].strip(), operators.not_exists()))
        else:
            found.append((term, operators.exists()))
    return found


def _resource(manifest: Mapping[str, Any]) -> Any:
    """A manifest as the lightkube object `Client.apply` sends. lightkube's models drop the fields they do not know
    without a word (msgspec ignores unknown keys), and the API would never see them: such a field is refused here."""
    plain = _plain(manifest)
    metadata = plain.get("metadata") if isinstance(plain.get("metadata"), dict) else {}
    what = _name_of(str(plain.get("kind", "?")), metadata)
    try:
        resource = from_dict(plain)
    except LoadResourceError as err:
        raise BackendError(f"apply {what}: {err} (known: {MODELS}'s kinds and {', '.join(k[2] for k in CUSTOM_KINDS)})") from err
    except (msgspec.ValidationError, TypeError, ValueError) as err:
        raise BackendError(f"apply {what}: {_one_line(str(err))}") from err
    dropped = _dropped(plain, resource.to_dict())
    if dropped:
        raise BackendError(f"apply {what}: {', '.join(dropped)} unknown to {MODELS} (a typo, or a field newer than the "
                           "models): it would be left out silently")
    if isinstance(resource, NamespacedResource) and not resource.metadata.namespace:
        raise BackendError(f"apply {what}: metadata.namespace is missing (the kubeconfig's default namespace is never used)")
    return resource


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists: what lightkube's models are built from."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dropped(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths of `given` missing from `kept` (null values aside: the API treats them as absent)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        return [found for key, value in given.items() if value is not None
                for found in ([f"{path}.{key}"] if key not in kept else _dropped(value, kept[key], f"{path}.{key}"))]
    if isinstance(given, list) and isinstance(kept, list):
        return [found for i, (g, k) in enumerate(zip(given, kept)) for found in _dropped(g, k, f"{path}[{i}]")]
    return []


def _name_of(kind: str, metadata: Any) -> str:
    """"Kind namespace/name", or "Kind name" for a cluster-scoped object."""
    get = metadata.get if isinstance(metadata, dict) else lambda key: getattr(metadata, key, None)
    namespace, name = get("namespace"), get("name")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _owned_by(obj: Any, owner: Any) -> bool:
    return any(ref.uid == owner.metadata.uid for ref in obj.metadata.ownerReferences or [])


def _statuses(pod: Pod) -> list[tuple[str, Any]]:
    status = pod.status
    if status is None:
        return []
    return ([("init container", s) for s in status.initContainerStatuses or []]
            + [("container", s) for s in status.containerStatuses or []])


def _stuck(pods: list[Pod]) -> list[str]:
    """`pod NAME: container …` for each container in a state waiting will not cure (FATAL_WAITING, FATAL_TERMINATED)."""
    return [f"pod {pod.metadata.name}: {container_line(label, s)}" for pod in pods for label, s in _statuses(pod)
            if _fatal(s)]


def _has_started(pod: Pod, container: str) -> bool:
    """The container runs or ran: its log can be read (before, the API answers 400: waiting to start)."""
    return any(label == "container" and s.name == container and s.state is not None
               and (s.state.running is not None or s.state.terminated is not None) for label, s in _statuses(pod))


def _failed_init(pod: Pod) -> Any:
    """The status of the pod's init container that failed (the release fetch), if one did: then nothing else starts."""
    return next((s for label, s in _statuses(pod) if label == "init container" and s.state is not None
                 and s.state.terminated is not None and s.state.terminated.exitCode != 0), None)


def _fatal(status: Any) -> bool:
    state = status.state
    return state is not None and ((state.waiting is not None and state.waiting.reason in FATAL_WAITING)
                                  or (state.terminated is not None and state.terminated.reason in FATAL_TERMINATED))


def _ending(terminated: Any) -> str:
    return f"{terminated.reason} (exit {terminated.exitCode})" if terminated.reason else f"exit {terminated.exitCode}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
