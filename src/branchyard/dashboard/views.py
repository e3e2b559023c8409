"""What the dashboard's pages show, from the API's answers (pure: JSON in, plain values out; table-tested in
tests/unit/test_dashboard_views.py). The templates only lay these values out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# A status word and its kind (the CSS class: the word is always printed too, so colour is never the only sign)
_GOOD = {"SUCCESS", "ACTIVE", "RUNNING", "PASS", "passed", "healthy", "approved", "open", "admitted"}
_BAD = {"FAILED", "CRASHED", "DOWN", "UNHEALTHY", "REMOVED_FAILED", "FAIL", "failed", "refused", "unhealthy", "CANCELLED",
        "pending approval"}
_IDLE = {"SLEEPING", "REMOVED", "NO DEPLOYMENTS", "SKIPPED", "skipped", "closed", "stopped", "expired", "evicted"}
_ADMISSION = {"deploy": "admitted", "pending_approval": "pending approval", "refused": "refused", "waiting": "waiting",
              "expired": "expired", "evicted": "evicted"}


def admission(decision: str | None) -> str:
    """A preview's admission (`previews.decision`) in the words of `branchyard previews list`."""
    return _ADMISSION.get(decision or "", decision or "deciding")


def status_kind(word: str | None) -> str:
    """`good`, `bad`, `idle` or `busy` (building, deploying, waiting…): the badge's class."""
    if word in _GOOD:
        return "good"
    if word in _BAD:
        return "bad"
    if word in _IDLE or not word:
        return "idle"
    return "busy"


def parse_time(iso: str | None) -> dt.datetime | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def age(iso: str | None, now: dt.datetime) -> str:
    """How long ago, in the largest whole unit: `just now`, `5 min`, `3 h`, `2 d`; `-` when unknown."""
    at = parse_time(iso)
    if at is None:
        return "-"
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def money(value: float | None) -> str:
    """`$12.34/mo`; `-` when unknown (nothing deployed, or no price)."""
    return "-" if value is None else f"${value:,.2f}/mo"


@dataclass(frozen=True)
class Card:
    """One environment on the board (the seed's picture: production, staging, pr-123)."""

    name: str
    branch: str | None
    url: str | None
    status: str
    commit: str
    deployed_ago: str
    replicas: str  # web's healthy/desired, e.g. "2/2"
    data_services: tuple[str, ...]
    auto_deploy: str
    protected: bool
    production: bool
    sleeping: str | None  # "idle" / "down" when asleep
    monthly: str
    preview: PreviewLine | None = None

    @property
    def kind(self) -> str:
        return status_kind(self.status)


@dataclass(frozen=True)
class PreviewLine:
    """A preview's pull request (or branch) on its card and in the previews list."""

    number: int | None
    kind: str  # pr | branch (previews.kind)
    author: str | None
    branch: str | None
    active_ago: str
    decision: str | None  # previews.decision as stored (deploy, pending_approval, …)
    admission: str  # in words: admitted, pending approval, refused, waiting …
    reason: str | None
    fork: bool


@dataclass
class Board:
    project: str
    persistent: list[Card] = field(default_factory=list)
    previews: list[Card] = field(default_factory=list)


def healthy_replicas(env: dict[str, Any]) -> str:
    """Web's healthy replicas over the desired count (`-` before a deployment; a cron service runs none)."""
    current = env.get("current_deployment")
    if current is None:
        return "-"
    web = (env.get("services") or {}).get("web") or {}
    desired = web.get("desired", len(env.get("replicas") or []))
    healthy = sum(1 for r in env.get("replicas") or [] if r.get("health") == "healthy")
    return f"{healthy}/{desired}"


def auto_deploy(env: dict[str, Any]) -> str:
    """How the environment gets new code: on a push of its branch, on its pull request's pushes, or by hand."""
    preview = env.get("preview")
    if preview is not None:
        return "on pull request pushes" if preview.get("kind") == "pr" else f"on push to {preview.get('branch')}"
    branch = env.get("branch")
    return f"on push to {branch}" if branch else "manual (no branch)"


def preview_line(preview: dict[str, Any], now: dt.datetime) -> PreviewLine:
    return PreviewLine(number=preview.get("number"), kind=preview.get("kind") or "pr",
                       author=preview.get("author"), branch=preview.get("branch"),
                       active_ago=age(preview.get("last_activity_at"), now), decision=preview.get("decision"),
                       admission=admission(preview.get("decision")), reason=preview.get("reason"),
                       fork=bool(preview.get("fork")))


