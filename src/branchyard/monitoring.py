"""What the monitoring parts say to each other (issue 16): the router's access-log entry, the names of the metric
series, and the small interfaces between the log shipper, the metrics store, alerts and the Prometheus export.

Pure values only. The log shipper (`controller/logship.py`) turns each line of the router's access log into an
`HttpEntry` and hands it to an `HttpSink` (the metrics recorder); alerts read current values through a
`MetricSource`. Names here are what `metrics --json`, the Prometheus endpoint and alert rules use, so they are a
user-facing contract: add, never rename.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class HttpEntry:
    """One request the router served for an environment (from Caddy's access log, never from the request path)."""

    ts: float  # unix seconds: when the router received the request
    method: str
    host: str
    path: str  # without the query string (it may carry tokens)
    status: int
    duration_s: float
    bytes_in: int  # the request body's size
    bytes_out: int  # the response body's size


# (project, environment, entry): called by the log shipper's thread, so it must be quick and never raise
HttpSink = Callable[[str, str, HttpEntry], None]


# --- metric series ---------------------------------------------------------------------------------------------
# Per environment, from the router's access log (over the sampling window, 10 s):
HTTP_REQUESTS_PER_SECOND = "http_requests_per_second"
HTTP_LATENCY_P50_MS = "http_latency_p50_ms"
HTTP_LATENCY_P95_MS = "http_latency_p95_ms"
HTTP_LATENCY_P99_MS = "http_latency_p99_ms"
HTTP_4XX_RATE = "http_4xx_rate"  # fraction of the window's requests, 0..1 (0 when there were none)
HTTP_5XX_RATE = "http_5xx_rate"
HTTP_BYTES_IN_PER_SECOND = "http_bytes_in_per_second"
HTTP_BYTES_OUT_PER_SECOND = "http_bytes_out_per_second"
# Per replica (labels: service, replica), from the runtime:
REPLICA_CPU_PERCENT = "replica_cpu_percent"  # of one CPU: 100 = one core busy
REPLICA_MEMORY_BYTES = "replica_memory_bytes"  # RSS of the replica's whole process group
REPLICA_RESTARTS = "replica_restarts"  # since the deployment started
# Per environment, derived:
MEMORY_PERCENT_OF_LIMIT = "memory_percent_of_limit"  # the highest replica's RSS over its `memory` (absent: no limit)
REPLICAS_HEALTHY = "replicas_healthy"
REPLICAS_DESIRED = "replicas_desired"
# Per data service (label: service):
POSTGRES_DATABASE_BYTES = "postgres_database_bytes"
POSTGRES_CONNECTIONS = "postgres_connections"
POSTGRES_STORAGE_PERCENT = "postgres_storage_percent"  # database size over the service's `storage` (absent: none)
REDIS_MEMORY_BYTES = "redis_memory_bytes"
REDIS_KEYS = "redis_keys"
# Uptime (production by default): 1 when the last probe of the public URL through the router answered, else 0
UP = "up"


class MetricSource(Protocol):
    """The latest value of each series of an environment (what alert rules compare with their thresholds)."""

    def current(self, project: str, environment: str) -> dict[str, float]:
        """Series name → latest value; per-replica and per-service series reduced to their highest value.
        A series with no sample in the last minute is absent (no data is not zero)."""


class UpSource(Protocol):
    """The `up` series of an environment (controller/uptime.py `Uptime.current`): 1.0 when the last probe of its
    public URL through the router answered below 500, 0.0 when it did not, None when it is not probed or the last
    check is stale. Alerts read it for `down`; the metrics store may record it as UP."""

    def current(self, project: str, environment: str) -> float | None: ...
