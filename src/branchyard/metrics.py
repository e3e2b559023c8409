"""Metrics arithmetic (issue 16), pure: percentiles, the 10 s HTTP window's summary, CPU % from two readings,
downsampling tiers and their rollups, retention, the resolution a window needs, `--since`, and sparklines.

The recorder and the store (controller/metrics.py) do the I/O; every decision and every number is made here, so it
is table-tested (tests/unit/test_metrics_math.py).

Downsampling: a sample is kept at 10 s for an hour, rolled up to 1 min kept a day, then to 1 h kept 30 days. A
coarser point is computed from the finer tier's points in its bucket: the mean for gauges (rates, sizes, CPU %), the
**max** for latency percentiles (a p95 cannot be recomputed from p95s without the raw durations; the max of the
window's p95s is an upper bound, which is what an operator looking for slowness wants), the sum for counters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import monitoring as mon
from .errors import BadInput

WINDOW = 10  # seconds: one HTTP window, and the sampler's period


@dataclass(frozen=True)
class Tier:
    resolution: int  # seconds per point
    retention: int  # seconds a point is kept


TIERS: tuple[Tier, ...] = (Tier(10, 3600), Tier(60, 86400), Tier(3600, 30 * 86400))

MEAN, MAX, SUM = "mean", "max", "sum"
# How a series rolls up into a coarser tier (anything not listed: MEAN).
ROLLUP_KIND: dict[str, str] = {
    mon.HTTP_LATENCY_P50_MS: MAX,
    mon.HTTP_LATENCY_P95_MS: MAX,
    mon.HTTP_LATENCY_P99_MS: MAX,
    mon.REPLICA_RESTARTS: MAX,  # a count since the deployment started: its highest value in the bucket
}

# Series whose unit is bytes (the CLI prints them with a unit).
BYTES_SERIES = frozenset({mon.REPLICA_MEMORY_BYTES, mon.POSTGRES_DATABASE_BYTES, mon.REDIS_MEMORY_BYTES,
                          mon.HTTP_BYTES_IN_PER_SECOND, mon.HTTP_BYTES_OUT_PER_SECOND})


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile q (0 < q ≤ 100) of values sorted ascending: the smallest value with at least q % of
    the values at or below it. Exact (a value that was observed), no interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is not in (0, 100]")
    rank = max(1, math.ceil(round(q * len(sorted_values) / 100, 9)))  # rounded: 99.9 % of 1000 is rank 999, not 1000
    return float(sorted_values[rank - 1])


def window_start(ts: float, resolution: int = WINDOW) -> int:
    """The start (epoch seconds) of the bucket of `resolution` seconds holding `ts`."""
    return int(math.floor(ts / resolution)) * resolution


def http_summary(durations_s: Sequence[float], n4xx: int, n5xx: int, bytes_in: int, bytes_out: int,
                 seconds: float = WINDOW) -> dict[str, float]:
    """The HTTP series of one window from its requests' durations (seconds) and counts. With no request: rates and
    throughput are 0, and there is no latency (no data is not 0 ms)."""
    n = len(durations_s)
    out = {
        mon.HTTP_REQUESTS_PER_SECOND: n / seconds,
        mon.HTTP_4XX_RATE: n4xx / n if n else 0.0,
        mon.HTTP_5XX_RATE: n5xx / n if n else 0.0,
        mon.HTTP_BYTES_IN_PER_SECOND: bytes_in / seconds,
        mon.HTTP_BYTES_OUT_PER_SECOND: bytes_out / seconds,
    }
    if n:
        ordered = sorted(durations_s)
        out[mon.HTTP_LATENCY_P50_MS] = percentile(ordered, 50) * 1000
        out[mon.HTTP_LATENCY_P95_MS] = percentile(ordered, 95) * 1000
        out[mon.HTTP_LATENCY_P99_MS] = percentile(ordered, 99) * 1000
    return out


def status_class(status: int) -> str:
    """"2xx", "4xx" … for a counter's label; anything outside 100..599 is "other"."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def cpu_percent(prev_cpu_s: float, prev_at: float, cpu_s: float, at: float) -> float | None:
    """CPU % of one core between two readings of cumulative CPU seconds (None when it cannot be told: no time passed,
    or the counter went back — a process of the group exited and took its time with it)."""
    elapsed = at - prev_at
    used = cpu_s - prev_cpu_s
    if elapsed <= 0 or used < 0:
        return None
    return used / elapsed * 100


