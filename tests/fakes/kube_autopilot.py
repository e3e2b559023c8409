"""The controllers and kubelet the fake Kubernetes API (kube_api.py) does not run, played by the tests: StatefulSets
become ready, Jobs succeed (or fail, when told, with a log), Deployments get a ReplicaSet and pods and roll out (or
crash-loop, when told). Driven by a waiting loop's injected sleep (`sleep`), or from a thread (`running`) when the
control plane under test runs in another process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from fakes.kube_api import FakeKube, condition, running, waiting


class Autopilot:
    """The cluster's controllers and kubelet, one step per injected sleep. `crash`: the web pods crash-loop;
    `fail_job`: that Job fails; `stuck`: that StatefulSet's pod cannot pull its image."""

    def __init__(self, fake: FakeKube, *, crash: bool = False, fail_job: str | None = None, stuck: str | None = None):
        self.fake, self.crash, self.fail_job, self.stuck = fake, crash, fail_job, stuck
        self.now = 0.0
        self.sleeps = 0
        self.done: set[tuple[str, str, str, int]] = set()  # what was played, at which generation

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

    def _statefulsets(self, ns: str, name: str, obj: dict) -> None:
        selector = obj["spec"]["selector"]["matchLabels"]
        container = waiting(name, "ImagePullBackOff", message="no such image") if self.stuck == name else running(name)
        self.fake.add_pod(ns, f"{name}-0", labels=selector, owner=("StatefulSet", name), containers=[container])
        if self.stuck != name:
            self.fake.set_status("statefulsets", ns, name, observedGeneration=obj["metadata"]["generation"],
                                 replicas=1, readyReplicas=1, currentRevision=f"{name}-1", updateRevision=f"{name}-1")

    def _jobs(self, ns: str, name: str, obj: dict) -> None:
        labels = {"batch.kubernetes.io/job-name": name, "job-name": name}
        self.fake.add_pod(ns, f"{name}-x1", labels=labels, owner=("Job", name), containers=[running(name)],
                          phase="Succeeded")
        self.fake.set_log(ns, f"{name}-x1", [f"{name}: step 1", f"{name}: done"])
        if name == self.fail_job:
            self.fake.set_job_status(ns, name, failed=1, conditions=[condition("Failed", reason="BackoffLimitExceeded",
                                                                                message="Job has reached the specified backoff limit")])
        else:
            self.fake.set_job_status(ns, name, succeeded=1, conditions=[condition("Complete")])

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
