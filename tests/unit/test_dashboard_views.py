"""dashboard/views.py and promotion_text.py (pure): what the dashboard's pages show from the API's answers, table by
table. The inputs are shaped like the API's JSON (controller/environments.py `_env_dict`, previews.py
`_preview_dict`, costs.py `report`, metrics.py `series`, promotions.py `_dict`); the clock is a fixed instant."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from branchyard import promotion as pm
from branchyard import promotion_text
from branchyard.dashboard import views
from branchyard.dashboard.views import Card, DeploymentRow, MetricLine, PreviewLine

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SHA_A = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
SHA_B = "9a0c3311b7f2aa00bb11cc22dd33ee44ff556677"


def ago(seconds: float) -> str:
    """An instant `seconds` before NOW as the API writes it (naive UTC isoformat + "Z")."""
    return (NOW - dt.timedelta(seconds=seconds)).replace(tzinfo=None).isoformat() + "Z"


# --------------------------------------------------------------------------------------------- words


@pytest.mark.parametrize(("word", "kind"), [
    *[(w, "good") for w in ("SUCCESS", "ACTIVE", "RUNNING", "PASS", "passed", "healthy", "approved", "open",
                            "admitted")],
    *[(w, "bad") for w in ("FAILED", "CRASHED", "DOWN", "UNHEALTHY", "REMOVED_FAILED", "FAIL", "failed", "refused",
                           "unhealthy", "CANCELLED", "pending approval")],
    *[(w, "idle") for w in ("SLEEPING", "REMOVED", "NO DEPLOYMENTS", "SKIPPED", "skipped", "closed", "stopped",
                            "expired", "evicted", None, "")],
    *[(w, "busy") for w in ("BUILDING", "DEPLOYING", "QUEUED", "waiting", "deciding", "PROMOTING", "starting")],
])  # fmt: skip
def test_status_kind(word: str | None, kind: str) -> None:
    assert views.status_kind(word) == kind


@pytest.mark.parametrize(("decision", "words", "kind"), [
    ("deploy", "admitted", "good"),
    ("pending_approval", "pending approval", "bad"),
    ("refused", "refused", "bad"),
    ("waiting", "waiting", "busy"),
    ("expired", "expired", "idle"),
    ("evicted", "evicted", "idle"),
    (None, "deciding", "busy"),  # not decided yet
    ("", "deciding", "busy"),
    ("some_new_decision", "some_new_decision", "busy"),  # unknown: shown as stored
])  # fmt: skip
def test_admission_in_words_and_its_badge(decision: str | None, words: str, kind: str) -> None:
    assert views.admission(decision) == words
    assert views.status_kind(views.admission(decision)) == kind


@pytest.mark.parametrize(("iso", "shown"), [
    (ago(0), "just now"),
    (ago(59), "just now"),
    (ago(59.9), "just now"),  # whole seconds, rounded down
    (ago(60), "1 min"),
    (ago(3599), "59 min"),
    (ago(3600), "1 h"),
    (ago(86399), "23 h"),
    (ago(86400), "1 d"),
    (ago(10 * 86400 + 5), "10 d"),
    ("2026-03-01T13:00:00+02:00", "1 h"),  # an offset is honoured: 11:00 UTC
    (None, "-"),
    ("", "-"),
    ("yesterday", "-"),
    ("2026-13-45T99:00:00Z", "-"),
    (ago(-3600), "just now"),  # in the future (a clock ahead): never a negative age
])  # fmt: skip
def test_age(iso: str | None, shown: str) -> None:
    assert views.age(iso, NOW) == shown


@pytest.mark.parametrize(("sha", "shown"), [
    (SHA_A, "a1b2c3d4e5f6"),
    ("abc123", "abc123"),
    (None, "-"),
    ("", "-"),
])  # fmt: skip
def test_short(sha: str | None, shown: str) -> None:
    assert views.short(sha) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (None, "-"),
    (0.0, "$0.00/mo"),
    (86.5, "$86.50/mo"),
    (0.004, "$0.00/mo"),
    (1234.567, "$1,234.57/mo"),
])  # fmt: skip
def test_money(value: float | None, shown: str) -> None:
    assert views.money(value) == shown


# --------------------------------------------------------------------------------------------- environments


def replica(env: str, slot: int, health: str) -> dict[str, Any]:
    """One of `_env_dict`'s `replicas` (web's)."""
    return {"service": "web", "slot": slot, "name": f"{env}.web.{slot}", "pid": 4000 + slot, "port": 9000 + slot,
            "host": "10.77.0.2", "state": "RUNNING" if health != "starting" else "STARTING",
            "alive": health != "unhealthy", "health": health, "health_failures": 0, "health_detail": None,
            "restarts": 0, "uptime_seconds": 12.5, "last_exit": None}


def deployment(commit: str | None = SHA_A, *, status: str = "SUCCESS", created: float = 7200.0,
               finished: float | None = 7000.0, dep_id: str = "d41f0a2b-5c6d-4e7f-8a9b-0c1d2e3f4a5b") -> dict[str, Any]:
    """`deployment_dict`'s shape."""
    return {"id": dep_id, "status": status, "commit": commit, "branch": "main", "trigger": "push", "actor": "alice",
            "error": None, "created_at": ago(created), "finished_at": ago(finished) if finished is not None else None,
            "tests": None}


