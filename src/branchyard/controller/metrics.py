"""Metrics (issue 16): the HTTP recorder (the log shipper's `HttpSink`), the 10 s sampler of replicas and data
services, the store of samples with its downsampling, `current` for alert rules, and the Prometheus export.

- `HttpRecorder.observe` is called by the log shipper's thread for every request the router served: O(1) under one
  short lock (append a duration, bump counters). Windows of 10 s (by the request's own time) are summarised by the
  sampler once closed (`metrics.http_summary`: exact nearest-rank percentiles of the window's durations).
- `Metrics.run_forever` ticks every 10 s on a thread of its own: it drains closed HTTP windows, lists the environments
  that run something (one Core SELECT, outside the store's write lock) and samples each in a small thread pool, one
  job in flight per environment, so a slow or dead PostgreSQL of one environment holds up no other (nor the
  reconciler, which never waits for any of it). Each job writes its points in one batched Core INSERT.
- `maintain` (housekeeping) rolls complete buckets up a tier (10 s → 1 min → 1 h; `metrics.rollup`) and prunes each
  tier past its retention, so the table stays bounded (`metrics.max_rows`).
- The latest point of every series is also kept in memory (`current`, the Prometheus export): no store read there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import delete, func, insert, select

from .. import metrics as mx
from .. import monitoring as mon
from ..backends.ports import RuntimePort
from ..data.stats import postgres_stats, redis_stats
from ..errors import BranchyardError, NotFound
from ..store import models as m
from ..store.db import Store
from .environments import replica_health
from .snapshot import web_of

log = logging.getLogger("branchyard.metrics")

LATE = 2.0  # seconds after a window ends before it is summarised: the shipper reads the access log a little behind
FRESH = 60.0  # seconds: a series with no sample newer than this is absent from `current` and the export
WORKERS = 4  # environments sampled at once
PROBE_TIMEOUT = 3.0  # seconds: one data service's statistics
MAX_PENDING = 360  # closed HTTP windows kept per environment until the sampler summarises them (an hour)
_TABLE = m.MetricSample.__table__


class Point(NamedTuple):
    project: str
    environment: str
    name: str
    service: str
    replica: str
    ts: int
    value: float


# --------------------------------------------------------------------------------------------- HTTP


@dataclass
class _Window:
    start: int
    durations: list[float] = field(default_factory=list)
    n4xx: int = 0
    n5xx: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class HttpTotals:
    """Monotonic totals since the control plane started (Prometheus counters)."""

    requests: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class _EnvHttp:
    window: _Window | None = None
    closed: list[_Window] = field(default_factory=list)
    totals: HttpTotals = field(default_factory=HttpTotals)
    emitted: int = -1  # start of the last window summarised


class HttpRecorder:
    """The `monitoring.HttpSink`: per environment, the open 10 s window and the totals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._envs: dict[tuple[str, str], _EnvHttp] = {}

    def observe(self, project: str, environment: str, entry: mon.HttpEntry) -> None:
        """One request the router served (called by the log shipper's thread): quick, and never raises."""
        try:
            start = mx.window_start(entry.ts)
            klass = mx.status_class(entry.status)
            with self._lock:
                env = self._envs.get((project, environment))
                if env is None:
                    env = self._envs[(project, environment)] = _EnvHttp()
                w = env.window
                if w is None or start > w.start:
                    if w is not None:
                        env.closed.append(w)
                        if len(env.closed) > MAX_PENDING:  # nobody drains (the sampler is stopped): keep the newest
                            del env.closed[0]
                    w = env.window = _Window(start)
                # a late entry (older than the open window) counts in the open one: windows are never reopened
                w.durations.append(entry.duration_s)
                if klass == "4xx":
                    w.n4xx += 1
                elif klass == "5xx":
                    w.n5xx += 1
                w.bytes_in += entry.bytes_in
                w.bytes_out += entry.bytes_out
                t = env.totals
                t.requests += 1
                t.by_class[klass] = t.by_class.get(klass, 0) + 1
                t.bytes_in += entry.bytes_in
                t.bytes_out += entry.bytes_out
        except Exception:  # the shipper must never die of a metrics bug
            log.exception("observe_http failed")

    def drain(self, now: float, running: set[tuple[str, str]] | None = None) -> list[Point]:
        """The points of every window that closed (ended LATE seconds before `now`); an environment that had traffic
        once and none in the last closed window gets that window's zeros (0 requests/s, no latency) while it runs
        (in `running`, when given: a deleted or sleeping environment's series end)."""
        last_closed = mx.window_start(now - LATE - mx.WINDOW)
        out: list[Point] = []
        with self._lock:
            ready = []
            for (project, environment), env in self._envs.items():
                if env.window is not None and env.window.start <= last_closed:
                    env.closed.append(env.window)
                    env.window = None
                windows, env.closed = env.closed, []
                if not windows and env.emitted < last_closed and (running is None or (project, environment) in running):
                    windows = [_Window(last_closed)]
                if windows:
                    env.emitted = max(env.emitted, max(w.start for w in windows))
                ready.append((project, environment, windows))
        for project, environment, windows in ready:  # sorting durations outside the lock
            for w in windows:
                summary = mx.http_summary(w.durations, w.n4xx, w.n5xx, w.bytes_in, w.bytes_out)
                out += [Point(project, environment, name, "", "", w.start, value) for name, value in summary.items()]
        return out

    def totals(self) -> dict[tuple[str, str], HttpTotals]:
        with self._lock:
            return {key: HttpTotals(t.totals.requests, dict(t.totals.by_class), t.totals.bytes_in, t.totals.bytes_out)
                    for key, t in self._envs.items()}


