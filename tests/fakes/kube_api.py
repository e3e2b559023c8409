"""A local fake of the parts of the Kubernetes API that branchyard's Kubernetes backend calls, on 127.0.0.1 and a free port.

It is built from the Kubernetes API's conventions and reference as lightkube-models 1.37 encodes them (paths, kinds,
plurals, field names and types — lightkube decodes every answer strictly into those models, so a wrong shape fails
the test), and from the API server's own answers: errors are `Status` objects with its messages
(`deployments.apps "web" not found`, `the server could not find the requested resource`, `namespaces "x" not found`);
an apply conflict is a 409 `Conflict` whose `details.causes` are `{reason: FieldManagerConflict, message: 'conflict
with "kubectl"', field: ".spec.replicas"}` (the JSON key is `reason`; Go calls it `Type`); lists are `{Kind}List`
objects sorted by namespace and name, their items without apiVersion/kind; pod logs are text/plain with fixed-width
RFC3339Nano timestamps, as the kubelet writes them. Every request is recorded, accepted or not.

It runs nothing: no controllers, no kubelet, no garbage collector, no admission beyond the namespace lifecycle. Tests
play those parts with plain methods — `set_deployment_status`, `add_replicaset`, `add_pod` (container states from
`running`, `waiting`, `terminated`), `set_container` (one container's new state, the pod's phase following it as the
kubelet's for `restartPolicy: Never`), `add_event`, `set_job_status`, `set_log`, `append_log`, `set_status`,
`remove` (what the garbage collector deletes), `cut_log_streams` (a proxy dropping followed logs) — and a
namespace, once deleted, stays `Terminating` for `terminating_gets` further GETs of it (None: for ever, a finalizer
nobody removes), then goes with all its content.

    GET    /api/v1/namespaces[/{name}]          PATCH (apply) and DELETE /api/v1/namespaces/{name}
    GET    /api/v1/{plural}   /apis/{group}/{version}/{plural}              a list across all namespaces
    GET    {prefix}/namespaces/{ns}/{plural}[/{name}]  (?labelSelector, fieldSelector on lists)
    PATCH  {prefix}/namespaces/{ns}/{plural}/{name}    application/apply-patch+yaml (?fieldManager, force)
    DELETE {prefix}/namespaces/{ns}/{plural}/{name}    (?propagationPolicy, gracePeriodSeconds)
    GET    /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale           PATCH (application/merge-patch+json)
    GET    /api/v1/namespaces/{ns}/pods/{name}/log     (?container, tailLines, sinceSeconds, timestamps, follow)

A followed log (`follow=true`) is a chunked text/plain answer, as the API server's: what is there (after
`sinceSeconds`/`tailLines`), then each line as it is added, until the container terminated or the pod is gone.
A container that has not started (waiting: PodInitializing, ContainerCreating, …) answers 400, followed or not.

for the kinds in KINDS: core v1, apps/v1, batch/v1, networking.k8s.io/v1, and cert-manager.io/v1 Certificates as if
cert-manager's CRD were installed. Events are core v1's (events.k8s.io/v1 is not served).

Simplified, on purpose:
- Server-side apply tracks ownership per leaf path — a scalar, a list (atomic here: the real API merges associative
  lists such as `containers` by key) or an empty map. An apply conflicts when another manager owns a path it sets and
  the value there differs; `force=true` takes those paths over. Paths a manager applied before and no longer applies
  are removed unless another manager owns them. An Update (the scale subresource) takes over the paths it changes.
  No defaulting, no schema validation.
- `metadata.generation` starts at 1 and is bumped when anything outside metadata and status changes. A no-op apply
  changes nothing, not even the resourceVersion, as on the real API.
- The fake's clock starts at 2025-01-01T12:00:00Z and moves one second per write (so creation order is visible in
  creationTimestamp); `sinceSeconds` is measured against it.

Stricter than the real API, so a client bug cannot hide:
- PATCH on an object accepts only application/apply-patch+yaml, on the scale subresource only
  application/merge-patch+json (415 otherwise); an apply without fieldManager is refused (422, as the API does).
- An apply carrying `status` or server-set metadata (uid, resourceVersion, generation, creationTimestamp,
  managedFields) is refused: the API would ignore the status silently and use resourceVersion as a precondition.
- A query parameter it does not serve is refused (watch, limit/continue, dryRun, previous=true, …), and so are label
  selectors other than equality and existence, and field selectors the API does not support for the kind.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import pathlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

UTC = dt.timezone.utc
START = dt.datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
REVISION = "deployment.kubernetes.io/revision"
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp")
COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELD_PATHS = {"source": "source.component", "status.successful": "status.succeeded"}  # selector → where it reads
_MISSING = object()

Path = tuple[str, ...]


@dataclass(frozen=True)
class Kind:
    """A served resource: where it lives in the URL space and what it supports."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    fields: tuple[str, ...] = ()  # field selectors beyond metadata.name / metadata.namespace
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """How the API names it in messages: `deployments.apps`, `namespaces`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, fields=("status.phase",)),
    Kind("", "v1", "pods", "Pod", fields=("spec.nodeName", "spec.restartPolicy", "status.phase", "status.podIP"),
         subresources=("log",)),
    Kind("", "v1", "services", "Service"),
    Kind("", "v1", "secrets", "Secret", fields=("type",)),
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Kind("", "v1", "resourcequotas", "ResourceQuota"),
    Kind("", "v1", "limitranges", "LimitRange"),
    Kind("", "v1", "events", "Event", fields=(
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.fieldPath", "reason", "type", "reportingComponent", "source")),
    Kind("apps", "v1", "deployments", "Deployment", subresources=("scale",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet"),
    Kind("apps", "v1", "replicasets", "ReplicaSet"),
    Kind("batch", "v1", "jobs", "Job", fields=("status.successful",)),
    Kind("batch", "v1", "cronjobs", "CronJob"),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress"),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Kind("cert-manager.io", "v1", "certificates", "Certificate"),
)  # fmt: skip
BY_PATH = {(k.group, k.version, k.plural): k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}
BY_KIND = {k.kind: k for k in KINDS}


@dataclass
class Received:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    status: int = 0


@dataclass
class Manager:
    """One `metadata.managedFields` entry: who set which leaf paths, and how."""

    name: str
    operation: str  # "Apply" or "Update"
    api_version: str
    time: str
    paths: set[Path]
    subresource: str = ""

    def printed(self) -> str:
        """As the API server names a manager in a conflict (its printManager)."""
        text = json.dumps(self.name)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version} at {self.time}"
        return text

    def entry(self) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        for path in sorted(self.paths):
            node = tree
            for part in path:
                node = node.setdefault(f"f:{part}", {})
        out = {"manager": self.name, "operation": self.operation, "apiVersion": self.api_version, "time": self.time,
               "fieldsType": "FieldsV1", "fieldsV1": tree}
        return out | ({"subresource": self.subresource} if self.subresource else {})


class _Refusal(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("message"))
        self.status = status
        self.payload = payload


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> _Refusal:
    return _Refusal(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                           "reason": reason, "details": details or {}, "code": code})


def _not_found(kind: Kind, name: str) -> _Refusal:
    return _status(404, "NotFound", f'{kind.resource} "{name}" not found', {"name": name, "group": kind.group, "kind": kind.plural})


def _no_such_resource() -> _Refusal:
    return _status(404, "NotFound", "the server could not find the requested resource")


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(when: dt.datetime) -> str:
    """The kubelet's log timestamps: RFC3339 with nanoseconds, fixed width (so they sort as text)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond * 1000:09d}Z"


