"""Post-deploy tests: after a deployment switched in (it serves), run `[environments.<env>.tests]` against the
environment's URL, record the result on the deployment, and act as its tier says (`verification.decide`, pure):
production rolls back to the previous deployment (`Deployer.rollback`, zero downtime like any rollback), staging
and previews keep serving and show UNHEALTHY.

Off the environment's deploy lock: the tests run on a thread of their own once `deploy.succeeded` is recorded (a
store listener), so a push during a long test suite is not held up. Level-triggered: the result is RUNNING while
the commands run; a control plane killed then finds it at its next start (and in housekeeping) and runs the tests
again if the deployment still serves, else records SKIPPED (`verification.on_restart`). A serving deployment
whose switch committed just before a crash (no result yet) is tested the same way.

Events: `deploy.tests_started`, `deploy.tests_passed`, `deploy.tests_failed`, `deploy.tests_rollback` — what
github/feedback.py turns into the `branchyard/<env>/tests` commit status. Details are one line, masked with the
environment's secrets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from .. import failpoints
from .. import verification as vf
from ..backends.ports import Placement, RuntimePort
from ..errors import BranchyardError, Conflict, NotFound
from ..spec import load_project
from ..spec.model import TestsSpec
from ..store import models as m
from ..store.db import RecordedEvent, Store
from .dataplane import DataPlane
from .promotions import VERIFIER, run_smoke_command
from .replicas import prefixed, release_facts
from .routes import Routes

log = logging.getLogger("branchyard.verify")

STARTED, PASSED, FAILED, ROLLBACK = "deploy.tests_started", "deploy.tests_passed", "deploy.tests_failed", "deploy.tests_rollback"
RAN = (m.SUCCESS, m.REMOVED, m.SLEEPING, m.CRASHED)  # statuses of a deployment that went live at some point
ROLLBACK_WAIT = 120.0  # seconds to wait for the deployment's own worker to let go of the environment


class PostDeployTests:
    """`notify` is a Store listener (deploy.succeeded → the tests on a thread); `converge_all` the level-triggered
    pass (at start and in housekeeping)."""

    def __init__(self, store: Store, *, runtime: RuntimePort, routes: Routes, data: DataPlane,
                 rollback: Callable[[str, str], str], stop: threading.Event) -> None:
        self.store = store
        self.runtime = runtime
        self.routes = routes
        self.data = data
        self.rollback = rollback  # (project, environment) → the rollback deployment's id (Deployer.rollback)
        self.stop = stop
        self._active: set[str] = set()  # deployments whose tests this control plane runs now
        self._lock = threading.Lock()

    # --- triggers ---------------------------------------------------------------------------------

    def notify(self, event: RecordedEvent) -> None:
        """Store listener: a deployment went live → its tests, on a thread of their own (returns at once)."""
        if event.kind == "deploy.succeeded" and event.deployment_id:
            self._spawn(event.deployment_id)

    def converge_all(self) -> None:
        """Every deployment whose result is undecided or RUNNING (left by a crash): decide again."""
        try:
            with self.store.session() as s:
                rows = s.execute(
                    select(m.Deployment.id, m.Deployment.tests_status, m.Deployment.status, m.Deployment.release_dir,
                           m.Environment.name, m.Environment.current_deployment_id)
                    .join(m.Environment, m.Environment.id == m.Deployment.environment_id)
                    .where((m.Deployment.tests_status.is_(None)) | (m.Deployment.tests_status == vf.RUNNING),
                           m.Deployment.status.in_(RAN))
                ).all()
            self._rollbacks_owed()
        except Exception:  # at start it runs on a thread of its own: a store closing under it is logged, not raised
            log.exception("post-deploy tests: cannot list the deployments")
            return
        for dep_id, status, dep_status, release_dir, env_name, current_id in rows:
            with self._lock:
                if dep_id in self._active:
                    continue
            serving = current_id == dep_id and dep_status == m.SUCCESS
            declared = serving and _tests_of(release_dir, env_name) is not None
            todo = vf.on_restart(status, declared=declared, serving=serving)
            if todo == vf.RUNNING:
                self._spawn(dep_id)
            elif todo == vf.SKIPPED:
                self._skip(dep_id, "no tests declared" if serving else
                           "replaced before its tests finished" if status == vf.RUNNING else "replaced before its tests ran")

    def _rollbacks_owed(self) -> None:
        """Production deployments that failed their tests and serve still, with no rollback recorded: a crash cut
        off the rollback `decide` asked for; it is made now."""
        with self.store.session() as s:
            rows = s.execute(
                select(m.Deployment.id, m.Deployment.trigger, m.Environment.target_deployment_id, m.Project.name,
                       m.Environment.name, m.Deployment.tests_detail)
                .join(m.Environment, m.Environment.current_deployment_id == m.Deployment.id)
                .join(m.Project, m.Project.id == m.Deployment.project_id)
                .where(m.Deployment.tests_status == vf.FAILED, m.Environment.production.is_(True))
            ).all()
            reported = set(s.scalars(select(m.Event.deployment_id).where(
                m.Event.kind == ROLLBACK, m.Event.deployment_id.in_([r[0] for r in rows])))) if rows else set()
        for dep_id, trigger, target_id, project, env_name, detail in rows:
            if vf.rollback_owed(vf.FAILED, production=True, is_rollback=trigger == "rollback",
                                still_current=target_id == dep_id, reported=dep_id in reported):
                self._spawn(dep_id, work=lambda d=dep_id, p=project, e=env_name, why=detail or "": self._roll_back(
                    p, e, d, why))

    def _spawn(self, dep_id: str, work: Callable[[], object] | None = None) -> None:
        with self._lock:
            if dep_id in self._active:
                return
            self._active.add(dep_id)
        threading.Thread(target=self._run_quietly, args=(dep_id, work), name=f"tests-{dep_id[:8]}", daemon=True).start()

    def _run_quietly(self, dep_id: str, work: Callable[[], object] | None) -> None:
        try:
            work() if work is not None else self.run(dep_id)
        except Exception:  # a bug here must not lose the thread silently; the result stays RUNNING: retried later
            log.exception("post-deploy tests of %s crashed", dep_id)
        finally:
            with self._lock:
                self._active.discard(dep_id)

    # --- one deployment -----------------------------------------------------------------------------

    def run(self, dep_id: str) -> str | None:
        """Run the deployment's tests if it still serves and declares some; record and act. The result, or None."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:
                return None
            if dep.tests_status in (vf.PASSED, vf.FAILED, vf.SKIPPED):
                return dep.tests_status  # decided already (a housekeeping pass that read it before it was)
            env = s.get(m.Environment, dep.environment_id)
            p = s.get(m.Project, dep.project_id)
            replaced = dep.status != m.SUCCESS or env.current_deployment_id != dep.id
            project, env_name, env_id, sha = p.name, env.name, env.id, dep.commit_sha
            railway, own = prefixed(release_facts(p.name, env.name, dep.id, dep.commit_sha, dep.branch))
            release_dir, url = Path(dep.release_dir or ""), self.routes.url(p, env)
        if replaced:
            self._skip(dep_id, "replaced before its tests ran")
            return vf.SKIPPED
        tests = _tests_of(str(release_dir), env_name)
        if tests is None:
            self._skip(dep_id, "no tests declared")
            return vf.SKIPPED
        placement = Placement(project=project, environment=env_name, service="check")
        try:
            web = load_project(release_dir).environment(env_name).web
            root = web.root_dir
            placement = Placement(project=project, environment=env_name, service="check", memory_mb=web.memory_mb,
                                  cpu=web.cpu)  # within the web service's limits (issue 17)
        except BranchyardError:
            web, root = None, "."
        if web is not None and web.cron_schedule:
            self._skip(dep_id, f"a cron service (\"{web.cron_schedule}\"): nothing serves {url} to test")
            return vf.SKIPPED
        mask = self.data.redactor(env_id)
        what = " && ".join(tests.commands)
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            dep.tests_status, dep.tests_detail, dep.tests_at = vf.RUNNING, None, m.utcnow()
            self.store.record(s, project, STARTED, mask(f"post-deploy tests of {sha[:12]} started: {what} against {url}"),
                              environment=env_name, deployment_id=dep_id, actor=VERIFIER)
        failpoints.hit("tests.running")
        results: list[vf.CommandResult] = []
        for command in tests.commands:
            smoke = run_smoke_command(self.runtime, command, url=url, environment=env_name, release_dir=release_dir,
                                      cfg_root=root, timeout=tests.timeout, extra_env=railway | own, placement=placement)
            results.append(vf.CommandResult(command, smoke.passed, mask(smoke.detail)))
            if not smoke.passed:
                break
        verdict = vf.verdict(results)
        return self._record(dep_id, verdict)

    def _record(self, dep_id: str, verdict: vf.Verdict) -> str:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            project = s.get(m.Project, dep.project_id).name
            still_current = env.current_deployment_id == dep.id and env.target_deployment_id == dep.id
            action = vf.decide(production=env.production, passed=verdict.passed, is_rollback=dep.trigger == "rollback",
                               still_current=still_current)
            result = dep.tests_status = vf.PASSED if verdict.passed else vf.FAILED
            dep.tests_detail, dep.tests_at = verdict.detail, m.utcnow()
            env_name, sha = env.name, dep.commit_sha
            if verdict.passed:
                message = f"post-deploy tests of {sha[:12]} passed: {verdict.detail}"
            elif action == vf.ROLLBACK:
                message = f"post-deploy tests of {sha[:12]} failed: {verdict.detail}; production rolls back"
            else:
                message = f"post-deploy tests of {sha[:12]} failed: {verdict.detail}; marked {vf.UNHEALTHY}, keeps serving"
            self.store.record(s, project, PASSED if verdict.passed else FAILED, message, environment=env_name,
                              deployment_id=dep_id, actor=VERIFIER)
        if action == vf.ROLLBACK:
            self._roll_back(project, env_name, dep_id, verdict.detail)
        return result

    def _roll_back(self, project: str, env_name: str, dep_id: str, detail: str) -> None:
        """Deployer.rollback once the deployment's own worker has let go of the environment (it records
        deploy.succeeded before it ends), unless another deployment took over meanwhile."""
        deadline = time.monotonic() + ROLLBACK_WAIT
        while not self.stop.is_set():
            with self.store.session() as s:
                dep = s.get(m.Deployment, dep_id)
                env = s.get(m.Environment, dep.environment_id) if dep is not None else None
                if env is None or env.current_deployment_id != dep_id or env.target_deployment_id != dep_id:
                    return  # a newer deployment is what the environment runs (or will): nothing to undo
            try:
                rollback_id = self.rollback(project, env_name)
            except Conflict:
                if time.monotonic() > deadline:
                    why = "the environment stayed busy"
                    break
                self.stop.wait(0.2)
                continue
            except NotFound as err:
                why = str(err)
                break
            with self.store.session() as s:
                self.store.record(s, project, ROLLBACK, f"{env_name} rolls back (deployment {rollback_id[:8]}): post-deploy "
                                  f"tests of deployment {dep_id[:8]} failed: {detail}", environment=env_name,
                                  deployment_id=dep_id, actor=VERIFIER)
            return
        else:
            return
        with self.store.session() as s:
            self.store.record(s, project, ROLLBACK, f"{env_name} cannot roll back after failed post-deploy tests of "
                              f"deployment {dep_id[:8]}: {why}; it keeps serving, marked {vf.UNHEALTHY}",
                              environment=env_name, deployment_id=dep_id, actor=VERIFIER)

    def _skip(self, dep_id: str, why: str) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is not None and dep.tests_status in (None, vf.RUNNING):
                dep.tests_status, dep.tests_detail, dep.tests_at = vf.SKIPPED, why, m.utcnow()


def _tests_of(release_dir: str | None, env_name: str) -> TestsSpec | None:
    """The tests the deployment's own release declares for the environment (None: none, or unreadable)."""
    if not release_dir or not Path(release_dir).is_dir():
        return None
    try:
        return load_project(Path(release_dir)).tests_for(env_name)
    except BranchyardError:
        return None
