"""Log records (pure): one raw line → a structured record, levels, durations, and the query filter.

A record is a JSON object, one per line in an environment's record segments (controller/logship.py writes them):

    {"time": "2026-12-03T12:37:42.123456Z", "environment": "staging", "service": "web", "replica": 0,
     "deployment": "d-…", "stream": "stdout" | "stderr" | "deploy" | "http", "level": "error" | None,
     "message": "…", …}

- A JSON object line from the app is parsed: level from `level`/`levelname`/`severity`, message from
  `message`/`msg`/`event`, the rest kept under `fields`; its time from `time`/`timestamp`/`ts`/`@timestamp` when
  it carries one, else when the shipper read it.
- A plain line is kept whole as the message, with a level only when it clearly carries one (`ERROR …`,
  `WARNING: …`, `2026-12-03 12:00:00,123 ERROR …`, `[error] …`, a Python `Traceback` header).
- A line of the router's access log (Caddy JSON) becomes a `stream = "http"` record: method, host, path (never the
  query string), status, duration_ms, bytes_in, bytes_out; level error for 5xx, warning for 4xx, else info.

Nothing here touches a file or the clock: `now` is always passed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import BadInput
from .monitoring import HttpEntry

LEVELS = ("debug", "info", "warning", "error", "critical")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_ALIASES = {
    "trace": "debug", "debug": "debug", "dbg": "debug",
    "info": "info", "information": "info", "notice": "info",
    "warn": "warning", "warning": "warning",
    "err": "error", "error": "error", "exception": "error",
    "crit": "critical", "critical": "critical", "fatal": "critical", "alert": "critical", "emerg": "critical",
    "emergency": "critical", "panic": "critical",
}
STREAMS = ("stdout", "stderr", "deploy", "http")
HTTP_FILTERS = ("exclude", "only", "include")  # access records: left out by default, `--http` shows only them
ACCESS_LOG = "access.log"  # the router's access log of an environment, in its logs directory (Caddy rolls it)
STDERR_SUFFIX = ".stderr.log"  # web.0.log is a replica's stdout, web.0.stderr.log its stderr
_RAW = re.compile(r"^(?P<service>[a-z][a-z0-9_-]*)\.(?P<slot>\d+)(?P<err>\.stderr)?\.log$")  # web, worker, mail_out

_LEVEL_KEYS = ("level", "levelname", "severity", "log.level", "lvl")
_MESSAGE_KEYS = ("message", "msg", "event")
_TIME_KEYS = ("time", "timestamp", "ts", "@timestamp", "asctime")
# A level word first on the line, maybe after a timestamp (digits, dashes, colons, commas, T/Z) and/or in brackets.
_PLAIN_LEVEL = re.compile(
    r"^\s*(?:[\[(]?[\d][\d:.,TZ+\-/]*[\])]?\s+){0,2}[\[(<]?"
    r"(TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL|PANIC|debug|info|warning|warn|error|critical|fatal)"
    r"(?:[\])>]|:|\s|$)"
)
_TRACEBACK = "Traceback (most recent call last):"


def normalize_level(value: Any) -> str | None:
    """A level name (any common spelling, or a Python logging number) → one of LEVELS; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        n = int(value)
        return "critical" if n >= 50 else "error" if n >= 40 else "warning" if n >= 30 else "info" if n >= 20 else "debug"
    if isinstance(value, str):
        return _ALIASES.get(value.strip().lower())
    return None


def level_rank(level: str | None) -> int:
    """-1 for a record with no level (below every minimum)."""
    return _RANK.get(level or "", -1)


def iso(ts: float) -> str:
    """Unix seconds → the records' time format (UTC, microseconds, Z)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> float | None:
    """A time a log line carries (unix seconds or milliseconds, or ISO 8601) → unix seconds; None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if v > 1e14:  # microseconds
            return v / 1e6
        if v > 1e11:  # milliseconds
            return v / 1e3
        return v if v > 0 else None
    if isinstance(value, str) and value.strip():
        text = value.strip().replace(",", ".")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # the records' times are UTC; so is a naive time a line carries
        return dt.timestamp()
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, *, now: float, field: str = "since") -> float:
    """`10m`, `2h`, `3d`, `45s`, `1w` (that long before `now`) or an ISO time (`2026-12-03T12:00:00Z`, a date, a
    naive time taken as UTC) → unix seconds. BadInput naming the field and the value otherwise."""
    m = _DURATION.match(value or "")
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2).lower()]
    ts = parse_time(value)
    if ts is None or not (value or "").strip()[:1].isdigit():
        raise BadInput(f"logs: --{field} {value!r} is neither a duration (10m, 2h, 3d) nor an ISO time (2026-12-03T12:00:00Z)")
    return ts


