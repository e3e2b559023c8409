"""The cron scheduler with a real Store, real processes (the local runtime and task ledger) and an injected clock that
jumps from slot to slot: each slot's run is a real process with the deployment's variables; a run still going when
the next slot is due makes that slot skipped; exit codes are recorded, a failing command is failed; runs a dead
control plane left RUNNING are failed at the next start; the log is where the shipper reads it (service "cron")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import wait_for
from sqlalchemy import select

from branchyard import logrecords as lr
from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords
from branchyard.build import release
from branchyard.controller.cron import RESTARTED, Cron
from branchyard.controller.replicas import Replicas
from branchyard.cron_plan import StartRun
from branchyard.secrets import SecretBox
from branchyard.settings import load
from branchyard.spec.model import EnvironmentConfig, WebConfig
from branchyard.store import models as m
from branchyard.store.db import Store

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
SCRIPT = """
import os, sys, time
mode = open("mode").read().strip() if os.path.exists("mode") else "ok"
print("run", os.environ["GREETING"], os.environ["RAILWAY_ENVIRONMENT_NAME"], flush=True)
if mode == "slow":
    open("started", "w").write(str(os.getpid()))
    while not os.path.exists("release-me"):
        time.sleep(0.05)
if mode == "fail":
    print("boom", file=sys.stderr, flush=True)
    sys.exit(3)
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Data:
    def redactor(self, env_id):
        return lambda text: text.replace("s3cret", "********")


@pytest.fixture()
def world(tmp_path):
    settings = load({"BRANCHYARD_HOME": str(tmp_path / "home")})
    store = Store(tmp_path / "state.db")
    box = SecretBox(tmp_path / "secret.key")
    tasks = TaskRecords(tmp_path / "tasks")
    runtime = LocalRuntime(tasks)
    replicas = Replicas(settings, store, box, runtime)
    clock = Clock(T0 + 30)
    cron = Cron(settings, store, runtime=runtime, tasks=tasks, replicas=replicas, host_of=lambda p, e: f"{p}-{e}.localhost",
                redactor=Data().redactor, clock=clock)
    src = tmp_path / "release"
    src.mkdir()
    (src / "job.py").write_text(SCRIPT)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    release.mark_release_complete(src, {"venv": str(venv)})
    web = WebConfig(start_command="python job.py", cron_schedule="* * * * *")
    cfg = EnvironmentConfig(name="production", production=True, ephemeral=False, branch="main", base=None, web=web,
                            postgres=None, redis=None, variables={}, sources={})
    with store.session() as s:
        p = m.Project(name="app", repo_path=str(tmp_path / "app.git"))
        s.add(p)
        s.flush()
        env = m.Environment(project_id=p.id, name="production", production=True)
        s.add(env)
        s.flush()
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha="c" * 40, branch="main", trigger="push",
                           status=m.SUCCESS, release_dir=str(src), config_json=json.dumps(cfg.to_dict()),
                           variables_json=box.encrypt(json.dumps({"GREETING": "hello s3cret"})))
        dep.created_at = dep.finished_at = m.dt.datetime(2026, 1, 1, 0, 0, 0)
        s.add(dep)
        s.flush()
        env.current_deployment_id = env.target_deployment_id = dep.id
    try:
        yield cron, clock, store, src, tasks
    finally:
        (src / "release-me").touch()
        cron.stop_all(grace=1)
        cron.wait_idle(30)
        store.close()


def runs(store):
    with store.session() as s:
        return [(r.scheduled_for - T0, r.status, r.exit_code, r.detail)
                for r in s.scalars(select(m.CronRun).order_by(m.CronRun.scheduled_for))]


def test_runs_on_schedule_skips_overlap_and_records_exit_codes(world):
    cron, clock, store, src, tasks = world
    assert cron.tick() == [("app", "production", StartRun(T0))]  # 00:00:30: the 00:00 slot (when it went live) runs
    assert runs(store) == [(0.0, "running", None, None)]
    assert cron.wait_idle(30)
    assert runs(store) == [(0.0, "succeeded", 0, None)]
    assert cron.tick() == []  # same minute: nothing new

    (src / "mode").write_text("slow")
    clock.now = T0 + 60
    cron.tick()
    wait_for(lambda: (src / "started").exists(), timeout=30)
    slow_pid = int((src / "started").read_text())
    assert list(tasks.directory.glob("*.json")), "a running run is in the task ledger"
    clock.now = T0 + 120  # the next slot while the 00:01 run still goes: skipped, recorded
    cron.tick()
    assert runs(store)[1:] == [(60.0, "running", None, None), (120.0, "skipped", None, "the previous run is still running")]
    (src / "release-me").touch()
    assert cron.wait_idle(30)
    assert processes_of(slow_pid) == []

    (src / "mode").write_text("fail")
    (src / "release-me").unlink()
    clock.now = T0 + 180
    cron.tick()
    assert cron.wait_idle(30)
    assert runs(store)[-1] == (180.0, "failed", 3, "exited with code 3")
    assert not list(tasks.directory.glob("*.json")), "finished runs leave the ledger"

    listed = cron.runs("app", "production")
    assert [(r["scheduled_for"], r["status"], r["exit_code"]) for r in listed] == [
        ("2026-01-01T00:03:00Z", "failed", 3), ("2026-01-01T00:02:00Z", "skipped", None),
        ("2026-01-01T00:01:00Z", "succeeded", 0), ("2026-01-01T00:00:00Z", "succeeded", 0)]
    assert listed[0]["log_lines"] == 2 and listed[0]["log_tail"] == ["run hello ******** production", "boom"]
    with store.session() as s:
        kinds = [e.kind for e in s.scalars(select(m.Event).order_by(m.Event.id))]
    assert kinds.count("cron.started") == 3 and kinds.count("cron.skipped") == 1 and kinds.count("cron.failed") == 1


