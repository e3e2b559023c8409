"""Post-deploy tests with a real Store and release files, the runtime stubbed (it records each check it is asked
to run): a result a crash left RUNNING runs again while its deployment serves and becomes `skipped` once replaced;
production rolls back on a failure, staging does not; details are masked; each step is an event."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import wait_for
from sqlalchemy import select

from branchyard import verification as vf
from branchyard.controller.verify import PostDeployTests
from branchyard.store import models as m
from branchyard.store.db import Store

TOML = """
[project]
name = "app"

[environments.production]
branch = "main"

[environments.production.tests]
commands = ["./check"]
timeout = 30

[environments.staging]
branch = "develop"

[environments.staging.tests]
commands = ["./check", "./more"]
"""


class Runtime:
    def __init__(self, answers: dict[str, tuple[int | None, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.placements: list = []

    def run_check(self, argv, *, cwd, env, timeout, placement=None):
        self.calls.append((argv, env))
        self.placements.append(placement)
        command = argv[-1].split(" --environment ")[0]
        return self.answers.get(command, (0, "ok"))


class Routes:
    def url(self, p, env):
        return f"http://{p.name}-{env.name}.localhost:8080"


class Data:
    def redactor(self, env_id):
        return lambda text: text.replace("hunter2", "********")


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    try:
        yield s
    finally:
        s.close()


def deploy(store: Store, tmp_path: Path, env_name: str, *, tests: str | None, current: bool = True,
           trigger: str = "push") -> str:
    """A SUCCESS deployment of `env_name` whose release declares TOML's tests, left with `tests` as its result."""
    release = tmp_path / f"release-{env_name}-{trigger}"
    release.mkdir()
    (release / "branchyard.toml").write_text(TOML)
    with store.session() as s:
        p = s.scalar(select(m.Project).where(m.Project.name == "app"))
        if p is None:
            p = m.Project(name="app", repo_path=str(tmp_path / "app.git"))
            s.add(p)
            s.flush()
        env = s.scalar(select(m.Environment).where(m.Environment.name == env_name))
        if env is None:
            env = m.Environment(project_id=p.id, name=env_name, production=env_name == "production")
            s.add(env)
            s.flush()
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha="c" * 40, branch="main", trigger=trigger,
                           status=m.SUCCESS, release_dir=str(release), tests_status=tests)
        s.add(dep)
        s.flush()
        if current:
            env.current_deployment_id = env.target_deployment_id = dep.id
        return dep.id


def result(store: Store, dep_id: str, done=(vf.PASSED, vf.FAILED, vf.SKIPPED)):
    with store.session() as s:
        dep = s.get(m.Deployment, dep_id)
        return (dep.tests_status, dep.tests_detail) if dep.tests_status in done else None


def kinds(store: Store) -> list[str]:
    with store.session() as s:
        return [e.kind for e in s.scalars(select(m.Event).order_by(m.Event.id))]


def verifier(store: Store, runtime: Runtime, rollbacks: list) -> PostDeployTests:
    def rollback(project: str, env: str) -> str:
        rollbacks.append((project, env))
        return "r" * 32

    return PostDeployTests(store, runtime=runtime, routes=Routes(), data=Data(), rollback=rollback, stop=threading.Event())


def test_a_result_left_running_by_a_crash_runs_again_while_its_deployment_serves(store, tmp_path):
    runtime, rollbacks = Runtime({}), []
    dep = deploy(store, tmp_path, "production", tests=vf.RUNNING)
    verifier(store, runtime, rollbacks).converge_all()
    status, detail = wait_for(lambda: result(store, dep), timeout=30)
    assert status == vf.PASSED and detail.startswith("`./check` against http://app-production.localhost:8080 passed in ")
    ((argv, env),) = runtime.calls
    assert argv == ["/bin/sh", "-c", "./check --environment production"]
    assert env["BRANCHYARD_TARGET_URL"] == "http://app-production.localhost:8080"
    assert env["RAILWAY_GIT_COMMIT_SHA"] == env["BRANCHYARD_GIT_COMMIT_SHA"] == "c" * 40
    assert env["BRANCHYARD_DEPLOYMENT_ID"] == env["RAILWAY_DEPLOYMENT_ID"] == dep
    assert kinds(store) == ["deploy.tests_started", "deploy.tests_passed"] and rollbacks == []
    (placement,) = runtime.placements  # issue 17: within the environment's limits, in a `check` group
    assert (placement.project, placement.environment, placement.service) == ("app", "production", "check")


