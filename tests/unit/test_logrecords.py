"""logrecords.py (pure): raw lines → records, levels, durations, the query filter — tables of exact values."""

from __future__ import annotations

import json

import pytest

from branchyard import logrecords as lr
from branchyard.errors import BadInput
from branchyard.monitoring import HttpEntry

NOW = 1796295200.0  # 2026-12-03T10:53:20Z
SRC = lr.Source("staging", "stderr", service="web", replica=1, deployment="d1")


@pytest.mark.parametrize(("value", "level"), [
    ("INFO", "info"), ("warn", "warning"), ("Warning", "warning"), ("ERR", "error"), ("fatal", "critical"),
    ("CRITICAL", "critical"), ("trace", "debug"), ("notice", "info"), (40, "error"), (10, "debug"), (55, "critical"),
    (30.0, "warning"), ("verbose", None), (None, None), (True, None), ({"x": 1}, None),
])
def test_normalize_level(value, level):
    assert lr.normalize_level(value) == level


@pytest.mark.parametrize(("line", "level"), [
    ("ERROR something broke", "error"),
    ("WARNING: disk almost full", "warning"),
    ("INFO:     127.0.0.1:5000 - \"GET / HTTP/1.1\" 200 OK", "info"),  # uvicorn
    ("ERROR:root:boom", "error"),  # Python logging's basicConfig
    ("2026-12-03 12:00:00,123 ERROR app: boom", "error"),
    ("2026-12-03T12:00:00Z [warn] slow", "warning"),
    ("[ERROR] x", "error"),
    ("Traceback (most recent call last):", "error"),
    ("hello world", None),
    ("an ERROR in the middle is not a level", None),
    ("Errors: 0", None),
    ("INFORMATION is not a level word", None),
    ("", None),
])
def test_plain_level_only_when_the_line_clearly_carries_one(line, level):
    assert lr.plain_level(line) == level


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", NOW - 600), ("2h", NOW - 7200), ("3d", NOW - 3 * 86400), ("45s", NOW - 45), ("1w", NOW - 7 * 86400),
    ("1.5h", NOW - 5400), ("2026-12-03T10:00:00Z", 1796292000.0), ("2026-12-03T11:00:00+01:00", 1796292000.0),
    ("2026-12-03 10:00:00", 1796292000.0), ("2026-12-03", 1796256000.0),
])
def test_parse_since(text, expected):
    assert lr.parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["10", "ten minutes", "-5m", "m", "yesterday", "2026-13-45", ""])
def test_parse_since_refuses_with_one_line_naming_the_flag(text):
    with pytest.raises(BadInput, match=r"^logs: --until '.*' is neither a duration"):
        lr.parse_since(text, now=NOW, field="until")


@pytest.mark.parametrize(("value", "ts"), [
    (1796300000, 1796300000.0), (1796300000123, 1796300000.123), (1796300000123456, 1796300000.123456),
    ("2026-12-03T10:53:20Z", NOW), ("2026-12-03T10:53:20,5Z", NOW + 0.5), ("nope", None), (0, None), (False, None),
])
def test_parse_time(value, ts):
    assert lr.parse_time(value) == (pytest.approx(ts) if ts else None)


def test_plain_line_is_kept_whole_as_the_message():
    assert lr.app_record("WARNING: low disk\n", SRC, now=NOW) == {
        "time": "2026-12-03T10:53:20.000000Z", "environment": "staging", "service": "web", "replica": 1,
        "deployment": "d1", "stream": "stderr", "level": "warning", "message": "WARNING: low disk"}


@pytest.mark.parametrize(("obj", "level", "message", "fields", "time"), [
    ({"level": "error", "message": "db down", "user": 7}, "error", "db down", {"user": 7}, "2026-12-03T10:53:20.000000Z"),
    ({"levelname": "WARNING", "msg": "slow", "name": "app"}, "warning", "slow", {"name": "app"}, None),
    ({"severity": "CRITICAL", "event": "boom"}, "critical", "boom", None, None),
    ({"level": 40, "message": "num"}, "error", "num", None, None),
    ({"message": "no level"}, None, "no level", None, None),
    ({"level": "info", "message": "t", "timestamp": "2026-12-03T09:00:00Z"}, "info", "t", None, "2026-12-03T09:00:00.000000Z"),
    ({"level": "info", "message": "bad time", "time": "yesterday"}, "info", "bad time", {"time": "yesterday"}, None),
    ({"msg": {"nested": 1}}, None, '{"nested": 1}', None, None),
    ({"a": 1}, None, "", {"a": 1}, None),
])
def test_json_line_is_parsed(obj, level, message, fields, time):
    rec = lr.app_record(json.dumps(obj), SRC, now=NOW)
    assert (rec["level"], rec["message"], rec.get("fields"), rec["time"]) == (
        level, message, fields, time or "2026-12-03T10:53:20.000000Z")


