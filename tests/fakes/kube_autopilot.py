"""The controllers and kubelet the fake Kubernetes API (kube_api.py) does not run, played by the tests: StatefulSets
become ready, Jobs succeed (or fail, when told, with a log), Deployments get a ReplicaSet and pods and roll out (or
crash-loop, when told). Driven by a waiting loop's injected sleep (`sleep`), or from a thread (`running`) when the
control plane under test runs in another process.

A `run` Job (label branchyard.dev/service=run) is played step by step, as the kubelet runs it: its pod Pending while
its init containers run, then its container running, then one line of output per step, then terminated. Its command
is the Job's container command after Kubernetes' `$(VAR)` expansion (`$$` → `$`); `python -c CODE [ARG…]` is run here
for real (this interpreter, stdin closed, the pod's environment: its variables Secret and its env), so a test chooses
the output and the exit code; any other program is not in the image (the runtime's StartError, exit 128). The
garbage collector's part is played too: the pods of a deleted Job go at the next step."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from fakes.kube_api import FakeKube, condition, running, terminated, waiting


class Autopilot:
    """The cluster's controllers and kubelet, one step per injected sleep. `crash`: the web pods crash-loop;
    `fail_job`: that Job fails; `stuck`: that StatefulSet's pod (or, "run", every `run` Job's) cannot pull its image."""

    def __init__(self, fake: FakeKube, *, crash: bool = False, fail_job: str | None = None, stuck: str | None = None,
                 data_jobs: Callable[[str, dict], tuple[bool, list[str]]] | None = None):
        """`data_jobs(namespace, job)`: runs a dump or restore job's pod for real, (ok, log lines); by default the
        autopilot plays it (`_data_job`)."""
        self.fake, self.crash, self.fail_job, self.stuck = fake, crash, fail_job, stuck
        self.run_data_job = data_jobs
        self.now = 0.0
        self.sleeps = 0
        self.done: set[tuple[str, str, str, int]] = set()  # what was played, at which generation
        self.dumped: list[tuple[str, bytes]] = []  # (namespace, the dump a dump job uploaded)
        self.restored: list[tuple[str, bytes]] = []  # (namespace, the dump a restore job fetched and checked)
        self.runs: dict[tuple[str, str], Iterator[None]] = {}  # (namespace, Job): a `run` pod's next steps

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """The injected sleep of a waiting loop: time moves on, the controllers take one step."""
        self.sleeps += 1
        assert self.sleeps < 500, "still waiting after 500 sleeps"
        self.now += seconds
        self.step()

    @contextlib.contextmanager
    def in_thread(self, interval: float = 0.05) -> Iterator[Autopilot]:
        """The controllers in a thread of their own, stepping every `interval` seconds (a control plane in another
        process waits with its own clock)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.step()

        thread = threading.Thread(target=loop, name="kube-autopilot", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def step(self) -> None:
        """Every object new (or at a new generation) since the last step gets what its controller would do."""
        for kind, plural in (("StatefulSet", "statefulsets"), ("Job", "jobs"), ("Deployment", "deployments")):
            for (_, p, ns, name), obj in list(self.fake.objects.items()):
                key = (kind, ns, name, obj["metadata"]["generation"])
                if p == plural and key not in self.done:  # a new object, or a new generation of one (a new release)
                    getattr(self, f"_{plural}")(ns, name, obj)
                    self.done.add(key)
        for (ns, name), steps in list(self.runs.items()):
            try:
                if self.fake.get("jobs", ns, name) is None or next(steps, StopIteration) is StopIteration:
                    del self.runs[(ns, name)]
            except LookupError:  # its Job or pod deleted meanwhile (the control plane stopped it)
                del self.runs[(ns, name)]
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """The garbage collector: the pods of a deleted Job go (branchyard deletes with Background propagation)."""
        with self.fake.lock:
            jobs = {obj["metadata"]["uid"] for (_, plural, _, _), obj in self.fake.objects.items() if plural == "jobs"}
            orphans = [(ns, name) for (_, plural, ns, name), obj in self.fake.objects.items() if plural == "pods"
                       and any(ref["kind"] == "Job" and ref["uid"] not in jobs
                               for ref in obj["metadata"].get("ownerReferences", []))]
        for ns, name in orphans:
            self.fake.remove("pods", ns, name)

    def _statefulsets(self, ns: str, name: str, obj: dict) -> None:
        selector = obj["spec"]["selector"]["matchLabels"]
        container = waiting(name, "ImagePullBackOff", message="no such image") if self.stuck == name else running(name)
        self.fake.add_pod(ns, f"{name}-0", labels=selector, owner=("StatefulSet", name), containers=[container])
        if self.stuck != name:
            self.fake.set_status("statefulsets", ns, name, observedGeneration=obj["metadata"]["generation"],
                                 replicas=1, readyReplicas=1, currentRevision=f"{name}-1", updateRevision=f"{name}-1")

    def _jobs(self, ns: str, name: str, obj: dict) -> None:
        if obj["metadata"].get("labels", {}).get("branchyard.dev/service") == "run":
            self.runs[(ns, name)] = self._run(ns, name, obj)  # played from this step on, one step at a time
            return
        labels = {"batch.kubernetes.io/job-name": name, "job-name": name}
        self.fake.add_pod(ns, f"{name}-x1", labels=labels, owner=("Job", name), containers=[running(name)],
                          phase="Succeeded")
        service = obj["metadata"].get("labels", {}).get("branchyard.dev/service")
        if service in ("dump", "restore"):
            ok, log = self.run_data_job(ns, obj) if self.run_data_job else self._data_job(ns, service, obj)
        else:
            ok, log = True, [f"{name}: step 1"]
        self.fake.set_log(ns, f"{name}-x1", [*log, f"{name}: done" if ok else f"{name}: failed"])
        if name == self.fail_job or not ok:
            self.fake.set_job_status(ns, name, failed=1, conditions=[condition("Failed", reason="BackoffLimitExceeded",
                                                                                message="Job has reached the specified backoff limit")])
        else:
            self.fake.set_job_status(ns, name, succeeded=1, conditions=[condition("Complete")])

    def _data_job(self, ns: str, service: str, obj: dict) -> tuple[bool, list[str]]:
        """A dump or restore job's pod, played (backends/kubernetes/data_jobs.py): what its script does with the
        control plane — upload a dump, or fetch one and check its digest — without a PostgreSQL (the script itself runs
        against a real one in tests/integration/test_kube_data_jobs.py). The token is read from the Secret the Job
        names, as the kubelet would."""
        env = {e["name"]: e for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["BRANCHYARD_TRANSFER_TOKEN"]["valueFrom"]["secretKeyRef"]
        secret = self.fake.get("secrets", ns, ref["name"])
        if secret is None:
            return False, [f"secret {ref['name']} not found"]
        headers = {"Authorization": f"Bearer {secret['stringData'][ref['key']]}"}
        url = env["BRANCHYARD_TRANSFER_URL"]["value"]
        try:
            if service == "dump":
                body = b"PGDMP" + f" {ns} dump {len(self.dumped) + 1}".encode()
                request = urllib.request.Request(url, data=body, method="POST",
                                                 headers=headers | {"Content-Type": "application/octet-stream"})
                urllib.request.urlopen(request, timeout=30).read()
                self.dumped.append((ns, body))
                return True, [f"dumped {len(body)} bytes; uploading", "uploaded"]
            body = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30).read()
        except urllib.error.HTTPError as err:
            return False, [f"wget: server returned error: HTTP/1.1 {err.code}"]
        if hashlib.sha256(body).hexdigest() != env["BRANCHYARD_TRANSFER_SHA256"]["value"]:
            return False, ["the dump's sha256 is not the expected one: not restored"]
        self.restored.append((ns, body))
        return True, [f"restoring {len(body)} bytes", "restored"]

    def _deployments(self, ns: str, name: str, obj: dict) -> None:
        replicas = obj["spec"]["replicas"]
        rs = self.fake.add_replicaset(ns, name, pod_template_hash=f"5d9c{obj['metadata']['generation']}")
        template = obj["spec"]["template"]["metadata"].get("labels", {})  # a pod carries its template's labels
        for i in range(max(replicas, 1)):
            container = waiting(name, "CrashLoopBackOff", last=("Error", 1), restarts=3) if self.crash else running(name)
            labels = template | self.fake.get("replicasets", ns, rs)["spec"]["selector"]["matchLabels"]
            pod = f"{rs}-p{i}"
            self.fake.add_pod(ns, pod, labels=labels, owner=("ReplicaSet", rs), containers=[container])
            if not self.crash:
                self.fake.set_log(ns, pod, [f"INFO:     Started server process [{pod}]", f"GET /health 200 ({pod})"])
        if not self.crash:
            self.fake.set_deployment_status(ns, name, replicas=replicas, updated=replicas, available=replicas)

    def _run(self, ns: str, name: str, obj: dict) -> Iterator[None]:
        """A `run` Job's pod as the kubelet runs it, one state per step (the module's docstring says what it runs)."""
        template = obj["spec"]["template"]
        main = template["spec"]["containers"][0]
        inits = [c["name"] for c in template["spec"].get("initContainers", [])]
        pod = f"{name}-r7k2p"
        labels = template["metadata"].get("labels", {}) | {"batch.kubernetes.io/job-name": name, "job-name": name}
        self.fake.add_pod(ns, pod, labels=labels, owner=("Job", name), phase="Pending",
                          containers=[waiting(main["name"], "PodInitializing")],
                          init_containers=[running(c) for c in inits])
        self.fake.set_job_status(ns, name, active=1)
        yield
        if self.stuck == "run":  # the image (the init container's first) cannot be pulled: it stays so
            blocked = waiting(inits[0] if inits else main["name"], "ImagePullBackOff",
                              message=f'Back-off pulling image "{main["image"]}"')
            self.fake.set_container(ns, pod, blocked, init=bool(inits))
            return
        for init in inits:
            self.fake.set_container(ns, pod, terminated(init, "Completed", 0), init=True)
        env = self._pod_env(ns, pod, main)
        if isinstance(env, str):
            self.fake.set_container(ns, pod, waiting(main["name"], "CreateContainerConfigError", message=env))
            return
        argv = [_expand(arg, env) for arg in main["command"]]
        if argv[:2] != ["python", "-c"] or len(argv) < 3:
            message = ("failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                       f'runc create failed: unable to start container process: exec: "{argv[0]}": executable file '
                       "not found in $PATH: unknown")
            self.fake.set_container(ns, pod, terminated(main["name"], "StartError", 128, message=message))
            self._job_ended(ns, name, ok=False)
            return
        self.fake.set_container(ns, pod, running(main["name"]))
        yield
        done = subprocess.run([sys.executable, *argv[1:]], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=60, cwd=tempfile.gettempdir())
        for line in done.stdout.splitlines():
            self.fake.append_log(ns, pod, [line])
            yield
        code = done.returncode if done.returncode >= 0 else 128 - done.returncode  # killed by signal N: 128 + N
        self.fake.set_container(ns, pod, terminated(main["name"], "Completed" if code == 0 else "Error", code))
        self._job_ended(ns, name, ok=code == 0)

    def _pod_env(self, ns: str, pod: str, container: dict) -> dict[str, str] | str:
        """The container's environment as the kubelet makes it (envFrom Secrets, then env in order, `$(VAR)` expanded),
        or why it cannot (a Secret it names is missing: CreateContainerConfigError's message)."""
        env: dict[str, str] = {}

        def secret(name: str) -> dict[str, str] | None:
            found = self.fake.get("secrets", ns, name)
            return None if found is None else dict(found.get("stringData") or {})

        for source in container.get("envFrom", []):
            data = secret(source["secretRef"]["name"])
            if data is None:
                return f'secret "{source["secretRef"]["name"]}" not found'
            env |= data
        for item in container.get("env", []):
            ref = item.get("valueFrom", {})
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = pod
            elif "secretKeyRef" in ref:
                data = secret(ref["secretKeyRef"]["name"])
                if data is None or ref["secretKeyRef"]["key"] not in data:
                    return f'secret "{ref["secretKeyRef"]["name"]}" not found'
                env[item["name"]] = data[ref["secretKeyRef"]["key"]]
        return env

    def _job_ended(self, ns: str, name: str, *, ok: bool) -> None:
        if ok:
            self.fake.set_job_status(ns, name, succeeded=1, conditions=[condition("Complete")])
        else:
            self.fake.set_job_status(ns, name, failed=1, conditions=[condition(
                "Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")])


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a container's command and env values: `$(VAR)` becomes VAR's value when it is defined
    (else stays as it is), `$$` becomes `$`, any other `$` stays."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2:end]
            out.append(env.get(name, text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i:i + 2])
            i += 2
    return "".join(out)
