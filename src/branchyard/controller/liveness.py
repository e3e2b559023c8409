"""Health that keeps checking: RUNNING replicas probed on their health-check path, off the reconciler's pass.

A hung replica's probe waits for its whole timeout; probing in the loop would hold up every other environment's
restarts and routes for that long. So probes run in a small thread pool, at most one in flight and one per
healthcheckInterval per replica, and each result is written to the replica's row (failures in a row, when it was
checked, why the last one failed). The reconciler only reads those columns; `plan.py` decides the eviction.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update

from ..backends.ports import RuntimePort
from ..spec.model import WebConfig
from ..store import models as m
from ..store.db import Store

log = logging.getLogger("branchyard.liveness")

WORKERS = 8  # probes in flight at once; a hung replica holds one worker for at most PROBE_TIMEOUT_MAX
PROBE_TIMEOUT_MAX = 5.0  # seconds: a live app answers its health check well within this even under load
DETAIL_MAX = 300  # characters of the last failure's detail kept (one line for `status`)


def probe_timeout(web: WebConfig) -> float:
    """How long one liveness probe waits: no longer than the interval (probes must not pile up), nor 5 s."""
    return float(min(web.healthcheck_interval, PROBE_TIMEOUT_MAX, web.healthcheck_timeout))


def due(checked_at: float | None, interval: int, now: float) -> bool:
    """Whether a replica last checked at `checked_at` (epoch seconds, None: never) should be checked again at `now`."""
    return checked_at is None or now - checked_at >= interval


class Liveness:
    def __init__(self, store: Store, runtime: RuntimePort, *, workers: int = WORKERS) -> None:
        self.store = store
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="liveness")
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # replica ids with a probe queued or running

    def check(self, r: m.Replica, web: WebConfig, now: float) -> None:
        """Probe this RUNNING replica in the background if it is due and has no probe in flight; returns at once."""
        if not web.healthcheck_path or not due(r.health_checked_at, web.healthcheck_interval, now):
            return  # no path: liveness is "the process is alive", which the reconciler sees itself
        with self._lock:
            if r.id in self._in_flight:
                return
            self._in_flight.add(r.id)
        try:
            self._pool.submit(self._probe, r.id, r.pid, r.start_time, r.port, web.healthcheck_path, probe_timeout(web),
                              r.host)
        except RuntimeError:  # the pool is shut down: the control plane is stopping
            with self._lock:
                self._in_flight.discard(r.id)

    def _probe(self, replica_id: int, pid: int, start_time: int, port: int, path: str, timeout: float,
               host: str = "127.0.0.1") -> None:
        started = time.time()
        try:
            result = self.runtime.probe(port, path, timeout=timeout, host=host)
            values = ({"health_failures": 0} if result.ok else
                      {"health_failures": m.Replica.health_failures + 1, "health_detail": result.detail[:DETAIL_MAX]})
            with self.store.session() as s:
                # The same process, still RUNNING: a late answer about a replica since evicted (or restarted in the
                # same row under a new pid) must not count against, or for, the process that runs now.
                s.execute(update(m.Replica)
                          .where(m.Replica.id == replica_id, m.Replica.pid == pid, m.Replica.start_time == start_time,
                                 m.Replica.state == m.REPLICA_RUNNING)
                          .values(health_checked_at=started, **values))
        except Exception:  # a probe must never take the pool down; the next interval tries again
            log.exception("liveness probe of replica %s failed", replica_id)
        finally:
            with self._lock:
                self._in_flight.discard(replica_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
