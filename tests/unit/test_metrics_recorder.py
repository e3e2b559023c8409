"""controller/metrics.py over a real store (SQLite, migrated) with a clock the test turns and a stand-in runtime:
the HTTP sink's windows and totals, the sampler's points, `current` (absent after a minute), the series the API
serves, the Prometheus text (parsed with prometheus_client's own parser), and storage that stays bounded."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from branchyard import metrics as mx
from branchyard import monitoring as mon
from branchyard.backends.ports import ProcessHandle, ResourceUsage
from branchyard.controller.metrics import Metrics, Point
from branchyard.store import models as m
from branchyard.store.db import Store

T0 = 1_800_000_000.0  # a multiple of 3600: windows, minutes and hours start here


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Runtime:
    """Replicas that are alive and use what the test says (cumulative CPU seconds, RSS)."""

    def __init__(self) -> None:
        self.use: dict[int, ResourceUsage] = {}

    def adopt(self, pid: int, start_time: int, port: int, log_path: str) -> ProcessHandle | None:
        return ProcessHandle(pid, start_time, port, log_path) if pid in self.use else None

    def is_alive(self, h: ProcessHandle) -> bool:
        return h.pid in self.use

    def usage(self, h: ProcessHandle) -> ResourceUsage | None:
        return self.use.get(h.pid)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def entry(ts: float, status: int = 200, duration: float = 0.01, bytes_in: int = 0, bytes_out: int = 100) -> mon.HttpEntry:
    return mon.HttpEntry(ts=ts, method="GET", host="yoto.localhost", path="/", status=status, duration_s=duration,
                         bytes_in=bytes_in, bytes_out=bytes_out)


def add_environment(store: Store, name: str, *, replicas: list[tuple[int, int]], memory_mb: int | None = None,
                    storage_mb: int | None = None, desired: int = 1, workers: list[tuple[int, int]] = ()) -> int:
    """A project `yoto` (made once) with environment `name` running a deployment with replicas (slot, pid)."""
    config = {"web": {"replicas": desired, "memory_mb": memory_mb},
              "postgres": {"name": "Postgres", "storage_mb": storage_mb} if storage_mb else None}
    with store.session() as s:
        p = s.scalar(select(m.Project).where(m.Project.name == "yoto"))
        if p is None:
            p = m.Project(name="yoto", repo_path="/nowhere")
            s.add(p)
            s.flush()
        env = m.Environment(project_id=p.id, name=name)
        s.add(env)
        s.flush()
        d = m.Deployment(project_id=p.id, environment_id=env.id, status=m.SUCCESS, commit_sha="abc", trigger="push",
                         config_json=json.dumps(config))
        s.add(d)
        s.flush()
        env.current_deployment_id = d.id
        for slot, pid in replicas:
            s.add(m.Replica(deployment_id=d.id, environment_id=env.id, slot=slot, pid=pid, start_time=1, port=9000 + slot,
                            log_path="/dev/null", state=m.REPLICA_RUNNING, restarts=slot, health_checked_at=1.0))
        for slot, pid in workers:  # Procfile `worker:` replicas: no port, no health check
            s.add(m.Replica(deployment_id=d.id, environment_id=env.id, slot=slot, pid=pid, start_time=1, port=0,
                            log_path="/dev/null", state=m.REPLICA_RUNNING, restarts=4, service="worker"))
        return env.id


def test_http_windows_totals_and_current(store):
    clock = Clock(T0 + 25)
    add_environment(store, "production", replicas=[])
    metrics = Metrics(store, Runtime(), service_variables=lambda env_id: {}, clock=clock)
    # window T0: 10 requests, durations 10..100 ms, two 500s and one 404; window T0+10: 4 requests, all 200
    for i in range(10):
        status = 500 if i in (3, 7) else 404 if i == 5 else 200
        metrics.observe_http("yoto", "production", entry(T0 + i * 0.9, status, (i + 1) / 100, 10, 1000))
    for i in range(4):
        metrics.observe_http("yoto", "production", entry(T0 + 10 + i, 200, 0.002, 0, 500))
    metrics.tick(clock.now, wait=True)  # at T0+25 both windows are closed (the second ended 5 s ago, LATE is 2 s)
    current = metrics.current("yoto", "production")
    assert current[mon.HTTP_REQUESTS_PER_SECOND] == 0.4  # the latest window: 4 requests in 10 s
    assert current[mon.HTTP_5XX_RATE] == 0.0
    assert current[mon.HTTP_LATENCY_P99_MS] == 2.0
    first = metrics.series("yoto", "production", 3600)
    by_name = {s["name"]: s["points"] for s in first["series"]}
    assert by_name[mon.HTTP_REQUESTS_PER_SECOND] == [[T0, 1.0], [T0 + 10, 0.4]]
    assert by_name[mon.HTTP_5XX_RATE] == [[T0, 0.2], [T0 + 10, 0.0]]
    assert by_name[mon.HTTP_4XX_RATE] == [[T0, 0.1], [T0 + 10, 0.0]]
    assert by_name[mon.HTTP_LATENCY_P50_MS] == [[T0, 50.0], [T0 + 10, 2.0]]
    assert by_name[mon.HTTP_LATENCY_P95_MS] == [[T0, 100.0], [T0 + 10, 2.0]]
    assert by_name[mon.HTTP_BYTES_OUT_PER_SECOND] == [[T0, 1000.0], [T0 + 10, 200.0]]
    assert by_name[mon.HTTP_BYTES_IN_PER_SECOND] == [[T0, 10.0], [T0 + 10, 0.0]]
    totals = metrics.http.totals()[("yoto", "production")]
    assert (totals.requests, totals.by_class, totals.bytes_in, totals.bytes_out) == (14, {"2xx": 11, "4xx": 1, "5xx": 2},
                                                                                     100, 12000)
    # a quiet window: zeros, no latency; a minute later with no sample, every series is absent (no data is not 0)
    clock.now = T0 + 35
    metrics.tick(clock.now, wait=True)
    current = metrics.current("yoto", "production")
    assert current[mon.HTTP_REQUESTS_PER_SECOND] == 0.0 and current[mon.HTTP_LATENCY_P99_MS] == 2.0  # p99: still fresh
    metrics.observe_http("yoto", "gone", entry(T0 + 21))  # an environment the store does not have (deleted)
    clock.now = T0 + 45
    metrics.tick(clock.now, wait=True)
    assert metrics.current("yoto", "gone")[mon.HTTP_REQUESTS_PER_SECOND] == 0.1  # its last traffic is summarised…
    clock.now = T0 + 55
    metrics.tick(clock.now, wait=True)
    assert [p for p in metrics.series("yoto", "production", 600)["series"] if p["name"] == mon.HTTP_REQUESTS_PER_SECOND][0][
        "points"][-1] == [T0 + 40, 0.0]  # …production, still there, gets its quiet window's zeros…
    assert metrics.http.drain(T0 + 100, set()) == []  # …and nothing running: no zeros for anyone
    clock.now = T0 + 20 + mx.WINDOW + 61
    assert mon.HTTP_LATENCY_P99_MS not in metrics.current("yoto", "production")
    clock.now = T0 + 200
    assert metrics.current("yoto", "production") == {}


def test_observe_is_thread_safe(store):
    metrics = Metrics(store, Runtime(), service_variables=lambda env_id: {}, clock=Clock())
    threads = [threading.Thread(target=lambda k=k: [metrics.observe_http("yoto", "production",
                                                                         entry(T0 + i % 30, 500 if k == 0 else 200))
                                                    for i in range(2000)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = metrics.http.totals()[("yoto", "production")]
    assert totals.requests == 16000 and totals.by_class == {"5xx": 2000, "2xx": 14000}
    points = metrics.http.drain(T0 + 100)
    rps = sum(p.value for p in points if p.name == mon.HTTP_REQUESTS_PER_SECOND) * mx.WINDOW
    assert rps == pytest.approx(16000)  # every request in exactly one window


def test_observe_never_raises():
    from branchyard.controller.metrics import HttpRecorder

    recorder = HttpRecorder()
    recorder.observe("yoto", "production", None)  # type: ignore[arg-type]  # a shipper's bug must not kill it
    assert recorder.totals() == {}


def test_sampler_replicas_derived_series_and_prometheus(store):
    clock = Clock(T0)
    runtime = Runtime()
    add_environment(store, "production", replicas=[(0, 101), (1, 102)], memory_mb=100, desired=3)
    runtime.use = {101: ResourceUsage(10.0, 40 * 1024 * 1024, 2), 102: ResourceUsage(1.0, 60 * 1024 * 1024, 1)}
    metrics = Metrics(store, runtime, service_variables=lambda env_id: {}, clock=clock)
    metrics.tick(clock.now, wait=True)
    first = metrics.current("yoto", "production")
    assert mon.REPLICA_CPU_PERCENT not in first  # one reading: no rate yet
    clock.now = T0 + 10
    runtime.use = {101: ResourceUsage(15.0, 40 * 1024 * 1024, 2), 102: ResourceUsage(1.5, 60 * 1024 * 1024, 1)}
    metrics.tick(clock.now, wait=True)
    assert metrics.current("yoto", "production") == {
        mon.REPLICA_CPU_PERCENT: 50.0,  # the highest replica's
        mon.REPLICA_MEMORY_BYTES: 60 * 1024 * 1024,
        mon.REPLICA_RESTARTS: 1,
        mon.REPLICAS_HEALTHY: 2,
        mon.REPLICAS_DESIRED: 3,
        mon.MEMORY_PERCENT_OF_LIMIT: 60.0,
    }
    metrics.observe_http("yoto", "production", entry(T0 + 1, 500))
    metrics.observe_http("yoto", "production", entry(T0 + 2, 200))
    text = metrics.prometheus().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    cpu = {(s.labels["replica"], s.value) for s in families["branchyard_replica_cpu_percent"].samples}
    assert cpu == {("production.web.0", 50.0), ("production.web.1", 5.0)}
    assert all(s.labels["project"] == "yoto" and s.labels["service"] == "web"
               for s in families["branchyard_replica_memory_bytes"].samples)
    requests = families["branchyard_http_requests"]
    assert requests.type == "counter"
    assert {(s.name, s.labels["status_class"], s.value) for s in requests.samples} == {
        ("branchyard_http_requests_total", "5xx", 1.0), ("branchyard_http_requests_total", "2xx", 1.0)}
    assert families["branchyard_replicas_desired"].samples[0].value == 3


def test_procfile_workers_are_sampled_under_their_service_and_count_against_the_memory_limit(store):
    clock = Clock(T0)
    runtime = Runtime()
    add_environment(store, "production", replicas=[(0, 101)], workers=[(0, 201)], memory_mb=100)
    runtime.use = {101: ResourceUsage(1.0, 20 * 1024 * 1024, 1), 201: ResourceUsage(2.0, 90 * 1024 * 1024, 1)}
    metrics = Metrics(store, runtime, service_variables=lambda env_id: {}, clock=clock)
    metrics.tick(clock.now, wait=True)
    current = metrics.current("yoto", "production")
    assert current[mon.REPLICAS_HEALTHY] == 1  # web replicas serve; a worker is not one of them
    assert current[mon.MEMORY_PERCENT_OF_LIMIT] == 90.0 and current[mon.REPLICA_RESTARTS] == 4  # the worker's
    families = {f.name: f for f in text_string_to_metric_families(metrics.prometheus().decode())}
    memory = {(s.labels["service"], s.labels["replica"], s.value) for s in families["branchyard_replica_memory_bytes"].samples}
    assert memory == {("web", "production.web.0", 20 * 1024 * 1024), ("worker", "production.worker.0", 90 * 1024 * 1024)}


def test_a_slow_environment_holds_up_no_other(store):
    """The sampler runs each environment in its own job: one whose data service hangs does not delay the others."""
    clock = Clock(T0)
    runtime = Runtime()
    slow = add_environment(store, "slow", replicas=[(0, 201)])
    add_environment(store, "quick", replicas=[(0, 202)])
    runtime.use = {201: ResourceUsage(1, 1, 1), 202: ResourceUsage(1, 1, 1)}
    release = threading.Event()

    def service_variables(env_id: int) -> dict:
        if env_id == slow:
            release.wait(30)
        return {}

    metrics = Metrics(store, runtime, service_variables=service_variables, clock=clock)
    try:
        metrics.tick(clock.now)
        wait_for(lambda: mon.REPLICAS_DESIRED in metrics.current("yoto", "quick"), timeout=30)
        assert metrics.current("yoto", "slow") == {}
        clock.now = T0 + 10
        metrics.tick(clock.now)  # the slow one's job still runs: not queued twice
        wait_for(lambda: metrics.current("yoto", "quick").get(mon.REPLICA_CPU_PERCENT) == 0.0, timeout=30)
        assert metrics._in_flight == {slow}
    finally:
        release.set()
    wait_for(lambda: mon.REPLICAS_DESIRED in metrics.current("yoto", "slow"), timeout=30)
    metrics.shutdown()


def test_rollups_use_the_tier_rules(store):
    clock = Clock(T0)
    add_environment(store, "production", replicas=[])
    metrics = Metrics(store, Runtime(), service_variables=lambda env_id: {}, clock=clock)
    points = []
    for i in range(6):  # one minute of 10 s points
        points.append(Point("yoto", "production", mon.HTTP_LATENCY_P95_MS, "", "", int(T0) + i * 10, float(i * 10)))
        points.append(Point("yoto", "production", mon.HTTP_REQUESTS_PER_SECOND, "", "", int(T0) + i * 10, float(i)))
    metrics.record(points)
    assert metrics.maintain(T0 + 59)["rolled"] == 0  # the minute is not over
    assert metrics.maintain(T0 + 61)["rolled"] == 2
    assert metrics.maintain(T0 + 65)["rolled"] == 0  # rolled once
    since = metrics.series("yoto", "production", 86400)
    assert since["resolution_seconds"] == 60
    by_name = {s["name"]: s["points"] for s in since["series"]}
    assert by_name == {mon.HTTP_LATENCY_P95_MS: [[T0, 50.0]], mon.HTTP_REQUESTS_PER_SECOND: [[T0, 2.5]]}


def test_storage_stays_bounded_over_days(store):
    """Three simulated days of 10 s samples of 4 series, housekeeping every 10 minutes: the table never holds more
    than the tiers' bound, and each tier keeps what its retention says."""
    clock = Clock(T0)
    add_environment(store, "production", replicas=[])
    metrics = Metrics(store, Runtime(), service_variables=lambda env_id: {}, clock=clock)
    names = [mon.HTTP_REQUESTS_PER_SECOND, mon.HTTP_LATENCY_P95_MS, mon.REPLICA_MEMORY_BYTES, mon.REDIS_KEYS]
    bound = mx.max_rows(len(names))
    step = 600
    highest = 0
    for chunk in range(3 * 86400 // step):
        start = int(T0) + chunk * step
        metrics.record([Point("yoto", "production", name, "", "", ts, 7.0)
                        for ts in range(start, start + step, 10) for name in names])
        clock.now = start + step
        metrics.maintain()
        with store.engine.connect() as c:
            rows = c.execute(select(func.count()).select_from(m.MetricSample.__table__)).scalar()
        highest = max(highest, rows)
        assert rows <= bound, (chunk, rows, bound)
    with store.engine.connect() as c:
        per_tier = dict(c.execute(select(m.MetricSample.resolution, func.count())
                                  .group_by(m.MetricSample.resolution)).all())
    assert per_tier[10] <= len(names) * mx.points_kept(mx.TIERS[0])
    assert per_tier[60] == len(names) * 1440  # exactly one day of minutes
    assert per_tier[3600] == len(names) * 72  # every hour of the three days (kept 30 days)
    week = metrics.series("yoto", "production", 7 * 86400)
    assert week["resolution_seconds"] == 3600
    assert {p[1] for s in week["series"] for p in s["points"]} == {7.0}  # a constant stays itself through rollups
