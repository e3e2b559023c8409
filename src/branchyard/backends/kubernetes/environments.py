"""Environments on a Kubernetes cluster: a DesiredEnvironment rendered (manifests.py) and applied in phases, each
awaited (cluster.py), the deploy log hearing what happens — the Kubernetes side of issue 19's backend.

    prepare    Namespace, quota, limits, policies, Secrets, Services, PostgreSQL/Redis → their pods ready
    run_hooks  preDeployCommand, seedCommand as Jobs → each succeeded (its log into the deploy log), else DeployFailed
    roll_out   Deployments, cron CronJob, Ingresses → rolled out (maxUnavailable 0, probes), else DeployFailed with the
               pods' reasons and events; the releases no longer kept lose their Secrets and Jobs
    destroy    the namespace deleted and awaited, then nothing labelled with the environment may remain anywhere

and, outside a deployment, `run -e ENV -- CMD` (run_one_off): a Job from the current release → its log followed into
the caller's output as it is written, then its exit code; the Job deleted whatever happens (stop_one_off: at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ...errors import BackendError, DeployFailed
from ...kube_settings import KubeSettings
from ..ports import DesiredEnvironment, PodLogLine, PodStatus
from . import naming
from .cluster import Cluster, Rollout
from .inputs import APP_PORT, HOOK_TIMEOUT, for_cluster
from .manifests import namespace_of, one_off_job, phases, render_environment
from .workloads import RUN_KEEP, RUN_SERVICE, one_off_job_name

DATA_TIMEOUT = 600.0  # seconds a data service may take to be ready (a volume to provision, an image to pull)
PULL_MARGIN = 120.0  # seconds beyond the app's own timeouts for pulling images and fetching the release
DESTROY_TIMEOUT = 600.0
RUN_START_TIMEOUT = 300.0  # seconds a `run` pod may take to start: scheduled, its image pulled, the release fetched
CANNOT_RUN = 125  # `run`'s exit code when no pod could run the command (`docker run`'s when it cannot start one)
LOST = 1  # `run`'s exit code when the pod went away before its command ended (deleted, evicted, its node lost)
_HOOK_LABELS = {"predeploy": "preDeployCommand", "seed": "seedCommand"}

Out = Callable[[str], None]


class ClusterEnvironments:
    app_port = APP_PORT

    def __init__(self, cluster: Cluster, settings: KubeSettings, control_url: str, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 poll: float = 2.0) -> None:
        self.cluster = cluster
        self.settings = settings
        self.control_url = control_url
        self._wait: dict[str, Any] = {"clock": clock, "sleep": sleep, "poll": poll}

    def namespace(self, project: str, environment: str) -> str:
        return naming.namespace(self.settings.namespace_prefix, project, environment)

    def render(self, desired: DesiredEnvironment) -> list[dict[str, Any]]:
        return render_environment(for_cluster(desired, self.settings, self.control_url))

    # --- a deployment, in phases ------------------------------------------------------------------------

    def prepare(self, desired: DesiredEnvironment, out: Out) -> None:
        objects, _, _ = phases(self.render(desired))
        namespace = namespace_of(for_cluster(desired, self.settings, self.control_url))
        applied = self.cluster.apply(objects)
        out(f"-----> namespace {namespace}: {len(applied)} objects applied (quota, limits, network policies, "
            "secrets, services, data services)")
        for obj in objects:
            if obj["kind"] == "StatefulSet":
                name = obj["metadata"]["name"]
                result = self.cluster.wait_stateful_set(namespace, name, timeout=DATA_TIMEOUT, **self._wait)
                self._settle(result, out, what=name)
                out(f"-----> {name}: ready")

    def run_hooks(self, desired: DesiredEnvironment, out: Out) -> None:
        _, jobs, _ = phases(self.render(desired))
        for job in jobs:
            namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
            label = _HOOK_LABELS.get(job["metadata"]["labels"].get(naming.SERVICE, ""), name)
            out(f"-----> {label}: job {name}")
            self.cluster.apply([job])
            result = self.cluster.wait_job(namespace, name, timeout=HOOK_TIMEOUT + PULL_MARGIN, **self._wait)
            for line in result.logs.splitlines():
                out(f"       {line}")
            if not result.ok:
                raise DeployFailed(f"{label} failed: {result.detail}")

    def roll_out(self, desired: DesiredEnvironment, out: Out, *, keep: Collection[str] = ()) -> None:
        """Apply the app's workloads and wait until every Deployment is rolled out; then drop the Secrets and Jobs of
        releases that are neither this one nor in `keep` (the release ids rollback may still want)."""
        _, _, objects = phases(self.render(desired))
        namespace = self.namespace(desired.project, desired.config.name)
        self.cluster.apply([o for o in objects if o["kind"] != "Ingress"])
        timeout = desired.config.web.healthcheck_timeout * max(1, desired.config.web.replicas) + PULL_MARGIN
        for obj in objects:
            if obj["kind"] == "Deployment":
                name = obj["metadata"]["name"]
                result = self.cluster.rollout(namespace, name, timeout=timeout,
                                              progress=lambda detail: out(f"       {detail}"), **self._wait)
                self._settle(result, out, what=name)
                out(f"-----> {name}: {result.detail}")
        self.cluster.apply([o for o in objects if o["kind"] == "Ingress"])  # routed once it serves
        self.prune(desired.project, desired.config.name, keep={desired.release.id, *keep})

    def prune(self, project: str, environment: str, *, keep: Collection[str]) -> list[str]:
        """Delete the release Secrets and hook Jobs of releases not in `keep`; what was deleted."""
        namespace = self.namespace(project, environment)
        kept = {naming.release_label(r) for r in keep}
        selector = naming.selector(project, environment)
        gone = []
        for kind in ("Secret", "Job"):
            for name in self.cluster.names(kind, namespace, selector):
                prefix, _, release = name.partition("-")
                if prefix in ("variables", "release", "predeploy", "seed") and release and release not in kept:
                    self.cluster.delete(kind, namespace, name)
                    gone.append(f"{kind} {name}")
        return gone

    # --- one-off commands (`run`) --------------------------------------------------------------------------

    def run_one_off(self, desired: DesiredEnvironment, argv: Sequence[str], *, run_id: str, out: Out) -> int:
        """`argv` run once as the Job `run-<run_id>` of the environment's namespace, in `desired`'s release; its output
        (stdout and stderr, as the cluster keeps them) into `out` line by line as it is written; its exit code, or
        CANNOT_RUN saying why no pod could run it. The Job and its pod are deleted whatever happens."""
        job = one_off_job(for_cluster(desired, self.settings, self.control_url), list(argv), run_id)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        try:
            self.cluster.apply([job])
            return self._follow_one_off(namespace, name, out)
        finally:
            try:
                self.cluster.delete("Job", namespace, name)
            except BackendError as err:
                out(f"{err} (the cluster deletes the job itself {RUN_KEEP}s after it ended)\n")

    def stop_one_off(self, project: str, environment: str, run_id: str) -> None:
        """Stop a `run` command whose caller went away: its Job deleted, and with it its pod (the command gets
        SIGTERM, then SIGKILL after the pod's grace period)."""
        self.cluster.delete("Job", self.namespace(project, environment), one_off_job_name(run_id))

    def _follow_one_off(self, namespace: str, name: str, out: Out) -> int:
        started = self.cluster.wait_started(namespace, name, RUN_SERVICE, timeout=RUN_START_TIMEOUT, **self._wait)
        if started.pod is None:
            for line in (started.detail, *(f"       {p}" for p in started.problems)):
                out(line + "\n")
            return CANNOT_RUN
        for line in self.cluster.follow_log(namespace, started.pod, RUN_SERVICE, poll=self._wait["poll"],
                                            sleep=self._wait["sleep"]):
            out(line + "\n")
        ending = self.cluster.ending(namespace, started.pod, RUN_SERVICE)
        if ending is None:
            out(f"job {name}: pod {started.pod} went away before its command ended\n")
            return LOST
        if ending.note:
            out(ending.note + "\n")
        return ending.exit_code

    # --- lifecycle ----------------------------------------------------------------------------------------

    def destroy(self, project: str, environment: str) -> None:
        """Delete the environment's namespace, wait until it is gone, and check that nothing labelled with the
        environment is left anywhere in the cluster (BackendError naming what is)."""
        self.cluster.delete_namespace(self.namespace(project, environment), timeout=DESTROY_TIMEOUT, **self._wait)
        left = self.cluster.leftovers(naming.selector(project, environment))
        if left:
            raise BackendError(f"{project}/{environment}: left in the cluster after its namespace was deleted: "
                               f"{', '.join(left[:5])}" + (f" and {len(left) - 5} more" if len(left) > 5 else ""))

    def pods(self, project: str, environment: str) -> list[PodStatus]:
        namespace, selector = self.namespace(project, environment), naming.selector(project, environment)
        return [PodStatus(name=p.name, phase=p.phase, ready=p.ready, restarts=p.restarts,
                          service=p.labels.get(naming.SERVICE, ""), problems=p.containers)
                for p in self.cluster.pods(namespace, selector)]

    def pod_logs(self, project: str, environment: str, *, since_seconds: int) -> list[PodLogLine]:
        namespace, selector = self.namespace(project, environment), naming.selector(project, environment)
        labels = {p.name: p.labels for p in self.cluster.pods(namespace, selector)}
        out = []
        for source, line in self.cluster.logs(namespace, selector, since_seconds=since_seconds):
            pod = source.split("/", 1)[0]
            stamp, _, text = line.partition(" ")
            if text.startswith("(no log: ") or not stamp[:1].isdigit():
                continue  # a container not started yet
            of = labels.get(pod, {})
            out.append(PodLogLine(pod=pod, service=of.get(naming.SERVICE, ""), release=of.get(naming.RELEASE, ""),
                                  time=stamp, text=text))
        return out

    @staticmethod
    def _settle(result: Rollout, out: Out, *, what: str) -> None:
        if result.ok:
            return
        for line in result.problems:
            out(f"       {line}")
        raise DeployFailed(f"{what}: {result.detail}")