# --- container statuses, as the kubelet reports them (for add_pod) -------------------------------------------------


def _container(name: str, ready: bool, restarts: int, state: dict, last: dict | None = None) -> dict[str, Any]:
    return {"name": name, "image": f"registry.example/{name}:1", "imageID": "", "ready": ready, "started": ready,
            "restartCount": restarts, "state": state, "lastState": last or {}}


def running(name: str, *, restarts: int = 0) -> dict[str, Any]:
    return _container(name, True, restarts, {"running": {"startedAt": _rfc3339(START)}})


def waiting(name: str, reason: str, *, message: str | None = None, last: tuple[str, int] | None = None,
            restarts: int = 0) -> dict[str, Any]:
    """A container waiting (`last`: the reason and exit code of its previous termination, if it ran before)."""
    state = {"waiting": {"reason": reason} | ({"message": message} if message else {})}
    previous = {"terminated": {"reason": last[0], "exitCode": last[1]}} if last else None
    return _container(name, False, restarts, state, previous)


def terminated(name: str, reason: str, exit_code: int, *, restarts: int = 0, message: str | None = None) -> dict[str, Any]:
    """A container that ended: `reason` is the kubelet's (Completed for exit 0, Error otherwise, or OOMKilled,
    StartError …), `message` what the runtime said (a StartError's)."""
    ended = {"reason": reason, "exitCode": exit_code} | ({"message": message} if message else {})
    return _container(name, False, restarts, {"terminated": ended})


def condition(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    """A status condition (Deployment, Job, Namespace, Pod)."""
    return {"type": type_, "status": status} | ({"reason": reason} if reason else {}) | ({"message": message} if message else {})


# --- apply's tree operations ---------------------------------------------------------------------------------------


def _leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    if isinstance(value, dict) and value:
        out: dict[Path, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, (*prefix, key)))
        return out
    return {prefix: value}


def _applied(body: dict[str, Any]) -> dict[Path, Any]:
    """The leaf paths an apply configuration sets, without the object's identity (apiVersion, kind, name, namespace)."""
    config = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k not in ("name", "namespace")}
    if metadata:
        config["metadata"] = metadata
    return _leaves(config) if config else {}


def _at(obj: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(obj.get(part), dict):
            obj[part] = {}
        obj = obj[part]
    obj[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict[str, Any], path: Path) -> None:
    """Remove a leaf, and the maps it leaves empty (never the top level)."""
    parents = [obj]
    for part in path[:-1]:
        if not isinstance(parents[-1].get(part), dict):
            return
        parents.append(parents[-1][part])
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1])