def percent_of(value: float, limit: float | None) -> float | None:
    """value over limit in %, None when there is no (positive) limit."""
    return value / limit * 100 if limit else None


def aggregate(values: Sequence[float], kind: str) -> float:
    if kind == MAX:
        return max(values)
    if kind == SUM:
        return float(sum(values))
    return sum(values) / len(values)


def rollup(points: Iterable[tuple[int, float]], resolution: int, kind: str, *, until: int) -> list[tuple[int, float]]:
    """Finer points (ts, value) → one point per complete bucket of `resolution` seconds ending at or before `until`
    (a bucket still filling is left for later), aggregated by `kind`; sorted by bucket."""
    buckets: dict[int, list[float]] = {}
    for ts, value in points:
        start = window_start(ts, resolution)
        if start + resolution <= until:
            buckets.setdefault(start, []).append(value)
    return [(start, aggregate(values, kind)) for start, values in sorted(buckets.items())]


def rollup_kind(name: str) -> str:
    return ROLLUP_KIND.get(name, MEAN)


def retention_cutoff(now: float, tier: Tier) -> int:
    """Points of `tier` older than this (epoch seconds, exclusive) are pruned."""
    return int(now) - tier.retention


def points_kept(tier: Tier) -> int:
    """At most this many points of one series in `tier` (a bucket straddling the cutoff counts)."""
    return tier.retention // tier.resolution + 1


def max_rows(series: int, tiers: Sequence[Tier] = TIERS) -> int:
    """The bound on stored rows for `series` series, whatever the age of the store: what keeps the disk bounded."""
    return series * sum(points_kept(t) + 1 for t in tiers)  # +1: a bucket rolled up just before the next prune


def resolution_for(since_s: int, tiers: Sequence[Tier] = TIERS) -> int:
    """The finest resolution whose retention covers a window of `since_s` seconds back from now."""
    for tier in tiers:
        if since_s <= tier.retention:
            return tier.resolution
    return tiers[-1].resolution


_SINCE = re.compile(r"^([0-9]+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> int:
    """"90s", "10m", "1h", "7d" → seconds (at most the longest retention); BadInput naming the value otherwise."""
    found = _SINCE.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise BadInput(f"--since {text!r}: give a duration like 10m, 1h or 7d")
    seconds = int(found.group(1)) * _UNIT[found.group(2)]
    if seconds > TIERS[-1].retention:
        raise BadInput(f"--since {text!r}: metrics are kept {TIERS[-1].retention // 86400} days at most")
    return seconds


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """A small terminal chart: at most `width` characters, each the mean of its share of the values (None: no
    data, a space), scaled from the lowest (▁) to the highest (█) value; a flat series is all ▁."""
    if not values:
        return ""
    chunks: list[float | None] = []
    n = len(values)
    cells = min(width, n)
    for i in range(cells):
        part = [v for v in values[i * n // cells:(i + 1) * n // cells] if v is not None]
        chunks.append(sum(part) / len(part) if part else None)
    known = [v for v in chunks if v is not None]
    if not known:
        return " " * cells
    lo, hi = min(known), max(known)
    top = len(SPARKS) - 1
    return "".join(" " if v is None else SPARKS[0] if hi == lo else SPARKS[round((v - lo) / (hi - lo) * top)]
                   for v in chunks)


def human(name: str, value: float) -> str:
    """A value as the CLI prints it: bytes with a binary unit, rates and percents with sensible digits."""
    if name in BYTES_SERIES:
        size = float(value)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if abs(size) < 1024 or unit == "GiB":
                text = f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
                return text + ("/s" if name.endswith("_per_second") else "")
            size /= 1024
    if name.endswith("_rate"):
        return f"{value * 100:.1f} %"
    if name.endswith("_percent") or name.endswith("_percent_of_limit"):
        return f"{value:.1f} %"
    if name.endswith("_ms"):
        return f"{value:.1f} ms"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}"