def test_a_result_left_running_for_a_replaced_deployment_is_skipped_not_run(store, tmp_path):
    runtime, rollbacks = Runtime({}), []
    old = deploy(store, tmp_path, "production", tests=vf.RUNNING, current=False)
    verifier(store, runtime, rollbacks).converge_all()  # settled in the pass itself: nothing runs on a thread
    assert result(store, old) == (vf.SKIPPED, "replaced before its tests finished")
    assert runtime.calls == [] and kinds(store) == []


def test_production_rolls_back_on_a_failure_and_the_detail_is_masked(store, tmp_path):
    runtime, rollbacks = Runtime({"./check": (1, "checking\nlogin with hunter2 refused\n")}), []
    dep = deploy(store, tmp_path, "production", tests=None)
    assert verifier(store, runtime, rollbacks).run(dep) == vf.FAILED
    assert result(store, dep) == (vf.FAILED, "`./check` against http://app-production.localhost:8080 exited with code 1: "
                                             "login with ******** refused")
    assert rollbacks == [("app", "production")]
    assert kinds(store) == ["deploy.tests_started", "deploy.tests_failed", "deploy.tests_rollback"]
    with store.session() as s:
        messages = [e.message for e in s.scalars(select(m.Event))]
    assert "hunter2" not in str(messages)
    assert messages[1].endswith("; production rolls back")


def test_a_failing_rollback_is_not_rolled_back_again(store, tmp_path):
    runtime, rollbacks = Runtime({"./check": (None, "")}), []
    dep = deploy(store, tmp_path, "production", tests=None, trigger="rollback")
    assert verifier(store, runtime, rollbacks).run(dep) == vf.FAILED
    assert result(store, dep) == (vf.FAILED, "`./check` against http://app-production.localhost:8080 timed out after 30s (killed)")
    assert rollbacks == [] and kinds(store) == ["deploy.tests_started", "deploy.tests_failed"]


def test_staging_is_marked_unhealthy_and_stops_at_the_first_failing_command(store, tmp_path):
    runtime, rollbacks = Runtime({"./check": (2, "boom")}), []
    dep = deploy(store, tmp_path, "staging", tests=None)
    assert verifier(store, runtime, rollbacks).run(dep) == vf.FAILED
    assert [argv[-1] for argv, _ in runtime.calls] == ["./check --environment staging"]  # ./more never ran
    assert rollbacks == []
    with store.session() as s:
        (failed,) = s.scalars(select(m.Event).where(m.Event.kind == "deploy.tests_failed"))
        assert failed.message.endswith("; marked UNHEALTHY, keeps serving")
        assert failed.actor == "post-deploy verification"


def test_a_deployment_that_declares_no_tests_is_skipped(store, tmp_path):
    runtime, rollbacks = Runtime({}), []
    dep = deploy(store, tmp_path, "preview-less", tests=None)
    assert verifier(store, runtime, rollbacks).run(dep) == vf.SKIPPED
    assert result(store, dep) == (vf.SKIPPED, "no tests declared") and runtime.calls == []


def test_a_rollback_a_crash_cut_off_is_made_at_the_next_start_once(store, tmp_path):
    runtime, rollbacks = Runtime({}), []
    dep = deploy(store, tmp_path, "production", tests=vf.FAILED)  # recorded FAILED, then the control plane died
    tests = verifier(store, runtime, rollbacks)
    tests.converge_all()
    wait_for(lambda: "deploy.tests_rollback" in kinds(store), timeout=30)
    assert rollbacks == [("app", "production")] and runtime.calls == []
    with store.session() as s:  # the rollback stub changed nothing: production still runs `dep`
        assert s.scalar(select(m.Environment.current_deployment_id).where(m.Environment.name == "production")) == dep
    tests.converge_all()  # reported once: not again
    wait_for(lambda: not tests._active, timeout=30)
    assert rollbacks == [("app", "production")]
