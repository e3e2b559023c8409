"""What metrics cost (issue 16), in process:

1. `observe_http`, the log shipper's call per request the router served (one lock, counters, a duration appended),
   single-threaded and from 4 threads at once; and summarising a closed 10 s window of 10,000 requests (sort +
   percentiles, on the sampler's thread);
2. the sampler per environment: a real store and real replicas (2 `sleep` process groups per environment, read
   from /proc by the local runtime), no data services (their probes are one round trip each to PostgreSQL/Redis,
   bounded by PROBE_TIMEOUT); one `tick` over E environments, per environment;
3. the Prometheus text of those environments, and `maintain` (rollups + pruning) after an hour of samples.

Usage: python benchmarks/bench_metrics.py [ENVIRONMENTS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from branchyard import monitoring as mon
from branchyard.backends.local import processes
from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords
from branchyard.controller.metrics import Metrics, Point
from branchyard.store import models as m
from branchyard.store.db import Store


def per_call(fn, n: int) -> float:
    """Median of 5 rounds of seconds per call."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - start) / n)
    return statistics.median(rounds)


def observe(store: Store) -> None:
    metrics = Metrics(store, LocalRuntime(TaskRecords(Path(tempfile.mkdtemp()))), service_variables=lambda _id: {})
    now = time.time()
    entry = mon.HttpEntry(ts=now, method="GET", host="yoto.localhost", path="/", status=200, duration_s=0.012,
                          bytes_in=0, bytes_out=512)
    one = per_call(lambda: metrics.observe_http("yoto", "production", entry), 100_000)
    n, threads = 50_000, 4

    def hammer() -> None:
        for _ in range(n):
            metrics.observe_http("yoto", "staging", entry)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    contended = (time.perf_counter() - start) / (n * threads)
    recorder = metrics.http
    for i in range(10_000):
        recorder.observe("yoto", "window", mon.HttpEntry(ts=now - 60, method="GET", host="h", path="/", status=200,
                                                         duration_s=(i % 997) / 1000, bytes_in=0, bytes_out=1))
    start = time.perf_counter()
    recorder.drain(now)
    drain = time.perf_counter() - start
    print(f"observe_http: {one * 1e6:.2f} µs per call (one thread); {contended * 1e6:.2f} µs per call with {threads} "
          f"threads at once; a closed window of 10,000 requests summarised in {drain * 1e3:.1f} ms")


def sampler(store: Store, envs: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    runtime = LocalRuntime(TaskRecords(tmp / "tasks"))
    handles = []
    with store.session() as s:
        p = m.Project(name="bench", repo_path=str(tmp))
        s.add(p)
        s.flush()
        for i in range(envs):
            env = m.Environment(project_id=p.id, name=f"env-{i}")
            s.add(env)
            s.flush()
            d = m.Deployment(project_id=p.id, environment_id=env.id, status=m.SUCCESS, commit_sha="a" * 40, trigger="push",
                             config_json=json.dumps({"web": {"replicas": 2, "memory_mb": 512}}))
            s.add(d)
            s.flush()
            env.current_deployment_id = d.id
            for slot in range(2):
                h = processes.spawn("exec sleep 600", cwd=tmp, env={"PATH": os.environ["PATH"]},
                                    log_path=tmp / f"{i}.{slot}.log", port=processes.free_port())
                handles.append(h)
                s.add(m.Replica(deployment_id=d.id, environment_id=env.id, slot=slot, pid=h.pid, start_time=h.start_time,
                                port=h.port, log_path=h.log_path, state=m.REPLICA_RUNNING))
    try:
        clock = [time.time()]
        metrics = Metrics(store, runtime, service_variables=lambda _id: {}, clock=lambda: clock[0])
        rounds = []
        for _ in range(5):
            clock[0] += 10
            start = time.perf_counter()
            metrics.tick(clock[0], wait=True)
            rounds.append(time.perf_counter() - start)
        tick = statistics.median(rounds)
        proc_entries = sum(1 for name in os.listdir("/proc") if name.isdigit())
        h = handles[0]
        usage = per_call(lambda: runtime.usage(h), 50)  # within _SCAN_TTL: the shared pass
        cold = per_call(lambda: (setattr(processes, "_scan", (-1.0, [])), runtime.usage(h)), 20)  # a pass each
        start = time.perf_counter()
        text = metrics.prometheus()
        export = time.perf_counter() - start
        print(f"sampler: one tick over {envs} environments × 2 replicas {tick * 1e3:.1f} ms, "
              f"{tick / envs * 1e3:.2f} ms per environment ({metrics._pool._max_workers} threads); "
              f"RuntimePort.usage {cold * 1e3:.2f} ms with a pass over {proc_entries} /proc entries, "
              f"{usage * 1e3:.3f} ms when the pass is shared")
        print(f"prometheus: {len(text) / 1024:.0f} KiB of text for {envs} environments in {export * 1e3:.1f} ms")
        hour = [Point("bench", f"env-{i}", mon.REPLICA_MEMORY_BYTES, "web", f"env-{i}.web.{slot}", int(clock[0]) - k * 10, 1.0)
                for i in range(envs) for slot in range(2) for k in range(360)]
        metrics.record(hour)
        start = time.perf_counter()
        done = metrics.maintain(clock[0] + 3600)
        print(f"maintain: {done['rolled']} points rolled up and {done['pruned']} pruned ({len(hour)} 10 s samples) "
              f"in {(time.perf_counter() - start) * 1e3:.0f} ms")
        metrics.shutdown()
    finally:
        for h in handles:
            processes.stop(h, grace=1)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as home:
        store = Store(Path(home) / "state.db")
        observe(store)
        sampler(store, count)
        store.close()