def services(desired: int, replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """`services_status`'s shape (web only)."""
    return {"web": {"desired": desired, "running": sum(1 for r in replicas if r["alive"]), "total": len(replicas),
                    "restarts": 0, "command": None, "replicas": replicas}}


def env_dict(name: str, *, replicas: list[dict[str, Any]] | None = None, desired: int = 1,
             **over: Any) -> dict[str, Any]:
    """One environment as `GET /api/projects/{p}/environments` answers it (every key of `_env_dict`)."""
    reps = replicas if replicas is not None else [replica(name, 0, "healthy")]
    current = deployment()
    out: dict[str, Any] = {
        "project": "shop", "name": name, "branch": name if name != "production" else "main", "branch_pinned": False,
        "production": name == "production", "ephemeral": False, "protected": False, "state": "ACTIVE",
        "sleeping": None, "url": f"https://{name}.shop.example", "hostname": f"{name}.shop.example", "domains": [],
        "status": "SUCCESS", "replicas_override": None, "current_deployment": current, "latest_deployment": current,
        "target_deployment": None, "replicas": reps, "services": services(desired, reps), "standby": [],
        "uptime": None, "isolation": {}, "database_storage": None, "cron": None, "data_services": [],
    }
    out.update(over)
    return out


def preview_dict(env: str, *, kind: str = "pr", number: int | None = None, branch: str = "feature/x",
                 **over: Any) -> dict[str, Any]:
    """`_preview_dict`'s shape (kind "pr" or "branch", as stored)."""
    out = {"environment": env, "kind": kind, "number": number, "branch": branch, "head_sha": SHA_B,
           "head_repo": "acme/shop", "fork": False, "bot": False, "draft": False, "author": "bob", "open": True,
           "decision": "deploy", "reason": None, "approved_sha": None, "last_activity_at": ago(300)}
    out.update(over)
    return out


def preview_env(name: str, preview: dict[str, Any] | None) -> dict[str, Any]:
    return env_dict(name, ephemeral=True, branch=preview["branch"] if preview else None, preview=preview)


NO_CURRENT = env_dict("staging", replicas=[], current_deployment=None, latest_deployment=None, status="NO DEPLOYMENTS")


@pytest.mark.parametrize(("env", "shown"), [
    pytest.param(NO_CURRENT, "-", id="no-current-deployment"),
    pytest.param(env_dict("production", desired=2, replicas=[replica("production", 0, "healthy"),
                                                             replica("production", 1, "healthy")]), "2/2",
                 id="2-of-2-healthy"),
    pytest.param(env_dict("production", desired=2, replicas=[replica("production", 0, "healthy"),
                                                             replica("production", 1, "unhealthy")]), "1/2",
                 id="1-healthy-of-2-desired"),
    pytest.param(env_dict("production", desired=2, replicas=[replica("production", 0, "healthy"),
                                                             replica("production", 1, "starting")]), "1/2",
                 id="starting-is-not-healthy"),
    pytest.param(env_dict("production", desired=3, replicas=[replica("production", 0, "healthy")]), "1/3",
                 id="scaling-up-desired-from-services"),
    pytest.param(env_dict("staging", replicas=[replica("staging", 0, "healthy"), replica("staging", 1, "unknown"),
                                               replica("staging", 2, "healthy")], services=None), "2/3",
                 id="services-missing-desired-is-replica-count"),
    pytest.param(env_dict("staging", replicas=[], services={}), "0/0", id="services-without-web"),
])  # fmt: skip
def test_healthy_replicas(env: dict[str, Any], shown: str) -> None:
    assert views.healthy_replicas(env) == shown


@pytest.mark.parametrize(("env", "shown"), [
    pytest.param(env_dict("staging", branch="develop"), "on push to develop", id="branch-environment"),
    pytest.param(env_dict("qa", branch=None), "manual (no branch)", id="no-branch"),
    pytest.param(preview_env("pr-7", preview_dict("pr-7", kind="pr", number=7, branch="feature/x")),
                 "on pull request pushes", id="pull-request-preview"),
    pytest.param(preview_env("feature-y", preview_dict("feature-y", kind="branch", branch="feature/y")),
                 "on push to feature/y", id="branch-preview"),
])  # fmt: skip
def test_auto_deploy(env: dict[str, Any], shown: str) -> None:
    assert views.auto_deploy(env) == shown


PRODUCTION = env_dict(
    "production", protected=True, data_services=["postgres", "redis"], desired=2,
    replicas=[replica("production", 0, "healthy"), replica("production", 1, "healthy")],
)
SLEEPING = env_dict(
    "staging", branch="develop", state="SLEEPING", status="SLEEPING", replicas=[],
    sleeping={"since": ago(4000), "kind": "idle"}, data_services=["postgres"],
)
DOWN = env_dict("qa", branch=None, state="SLEEPING", status="SLEEPING", replicas=[],
                sleeping={"since": ago(90000), "kind": "down"})
DEPLOYING = env_dict("dev", status="DEPLOYING", current_deployment=deployment(SHA_B, status="DEPLOYING", created=300,
                                                                               finished=None))
BRANCH_PREVIEW = preview_env("feature-y", preview_dict("feature-y", kind="branch", branch="feature/y",
                                                       last_activity_at=ago(7200)))


@pytest.mark.parametrize(("env", "monthly", "expected"), [
    pytest.param(PRODUCTION, 86.5, Card(
        name="production", branch="main", url="https://production.shop.example", status="SUCCESS",
        commit="a1b2c3d4e5f6", deployed_ago="1 h", replicas="2/2", data_services=("postgres", "redis"),
        auto_deploy="on push to main", protected=True, production=True, sleeping=None, monthly="$86.50/mo",
    ), id="production-protected-with-data-services"),
    pytest.param(SLEEPING, 12.0, Card(
        name="staging", branch="develop", url="https://staging.shop.example", status="SLEEPING",
        commit="a1b2c3d4e5f6", deployed_ago="1 h", replicas="0/1", data_services=("postgres",),
        auto_deploy="on push to develop", protected=False, production=False, sleeping="idle", monthly="$12.00/mo",
    ), id="sleeping-idle"),
    pytest.param(DOWN, None, Card(
        name="qa", branch=None, url="https://qa.shop.example", status="SLEEPING", commit="a1b2c3d4e5f6",
        deployed_ago="1 h", replicas="0/1", data_services=(), auto_deploy="manual (no branch)", protected=False,
        production=False, sleeping="down", monthly="-",
    ), id="sleeping-down-no-cost"),
    pytest.param(NO_CURRENT, None, Card(
        name="staging", branch="staging", url="https://staging.shop.example", status="NO DEPLOYMENTS", commit="-",
        deployed_ago="-", replicas="-", data_services=(), auto_deploy="on push to staging", protected=False,
        production=False, sleeping=None, monthly="-",
    ), id="never-deployed"),
    pytest.param(DEPLOYING, 1.0, Card(
        name="dev", branch="dev", url="https://dev.shop.example", status="DEPLOYING", commit="9a0c3311b7f2",
        deployed_ago="5 min", replicas="1/1", data_services=(), auto_deploy="on push to dev", protected=False,
        production=False, sleeping=None, monthly="$1.00/mo",
    ), id="unfinished-deployment-ages-from-its-creation"),
    pytest.param(BRANCH_PREVIEW, 3.25, Card(
        name="feature-y", branch="feature/y", url="https://feature-y.shop.example", status="SUCCESS",
        commit="a1b2c3d4e5f6", deployed_ago="1 h", replicas="1/1", data_services=(),
        auto_deploy="on push to feature/y", protected=False, production=False, sleeping=None, monthly="$3.25/mo",
        preview=PreviewLine(number=None, kind="branch", author="bob", branch="feature/y", active_ago="2 h",
                            decision="deploy", admission="admitted", reason=None, fork=False),
    ), id="branch-preview"),
])  # fmt: skip
def test_card(env: dict[str, Any], monthly: float | None, expected: Card) -> None:
    assert views.card(env, monthly, NOW) == expected


@pytest.mark.parametrize(("preview", "expected"), [
    pytest.param(preview_dict("pr-12", number=12, fork=True, author="mallory", decision="pending_approval",
                              reason="pull request from a fork: waiting for `branchyard previews approve`"),
                 PreviewLine(number=12, kind="pr", author="mallory", branch="feature/x", active_ago="5 min",
                             decision="pending_approval", admission="pending approval",
                             reason="pull request from a fork: waiting for `branchyard previews approve`", fork=True),
                 id="fork-pending-approval"),
    pytest.param(preview_dict("pr-3", number=3, decision=None, author=None, last_activity_at=ago(3 * 86400)),
                 PreviewLine(number=3, kind="pr", author=None, branch="feature/x", active_ago="3 d", decision=None,
                             admission="deciding", reason=None, fork=False),
                 id="not-decided-yet"),
])  # fmt: skip
def test_card_of_a_pull_request_preview(preview: dict[str, Any], expected: PreviewLine) -> None:
    c = views.card(preview_env(preview["environment"], preview), None, NOW)
    assert c.preview == expected
    assert (c.name, c.production, c.kind) == (preview["environment"], False, "good")


def test_card_kind_follows_its_status() -> None:
    assert [views.card(e, None, NOW).kind for e in (PRODUCTION, SLEEPING, DEPLOYING, NO_CURRENT)] == [
        "good", "idle", "busy", "idle"]


# --------------------------------------------------------------------------------------------- board


def cost_entry(env: str, total: float | None) -> dict[str, Any]:
    """One environment of costs.py `report`."""
    return {"environment": env, "production": env == "production", "preview": env.startswith("pr-"),
            "state": "RUNNING", "allocation": None,
            "monthly": {"total": total, "items": []} if total is not None else None,
            "measured": {"total": 0.1, "since": "2026-01-01T00:00:00+00:00", "running_seconds": 10.0,
                         "counted_until": None, "memory_gb_seconds": 0.0, "vcpu_seconds": 0.0,
                         "storage_gb_seconds": 0.0}}


COST = {"project": "shop", "currency": "USD", "hours_per_month": 730, "prices": {},
        "environments": [cost_entry("production", 86.5), cost_entry("staging", 22.0), cost_entry("dev", None),
                         cost_entry("pr-12", 4.0), cost_entry("a-branch", 0.0)]}

ENVIRONMENTS = [
    env_dict("staging"),
    preview_env("pr-12", preview_dict("pr-12", number=12)),
    preview_env("feature-y", preview_dict("feature-y", kind="branch", branch="feature/y")),
    env_dict("dev"),
    preview_env("pr-100", preview_dict("pr-100", number=100)),
    env_dict("production"),
    preview_env("a-branch", preview_dict("a-branch", kind="branch", branch="a/branch")),
    preview_env("pr-3", preview_dict("pr-3", number=3)),
    env_dict("alpha"),
]


def test_board_orders_production_first_then_by_name_and_previews_by_number() -> None:
    b = views.board("shop", ENVIRONMENTS, COST, NOW)
    assert b.project == "shop"
    assert [c.name for c in b.persistent] == ["production", "alpha", "dev", "staging"]
    # by number (3 < 12 < 100, not as text), then the branch previews by name
    assert [c.name for c in b.previews] == ["pr-3", "pr-12", "pr-100", "a-branch", "feature-y"]


def test_board_puts_a_preview_without_its_record_after_the_numbered_ones() -> None:
    envs = [preview_env("zz-orphan", None), preview_env("pr-9", preview_dict("pr-9", number=9))]
    assert [c.name for c in views.board("shop", envs, None, NOW).previews] == ["pr-9", "zz-orphan"]


@pytest.mark.parametrize(("report", "name", "shown"), [
    (COST, "production", "$86.50/mo"),
    (COST, "staging", "$22.00/mo"),
    (COST, "dev", "-"),  # in the report, nothing deployed (monthly None)
    (COST, "alpha", "-"),  # not in the report
    (COST, "pr-12", "$4.00/mo"),
    (COST, "a-branch", "$0.00/mo"),  # priced at zero is not unknown
    (COST, "pr-3", "-"),
    (None, "production", "-"),  # the cost report was not available
    ({"project": "shop", "environments": []}, "production", "-"),
])  # fmt: skip
def test_board_looks_up_each_environments_monthly_cost(report: dict[str, Any] | None, name: str, shown: str) -> None:
    b = views.board("shop", ENVIRONMENTS, report, NOW)
    assert {c.name: c.monthly for c in b.persistent + b.previews}[name] == shown


# --------------------------------------------------------------------------------------------- deployments


def test_deployment_rows() -> None:
    newest = deployment(SHA_B, status="FAILED", created=120, finished=60, dep_id="0f1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff")
    newest |= {"error": "build failed: npm ci exited 1", "current": False, "can_rollback": False,
               "created_at": "2026-03-01T11:57:59.500000Z"}
    current = deployment(SHA_A, created=7200) | {"current": True, "can_rollback": True}
    old = deployment(None, status="REMOVED", created=3 * 86400, dep_id="77aa88bb-0000-1111-2222-333344445555")
    old |= {"trigger": None, "actor": None, "current": False, "can_rollback": False,
            "created_at": "2026-02-26T12:00:00Z"}
    rows = views.deployment_rows([newest, current, old], NOW)
    assert rows == [
        DeploymentRow(id="0f1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff", short_id="0f1e2d3c", status="FAILED",
                      commit="9a0c3311b7f2", trigger="push", actor="alice", created_ago="2 min",
                      created_at="2026-03-01T11:57:59Z", current=False, can_rollback=False,
                      error="build failed: npm ci exited 1"),
        DeploymentRow(id="d41f0a2b-5c6d-4e7f-8a9b-0c1d2e3f4a5b", short_id="d41f0a2b", status="SUCCESS",
                      commit="a1b2c3d4e5f6", trigger="push", actor="alice", created_ago="2 h",
                      created_at="2026-03-01T10:00:00Z", current=True, can_rollback=True, error=None),
        DeploymentRow(id="77aa88bb-0000-1111-2222-333344445555", short_id="77aa88bb", status="REMOVED", commit="-",
                      trigger="-", actor="-", created_ago="3 d", created_at="2026-02-26T12:00:00Z", current=False,
                      can_rollback=False, error=None),
    ]
    assert [r.kind for r in rows] == ["bad", "good", "idle"]


def test_deployment_rows_of_nothing() -> None:
    assert views.deployment_rows([], NOW) == []


# --------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(("points", "size", "drawn"), [
    ([], {}, ""),
    ([5.0], {}, ""),
    ([None, 5.0, None], {}, ""),  # fewer than 2 points to draw
    ([None, None], {}, ""),
    ([0.0, 10.0], {}, "0.0,24.0 120.0,0.0"),
    ([0.0, 5.0, 10.0], {}, "0.0,24.0 60.0,12.0 120.0,0.0"),
    ([10.0, 0.0, 5.0], {}, "0.0,0.0 60.0,24.0 120.0,12.0"),
    ([0.0, None, 10.0], {}, "0.0,24.0 120.0,0.0"),  # a gap keeps its place on the time axis
    ([None, 0.0, 10.0, None], {}, "40.0,24.0 80.0,0.0"),
    ([3.0, 3.0, 3.0], {}, "0.0,24.0 60.0,24.0 120.0,24.0"),  # flat: a line along the bottom, no division by zero
    ([-1.0, 1.0], {}, "0.0,24.0 120.0,0.0"),
    ([1.0, 2.0], {"width": 10, "height": 4}, "0.0,4.0 10.0,0.0"),
])  # fmt: skip
def test_sparkline(points: list[float | None], size: dict[str, int], drawn: str) -> None:
    assert views.sparkline(points, **size) == drawn