# --------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class _Replica:
    id: int
    slot: int
    pid: int
    start_time: int
    port: int
    log_path: str
    state: str
    restarts: int
    health_failures: int
    checked: bool
    service: str = "web"  # or a Procfile process type (worker …)


@dataclass(frozen=True)
class _Target:
    project: str
    environment: str
    env_id: int
    desired: int
    memory_mb: int | None
    storage_mb: int | None
    replicas: tuple[_Replica, ...]


class Metrics:
    """Records, stores, rolls up and serves an environment's metric series (see the module's docstring)."""

    def __init__(self, store: Store, runtime: RuntimePort, *,
                 service_variables: Callable[[int], dict[str, dict[str, str]]],
                 clock: Callable[[], float] = time.time, workers: int = WORKERS,
                 probe_timeout: float = PROBE_TIMEOUT) -> None:
        self.store = store
        self.runtime = runtime
        self.service_variables = service_variables  # env id → namespace → its services' variables (DataPlane's)
        self.clock = clock
        self.probe_timeout = probe_timeout
        self.http = HttpRecorder()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics")
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # environment ids being sampled
        self._cpu: dict[tuple[int, int, int], tuple[float, float]] = {}  # (replica id, pid, start) → (cpu s, at)
        self._latest: dict[tuple[str, str], dict[tuple[str, str, str], tuple[float, float]]] = {}
        self._failures: dict[tuple[int, str], str] = {}  # (env id, service) → last failure logged (logged once)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Export(self))

    # the HttpSink the log shipper is given
    def observe_http(self, project: str, environment: str, entry: mon.HttpEntry) -> None:
        self.http.observe(project, environment, entry)

    # --- writing ---------------------------------------------------------------------------------

    def record(self, points: Iterable[Point], resolution: int = mx.TIERS[0].resolution) -> int:
        """Store points (one batched INSERT, on a connection of its own: never the store's session lock) and, for the
        finest tier, keep each series' latest value in memory. How many were written."""
        rows = [p._asdict() | {"resolution": resolution} for p in points]
        if not rows:
            return 0
        with self.store.engine.begin() as connection:
            connection.execute(insert(_TABLE), rows)
        if resolution == mx.TIERS[0].resolution:
            with self._lock:
                for r in rows:
                    series = self._latest.setdefault((r["project"], r["environment"]), {})
                    key = (r["name"], r["service"], r["replica"])
                    if key not in series or series[key][0] <= r["ts"]:
                        series[key] = (float(r["ts"]), float(r["value"]))
        return len(rows)

    # --- the sampler -------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Sample every 10 s until `stop` (a failed tick is logged; the next one tries again)."""
        while not stop.is_set():
            try:
                self.tick(self.clock())
            except Exception:
                log.exception("metrics sampling failed")
            # LATE seconds after each 10 s boundary: the window that just ended is summarised at once (at the
            # boundary itself it would count as not yet shipped and wait a whole tick: 10 s more to every alert)
            stop.wait(mx.WINDOW - (time.time() % mx.WINDOW) + LATE + 0.05)

    def tick(self, now: float, *, wait: bool = False) -> None:
        """One sampling pass: closed HTTP windows now; each environment's sample in the pool (returns at once unless
        `wait`: tests and the benchmark)."""
        targets = self._targets()
        self.record(self.http.drain(now, {(t.project, t.environment) for t in targets}))
        futures = []
        for target in targets:
            with self._lock:
                if target.env_id in self._in_flight:
                    continue  # the previous sample of this environment still runs (a slow probe)
                self._in_flight.add(target.env_id)
            try:
                futures.append(self._pool.submit(self._sample_env, target, now))
            except RuntimeError:  # shut down
                with self._lock:
                    self._in_flight.discard(target.env_id)
        self._forget_old(now)
        if wait:
            for f in futures:
                f.result()

    def _targets(self) -> list[_Target]:
        """Every ACTIVE environment with a current deployment, its replicas and limits (two Core SELECTs)."""
        envs = (select(m.Project.name, m.Environment.name, m.Environment.id, m.Environment.replicas_override,
                       m.Deployment.id, m.Deployment.config_json)
                .join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
                .where(m.Environment.state == m.ENV_ACTIVE))
        with self.store.engine.connect() as connection:
            rows = connection.execute(envs).all()
            deployments = [r[4] for r in rows]
            replicas: dict[str, list[_Replica]] = {}
            if deployments:
                for r in connection.execute(
                        select(m.Replica.deployment_id, m.Replica.id, m.Replica.slot, m.Replica.pid, m.Replica.start_time,
                               m.Replica.port, m.Replica.log_path, m.Replica.state, m.Replica.restarts,
                               m.Replica.health_failures, m.Replica.health_checked_at, m.Replica.service)
                        .where(m.Replica.deployment_id.in_(deployments), m.Replica.state != m.REPLICA_STOPPED)
                        .order_by(m.Replica.service != "web", m.Replica.service, m.Replica.slot)):
                    replicas.setdefault(r[0], []).append(_Replica(*r[1:10], checked=r[10] is not None, service=r[11]))
        out = []
        for project, env_name, env_id, override, deployment_id, config_json in rows:
            try:
                web = web_of(config_json)
                raw = json.loads(config_json) if config_json else {}
            except (BranchyardError, ValueError):
                continue
            pg = raw.get("postgres") or {}
            out.append(_Target(project, env_name, env_id, override or (web.replicas if web else 1),
                               web.memory_mb if web else None, pg.get("storage_mb"),
                               tuple(replicas.get(deployment_id, ()))))
        return out

    def _sample_env(self, t: _Target, now: float) -> None:
        try:
            self.record(self.sample(t, now))
        except Exception:
            log.exception("metrics of %s/%s failed", t.project, t.environment)
        finally:
            with self._lock:
                self._in_flight.discard(t.env_id)

    def sample(self, t: _Target, now: float) -> list[Point]:
        """One environment's replica, derived and data-service points at `now`."""
        ts = mx.window_start(now)
        points: list[Point] = []

        def add(name: str, value: float | None, service: str = "", replica: str = "") -> None:
            if value is not None:
                points.append(Point(t.project, t.environment, name, service, replica, ts, float(value)))

        serving, rss_max = 0, None
        for r in t.replicas:
            h = self.runtime.adopt(r.pid, r.start_time, r.port, r.log_path)
            alive = h is not None and self.runtime.is_alive(h)
            health = replica_health(r.state, alive=alive, failures=r.health_failures, checked=r.checked)
            if r.service == "web" and alive and r.state == m.REPLICA_RUNNING and health != "unhealthy":
                serving += 1  # as serving_status counts them
            if h is None or not alive or r.state != m.REPLICA_RUNNING:
                continue
            usage = self.runtime.usage(h)
            if usage is None:
                continue
            read_at = self.clock()  # CPU % over the time between two readings, not between two ticks
            name = f"{t.environment}.{r.service}.{r.slot}"  # Procfile workers too, under their own service
            add(mon.REPLICA_MEMORY_BYTES, usage.rss_bytes, r.service, name)
            add(mon.REPLICA_RESTARTS, r.restarts, r.service, name)
            key = (r.id, r.pid, r.start_time)
            with self._lock:
                before = self._cpu.get(key)
                self._cpu[key] = (usage.cpu_seconds, read_at)
            if before is not None:
                add(mon.REPLICA_CPU_PERCENT, mx.cpu_percent(before[0], before[1], usage.cpu_seconds, read_at),
                    r.service, name)
            # every replica runs under web's memory limit (a worker too): the fullest one is what an alert watches
            rss_max = usage.rss_bytes if rss_max is None else max(rss_max, usage.rss_bytes)
        add(mon.REPLICAS_HEALTHY, serving)
        add(mon.REPLICAS_DESIRED, t.desired)
        if rss_max is not None and t.memory_mb:
            add(mon.MEMORY_PERCENT_OF_LIMIT, mx.percent_of(rss_max, t.memory_mb * 1024 * 1024))
        for service, variables in self._services(t).items():
            try:
                if "DATABASE_URL" in variables and "REDIS_URL" not in variables:
                    size, connections = postgres_stats(variables["DATABASE_URL"], timeout=self.probe_timeout)
                    add(mon.POSTGRES_DATABASE_BYTES, size, service)
                    add(mon.POSTGRES_CONNECTIONS, connections, service)
                    if t.storage_mb:
                        add(mon.POSTGRES_STORAGE_PERCENT, mx.percent_of(size, t.storage_mb * 1024 * 1024), service)
                elif "REDIS_URL" in variables:
                    memory, keys = redis_stats(variables["REDIS_URL"], timeout=self.probe_timeout)
                    add(mon.REDIS_MEMORY_BYTES, memory, service)
                    add(mon.REDIS_KEYS, keys, service)
                self._failures.pop((t.env_id, service), None)
            except BranchyardError as err:  # its series are absent this time; said once, not every 10 s
                if self._failures.get((t.env_id, service)) != str(err):
                    self._failures[(t.env_id, service)] = str(err)
                    log.warning("metrics of %s/%s %s: %s", t.project, t.environment, service, err)
        return points

    def _services(self, t: _Target) -> dict[str, dict[str, str]]:
        try:
            return self.service_variables(t.env_id)
        except BranchyardError:
            return {}

    def _forget_old(self, now: float) -> None:
        with self._lock:
            for key, (_cpu, at) in list(self._cpu.items()):
                if at < now - 10 * FRESH:
                    del self._cpu[key]
            for env_key, series in list(self._latest.items()):
                for key, (ts, _value) in list(series.items()):
                    if ts < now - 10 * FRESH:
                        del series[key]
                if not series:
                    del self._latest[env_key]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- downsampling and retention (housekeeping) -------------------------------------------------

    def housekeeping(self) -> None:
        """`maintain` now, a failure logged (the next housekeeping tries again): never holds up what runs after it."""
        try:
            self.maintain()
        except Exception:
            log.exception("metrics rollups and retention failed")

    def maintain(self, now: float | None = None) -> dict[str, int]:
        """Roll complete buckets up each tier, then prune every tier past its retention: {"rolled": n, "pruned": n}."""
        now = self.clock() if now is None else now
        rolled = sum(self._roll_up(finer, coarser, now) for finer, coarser in zip(mx.TIERS, mx.TIERS[1:]))
        pruned = 0
        with self.store.engine.begin() as connection:
            for tier in mx.TIERS:
                pruned += connection.execute(delete(_TABLE).where(
                    _TABLE.c.resolution == tier.resolution, _TABLE.c.ts < mx.retention_cutoff(now, tier))).rowcount or 0
        return {"rolled": rolled, "pruned": pruned}

    def _roll_up(self, finer: mx.Tier, coarser: mx.Tier, now: float) -> int:
        until = mx.window_start(now, coarser.resolution)  # buckets before this one are complete
        c = _TABLE.c
        with self.store.engine.connect() as connection:
            last = connection.execute(select(func.max(c.ts)).where(c.resolution == coarser.resolution)).scalar()
            since = last + coarser.resolution if last is not None else 0
            rows = connection.execute(
                select(c.project, c.environment, c.name, c.service, c.replica, c.ts, c.value)
                .where(c.resolution == finer.resolution, c.ts >= since, c.ts < until)).all()
        by_series: dict[tuple[str, str, str, str, str], list[tuple[int, float]]] = {}
        for project, environment, name, service, replica, ts, value in rows:
            by_series.setdefault((project, environment, name, service, replica), []).append((ts, value))
        points = [Point(*key, bucket, value)
                  for key, values in by_series.items()
                  for bucket, value in mx.rollup(values, coarser.resolution, mx.rollup_kind(key[2]), until=until)]
        return self.record(points, coarser.resolution)

    # --- reading -----------------------------------------------------------------------------------

    def current(self, project: str, environment: str) -> dict[str, float]:
        """`monitoring.MetricSource`: series → latest value, the highest over replicas and services; a series with
        no sample in the last minute is absent."""
        fresh_after = self.clock() - FRESH
        out: dict[str, float] = {}
        with self._lock:
            for (name, _service, _replica), (ts, value) in self._latest.get((project, environment), {}).items():
                if ts >= fresh_after:
                    out[name] = max(out.get(name, value), value)
        return out

    def latest(self) -> Iterator[tuple[str, str, str, str, str, float]]:
        """(project, environment, name, service, replica, value) of every fresh series (the export's)."""
        fresh_after = self.clock() - FRESH
        with self._lock:
            items = [(p, e, name, service, replica, value)
                     for (p, e), series in self._latest.items()
                     for (name, service, replica), (ts, value) in series.items() if ts >= fresh_after]
        return iter(sorted(items))

    def series(self, project: str, environment: str, since_s: int) -> dict[str, Any]:
        """What `metrics --json` prints (a pinned shape, see README): current values and the points of each series
        over the last `since_s` seconds at the finest resolution kept that long."""
        now = self.clock()
        resolution = mx.resolution_for(since_s)
        c = _TABLE.c
        with self.store.engine.connect() as connection:
            known = connection.execute(
                select(m.Environment.id).join(m.Project, m.Project.id == m.Environment.project_id)
                .where(m.Project.name == project, m.Environment.name == environment)).first()
            if known is None:
                raise NotFound(f"unknown environment {environment!r} in project {project!r}")
            rows = connection.execute(
                select(c.name, c.service, c.replica, c.ts, c.value)
                .where(c.project == project, c.environment == environment, c.resolution == resolution,
                       c.ts >= int(now) - since_s)
                .order_by(c.name, c.service, c.replica, c.ts)).all()
        series: dict[tuple[str, str, str], list[list[float]]] = {}
        for name, service, replica, ts, value in rows:
            series.setdefault((name, service, replica), []).append([ts, value])
        return {
            "project": project,
            "environment": environment,
            "now": int(now),
            "since_seconds": since_s,
            "resolution_seconds": resolution,
            "current": self.current(project, environment),
            "series": [{"name": name, "service": service or None, "replica": replica or None, "points": points}
                       for (name, service, replica), points in series.items()],
        }

    def prometheus(self) -> bytes:
        """The text exposition format (prometheus_client's)."""
        return generate_latest(self.registry)