def plain_level(line: str) -> str | None:
    """The level a plain line clearly carries, else None."""
    if line.startswith(_TRACEBACK):
        return "error"
    m = _PLAIN_LEVEL.match(line)
    return normalize_level(m.group(1)) if m else None


@dataclass(frozen=True)
class Source:
    """Where a raw line came from: what every record of it says."""

    environment: str
    stream: str  # stdout | stderr | deploy | http
    service: str | None = None  # "web" for replicas, "deploy" for the deploy/build log, "router" for access lines
    replica: int | None = None
    deployment: str | None = None


def raw_source(name: str, *, environment: str, deployment: str) -> Source | None:
    """What a raw file in a deployment's log directory holds, from its name; None for a file that is not a log."""
    if name == "deploy.log":
        return Source(environment, "deploy", service="deploy", deployment=deployment)
    m = _RAW.match(name)
    if m is None:
        return None
    return Source(environment, "stderr" if m.group("err") else "stdout", service=m.group("service"),
                  replica=int(m.group("slot")), deployment=deployment)


def _first(obj: dict[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in obj and obj[k] not in (None, ""):
            return k, obj[k]
    return None, None


def app_record(line: str, source: Source, *, now: float) -> dict[str, Any]:
    """One line of a replica's output or of a deploy log → a record (JSON lines parsed, plain lines kept)."""
    text = line.rstrip("\r\n")
    record: dict[str, Any] = {"time": iso(now), "environment": source.environment, "service": source.service,
                              "replica": source.replica, "deployment": source.deployment, "stream": source.stream,
                              "level": None, "message": text}
    obj: Any = None
    if text.startswith("{") and text.endswith("}"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
    if isinstance(obj, dict):
        lk, lv = _first(obj, _LEVEL_KEYS)
        mk, mv = _first(obj, _MESSAGE_KEYS)
        tk, tv = _first(obj, _TIME_KEYS)
        ts = parse_time(tv) if tk else None
        record["level"] = normalize_level(lv)
        record["message"] = mv if isinstance(mv, str) else (json.dumps(mv) if mv is not None else "")
        if ts is not None:
            record["time"] = iso(ts)
        rest = {k: v for k, v in obj.items() if k not in (lk, mk, tk if ts is not None else None)}
        if rest:
            record["fields"] = rest
    else:
        record["level"] = plain_level(text)
    return record


def access_entry(line: str) -> HttpEntry | None:
    """One line of Caddy's access log (JSON) → an HttpEntry; None for anything else (a cut or foreign line)."""
    try:
        obj = json.loads(line)
        req = obj["request"]
        uri = str(req.get("uri", ""))
        return HttpEntry(
            ts=float(obj["ts"]),
            method=str(req.get("method", "")),
            host=str(req.get("host", "")).lower(),
            path=uri.split("?", 1)[0],  # Caddy's encoder already drops it; never trust that alone
            status=int(obj["status"]),
            duration_s=float(obj.get("duration", 0.0)),
            bytes_in=int(obj.get("bytes_read", 0)),
            bytes_out=int(obj.get("size", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def http_level(status: int) -> str:
    return "error" if status >= 500 else "warning" if status >= 400 else "info"


def access_record(entry: HttpEntry, environment: str, redact: Callable[[str], str] | None = None) -> dict[str, Any]:
    """An access entry → its record (stream `http`). Of its strings only the path comes from the client and can carry
    a secret (a webhook's token in its path): `redact` masks it there, and so in the message; the rest is the
    router's own (method, the route's host, numbers) — cheaper than `redact_record`'s walk, on the busiest source."""
    duration_ms = round(entry.duration_s * 1000, 3)
    path = redact(entry.path) if redact is not None else entry.path
    method = redact(entry.method) if redact is not None and not entry.method.isalpha() else entry.method
    return {"time": iso(entry.ts), "environment": environment, "service": "router", "replica": None,
            "deployment": None, "stream": "http", "level": http_level(entry.status),
            "message": f"{method} {entry.host}{path} {entry.status} {duration_ms:g}ms {entry.bytes_out}B",
            "method": method, "host": entry.host, "path": path, "status": entry.status,
            "duration_ms": duration_ms, "bytes_in": entry.bytes_in, "bytes_out": entry.bytes_out}


def redact_record(record: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    """Every string in the record (message, fields, nested) passed through `redact` (an environment's secrets masked)."""
    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return redact(v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    return walk(record)


# --- the query ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What `logs` asks for; every field optional (None: no filter)."""

    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive
    level: str | None = None  # minimum level: records without a level are left out
    grep: str | None = None  # case-insensitive substring of the message (or of an access record's path)
    deployment: str | None = None  # a deployment id prefix
    http: str = "exclude"  # exclude | only | include the router's access records
    build: bool = False  # only the deploy/build log
    replica: int | None = None  # only this replica's output

    def __post_init__(self) -> None:
        if self.level is not None and self.level not in _RANK:
            raise BadInput(f"logs: --level {self.level!r}: expected one of {', '.join(LEVELS)}")
        if self.http not in HTTP_FILTERS:
            raise BadInput(f"logs: http {self.http!r}: expected one of {', '.join(HTTP_FILTERS)}")


def make_query(*, now: float, since: str | None = None, until: str | None = None, level: str | None = None,
               grep: str | None = None, deployment: str | None = None, http: str | bool | None = None,
               build: bool = False) -> Query:
    """The API's/CLI's strings → a Query (BadInput naming the bad one)."""
    lvl = None
    if level:
        lvl = normalize_level(level)
        if lvl is None:
            raise BadInput(f"logs: --level {level!r}: expected one of {', '.join(LEVELS)}")
    if http is True:
        http = "only"
    elif http in (None, False, ""):
        http = "exclude"
    return Query(since=parse_since(since, now=now) if since else None,
                 until=parse_since(until, now=now, field="until") if until else None,
                 level=lvl, grep=grep or None, deployment=deployment or None, http=str(http).lower(), build=build)


def matches(record: dict[str, Any], q: Query) -> bool:
    """Whether a record passes the query (pure)."""
    is_http = record.get("stream") == "http"
    if (q.http == "exclude" and is_http) or (q.http == "only" and not is_http):
        return False
    if q.build and record.get("stream") != "deploy":
        return False
    if q.deployment is not None and not str(record.get("deployment") or "").startswith(q.deployment):
        return False
    if q.replica is not None and record.get("replica") != q.replica:
        return False
    if q.level is not None and level_rank(record.get("level")) < _RANK[q.level]:
        return False
    if q.since is not None or q.until is not None:
        ts = parse_time(record.get("time"))
        if ts is None or (q.since is not None and ts < q.since) or (q.until is not None and ts >= q.until):
            return False
    if q.grep is not None:
        hay = str(record.get("message") or "")
        if q.grep.lower() not in hay.lower():
            return False
    return True


PRODUCTION_RETENTION = 14 * 86400.0
STAGING_RETENTION = 7 * 86400.0


def retention(*, production: bool, ephemeral: bool) -> float | None:
    """How long an environment's records are kept (seconds): production 14 d, any other persistent environment
    (staging) 7 d, a preview until it is destroyed (None: its records go with it)."""
    if ephemeral:
        return None
    return PRODUCTION_RETENTION if production else STAGING_RETENTION


def _stream_of(line: bytes) -> bytes | None:
    """The record's own stream: the first `"stream":"…"` of its line (before `message` and `fields`, and a string
    value never holds a bare quote)."""
    i = line.find(b'"stream":"')
    if i < 0:
        return None
    i += len(b'"stream":"')
    return line[i:line.find(b'"', i)]


def prefilter(q: Query) -> Callable[[bytes], bool] | None:
    """A cheap test on a record's JSON line (as the shipper writes it: compact, keys in record order,
    `ensure_ascii=False`) that is False only for records `matches` would refuse, so most lines are never parsed;
    None when it would test nothing."""
    deployment = lowered = None
    if q.deployment is not None and '"' not in q.deployment and "\\" not in q.deployment:
        deployment = b'"deployment":"' + q.deployment.encode()
    if q.grep is not None and q.grep.isascii() and q.grep.isprintable() and not set(q.grep) & {'"', "\\"}:
        lowered = q.grep.lower().encode()
    want = b"deploy" if q.build else b"http" if q.http == "only" else None
    skip_http = q.http == "exclude"
    if deployment is None and lowered is None and want is None and not skip_http:
        return None

    def test(line: bytes) -> bool:
        if want is not None or skip_http:
            stream = _stream_of(line)
            if (want is not None and stream != want) or (skip_http and stream == b"http"):
                return False
        if deployment is not None and deployment not in line:
            return False
        return lowered is None or lowered in line.lower()
    return test


def human(record: dict[str, Any]) -> str:
    """`time service.replica stream level message`: one line per record for `logs` without --json."""
    who = record.get("service") or "-"
    if record.get("replica") is not None:
        who = f"{who}.{record['replica']}"
    return f"{record.get('time', '')} {who} {record.get('stream', '')} {record.get('level') or '-'} {record.get('message', '')}"