def series(name: str, points: list[list[float | None]], service: str | None = None,
           replica_name: str | None = None) -> dict[str, Any]:
    """One of `GET …/metrics`'s `series`."""
    return {"name": name, "service": service, "replica": replica_name, "points": points}


MB = 1024 * 1024  # the project's MB (a "512 MB" limit is 512 × 1024² bytes)
WEB_MEMORY = [
    series("replica_memory_bytes", [[100, 200 * MB], [110, 250 * MB]], "web", "production.web.0"),
    series("replica_memory_bytes", [[90, 50 * MB], [100, 100 * MB], [110, 150 * MB]], "web", "production.web.1"),
]
WORKER_MEMORY = series("replica_memory_bytes", [[100, 900 * MB], [110, 900 * MB]], "worker", "production.worker.0")


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param([], [], id="no-series"),
    pytest.param(WEB_MEMORY, [MetricLine("web memory", "400.0 MB", "0.0,24.0 60.0,6.9 120.0,0.0")],
                 id="memory-summed-across-replicas-per-time-in-MB"),
    pytest.param([*WEB_MEMORY, WORKER_MEMORY], [MetricLine("web memory", "400.0 MB", "0.0,24.0 60.0,6.9 120.0,0.0")],
                 id="a-workers-memory-is-not-webs"),
    pytest.param([series("http_5xx_rate", [[100, 0.0], [110, 0.03]])], [MetricLine("5xx rate", "3.0 %", "0.0,24.0 120.0,0.0")],
                 id="5xx-rate-in-percent"),
    pytest.param([series("replica_cpu_percent", [[100, 12.5], [110, None], [120, 30.0]], "web", "p.web.0"),
                  series("replica_cpu_percent", [[110, 40.0], [120, 10.0]], "web", "p.web.1")],
                 [MetricLine("web CPU", "40.0 %", "0.0,24.0 60.0,0.0 120.0,0.0")],
                 id="missing-values-skipped-not-zero"),
    pytest.param([series("http_requests_per_second", [[100, 1.5]])],
                 [MetricLine("requests/s", "1.5", "")], id="one-point-no-line"),
    pytest.param([series("http_requests_per_second", [[100, None], [110, None]])], [], id="only-gaps-skipped"),
    pytest.param([series("redis_keys", [[100, 3.0], [110, 4.0]]), series("up", [[100, 1.0], [110, 1.0]])], [],
                 id="metrics-not-drawn"),
    pytest.param([
        series("postgres_database_bytes", [[100, 8 * MB], [110, 8.5 * MB]], "postgres"),
        series("replica_cpu_percent", [[100, 5.0], [110, 5.0]], "web", "p.web.0"),
        *WEB_MEMORY,
        series("http_latency_p95_ms", [[100, 120.0], [110, 80.0]]),
        series("http_5xx_rate", [[100, 0.0], [110, 0.0]]),
        series("http_requests_per_second", [[100, 1000.0], [110, 1234.0]]),
    ], [
        MetricLine("requests/s", "1,234.0", "0.0,24.0 120.0,0.0"),
        MetricLine("5xx rate", "0.0 %", "0.0,24.0 120.0,24.0"),
        MetricLine("latency p95", "80.0 ms", "0.0,0.0 120.0,24.0"),
        MetricLine("web memory", "400.0 MB", "0.0,24.0 60.0,6.9 120.0,0.0"),
        MetricLine("web CPU", "5.0 %", "0.0,24.0 120.0,24.0"),
        MetricLine("database size", "8.5 MB", "0.0,24.0 120.0,0.0"),
    ], id="every-metric-in-the-pages-order"),
])  # fmt: skip
def test_metric_lines(given: list[dict[str, Any]], expected: list[MetricLine]) -> None:
    assert views.metric_lines(given) == expected