_HELP = {
    mon.HTTP_REQUESTS_PER_SECOND: "Requests per second over the last 10 s window (router access log)",
    mon.HTTP_LATENCY_P50_MS: "Median request latency over the last 10 s window, ms",
    mon.HTTP_LATENCY_P95_MS: "95th percentile request latency over the last 10 s window, ms",
    mon.HTTP_LATENCY_P99_MS: "99th percentile request latency over the last 10 s window, ms",
    mon.HTTP_4XX_RATE: "Fraction of the last window's requests answered 4xx",
    mon.HTTP_5XX_RATE: "Fraction of the last window's requests answered 5xx",
    mon.HTTP_BYTES_IN_PER_SECOND: "Request body bytes per second",
    mon.HTTP_BYTES_OUT_PER_SECOND: "Response body bytes per second",
    mon.REPLICA_CPU_PERCENT: "CPU of the replica's process group, % of one core",
    mon.REPLICA_MEMORY_BYTES: "RSS of the replica's process group, bytes",
    mon.REPLICA_RESTARTS: "Restarts of the replica since its deployment started",
    mon.MEMORY_PERCENT_OF_LIMIT: "Highest replica RSS over the web service's memory limit, %",
    mon.REPLICAS_HEALTHY: "Replicas running and passing their health checks",
    mon.REPLICAS_DESIRED: "Replicas the environment should run",
    mon.POSTGRES_DATABASE_BYTES: "Size of the environment's PostgreSQL database, bytes",
    mon.POSTGRES_CONNECTIONS: "Connections to the environment's PostgreSQL database",
    mon.POSTGRES_STORAGE_PERCENT: "Database size over the postgres service's storage, %",
    mon.REDIS_MEMORY_BYTES: "used_memory of the environment's Redis, bytes",
    mon.REDIS_KEYS: "Keys in the environment's Redis",
    mon.UP: "1 when the last uptime probe answered",
}
_LABELS = ["project", "environment", "service", "replica"]