def _dotted(path: Path) -> str:
    return "".join(f".{part}" for part in path)


def _conflict(conflicts: list[tuple[Manager, Path]]) -> _Refusal:
    """The API server's apply conflict: one cause per field, and its message (one line for one conflict)."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m.printed()}", "field": _dotted(p)}
              for m, p in conflicts]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        by_manager: dict[str, list[str]] = {}
        for manager, path in conflicts:
            by_manager.setdefault(manager.printed(), []).append(_dotted(path))
        lines = [line for m in sorted(by_manager) for line in [f"conflicts with {m}:", *(f"- {p}" for p in by_manager[m])]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return _status(409, "Conflict", message, {"causes": causes})


# --- selectors -------------------------------------------------------------------------------------------------------

_LABEL_TERM = re.compile(r"(!?)([A-Za-z0-9][A-Za-z0-9._/-]*)(?:\s*(==|=|!=)\s*([A-Za-z0-9._-]*))?")


def _label_matcher(selector: str) -> Callable[[dict], bool]:
    requirements = []
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        match = _LABEL_TERM.fullmatch(term)
        if match is None or (match[1] and match[3]):
            raise _status(400, "BadRequest", f"unable to parse requirement: {term!r} (the fake parses equality and existence only)")
        requirements.append(match.groups())

    def matches(obj: dict) -> bool:
        labels = obj["metadata"].get("labels") or {}
        for negated, key, op, value in requirements:
            if op is None and (key in labels) == bool(negated):
                return False
            if op in ("=", "==") and labels.get(key) != value:
                return False
            if op == "!=" and labels.get(key) == value:
                return False
        return True

    return matches


def _field_matcher(kind: Kind, selector: str) -> Callable[[dict], bool]:
    requirements = []
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        match = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", term)
        if match is None:
            raise _status(400, "BadRequest", f"invalid field selector: {term!r}")
        key, op, value = match.groups()
        if key not in COMMON_FIELDS + kind.fields:
            raise _status(400, "BadRequest", f'field label not supported: {key}')
        requirements.append((tuple(FIELD_PATHS.get(key, key).split(".")), op, value))

    def matches(obj: dict) -> bool:
        for path, op, value in requirements:
            found = _at(obj, path)
            text = "" if found is _MISSING or found is None else str(found)
            if (text == value) != (op != "!="):
                return False
        return True

    return matches


def _only(query: dict[str, str], allowed: Sequence[str]) -> None:
    for name in query:
        if name not in allowed:
            served = ", ".join(allowed) or "none"
            raise _status(400, "BadRequest", f"query parameter {name!r} is not served by the fake here (it serves {served})")


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "false")
    if value not in ("true", "false"):
        raise _status(400, "BadRequest", f"{name}: invalid value {value!r}: expected true or false")
    return value == "true"


def _count(query: dict[str, str], name: str, minimum: int) -> int | None:
    if name not in query:
        return None
    value = query[name]
    if not re.fullmatch(r"-?\d+", value):
        raise _status(400, "BadRequest", f"{name}: invalid value {value!r}: expected an integer")
    if int(value) < minimum:
        raise _status(422, "Invalid", f"{name}: Invalid value: {value}: must be greater than or equal to {minimum}")
    return int(value)


@dataclass(frozen=True)
class _Route:
    kind: Kind
    namespace: str | None
    name: str | None
    sub: str | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.kind.group, self.kind.plural, self.namespace or "", self.name or ""


@dataclass(frozen=True)
class _LogStream:
    """A followed log to serve: whose (namespace, pod, container), from which of its lines, how, and the cuts so far."""

    key: tuple[str, str, str]
    sent: int
    timestamps: bool
    cuts: int


def _phase(status: dict[str, Any]) -> str:
    """A `restartPolicy: Never` pod's phase from its containers' states, as the kubelet derives it."""
    def ended(s: dict) -> dict | None:
        return (s.get("state") or {}).get("terminated")

    inits, mains = status.get("initContainerStatuses") or [], status.get("containerStatuses") or []
    if any((e := ended(s)) and e["exitCode"] != 0 for s in inits):
        return "Failed"
    if mains and all(ended(s) for s in mains):
        return "Succeeded" if all(ended(s)["exitCode"] == 0 for s in mains) else "Failed"
    return "Running" if any("running" in (s.get("state") or {}) for s in mains) else "Pending"


@dataclass
class FakeKube:
    """The fake API. `start()` returns its base URL; objects are kept in `objects` for tests to inspect."""

    terminating_gets: int | None = 2  # further GETs a deleted namespace stays Terminating; None: for ever
    received: list[Received] = field(default_factory=list)
    objects: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)  # (group, plural, namespace, name)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.now = START
        self._version = 1000
        self._managers: dict[tuple[str, str, str, str], list[Manager]] = {}
        self._terminating: dict[str, int | None] = {}
        self._logs: dict[tuple[str, str, str], list[tuple[dt.datetime, str]]] = {}  # (namespace, pod, container)
        self._connections: set[socket.socket] = set()
        self._cuts = 0  # cut_log_streams() calls: a followed log started before one is cut
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

            def setup(self) -> None:
                super().setup()
                with fake.lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake.lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kube", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        """A kubeconfig at `path` whose current context is this fake (a bearer token it does not check)."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "t0ken"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}]}))
        return path

    def stop(self) -> None:
        """Stop listening and cut the open keep-alive connections too: a stopped API server answers nothing."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            for connection in list(self._connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeKube:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inspection -----------------------------------------------------------------------------------

    def requests(self, method: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if method is None or r.method == method]

    def get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        """An object as stored (a copy), or None."""
        with self.lock:
            obj = self.objects.get((BY_PLURAL[plural].group, plural, namespace or "", name))
            return copy.deepcopy(obj)

    # --- the controllers' and the kubelet's part (test hooks) ----------------------------------------------

    def set_status(self, plural: str, namespace: str | None, name: str, **status: Any) -> dict:
        """Set fields of an object's status, as its controller would through the status subresource."""
        with self.lock:
            obj = self._stored(plural, namespace, name)
            obj.setdefault("status", {}).update(copy.deepcopy(status))
            self._touch(obj)
            return copy.deepcopy(obj)

    def set_deployment_status(self, namespace: str, name: str, *, replicas: int, updated: int, available: int,
                              observed_generation: int | None = None, conditions: Sequence[dict] = ()) -> dict:
        """The deployment controller's report; `observed_generation` defaults to the current generation."""
        with self.lock:
            generation = self._stored("deployments", namespace, name)["metadata"]["generation"]
            observed = generation if observed_generation is None else observed_generation
            return self.set_status("deployments", namespace, name, observedGeneration=observed, replicas=replicas,
                                   updatedReplicas=updated, readyReplicas=available, availableReplicas=available,
                                   unavailableReplicas=max(replicas - available, 0), conditions=list(conditions))

    def set_job_status(self, namespace: str, name: str, *, active: int = 0, succeeded: int = 0, failed: int = 0,
                       conditions: Sequence[dict] = ()) -> dict:
        return self.set_status("jobs", namespace, name, active=active, succeeded=succeeded, failed=failed,
                               conditions=list(conditions))

    def add_replicaset(self, namespace: str, deployment: str, *, pod_template_hash: str, revision: int | None = None) -> str:
        """The ReplicaSet the deployment controller makes for a pod template, owned by the Deployment; the Deployment's
        revision annotation moves to it (`revision` defaults to the next one)."""
        with self.lock:
            owner = self._stored("deployments", namespace, deployment)
            annotations = owner["metadata"].setdefault("annotations", {})
            number = revision if revision is not None else int(annotations.get(REVISION, "0")) + 1
            annotations[REVISION] = str(number)
            self._touch(owner)
            selector = dict((owner.get("spec") or {}).get("selector", {}).get("matchLabels") or {})
            labels = selector | {"pod-template-hash": pod_template_hash}
            name = f"{deployment}-{pod_template_hash}"
            self._create(BY_PLURAL["replicasets"], namespace, {
                "metadata": {"name": name, "labels": labels, "annotations": {REVISION: str(number)},
                             "ownerReferences": [self._reference(owner)]},
                "spec": {"replicas": (owner.get("spec") or {}).get("replicas", 1), "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}}},
            })  # fmt: skip
            return name

    def add_pod(self, namespace: str, name: str, *, labels: dict[str, str] | None = None,
                owner: tuple[str, str] | None = None, containers: Sequence[dict] = (), init_containers: Sequence[dict] = (),
                phase: str = "Running") -> dict:
        """A pod as the kubelet reports it; Ready when every container is ready (the kubelet's rule).
        `owner` is (kind, name) of an object in the same namespace; `containers` come from running()/waiting()/terminated()."""
        with self.lock:
            containers = list(containers) or [running("app")]
            metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {})}
            if owner is not None:
                metadata["ownerReferences"] = [self._reference(self._stored(BY_KIND[owner[0]].plural, namespace, owner[1]))]
            ready = all(c["ready"] for c in containers)
            pod = self._create(BY_PLURAL["pods"], namespace, {
                "metadata": metadata,
                "spec": {"containers": [{"name": c["name"], "image": c["image"]} for c in containers],
                         "initContainers": [{"name": c["name"], "image": c["image"]} for c in init_containers]},
                "status": {"phase": phase, "conditions": [condition("Ready", "True" if ready else "False")],
                           "containerStatuses": copy.deepcopy(containers),
                           "initContainerStatuses": copy.deepcopy(list(init_containers))},
            })  # fmt: skip
            return copy.deepcopy(pod)

    def add_event(self, namespace: str, *, kind: str, name: str, reason: str, message: str, type: str = "Warning",
                  count: int = 1) -> dict:
        """An event about an object in the namespace (which need not exist any more: events outlive pods)."""
        with self.lock:
            about = self.objects.get((BY_KIND[kind].group, BY_KIND[kind].plural, namespace, name))
            stamp = _rfc3339(self.now)
            event = self._create(BY_PLURAL["events"], namespace, {
                "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}"},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace, "apiVersion": BY_KIND[kind].api_version}
                | ({"uid": about["metadata"]["uid"]} if about else {}),
                "reason": reason, "message": message, "type": type, "count": count, "firstTimestamp": stamp,
                "lastTimestamp": stamp, "source": {"component": "kubelet" if kind == "Pod" else "controller-manager"},
            })  # fmt: skip
            return copy.deepcopy(event)

    def set_log(self, namespace: str, pod: str, lines: Sequence[str], *, container: str | None = None,
                seconds_apart: int = 1) -> None:
        """A container's log: the last line written now (the fake's clock), each earlier one `seconds_apart` before."""
        with self.lock:
            spec = self._stored("pods", namespace, pod)["spec"]
            name = container or spec["containers"][0]["name"]
            first = self.now - dt.timedelta(seconds=seconds_apart * (len(lines) - 1))
            self._logs[(namespace, pod, name)] = [(first + dt.timedelta(seconds=seconds_apart * i), line)
                                                  for i, line in enumerate(lines)]

    def append_log(self, namespace: str, pod: str, lines: Sequence[str], *, container: str | None = None) -> None:
        """Lines a running container writes now (each a microsecond after the one before): a followed log gets them."""
        with self.lock:
            spec = self._stored("pods", namespace, pod)["spec"]
            log = self._logs.setdefault((namespace, pod, container or spec["containers"][0]["name"]), [])
            for line in lines:
                stamp = max(self.now, log[-1][0] + dt.timedelta(microseconds=1)) if log else self.now
                log.append((stamp, line))

    def set_container(self, namespace: str, pod: str, status: dict[str, Any], *, init: bool = False) -> dict:
        """One container's state as the kubelet reports it (`status` from running()/waiting()/terminated()), and the pod's
        phase and readiness as they follow for `restartPolicy: Never`: Failed once an init container failed or every
        container ended with one failed, Succeeded once every container exited 0, Running while one runs, else
        Pending. A followed log of a container that terminated ends."""
        with self.lock:
            obj = self._stored("pods", namespace, pod)
            key = "initContainerStatuses" if init else "containerStatuses"
            statuses = obj.setdefault("status", {}).setdefault(key, [])
            statuses[:] = [s for s in statuses if s["name"] != status["name"]] + [copy.deepcopy(status)]
            obj["status"]["phase"] = _phase(obj["status"])
            ready = obj["status"]["phase"] == "Running" and all(s["ready"] for s in obj["status"]["containerStatuses"])
            obj["status"]["conditions"] = [condition("Ready", "True" if ready else "False")]
            self._touch(obj)
            return copy.deepcopy(obj)

    def remove(self, plural: str, namespace: str | None, name: str) -> None:
        """An object deleted by a controller (the garbage collector deleting the pods of a deleted Job); its followed
        logs end."""
        with self.lock:
            key = (BY_PLURAL[plural].group, plural, namespace or "", name)
            self.objects.pop(key, None)
            self._managers.pop(key, None)

    def cut_log_streams(self) -> None:
        """Every followed log open now is cut mid-stream (a proxy's idle timeout, an API server restarting): its
        connection closed without the chunked answer's end."""
        with self.lock:
            self._cuts += 1

    # --- request handling -----------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        record = Received(h.command, parts.path, query, headers, raw.decode("utf-8", "replace"))
        try:
            with self.lock:
                status, payload = self._dispatch(h.command, parts.path, query, headers, raw)
        except _Refusal as refusal:
            status, payload = refusal.status, refusal.payload
        except Exception as err:  # a bug in the fake must show, not hang the client
            status, payload = 500, _status(500, "InternalError", f"fake Kubernetes API crashed: {type(err).__name__}: {err}").payload
        record.status = status
        with self.lock:
            self.received.append(record)
        if isinstance(payload, _LogStream):
            self._stream_log(h, payload)
            return
        if isinstance(payload, str):
            data, content_type = payload.encode(), "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"  # exactly: lightkube compares it
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        route = self._route(path)
        if method == "GET" and route.sub == "log":
            return 200, self._log(route, query)
        if method == "GET" and route.sub == "scale":
            _only(query, ())
            return 200, self._scale(self._object(route))
        if method == "GET" and route.name is None:
            return 200, self._list(route, query)
        if method == "GET":
            _only(query, ())
            return 200, self._get(route)
        if method == "PATCH" and route.sub == "scale":
            return self._patch_scale(route, query, headers, raw)
        if method == "PATCH" and route.name is not None and route.sub is None:
            return self._apply(route, query, headers, raw)
        if method == "DELETE" and route.name is not None and route.sub is None:
            return self._delete(route, query)
        raise _status(405, "MethodNotAllowed", f"the fake serves no {method} on {path}")

    def _route(self, path: str) -> _Route:
        core = re.fullmatch(r"/api/(v1)((?:/[^/]+)*)", path)
        grouped = re.fullmatch(r"/apis/([^/]+)/([^/]+)((?:/[^/]+)*)", path)
        if core:
            group, version, rest = "", core[1], core[2]
        elif grouped:
            group, version, rest = grouped[1], grouped[2], grouped[3]
        else:
            raise _no_such_resource()
        segments = rest.split("/")[1:]
        namespace = None
        if len(segments) >= 3 and segments[0] == "namespaces":
            namespace, segments = segments[1], segments[2:]
        if not 1 <= len(segments) <= 3:
            raise _no_such_resource()
        plural, name, sub = (segments + [None, None])[:3]
        kind = BY_PATH.get((group, version, plural))
        if (kind is None or (namespace is not None and not kind.namespaced)
                or (namespace is None and kind.namespaced and name is not None)
                or (sub is not None and sub not in kind.subresources)):
            raise _no_such_resource()
        return _Route(kind, namespace, name, sub)

    def _stamp(self) -> str:
        self.now += dt.timedelta(seconds=1)
        return _rfc3339(self.now)

    def _touch(self, obj: dict) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _stored(self, plural: str, namespace: str | None, name: str) -> dict:
        obj = self.objects.get((BY_PLURAL[plural].group, plural, namespace or "", name))
        if obj is None:
            raise LookupError(f"no {plural} {namespace}/{name} in the fake")
        return obj

    def _reference(self, obj: dict) -> dict[str, Any]:
        meta = obj["metadata"]
        return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def _create(self, kind: Kind, namespace: str | None, body: dict[str, Any]) -> dict:
        if kind.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise LookupError(f"no namespace {namespace} in the fake")
        metadata = copy.deepcopy(body.get("metadata") or {})
        metadata |= {"uid": str(uuid.uuid4()), "generation": 1, "creationTimestamp": self._stamp()}
        if kind.namespaced:
            metadata["namespace"] = namespace
        obj = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata,
               **{k: copy.deepcopy(v) for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}}
        self._touch(obj)
        self.objects[(kind.group, kind.plural, namespace or "", metadata["name"])] = obj
        return obj

    def _object(self, route: _Route) -> dict:
        obj = self.objects.get(route.key)
        if obj is None:
            raise _not_found(route.kind, route.name or "")
        return obj

    def _get(self, route: _Route) -> dict:
        if route.kind.plural == "namespaces" and route.name in self._terminating:
            left = self._terminating[route.name]
            if left is not None and left <= 0:
                self._purge(route.name)
            elif left is not None:
                self._terminating[route.name] = left - 1
        return copy.deepcopy(self._object(route))

    def _list(self, route: _Route, query: dict[str, str]) -> dict[str, Any]:
        _only(query, ("labelSelector", "fieldSelector"))
        labels = _label_matcher(query.get("labelSelector", ""))
        fields = _field_matcher(route.kind, query.get("fieldSelector", ""))
        kind = route.kind
        items = [obj for (group, plural, namespace, _), obj in sorted(self.objects.items(), key=lambda kv: kv[0][2:])
                 if (group, plural) == (kind.group, kind.plural) and route.namespace in (None, namespace)
                 and labels(obj) and fields(obj)]
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": {"resourceVersion": str(self._version)},
                "items": [{k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")} for obj in items]}

    # --- server-side apply ----------------------------------------------------------------------------

    def _apply(self, route: _Route, query: dict[str, str], headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != APPLY:
            raise _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media "
                                                       f"types include: {APPLY} (the fake serves only server-side apply here)")
        _only(query, ("fieldManager", "force"))
        manager = query.get("fieldManager", "")
        if not manager:
            raise _status(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                          "is required for apply patch")
        force = _flag(query, "force")
        body = self._apply_body(route, raw)
        applied = _applied(body)
        current = self.objects.get(route.key)
        if current is None:
            return 201, self._apply_create(route, body, manager, applied)
        return 200, self._apply_update(route, current, manager, applied, force)

    def _apply_body(self, route: _Route, raw: bytes) -> dict[str, Any]:
        try:
            body = yaml.safe_load(raw.decode("utf-8"))  # JSON is YAML: lightkube sends JSON under the YAML type
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            raise _status(400, "BadRequest", f"error decoding YAML: {err}") from None
        kind = route.kind
        if not isinstance(body, dict):
            raise _status(400, "BadRequest", "error decoding patch: the apply configuration is not an object")
        if body.get("apiVersion") != kind.api_version:
            raise _status(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match the "
                                             f"expected API version ({kind.api_version})")
        if body.get("kind") != kind.kind:
            raise _status(400, "BadRequest", f"the kind in the data ({body.get('kind')}) does not match the expected kind ({kind.kind})")
        metadata = body.get("metadata") or {}
        if metadata.get("name") != route.name:
            raise _status(400, "BadRequest", f"the name of the object ({metadata.get('name')}) does not match the name on "
                                             f"the URL ({route.name})")
        if kind.namespaced and metadata.get("namespace", route.namespace) != route.namespace:
            raise _status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        for name in SERVER_SET:
            if name in metadata:
                raise _status(400, "BadRequest", f"metadata.{name} is set by the server: an apply configuration must not carry it (fake)")
        if "status" in body:
            raise _status(400, "BadRequest", "status in an apply to the main resource would be ignored by the API (fake)")
        return body

    def _apply_create(self, route: _Route, body: dict[str, Any], manager: str, applied: dict[Path, Any]) -> dict:
        kind, namespace = route.kind, route.namespace
        if kind.namespaced:
            if ("", "namespaces", "", namespace) not in self.objects:
                raise _status(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})
            if namespace in self._terminating:
                raise _status(403, "Forbidden", f'{kind.resource} "{route.name}" is forbidden: unable to create new content '
                                                f"in namespace {namespace} because it is being terminated")
        obj = self._create(kind, namespace, body)
        if kind.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        self._managers[route.key] = [Manager(manager, "Apply", kind.api_version, obj["metadata"]["creationTimestamp"], set(applied))]
        obj["metadata"]["managedFields"] = [m.entry() for m in self._managers[route.key]]
        return copy.deepcopy(obj)

    def _apply_update(self, route: _Route, current: dict, manager: str, applied: dict[Path, Any], force: bool) -> dict:
        managers = copy.deepcopy(self._managers.get(route.key, []))
        mine = next((m for m in managers if (m.name, m.operation) == (manager, "Apply")), None)
        others = [m for m in managers if m is not mine]
        conflicts = [(m, p) for m in others for p in sorted(m.paths) if p in applied and _at(current, p) != applied[p]]
        if conflicts and not force:
            raise _conflict(conflicts)
        for m, p in conflicts:
            m.paths.discard(p)
        if mine is None:
            mine = Manager(manager, "Apply", route.kind.api_version, "", set())
            managers.append(mine)
        new = copy.deepcopy(current)
        kept_by_others = set().union(*(m.paths for m in others))
        for path in mine.paths - applied.keys() - kept_by_others:
            _remove(new, path)
        for path, value in applied.items():
            _set(new, path, value)
        mine.paths = set(applied)
        managers = [m for m in managers if m.paths]
        before = [(m.name, m.operation, m.subresource, m.paths) for m in self._managers.get(route.key, [])]
        if new == current and before == [(m.name, m.operation, m.subresource, m.paths) for m in managers]:
            return copy.deepcopy(current)  # a no-op apply: nothing changes, not even the resourceVersion
        self._write(route, current, new, managers, mine)
        return copy.deepcopy(self.objects[route.key])

    def _write(self, route: _Route, current: dict, new: dict, managers: list[Manager], changed_by: Manager) -> None:
        if any(current.get(k) != new.get(k) for k in set(current) | set(new) if k not in ("metadata", "status")):
            new["metadata"]["generation"] = current["metadata"]["generation"] + 1
        changed_by.time = self._stamp()
        self._managers[route.key] = managers
        new["metadata"]["managedFields"] = [m.entry() for m in managers]
        self._touch(new)
        self.objects[route.key] = new

    # --- the scale subresource ------------------------------------------------------------------------

    def _scale(self, deployment: dict) -> dict[str, Any]:
        meta = deployment["metadata"]
        labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
            "spec": {"replicas": (deployment.get("spec") or {}).get("replicas", 1)},  # the API's default is 1
            "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in labels.items())},
        }  # fmt: skip

    def _patch_scale(self, route: _Route, query: dict[str, str], headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != MERGE_PATCH:
            raise _status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media "
                                                       f"types include: {MERGE_PATCH} (the fake serves only merge patches of scale)")
        _only(query, ("fieldManager", "force"))
        if "force" in query:
            raise _status(422, "Invalid", "force: Forbidden: may not be specified for non-apply patch")
        current = self._object(route)
        try:
            patch = json.loads(raw)
        except ValueError as err:
            raise _status(400, "BadRequest", f"error decoding patch: {err}") from None
        if not isinstance(patch, dict) or set(patch) - {"spec"} or set(patch.get("spec") or {}) - {"replicas"}:
            raise _status(400, "BadRequest", "the fake honours only spec.replicas in a scale patch")
        replicas = (patch.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _status(422, "Invalid", f'Scale.autoscaling "{route.name}" is invalid: spec.replicas: Invalid value: '
                                          f"{json.dumps(replicas)}: must be greater than or equal to 0")
        if (current.get("spec") or {}).get("replicas") != replicas:
            manager_name = query.get("fieldManager") or headers.get("user-agent", "unknown").split("/")[0]
            managers = copy.deepcopy(self._managers.get(route.key, []))
            for m in managers:
                m.paths.discard(("spec", "replicas"))  # an Update takes over the fields it changes
            mine = next((m for m in managers if (m.name, m.operation, m.subresource) == (manager_name, "Update", "scale")), None)
            if mine is None:
                mine = Manager(manager_name, "Update", route.kind.api_version, "", set(), subresource="scale")
                managers.append(mine)
            mine.paths.add(("spec", "replicas"))
            new = copy.deepcopy(current)
            _set(new, ("spec", "replicas"), replicas)
            self._write(route, current, new, [m for m in managers if m.paths], mine)
        return 200, self._scale(self.objects[route.key])

    # --- deletion -------------------------------------------------------------------------------------

    def _delete(self, route: _Route, query: dict[str, str]) -> tuple[int, Any]:
        _only(query, ("propagationPolicy", "gracePeriodSeconds"))
        policy = query.get("propagationPolicy", "Background")
        if policy not in ("Foreground", "Background", "Orphan"):
            raise _status(400, "BadRequest", f"propagationPolicy: Unsupported value: {policy!r}: supported values: "
                                             '"Foreground", "Background", "Orphan"')
        _count(query, "gracePeriodSeconds", 0)
        obj = self._object(route)
        if route.kind.kind != "Namespace":
            del self.objects[route.key]
            self._managers.pop(route.key, None)
            return 200, obj
        name = route.name or ""
        if name in self._terminating:
            raise _status(409, "Conflict", f'Operation cannot be fulfilled on namespaces "{name}": The system is ensuring all '
                                           "content is removed from this namespace.  Upon completion, this namespace will "
                                           "automatically be purged by the system.", {"name": name, "kind": "namespaces"})
        obj["metadata"]["deletionTimestamp"] = self._stamp()
        obj["status"] = {"phase": "Terminating"}
        self._touch(obj)
        self._terminating[name] = self.terminating_gets
        answer = copy.deepcopy(obj)
        if self.terminating_gets == 0:
            self._purge(name)
        return 200, answer

    def _purge(self, namespace: str) -> None:
        """What the namespace controller does once the finalizers are done: the namespace goes, with its content."""
        for key in [k for k in self.objects if k[2] == namespace or k[:2] == ("", "namespaces") and k[3] == namespace]:
            del self.objects[key]
            self._managers.pop(key, None)
        for key in [k for k in self._logs if k[0] == namespace]:
            del self._logs[key]
        self._terminating.pop(namespace, None)

    # --- pod logs -------------------------------------------------------------------------------------

    def _log(self, route: _Route, query: dict[str, str]) -> str | _LogStream:
        _only(query, ("container", "tailLines", "sinceSeconds", "timestamps", "follow", "previous"))
        if _flag(query, "previous"):
            raise _status(400, "BadRequest", "previous logs are not served by the fake")
        pod = self._object(route)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if container is None and len(names) > 1:
            raise _status(400, "BadRequest", f"a container name must be specified for pod {route.name}, "
                                             f"choose one of: [{' '.join(names)}]")
        container = container or names[0]
        if container not in names + [c["name"] for c in pod["spec"].get("initContainers", [])]:
            raise _status(400, "BadRequest", f"container {container} is not valid for pod {route.name}")
        tail = _count(query, "tailLines", 0)
        since = _count(query, "sinceSeconds", 1)
        lines = self._logs.get((route.namespace or "", route.name or "", container))
        if lines is None:
            statuses = pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", [])
            status = next((s for s in statuses if s["name"] == container), {})
            reason = (status.get("state") or {}).get("waiting", {}).get("reason")
            if reason:
                raise _status(400, "BadRequest", f'container "{container}" in pod "{route.name}" is waiting to start: {reason}')
            lines = []
        written = len(lines)
        if since is not None:
            lines = [(t, text) for t, text in lines if t >= self.now - dt.timedelta(seconds=since)]
        if tail is not None:
            lines = lines[max(len(lines) - tail, 0):] if tail else []
        stamp = _flag(query, "timestamps")
        if _flag(query, "follow"):  # what is shown are the newest lines: the stream starts at the first of them
            return _LogStream((route.namespace or "", route.name or "", container), written - len(lines), stamp, self._cuts)
        return "".join(f"{_rfc3339_nano(t)} {text}\n" if stamp else f"{text}\n" for t, text in lines)

    def _stream_log(self, h: BaseHTTPRequestHandler, stream: _LogStream) -> None:
        """A followed log, chunk by chunk: the lines from `stream.sent` on as they are added, until the container
        terminated or the pod is gone (then the chunked answer's end), a cut (then none), or the fake stops."""
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        sent = stream.sent
        try:
            while self._server is not None:
                with self.lock:
                    lines = self._logs.get(stream.key, [])[sent:]
                    sent += len(lines)
                    ended, cut = self._log_ended(stream.key), self._cuts > stream.cuts
                text = "".join(f"{_rfc3339_nano(t)} {line}\n" if stream.timestamps else f"{line}\n" for t, line in lines)
                if text:
                    data = text.encode()
                    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    h.wfile.flush()
                if cut:
                    h.close_connection = True
                    return
                if ended:
                    h.wfile.write(b"0\r\n\r\n")
                    h.wfile.flush()
                    return
                time.sleep(0.02)
        except OSError:  # the client went away
            h.close_connection = True

    def _log_ended(self, key: tuple[str, str, str]) -> bool:
        namespace, pod, container = key
        obj = self.objects.get(("", "pods", namespace, pod))
        if obj is None:
            return True
        status = obj.get("status") or {}
        found = next((s for s in status.get("containerStatuses", []) + status.get("initContainerStatuses", [])
                      if s["name"] == container), {})
        return "terminated" in (found.get("state") or {})
