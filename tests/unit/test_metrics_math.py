"""metrics.py, the pure arithmetic of issue 16's metrics: tables of exact values."""

from __future__ import annotations

import pytest

from branchyard import metrics as mx
from branchyard import monitoring as mon
from branchyard.errors import BadInput

TEN = list(range(1, 11))  # 1..10


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([5], 50, 5), ([5], 99, 5), ([5], 100, 5),
    (TEN, 50, 5), (TEN, 90, 9), (TEN, 95, 10), (TEN, 99, 10), (TEN, 10, 1), (TEN, 11, 2), (TEN, 100, 10),
    ([1, 2], 50, 1), ([1, 2], 51, 2),
    (list(range(1, 101)), 95, 95), (list(range(1, 101)), 99, 99), (list(range(1, 101)), 50, 50),
    (list(range(1, 1001)), 99.9, 999),
])
def test_nearest_rank_percentile(values, q, expected):
    assert mx.percentile(values, q) == expected


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1], 0), ([1], 101)])
def test_percentile_refuses(values, q):
    with pytest.raises(ValueError):
        mx.percentile(values, q)


@pytest.mark.parametrize(("ts", "res", "start"), [
    (0, 10, 0), (9.999, 10, 0), (10, 10, 10), (1234567.5, 10, 1234560), (1234567.5, 60, 1234560),
    (1234567.5, 3600, 1231200), (-0.5, 10, -10),
])
def test_window_start(ts, res, start):
    assert mx.window_start(ts, res) == start


def test_http_summary_of_a_window():
    # 20 requests: durations 10..200 ms, 3 answered 4xx, 2 answered 5xx, 1000 bytes in, 50_000 out, over 10 s
    durations = [i / 100 for i in range(1, 21)]
    s = mx.http_summary(durations, 3, 2, 1000, 50_000)
    assert s == {
        mon.HTTP_REQUESTS_PER_SECOND: 2.0,
        mon.HTTP_4XX_RATE: 0.15,
        mon.HTTP_5XX_RATE: 0.1,
        mon.HTTP_BYTES_IN_PER_SECOND: 100.0,
        mon.HTTP_BYTES_OUT_PER_SECOND: 5000.0,
        mon.HTTP_LATENCY_P50_MS: 100.0,
        mon.HTTP_LATENCY_P95_MS: 190.0,
        mon.HTTP_LATENCY_P99_MS: 200.0,
    }


def test_an_empty_window_has_zero_rates_and_no_latency():
    assert mx.http_summary([], 0, 0, 0, 0) == {
        mon.HTTP_REQUESTS_PER_SECOND: 0.0, mon.HTTP_4XX_RATE: 0.0, mon.HTTP_5XX_RATE: 0.0,
        mon.HTTP_BYTES_IN_PER_SECOND: 0.0, mon.HTTP_BYTES_OUT_PER_SECOND: 0.0,
    }


@pytest.mark.parametrize(("status", "klass"), [(200, "2xx"), (204, "2xx"), (301, "3xx"), (404, "4xx"), (499, "4xx"),
                                               (500, "5xx"), (599, "5xx"), (100, "1xx"), (0, "other"), (600, "other")])
def test_status_class(status, klass):
    assert mx.status_class(status) == klass


@pytest.mark.parametrize(("prev", "prev_at", "cpu", "at", "expected"), [
    (10.0, 100.0, 15.0, 110.0, 50.0),  # 5 s of CPU in 10 s: half a core
    (0.0, 0.0, 20.0, 10.0, 200.0),  # two cores busy
    (3.0, 50.0, 3.0, 60.0, 0.0),  # idle
    (5.0, 50.0, 4.0, 60.0, None),  # a worker exited with its time: cannot tell
    (5.0, 50.0, 6.0, 50.0, None),  # no time passed
])
def test_cpu_percent(prev, prev_at, cpu, at, expected):
    assert mx.cpu_percent(prev, prev_at, cpu, at) == expected


@pytest.mark.parametrize(("value", "limit", "expected"), [(256, 512, 50.0), (0, 10, 0.0), (5, None, None), (5, 0, None)])
def test_percent_of(value, limit, expected):
    assert mx.percent_of(value, limit) == expected