# --------------------------------------------------------------------------------------------- promotion text


def promotion(plan: pm.Plan, **over: Any) -> dict[str, Any]:
    """A promotion as the API answers it (controller/promotions.py `_dict`), its plan from `Plan.to_dict`."""
    out: dict[str, Any] = {
        "id": "5c3e9a10-7b2d-4f7e-9d0a-1b2c3d4e5f60", "project": "shop", "source": plan.source, "target": plan.target,
        "state": "PLANNED", "commit": plan.commit, "source_deployment_id": plan.source_deployment_id,
        "previous_deployment_id": None, "target_deployment_id": None, "rollback_deployment_id": None,
        "requested_by": "alice", "requested_by_id": 1, "confirmed_by": None, "confirmed_at": None, "approvers": [],
        "approvals": [], "start_after": None, "git": None, "error": None, "plan": plan.to_dict(),
        "created_at": "2026-03-01T11:59:00Z", "finished_at": None,
    }
    out.update(over)
    return out


def a_plan(**over: Any) -> pm.Plan:
    fields: dict[str, Any] = {
        "source": "staging", "target": "production", "source_deployment_id": "d41f0a2b-5c6d-4e7f-8a9b-0c1d2e3f4a5b",
        "commit": SHA_B, "commit_from": SHA_A,
        "commits": ((SHA_B, "Add the checkout page"), ("77ee0011223344556677889900aabbccddeeff00", "Fix the cart total")),
        "variables": (
            {"key": "API_BASE", "change": "changed", "before": "https://staging.shop.example",
             "after": "https://shop.example"},
            {"key": "NEW_FLAG", "change": "added", "before": None, "after": "1"},
            {"key": "OLD_TOKEN", "change": "removed", "before": "••••••", "after": None},
            {"key": "STRIPE_KEY", "change": "changed", "before": "•••••• (secret)",
             "after": "•••••• (secret, differs)"},
        ),
        "services": ({"key": "web.replicas", "before": 1, "after": 2},
                     {"key": "web.memory_mb", "before": 512, "after": 1024}),
        "migrations": {"will_run": True, "commands": ["python manage.py migrate", "python manage.py seed"],
                       "backup_first": True},
        "gates": (pm.Gate(pm.GATE_SOURCE_HEALTHY, True, "deployment d41f0a2b SUCCESS; health check 200 OK"),
                  pm.Gate(pm.GATE_SMOKE, False, "smoke tests failed: exit 1"),
                  pm.Gate(pm.GATE_APPROVALS, False, "0 of 2 approvals")),
        "approvals_required": 2,
    }
    fields.update(over)
    return pm.Plan(**fields)