def test_a_line_that_only_looks_like_json_is_plain():
    rec = lr.app_record('{"level": "error", oops}', SRC, now=NOW)
    assert (rec["level"], rec["message"], "fields" in rec) == (None, '{"level": "error", oops}', False)


@pytest.mark.parametrize(("name", "source"), [
    ("web.0.log", lr.Source("e", "stdout", service="web", replica=0, deployment="d")),
    ("web.12.stderr.log", lr.Source("e", "stderr", service="web", replica=12, deployment="d")),
    ("worker.1.log", lr.Source("e", "stdout", service="worker", replica=1, deployment="d")),
    ("mail_out.0.stderr.log", lr.Source("e", "stderr", service="mail_out", replica=0, deployment="d")),  # Procfile type
    ("deploy.log", lr.Source("e", "deploy", service="deploy", deployment="d")),
    ("web.log", None), ("notes.txt", None), ("web.0.log.tmp", None),
])
def test_raw_source_from_the_file_name(name, source):
    assert lr.raw_source(name, environment="e", deployment="d") == source


CADDY_LINE = json.dumps({
    "level": "info", "ts": 1796300000.25, "logger": "http.log.access.by_p_e", "msg": "handled request",
    "request": {"remote_ip": "127.0.0.1", "proto": "HTTP/1.1", "method": "POST", "host": "App.localhost",
                "uri": "/api/items?token=s3cret"},
    "bytes_read": 12, "duration": 0.0123, "size": 345, "status": 503})


def test_access_line_to_entry_and_record():
    entry = lr.access_entry(CADDY_LINE)
    assert entry == HttpEntry(ts=1796300000.25, method="POST", host="app.localhost", path="/api/items", status=503,
                              duration_s=0.0123, bytes_in=12, bytes_out=345)
    assert lr.access_record(entry, "production") == {
        "time": "2026-12-03T12:13:20.250000Z", "environment": "production", "service": "router", "replica": None,
        "deployment": None, "stream": "http", "level": "error",
        "message": "POST app.localhost/api/items 503 12.3ms 345B", "method": "POST", "host": "app.localhost",
        "path": "/api/items", "status": 503, "duration_ms": 12.3, "bytes_in": 12, "bytes_out": 345}


def test_access_record_masks_a_secret_in_the_path_and_in_the_message():
    entry = HttpEntry(ts=1796300000.25, method="POST", host="app.localhost", path="/hook/T0-s3cr3t", status=204,
                      duration_s=0.001, bytes_in=2, bytes_out=0)
    rec = lr.access_record(entry, "production", lambda s: s.replace("s3cr3t", "***"))
    assert (rec["path"], rec["message"]) == ("/hook/T0-***", "POST app.localhost/hook/T0-*** 204 1ms 0B")
    assert "s3cr3t" not in json.dumps(rec)


@pytest.mark.parametrize("line", ["", "not json", "{}", '{"ts": 1, "request": {}}', '{"ts": "x", "status": 200, "request": {}}',
                                  '{"ts": 1, "status": 200, "request": "GET /"}'])
def test_foreign_access_lines_are_skipped(line):
    assert lr.access_entry(line) is None


@pytest.mark.parametrize(("status", "level"), [(200, "info"), (304, "info"), (404, "warning"), (499, "warning"),
                                               (500, "error"), (502, "error")])
def test_http_level(status, level):
    assert lr.http_level(status) == level


def test_redact_record_masks_every_string_nested():
    rec = {"message": "pw=hunter22", "fields": {"a": ["x hunter22", 3], "b": None}, "status": 200}
    assert lr.redact_record(rec, lambda s: s.replace("hunter22", "***")) == {
        "message": "pw=***", "fields": {"a": ["x ***", 3], "b": None}, "status": 200}


def rec(level=None, stream="stdout", message="m", time="2026-12-03T10:50:00.000000Z", deployment="abc123"):
    return {"time": time, "level": level, "stream": stream, "message": message, "deployment": deployment}


