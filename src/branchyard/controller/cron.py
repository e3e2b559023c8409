"""Cron services (Railway's `cronSchedule`): an environment whose current deployment has a schedule runs its start
command on that schedule (UTC) instead of serving replicas, one run at a time.

A thread (`run_forever`) asks `cron_plan.plan_cron` (pure) about every cron environment about once a second, from
the store: the newest slot recorded in `cron_runs` and whether a run is still going. A run is recorded (RUNNING)
before its process starts, then started through the `RuntimePort` (`spawn`, placement service "cron": the
environment's limits and network apply where the runtime enforces them) with the deployment's variable snapshot,
and recorded in the `TaskLedger` while it runs, so it never runs unrecorded: a control plane killed under a run
has it killed at the next start (the ledger's leftovers), and `recover` marks a RUNNING row whose process is gone
failed ("the control plane restarted"). A run's stdout/stderr go to `<deployment>/cron.<run>.log` and
`cron.<run>.stderr.log` beside the deployment's replicas' logs: the log shipper reads them as service "cron"
(logrecords' raw file names), so `branchyard logs -e ENV` shows them.

`clock` is injectable (tests advance it fast); it is wall-clock UTC seconds in production.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from .. import cron_plan, names
from ..backends.ports import Placement, RuntimePort, TaskLedger
from ..errors import BranchyardError
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .replicas import Replicas, release_facts
from .snapshot import web_of

log = logging.getLogger("branchyard.cron")

RUNNING, SUCCEEDED, FAILED, SKIPPED = "running", "succeeded", "failed", "skipped"
INTERVAL = 1.0  # seconds between scheduler passes
POLL = 0.2  # seconds between checks of a running run's process
RESTARTED = "the control plane restarted while it ran"
RAW_KEEP = 86400.0  # seconds an ended run's raw log files are kept (its records stay in `logs` for their retention)
ROWS_KEEP = 30 * 86400.0  # seconds a run stays listed by `cron runs`


class Cron:
    """The scheduler of every cron environment and the list of their runs."""

    def __init__(self, settings: Settings, store: Store, *, runtime: RuntimePort, tasks: TaskLedger, replicas: Replicas,
                 host_of: Callable[[str, str], str], redactor: Callable[[int], Callable[[str], str]],
                 clock: Callable[[], float] = time.time, interval: float = INTERVAL) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.tasks = tasks
        self.replicas = replicas  # a deployment's snapshot (release, virtualenv, variables) and the release's env
        self.host_of = host_of
        self.redactor = redactor  # an environment's secrets masker: a run's log tail never shows a secret
        self.clock = clock
        self.interval = interval
        self._watching: dict[int, threading.Thread] = {}  # run id → the thread that waits for its process
        self._lock = threading.Lock()

    # --- the loop ------------------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        self.recover()
        while not stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # keep the scheduler alive; the next pass starts from the store again
                log.exception("cron pass failed")

    def recover(self) -> list[int]:
        """Runs recorded RUNNING that no thread of this process watches (a previous control plane's): stopped if their
        process still runs, then failed with the exit code when known. Returns their ids."""
        with self._lock:
            mine = set(self._watching)
        with self.store.session() as s:
            rows = [(r.id, r.pid, r.start_time, r.log_path) for r in s.scalars(
                select(m.CronRun).where(m.CronRun.status == RUNNING)) if r.id not in mine]
        for run_id, pid, start_time, log_path in rows:
            self._stop_and_finish(run_id, pid, start_time, log_path, RESTARTED, grace=5)
        return [run_id for run_id, *_ in rows]

    def _stop_and_finish(self, run_id: int, pid: int | None, start_time: int | None, log_path: str | None, why: str, *,
                         grace: float) -> None:
        """Stop a run's process if it still runs (by its recorded identity), then record the run failed with `why` and
        the exit code when known."""
        code = None
        h = self.runtime.adopt(pid, start_time, 0, log_path or "") if pid and start_time else None
        if h is not None and self.runtime.is_alive(h):
            self.runtime.stop(h, grace=grace)
            code = self.runtime.exit_code(h)
        self._finish(run_id, code, why)

    def tick(self) -> list[tuple[str, str, cron_plan.CronAction]]:
        """One pass over every cron environment: start or skip what is due, and stop the runs of environments that
        no longer run a cron service (down, asleep, deployed without a schedule). Returns what was started or
        skipped (for tests)."""
        now = self.clock()
        done = []
        wanted = self._cron_environments()
        self._stop_unwanted({env_id for _, _, env_id, *_ in wanted})
        for project, env_name, env_id, dep_id, schedule, since in wanted:
            with self.store.session() as s:
                last = s.scalar(select(func.max(m.CronRun.scheduled_for)).where(m.CronRun.environment_id == env_id))
                running = s.scalar(select(func.count()).select_from(m.CronRun).where(
                    m.CronRun.environment_id == env_id, m.CronRun.status == RUNNING)) > 0
            obs = cron_plan.CronObs(schedule=schedule, since=since, last_slot=last, running=running)
            for action in cron_plan.plan_cron(obs, now):
                if isinstance(action, cron_plan.SkipRun):
                    self._skip(project, env_name, env_id, dep_id, action)
                else:
                    self._start(project, env_name, env_id, dep_id, action.slot)
                done.append((project, env_name, action))
        return done

    def _cron_environments(self) -> list[tuple[str, str, int, str, str, float]]:
        """(project, environment, its id, current deployment, schedule, when it went live) of every ACTIVE environment
        whose current deployment is a cron service."""
        out = []
        with self.store.session() as s:
            rows = s.execute(select(m.Project.name, m.Environment.name, m.Environment.id, m.Deployment.id,
                                    m.Deployment.config_json, m.Deployment.finished_at, m.Deployment.created_at)
                             .join(m.Environment, m.Environment.project_id == m.Project.id)
                             .join(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
                             .where(m.Environment.state == m.ENV_ACTIVE)).all()
        for project, env_name, env_id, dep_id, config_json, finished_at, created_at in rows:
            try:
                web = web_of(config_json)
            except BranchyardError:
                continue
            if web is None or not web.cron_schedule:
                continue
            live = finished_at or created_at
            out.append((project, env_name, env_id, dep_id, web.cron_schedule, _epoch(live)))
        return out

    def _stop_unwanted(self, cron_env_ids: set[int]) -> None:
        with self.store.session() as s:
            envs = {env_id: state for env_id, state in s.execute(
                select(m.Environment.id, m.Environment.state).join(m.CronRun, m.CronRun.environment_id == m.Environment.id)
                .where(m.CronRun.status == RUNNING)).all() if env_id not in cron_env_ids}
        for env_id, state in envs.items():
            self.stop_runs(env_id, "the environment is down" if state != m.ENV_ACTIVE
                           else "the environment's current deployment is not a cron service")

    def stop_runs(self, env_id: int, why: str, *, grace: float = 5.0) -> list[int]:
        """Stop the runs of environment `env_id` still going (it is being deleted, is down, or runs no cron service
        any more); each is recorded failed, "stopped: <why>". Returns their ids."""
        with self.store.session() as s:
            rows = [(r.id, r.pid, r.start_time, r.log_path) for r in s.scalars(
                select(m.CronRun).where(m.CronRun.environment_id == env_id, m.CronRun.status == RUNNING))]
        for run_id, pid, start_time, log_path in rows:  # a run about to start sees it finished and stops itself (_run)
            self._stop_and_finish(run_id, pid, start_time, log_path, f"stopped: {why}", grace=grace)
        return [run_id for run_id, *_ in rows]

    # --- runs ----------------------------------------------------------------------------------------------

    def _skip(self, project: str, env_name: str, env_id: int, dep_id: str, action: cron_plan.SkipRun) -> None:
        with self.store.session() as s:
            s.add(m.CronRun(environment_id=env_id, deployment_id=dep_id, scheduled_for=action.slot, status=SKIPPED,
                            detail=action.reason))
            self.store.record(s, project, "cron.skipped", f"run of {cron_plan.iso(action.slot)} skipped: {action.reason}",
                              environment=env_name, deployment_id=dep_id)
        log.info("%s/%s: cron run of %s skipped: %s", project, env_name, cron_plan.iso(action.slot), action.reason)

    def _start(self, project: str, env_name: str, env_id: int, dep_id: str, slot: float) -> int:
        """Record the run, then start its process on a thread that waits for it (and records it in the ledger)."""
        with self.store.session() as s:
            run = m.CronRun(environment_id=env_id, deployment_id=dep_id, scheduled_for=slot, status=RUNNING,
                            started_at=self.clock())
            s.add(run)
            s.flush()
            run_id = run.id
            log_path = names.safe_join(self.settings.logs_dir, project, env_name, dep_id, f"cron.{run_id}.log")
            run.log_path = str(log_path)
        thread = threading.Thread(target=self._run, args=(project, env_name, dep_id, run_id, slot, log_path),
                                  name=f"cron-{run_id}", daemon=True)
        with self._lock:
            self._watching[run_id] = thread
        thread.start()
        return run_id

    def _run(self, project: str, env_name: str, dep_id: str, run_id: int, slot: float, log_path: Path) -> None:
        try:
            try:
                ctx = self.replicas.context(dep_id, self.host_of(project, env_name))
                env = self.replicas.hook_env(ctx.venv, ctx.variables,
                                             release_facts(project, env_name, dep_id, ctx.sha, ctx.branch))
                placement = Placement(project=project, environment=env_name, service="cron", slot=0,
                                      memory_mb=ctx.memory_mb, cpu=ctx.cpu)
                h = self.runtime.spawn(ctx.start_command, cwd=ctx.src, env=env, log_path=log_path, port=0,
                                       placement=placement)
            except BranchyardError as err:
                self._finish(run_id, None, f"could not start: {err}", project=project, env_name=env_name, dep_id=dep_id)
                return
            with self.store.session() as s:
                run = s.get(m.CronRun, run_id)
                stopped = run is None or run.status != RUNNING  # stop_runs finished it while it was starting
                if not stopped:
                    run.pid, run.start_time = h.pid, h.start_time
                    self.store.record(s, project, "cron.started",
                                      f"run {run_id} of {cron_plan.iso(slot)}: {ctx.start_command} (pid {h.pid})",
                                      environment=env_name, deployment_id=dep_id)
            if stopped:
                self.runtime.stop(h, grace=0)
                return
            with contextlib.ExitStack() as recorded:
                try:
                    recorded.enter_context(self.tasks.running(h.pid, f"cron: {project}/{env_name} run {run_id}"))
                except BranchyardError as err:  # never left running unrecorded
                    self.runtime.stop(h, grace=0)
                    self._finish(run_id, None, f"stopped: {err}", project=project, env_name=env_name, dep_id=dep_id)
                    return
                while self.runtime.is_alive(h):
                    time.sleep(POLL)
            self._finish(run_id, self.runtime.exit_code(h), self.runtime.exit_reason(h), project=project,
                         env_name=env_name, dep_id=dep_id)
        except Exception:
            log.exception("cron run %s", run_id)
            self._finish(run_id, None, "internal error (see the control plane's log)")
        finally:
            with self._lock:
                self._watching.pop(run_id, None)

    def _finish(self, run_id: int, code: int | None, why: str | None, *, project: str | None = None,
                env_name: str | None = None, dep_id: str | None = None) -> None:
        with self.store.session() as s:
            run = s.get(m.CronRun, run_id)
            if run is None or run.status != RUNNING:
                return
            env_id, log_path = run.environment_id, run.log_path
        lines, tail = _log_lines(log_path)  # kept: housekeeping removes the raw files a day later
        redact = self.redactor(env_id)  # before the write below: it reads the environment's secrets
        with self.store.session() as s:
            run = s.get(m.CronRun, run_id)
            if run is None or run.status != RUNNING:
                return
            run.finished_at, run.exit_code = self.clock(), code
            run.log_lines, run.log_tail = lines, json.dumps([redact(line) for line in tail])
            run.status = SUCCEEDED if code == 0 else FAILED
            if run.status == FAILED:
                run.detail = why or (f"exited with code {code}" if code is not None else "exit code unknown")
            if project is None:
                env = s.get(m.Environment, run.environment_id)
                project, env_name = s.get(m.Project, env.project_id).name, env.name
            kind = "cron.succeeded" if run.status == SUCCEEDED else "cron.failed"
            took = f" in {run.finished_at - run.started_at:.1f}s" if run.started_at else ""
            message = f"run {run_id} of {cron_plan.iso(run.scheduled_for)} {run.status}{took}" + (
                f": {run.detail}" if run.status == FAILED else "")
            self.store.record(s, project, kind, message, environment=env_name, deployment_id=dep_id or run.deployment_id)
        log.info("%s/%s: %s", project, env_name, message)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run of this process is going (tests, shutdown); False if some still are after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self._watching.values())
            if not threads:
                return True
            threads[0].join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            return not self._watching

    def prune(self) -> tuple[int, int]:
        """Housekeeping: the raw log files of runs ended more than RAW_KEEP seconds ago (the shipper read them within a
        second; their records stay in `logs`), and rows older than ROWS_KEEP. Returns (files, rows) removed."""
        now = self.clock()
        files = 0
        with self.store.session() as s:
            for r in s.scalars(select(m.CronRun).where(m.CronRun.finished_at < now - RAW_KEEP,
                                                       m.CronRun.log_path.is_not(None))):
                for p in (Path(r.log_path), _stderr(Path(r.log_path))):
                    try:
                        p.unlink()
                        files += 1
                    except FileNotFoundError:
                        pass
                    except OSError:
                        log.warning("cannot remove %s", p)
                r.log_path = None
            rows = s.execute(delete(m.CronRun).where(m.CronRun.scheduled_for < now - ROWS_KEEP,
                                                     m.CronRun.status != RUNNING)).rowcount or 0
        return files, rows

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every run still going (whole-machine stop); their rows are finished by their threads."""
        with self.store.session() as s:
            rows = [(r.pid, r.start_time, r.log_path) for r in s.scalars(
                select(m.CronRun).where(m.CronRun.status == RUNNING)) if r.pid and r.start_time]
        for pid, start_time, log_path in rows:
            h = self.runtime.adopt(pid, start_time, 0, log_path or "")
            if h is not None:
                self.runtime.stop(h, grace=grace)

    # --- what users read -----------------------------------------------------------------------------------

    def runs(self, project: str, env_name: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The environment's runs, newest slot first: slot, status, exit code, duration, log lines and tail."""
        with self.store.session() as s:
            env_id = self.store.environment(s, self.store.project(s, project), env_name).id
        redact = self.redactor(env_id)
        with self.store.session() as s:
            rows = list(s.scalars(select(m.CronRun).where(m.CronRun.environment_id == env_id)
                                  .order_by(m.CronRun.scheduled_for.desc(), m.CronRun.id.desc()).limit(limit)))
            now = self.clock()
            out = []
            for r in rows:
                end = r.finished_at if r.finished_at is not None else (now if r.status == RUNNING else None)
                if r.log_lines is not None:  # ended: what it printed was counted then
                    lines, tail = r.log_lines, json.loads(r.log_tail or "[]")
                else:
                    lines, tail = _log_lines(r.log_path)
                out.append({
                    "id": r.id, "deployment_id": r.deployment_id, "scheduled_for": cron_plan.iso(r.scheduled_for),
                    "status": r.status, "exit_code": r.exit_code, "detail": r.detail,
                    "started_at": cron_plan.iso(r.started_at) if r.started_at is not None else None,
                    "duration_s": round(end - r.started_at, 3) if end is not None and r.started_at is not None else None,
                    "log_lines": lines, "log_tail": [redact(line) for line in tail],
                })
            return out

    def status(self, config_json: str | None) -> dict[str, Any] | None:
        """`status`'s cron line for a deployment's snapshot: its schedule and next run; None for a web service."""
        web = web_of(config_json) if config_json else None
        if web is None or not web.cron_schedule:
            return None
        return {"schedule": web.cron_schedule,
                "next_run_at": cron_plan.iso(cron_plan.next_slot(web.cron_schedule, self.clock()))}


def scaled_clock(speed: float, *, wall: Callable[[], float] = time.time) -> Callable[[], float]:
    """The scheduler's clock: the wall clock, or (BRANCHYARD_TEST_CRON_CLOCK_SPEED, tests only) one running `speed`
    times faster from now on, so a test sees per-minute slots every second without waiting a real minute."""
    if speed == 1.0:
        return wall
    start = wall()
    return lambda: start + (wall() - start) * speed


def _epoch(naive_utc: Any) -> float:
    import datetime as dt

    return naive_utc.replace(tzinfo=dt.timezone.utc).timestamp()


def _stderr(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".log") + ".stderr.log")


def _log_lines(path: str | None, tail: int = 3) -> tuple[int, list[str]]:
    """How many lines a run printed (stdout and stderr) and its last lines (stderr's after stdout's)."""
    if not path:
        return 0, []
    count, last = 0, []
    for p in (Path(path), _stderr(Path(path))):
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        lines = text.splitlines()
        count += len(lines)
        last += lines[-tail:]
    return count, last[-tail:]


__all__ = ["Cron", "FAILED", "RUNNING", "SKIPPED", "SUCCEEDED"]