def card(env: dict[str, Any], monthly: float | None, now: dt.datetime) -> Card:
    current = env.get("current_deployment") or {}
    sleeping = env.get("sleeping")
    preview = env.get("preview")
    return Card(
        name=env["name"], branch=env.get("branch"), url=env.get("url"), status=env.get("status") or "-",
        commit=short(current.get("commit")), deployed_ago=age(current.get("finished_at") or current.get("created_at"), now),
        replicas=healthy_replicas(env), data_services=tuple(env.get("data_services") or ()),
        auto_deploy=auto_deploy(env), protected=bool(env.get("protected")), production=bool(env.get("production")),
        sleeping=(sleeping or {}).get("kind") if sleeping else None, monthly=money(monthly),
        preview=preview_line(preview, now) if preview else None,
    )


def monthly_by_environment(cost_report: dict[str, Any] | None) -> dict[str, float | None]:
    """`GET /api/projects/{p}/cost` → environment name → projected $/month (None: not deployed)."""
    if not cost_report:
        return {}
    return {e["environment"]: (e.get("monthly") or {}).get("total") for e in cost_report.get("environments") or []}


def board(project: str, environments: list[dict[str, Any]], cost_report: dict[str, Any] | None,
          now: dt.datetime) -> Board:
    """A project's board: persistent environments (production first, then by name), then previews by pull request
    number (branch previews after them, by name)."""
    monthly = monthly_by_environment(cost_report)
    out = Board(project)
    for env in environments:
        c = card(env, monthly.get(env["name"]), now)
        (out.previews if env.get("ephemeral") else out.persistent).append(c)
    out.persistent.sort(key=lambda c: (not c.production, c.name))
    out.previews.sort(key=lambda c: (c.preview is None or c.preview.number is None,
                                     c.preview.number if c.preview and c.preview.number is not None else 0, c.name))
    return out


@dataclass(frozen=True)
class DeploymentRow:
    id: str
    short_id: str
    status: str
    commit: str
    trigger: str
    actor: str
    created_ago: str
    created_at: str
    current: bool
    can_rollback: bool
    error: str | None

    @property
    def kind(self) -> str:
        return status_kind(self.status)


def deployment_rows(deployments: list[dict[str, Any]], now: dt.datetime) -> list[DeploymentRow]:
    """`GET …/deployments` (newest first, as the API answers) → the environment page's table."""
    return [DeploymentRow(id=d["id"], short_id=d["id"][:8], status=d["status"], commit=short(d.get("commit")),
                          trigger=d.get("trigger") or "-", actor=d.get("actor") or "-",
                          created_ago=age(d.get("created_at"), now), created_at=(d.get("created_at") or "")[:19] + "Z",
                          current=bool(d.get("current")), can_rollback=bool(d.get("can_rollback")), error=d.get("error"))
            for d in deployments]


def sparkline(points: list[float | None], width: int = 120, height: int = 24) -> str:
    """An SVG polyline's `points` for a series (gaps skipped); empty when there is nothing to draw."""
    values = [p for p in points if p is not None]
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(points) - 1)
    coords = [f"{i * step:.1f},{height - (p - low) / span * height:.1f}" for i, p in enumerate(points) if p is not None]
    return " ".join(coords)


@dataclass(frozen=True)
class MetricLine:
    name: str
    last: str
    points: str  # an SVG polyline's points ("" when there is nothing to draw)


_MB = 1024 * 1024  # as the project's sizes mean it ("512 MB" is a limit of 512 × 1024² bytes)
_METRICS = (  # what an environment's page draws, in this order: (series, label, unit, scale, only this service)
    ("http_requests_per_second", "requests/s", "", 1.0, None),
    ("http_5xx_rate", "5xx rate", " %", 100.0, None),  # a fraction of requests, shown in percent as `metrics` does
    ("http_latency_p95_ms", "latency p95", " ms", 1.0, None),
    ("replica_memory_bytes", "web memory", " MB", 1 / _MB, "web"),  # web's replicas (workers have their own series)
    ("replica_cpu_percent", "web CPU", " %", 1.0, "web"),
    ("postgres_database_bytes", "database size", " MB", 1 / _MB, None),
)


def metric_lines(series: list[dict[str, Any]]) -> list[MetricLine]:
    """`GET …/metrics`'s series → sparklines: per metric the sum over its replicas at each time (memory, CPU of
    every web replica together)."""
    out = []
    for name, label, unit, scale, service in _METRICS:
        by_time: dict[float, float] = {}
        for s in series:
            if s.get("name") != name or (service is not None and s.get("service") != service):
                continue
            for at, value in s.get("points") or []:
                if value is not None:
                    by_time[at] = by_time.get(at, 0.0) + float(value)
        if not by_time:
            continue
        values = [by_time[t] * scale for t in sorted(by_time)]
        out.append(MetricLine(label, f"{values[-1]:,.1f}{unit}", sparkline(list(values))))
    return out