POINTS = [(0, 1.0), (10, 2.0), (20, 3.0), (30, 4.0), (40, 5.0), (50, 6.0), (60, 10.0), (70, 20.0)]


@pytest.mark.parametrize(("kind", "until", "expected"), [
    (mx.MEAN, 120, [(0, 3.5), (60, 15.0)]),
    (mx.MAX, 120, [(0, 6.0), (60, 20.0)]),
    (mx.SUM, 120, [(0, 21.0), (60, 30.0)]),
    (mx.MEAN, 60, [(0, 3.5)]),  # the bucket 60..120 is still filling: left for later
    (mx.MEAN, 59, []),
])
def test_rollup(kind, until, expected):
    assert mx.rollup(POINTS, 60, kind, until=until) == expected


def test_rollup_kinds_by_series():
    assert mx.rollup_kind(mon.HTTP_LATENCY_P95_MS) == mx.MAX
    assert mx.rollup_kind(mon.HTTP_LATENCY_P99_MS) == mx.MAX
    assert mx.rollup_kind(mon.HTTP_REQUESTS_PER_SECOND) == mx.MEAN
    assert mx.rollup_kind(mon.REPLICA_MEMORY_BYTES) == mx.MEAN


def test_tiers_retention_arithmetic():
    assert [(t.resolution, t.retention) for t in mx.TIERS] == [(10, 3600), (60, 86400), (3600, 2_592_000)]
    assert [mx.points_kept(t) for t in mx.TIERS] == [361, 1441, 721]
    assert mx.max_rows(1) == 362 + 1442 + 722
    assert mx.max_rows(10) == 10 * 2526
    assert mx.retention_cutoff(100_000.7, mx.TIERS[0]) == 96_400


@pytest.mark.parametrize(("since", "resolution"), [
    (60, 10), (3600, 10), (3601, 60), (86400, 60), (86401, 3600), (30 * 86400, 3600), (10**9, 3600),
])
def test_resolution_for(since, resolution):
    assert mx.resolution_for(since) == resolution


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h", 3600), (" 2h ", 7200), ("7d", 604800),
                                               ("30d", 2_592_000)])
def test_parse_since(text, seconds):
    assert mx.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1w", "-1h", "0m", "1.5h", "31d"])
def test_parse_since_refuses_with_one_line(text):
    with pytest.raises(BadInput) as err:
        mx.parse_since(text)
    assert "--since" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("values", "width", "expected"), [
    ([], 10, ""),
    ([0, 1, 2, 3, 4, 5, 6, 7], 10, "▁▂▃▄▅▆▇█"),
    ([7, 6, 5, 4, 3, 2, 1, 0], 8, "█▇▆▅▄▃▂▁"),
    ([5, 5, 5], 10, "▁▁▁"),  # flat
    ([0, 10], 10, "▁█"),
    ([0, 0, 10, 10], 2, "▁█"),  # each cell the mean of its share
    ([0, 2, 4, 10], 2, "▁█"),
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], 4, "▁▃▆█"),
    ([None, 1, None, 3], 10, " ▁ █"),  # no data: a space
    ([None, None], 10, "  "),
    ([1.0, 1.5, 2.0], 3, "▁▅█"),
])
def test_sparkline(values, width, expected):
    assert mx.sparkline(values, width) == expected


@pytest.mark.parametrize(("name", "value", "text"), [
    (mon.REPLICA_MEMORY_BYTES, 512, "512 B"),
    (mon.REPLICA_MEMORY_BYTES, 50 * 1024 * 1024, "50.0 MiB"),
    (mon.HTTP_BYTES_OUT_PER_SECOND, 2048, "2.0 KiB/s"),
    (mon.HTTP_5XX_RATE, 0.125, "12.5 %"),
    (mon.REPLICA_CPU_PERCENT, 12.345, "12.3 %"),
    (mon.MEMORY_PERCENT_OF_LIMIT, 50, "50.0 %"),
    (mon.HTTP_LATENCY_P95_MS, 3.21, "3.2 ms"),
    (mon.REDIS_KEYS, 12.0, "12"),
    (mon.HTTP_REQUESTS_PER_SECOND, 0.25, "0.25"),
])
def test_human(name, value, text):
    assert mx.human(name, value) == text