def test_plan_lines_of_a_full_promotion() -> None:
    assert promotion_text.plan_lines(promotion(a_plan())) == [
        "promotion 5c3e9a10-7b2d-4f7e-9d0a-1b2c3d4e5f60: staging → production (PLANNED)",
        "  commits     a1b2c3d4e5f6 → 9a0c3311b7f2 (2 commits)",
        "                9a0c3311b7f2 Add the checkout page",
        "                77ee00112233 Fix the cart total",
        "  release     deployment d41f0a2b of staging, as built (no rebuild)",
        "  variables   production before → after (secrets masked):",
        "                changed  API_BASE: https://staging.shop.example → https://shop.example",
        "                added    NEW_FLAG: - → 1",
        "                removed  OLD_TOKEN: •••••• → -",
        "                changed  STRIPE_KEY: •••••• (secret) → •••••• (secret, differs)",
        "  services    web.replicas 1 → 2; web.memory_mb 512 → 1024",
        "  migrations  python manage.py migrate, python manage.py seed (backup first)",
        "  gates",
        "    PASS  source-healthy: deployment d41f0a2b SUCCESS; health check 200 OK",
        "    FAIL  smoke-tests: smoke tests failed: exit 1",
        "    FAIL  approvals: 0 of 2 approvals",
        "  planned by    alice",
    ]