class _Export(Collector):
    """The latest value of every fresh series as gauges `branchyard_<series>`, and the HTTP totals as counters."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        gauges: dict[str, GaugeMetricFamily] = {}
        for project, environment, name, service, replica, value in self.metrics.latest():
            family = gauges.get(name)
            if family is None:
                family = gauges[name] = GaugeMetricFamily(f"branchyard_{name}", _HELP.get(name, name), labels=_LABELS)
            family.add_metric([project, environment, service, replica], value)
        yield from gauges.values()
        totals = self.metrics.http.totals()
        requests = CounterMetricFamily("branchyard_http_requests", "Requests served by the router (since start)",
                                       labels=["project", "environment", "status_class"])
        bytes_in = CounterMetricFamily("branchyard_http_request_bytes", "Request body bytes (since start)",
                                       labels=["project", "environment"])
        bytes_out = CounterMetricFamily("branchyard_http_response_bytes", "Response body bytes (since start)",
                                        labels=["project", "environment"])
        for (project, environment), t in sorted(totals.items()):
            for klass, count in sorted(t.by_class.items()):
                requests.add_metric([project, environment, klass], count)
            bytes_in.add_metric([project, environment], t.bytes_in)
            bytes_out.add_metric([project, environment], t.bytes_out)
        yield from (requests, bytes_in, bytes_out)