@pytest.mark.parametrize(("query", "record", "kept"), [
    (lr.Query(), rec(), True),
    (lr.Query(), rec(stream="http"), False),  # access records are left out by default…
    (lr.Query(http="only"), rec(stream="http"), True),  # …--http shows only them
    (lr.Query(http="only"), rec(), False),
    (lr.Query(http="include"), rec(stream="http"), True),
    (lr.Query(level="warning"), rec(level="warning"), True),
    (lr.Query(level="warning"), rec(level="critical"), True),
    (lr.Query(level="warning"), rec(level="info"), False),
    (lr.Query(level="debug"), rec(level=None), False),  # a minimum level leaves out lines that carry none
    (lr.Query(grep="BOOM"), rec(message="a boom here"), True),
    (lr.Query(grep="boom"), rec(message="quiet"), False),
    (lr.Query(deployment="abc"), rec(), True),
    (lr.Query(deployment="abd"), rec(), False),
    (lr.Query(deployment="abc"), rec(deployment=None), False),
    (lr.Query(since=NOW - 200), rec(), True),  # 10:50:00 is NOW - 200
    (lr.Query(since=NOW - 199), rec(), False),
    (lr.Query(until=NOW - 200), rec(), False),  # until is exclusive
    (lr.Query(until=NOW - 199), rec(), True),
    (lr.Query(since=NOW - 300), rec(time="garbage"), False),
    (lr.Query(build=True), rec(stream="deploy"), True),
    (lr.Query(build=True), rec(), False),
])
def test_matches(query, record, kept):
    assert lr.matches(record, query) is kept


@pytest.mark.parametrize(("kwargs", "query"), [
    ({}, lr.Query()),
    ({"since": "10m", "until": "1m", "level": "WARN", "grep": "x", "deployment": "ab", "http": True},
     lr.Query(since=NOW - 600, until=NOW - 60, level="warning", grep="x", deployment="ab", http="only")),
    ({"http": "include", "grep": ""}, lr.Query(http="include")),
    ({"http": False}, lr.Query()),
])
def test_make_query(kwargs, query):
    assert lr.make_query(now=NOW, **kwargs) == query


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"level": "loud"}, "logs: --level 'loud': expected one of debug, info, warning, error, critical"),
    ({"http": "some"}, "logs: http 'some': expected one of exclude, only, include"),
    ({"since": "soon"}, "logs: --since 'soon' is neither a duration"),
])
def test_make_query_refuses(kwargs, message):
    with pytest.raises(BadInput) as err:
        lr.make_query(now=NOW, **kwargs)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(("record", "line"), [
    ({"time": "T", "service": "web", "replica": 0, "stream": "stderr", "level": "error", "message": "boom"},
     "T web.0 stderr error boom"),
    ({"time": "T", "service": "deploy", "replica": None, "stream": "deploy", "level": None, "message": "-----> x"},
     "T deploy deploy - -----> x"),
])
def test_human(record, line):
    assert lr.human(record) == line


@pytest.mark.parametrize(("query", "record", "kept"), [
    *[(q, r, k) for q, r, k in [
        (lr.Query(), rec(), True),
        (lr.Query(), rec(stream="http"), False),
        (lr.Query(http="only"), rec(stream="http"), True),
        (lr.Query(http="only"), rec(), False),
        (lr.Query(grep="BOOM"), rec(message="a boom here"), True),
        (lr.Query(grep="boom"), rec(message="quiet"), False),
        (lr.Query(grep='say "hi"'), rec(message='they say "hi"'), True),  # escaped in JSON: not pre-tested
        (lr.Query(grep="é"), rec(message="café"), True),
        (lr.Query(deployment="abc"), rec(), True),
        (lr.Query(deployment="abd"), rec(), False),
        (lr.Query(build=True), rec(stream="deploy"), True),
        (lr.Query(build=True), rec(), False),
    ]],
    # an app's own `stream` field (under fields) is not the record's stream
    (lr.Query(), {**rec(), "fields": {"stream": "http"}}, True),
    (lr.Query(http="only"), {**rec(), "fields": {"stream": "http"}}, False),
])
def test_prefilter_never_refuses_a_match_and_agrees_here(query, record, kept):
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    pre = lr.prefilter(query)
    assert lr.matches(record, query) is kept
    assert (pre is None or pre(line)) is kept or (kept is False and pre(line))  # a pass may still be refused later


def test_prefilter_is_none_when_it_has_nothing_to_test():
    assert lr.prefilter(lr.Query(http="include")) is None
    assert lr.prefilter(lr.Query(http="include", level="error")) is None