def processes_of(pid: int) -> list[int]:
    return [pid] if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z" else []


def test_the_log_is_read_by_the_shipper_as_service_cron(world):
    cron, clock, store, src, _ = world
    cron.tick()
    assert cron.wait_idle(30)
    with store.session() as s:
        run = s.scalar(select(m.CronRun))
    path = Path(run.log_path)
    assert path.name == f"cron.{run.id}.log" and path.read_text() == "run hello s3cret production\n"
    source = lr.raw_source(path.name, environment="production", deployment=run.deployment_id)
    assert (source.service, source.replica, source.stream) == ("cron", run.id, "stdout")


def test_a_run_left_running_by_a_dead_control_plane_is_failed_at_start(world):
    cron, clock, store, src, tasks = world
    (src / "mode").write_text("slow")
    cron.tick()
    wait_for(lambda: (src / "started").exists(), timeout=30)
    # a new control plane: the ledger kills what the dead one left, then the scheduler fails its row
    with store.session() as s:
        run = s.scalar(select(m.CronRun))
        pid = run.pid
    cron._finish = lambda *args, **kwargs: None  # the dead control plane's threads record nothing more
    killed = TaskRecords(tasks.directory).kill_leftovers()
    assert killed and f"(pid {pid})" in killed[0]
    fresh = Cron(cron.settings, store, runtime=cron.runtime, tasks=tasks, replicas=cron.replicas,
                 host_of=cron.host_of, redactor=cron.redactor, clock=clock)
    assert fresh.recover() == [run.id]
    assert runs(store) == [(0.0, "failed", None, RESTARTED)]
    clock.now = T0 + 60
    (src / "mode").write_text("ok")
    fresh.tick()  # and the schedule goes on
    assert fresh.wait_idle(30)
    assert runs(store)[-1] == (60.0, "succeeded", 0, None)
    cron.wait_idle(30)
    assert runs(store)[0] == (0.0, "failed", None, RESTARTED)


def test_housekeeping_removes_old_raw_logs_then_old_rows(world):
    cron, clock, store, src, _ = world
    cron.tick()
    assert cron.wait_idle(30)
    with store.session() as s:
        path = Path(s.scalar(select(m.CronRun)).log_path)
    assert path.exists() and cron.prune() == (0, 0)
    clock.now += 86400 + 60
    assert cron.prune() == (2, 0) and not path.exists()  # stdout and stderr files
    (listed,) = cron.runs("app", "production")
    assert (listed["log_lines"], listed["log_tail"]) == (1, ["run hello ******** production"])  # kept when it ended
    clock.now += 30 * 86400
    assert cron.prune() == (0, 1) and cron.runs("app", "production") == []


def test_a_run_the_ledger_cannot_record_is_stopped_and_failed(world, tmp_path):
    cron, clock, store, src, _ = world
    (tmp_path / "not-a-dir").write_text("")
    cron.tasks = TaskRecords(tmp_path / "not-a-dir" / "tasks")  # its records cannot be written
    (src / "mode").write_text("slow")
    cron.tick()
    assert cron.wait_idle(30)
    ((slot, status, code, detail),) = runs(store)
    assert (slot, status, code) == (0.0, "failed", None) and detail.startswith("stopped: cannot record task ")
    with store.session() as s:
        pid = s.scalar(select(m.CronRun)).pid
    assert processes_of(pid) == []


def test_a_sleeping_environment_runs_nothing(world):
    cron, clock, store, src, _ = world
    with store.session() as s:
        s.scalar(select(m.Environment)).state = m.ENV_SLEEPING
    assert cron.tick() == [] and runs(store) == []



def _slow_run(cron, src) -> int:
    (src / "mode").write_text("slow")
    cron.tick()
    wait_for(lambda: (src / "started").exists(), timeout=30)
    return int((src / "started").read_text())


def test_a_run_of_an_environment_put_down_is_stopped_by_the_next_pass(world):
    cron, clock, store, src, _ = world
    pid = _slow_run(cron, src)
    with store.session() as s:
        s.scalar(select(m.Environment)).state = m.ENV_SLEEPING  # `down`
    assert cron.tick() == []
    assert cron.wait_idle(30) and processes_of(pid) == []
    ((slot, status, code, detail),) = runs(store)
    assert (status, detail) == ("failed", "stopped: the environment is down") and code is not None and code < 0


def test_a_run_of_an_environment_deployed_without_a_schedule_is_stopped(world):
    cron, clock, store, src, _ = world
    pid = _slow_run(cron, src)
    with store.session() as s:
        dep = s.scalar(select(m.Deployment))
        config = json.loads(dep.config_json)
        config["web"]["cron_schedule"] = None  # its next deployment serves a web process
        dep.config_json = json.dumps(config)
    cron.tick()
    assert cron.wait_idle(30) and processes_of(pid) == []
    ((slot, status, code, detail),) = runs(store)
    assert (status, detail) == ("failed", "stopped: the environment's current deployment is not a cron service")


def test_stop_runs_stops_an_environments_run_for_its_teardown(world):
    cron, clock, store, src, _ = world
    pid = _slow_run(cron, src)
    with store.session() as s:
        env_id = s.scalar(select(m.Environment)).id
    (run_id,) = cron.stop_runs(env_id, "the environment was deleted", grace=1)
    assert processes_of(pid) == [] and cron.wait_idle(30)
    assert runs(store)[0][1] == "failed" and runs(store)[0][3] == "stopped: the environment was deleted"
    assert cron.stop_runs(env_id, "again") == []  # nothing left running