def line_of(lines: list[str], start: str) -> str:
    found = [line for line in lines if line.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


@pytest.mark.parametrize(("plan", "over", "start", "line"), [
    pytest.param(a_plan(commits=((SHA_B, "One change"),)), {}, "  commits",
                 "  commits     a1b2c3d4e5f6 → 9a0c3311b7f2 (1 commit)", id="singular-commit"),
    pytest.param(a_plan(commits=()), {}, "  commits", "  commits     a1b2c3d4e5f6 → 9a0c3311b7f2 (0 commits)",
                 id="no-commits"),
    pytest.param(a_plan(commit_from=None), {}, "  commits",
                 "  commits     nothing deployed → 9a0c3311b7f2 (2 commits)", id="nothing-deployed-start"),
    pytest.param(a_plan(variables=()), {}, "  variables", "  variables   no change in production",
                 id="no-variables"),
    pytest.param(a_plan(services=()), {}, "  services", "  services    no change", id="no-services"),
    pytest.param(a_plan(migrations={"will_run": False, "commands": [], "backup_first": False}), {}, "  migrations",
                 "  migrations  none (no preDeployCommand)", id="no-preDeployCommand"),
    pytest.param(a_plan(migrations={"will_run": True, "commands": ["alembic upgrade head"], "backup_first": False}),
                 {}, "  migrations", "  migrations  alembic upgrade head", id="migrations-without-backup"),
    pytest.param(a_plan(), {"requested_by": None}, "  planned by", "  planned by    -", id="planned-by-unknown"),
    pytest.param(a_plan(), {"state": "FAILED"}, "promotion",
                 "promotion 5c3e9a10-7b2d-4f7e-9d0a-1b2c3d4e5f60: staging → production (FAILED)", id="state"),
])  # fmt: skip
def test_plan_lines_table(plan: pm.Plan, over: dict[str, Any], start: str, line: str) -> None:
    assert line_of(promotion_text.plan_lines(promotion(plan, **over)), start) == line


def test_plan_lines_without_variables_print_no_variable_rows() -> None:
    lines = promotion_text.plan_lines(promotion(a_plan(variables=())))
    assert not any("API_BASE" in line or "(secrets masked)" in line for line in lines)


def test_plan_lines_show_at_most_20_commits() -> None:
    commits = tuple((f"{i:040x}", f"change {i}") for i in range(25))
    lines = promotion_text.plan_lines(promotion(a_plan(commits=commits)))
    assert line_of(lines, "  commits").endswith("(25 commits)")
    shown = [line for line in lines if line.startswith("                0")]
    assert len(shown) == 20 and shown[-1].endswith("change 19")


@pytest.mark.parametrize(("plan", "over", "lines"), [
    pytest.param(a_plan(approvals_required=0), {}, [], id="not-confirmed-no-approvals-needed"),
    pytest.param(a_plan(), {}, ["  approved by   nobody yet"], id="approvals-needed-none-given"),
    pytest.param(a_plan(), {"state": "PENDING_APPROVAL", "confirmed_by": "alice",
                            "confirmed_at": "2026-03-01T11:59:30.250000Z", "approvers": ["bob"]},
                 ["  confirmed by  alice at 11:59:30 UTC", "  approved by   bob"], id="confirmed-one-approval"),
    pytest.param(a_plan(approvals_required=0, wait_timer=15.0), {
        "state": "WAITING", "confirmed_by": "alice", "confirmed_at": "2026-03-01T11:59:30Z",
        "approvers": ["bob", "carol"], "start_after": "2026-03-01T12:14:30Z"},
                 ["  confirmed by  alice at 11:59:30 UTC", "  approved by   bob, carol",
                  "  starts after  12:14:30 UTC (waitTimer 15 min)"], id="approved-waiting"),
    pytest.param(a_plan(approvals_required=0, wait_timer=2.5), {
        "confirmed_by": "alice", "confirmed_at": None, "start_after": "2026-03-01T12:02:30Z"},
                 ["  confirmed by  alice at -", "  starts after  12:02:30 UTC (waitTimer 2.5 min)"],
                 id="fractional-wait-unknown-confirmation-time"),
])  # fmt: skip
def test_people_lines(plan: pm.Plan, over: dict[str, Any], lines: list[str]) -> None:
    assert promotion_text.people_lines(promotion(plan, **over)) == lines
