"""Uptime (issue 16): each monitored environment's public URL probed through the router, checks kept 30 days.

Monitored: production, and any environment whose spec says `uptime = true` (the current deployment's snapshot),
while ACTIVE with a current deployment. Every `uptime_interval` seconds (BRANCHYARD_UPTIME_INTERVAL, default 30) a
thread sends `GET healthcheckPath` (or `/`) for the environment's generated host and each custom domain to the
router's public port on loopback, so the check goes the way users' requests go (edge, routes tier, replica); up when
every host answered below 500 within the timeout. One row per check (`uptime_checks`), pruned after 30 days;
`availability.summary` turns them into `status`'s `uptime`. `current()` is the `up` series (monitoring.UP) that
`down` alerts read first and the metrics store may pick up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from .. import names
from ..availability import RETENTION, WINDOWS, Check, incidents
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .snapshot import web_of

log = logging.getLogger("branchyard.uptime")
TIMEOUT = 5.0  # seconds per host: a probe slower than this is a failed check
PRUNE_EVERY = 3600.0
USER_AGENT = "branchyard-uptime/1"  # how access logs and metrics can tell the probe from users' requests


@dataclass(frozen=True)
class Target:
    env_id: int
    project: str
    environment: str
    hosts: tuple[str, ...]
    path: str


def monitored(config_json: str | None, *, production: bool) -> bool:
    """The snapshot's `uptime` (absent in snapshots older than issue 16: production only)."""
    if not config_json:
        return False
    try:
        snapshot = json.loads(config_json)
        value = snapshot.get("uptime")
        if (snapshot.get("web") or {}).get("cron_schedule"):
            return False  # a cron service (issue 17) serves nothing: its host is never up, so it is not probed
    except (ValueError, AttributeError):
        return production
    return production if value is None else bool(value)


class Uptime:
    def __init__(self, settings: Settings, store: Store, *, timeout: float = TIMEOUT) -> None:
        self.settings = settings
        self.store = store
        self.interval = settings.uptime_interval
        self.timeout = timeout
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # (project, env) → (at, 1.0 up / 0.0 down)
        self._pruned = 0.0
        self._summaries: dict[int, tuple[float, bool, dict[str, Any] | None]] = {}  # env id → (when, monitored, summary)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="uptime")
        self._been_up: set[int] = set()  # environments with a successful check stored (their record has begun)

    # --- the `up` series -----------------------------------------------------------------------

    def current(self, project: str, environment: str) -> float | None:
        """1.0 when the last check of the environment's public URL answered, 0.0 when it failed; None when it is not
        monitored or its last check is older than three intervals (no data is not zero)."""
        now = time.time()
        last = self._last.get((project, environment))
        if last is None:  # after a restart: the last stored check
            with self.store.session() as s:
                row = s.execute(
                    select(m.UptimeCheck.at, m.UptimeCheck.ok)
                    .join(m.Environment, m.Environment.id == m.UptimeCheck.environment_id)
                    .join(m.Project, m.Project.id == m.Environment.project_id)
                    .where(m.Project.name == project, m.Environment.name == environment)
                    .order_by(m.UptimeCheck.at.desc()).limit(1)
                ).first()
            if row is None:
                return None
            last = (row.at, 1.0 if row.ok else 0.0)
        at, up = last
        return up if now - at <= max(3 * self.interval, 10.0) else None

    # --- probing -------------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        with self.store.session() as s:
            rows = s.execute(
                select(m.Environment, m.Project, m.Deployment.config_json).select_from(m.Environment)
                .join(m.Project, m.Project.id == m.Environment.project_id)
                .join(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
                .where(m.Environment.state == m.ENV_ACTIVE)
            ).all()
            custom: dict[int, list[str]] = {}
            for env_id, host in s.execute(select(m.Domain.environment_id, m.Domain.host).order_by(m.Domain.host)):
                custom.setdefault(env_id, []).append(host)
            found = []
            for env, p, config_json in rows:
                if not monitored(config_json, production=env.production):
                    continue
                web = web_of(config_json)
                host = names.hostname(p.name, env.name, p.domain or self.settings.domain, production=env.production)
                found.append(Target(env.id, p.name, env.name, (host, *custom.get(env.id, ())),
                                    (web.healthcheck_path if web is not None else None) or "/"))
        return found

    def probe(self, target: Target) -> Check:
        """One check: every host through the router; the first failure is the check's error."""
        started = time.time()
        worst: int | None = None
        error = None
        scheme = "http" if self.settings.tls == "off" else "https"
        for host in target.hosts:
            try:
                # to the router on loopback, named by Host (and SNI): the public URL's route without DNS; the
                # certificate is not what this checks (`domain list` shows certificates)
                with httpx.Client(timeout=self.timeout, verify=False, trust_env=False, follow_redirects=False) as client:
                    r = client.get(f"{scheme}://127.0.0.1:{self.settings.public_port}{target.path}",
                                   headers={"Host": host, "User-Agent": USER_AGENT},
                                   extensions={"sni_hostname": host})
                worst = r.status_code if worst is None else max(worst, r.status_code)
                if r.status_code >= 500 and error is None:
                    error = f"HTTP {r.status_code} from {host}{target.path}"
            except httpx.TimeoutException:
                error = error or f"{host}{target.path}: no answer within {self.timeout:g}s"
            except httpx.HTTPError as err:
                error = error or f"{host}{target.path}: {type(err).__name__}: {err}"[:300]
        return Check(at=started, ok=error is None, status=worst, error=error,
                     duration_ms=round((time.time() - started) * 1000, 3))

    def run_once(self) -> None:
        targets = self.targets()
        self._been_up &= {t.env_id for t in targets}  # an id whose environment went (or sleeps) is looked up again
        checks = list(self._pool.map(self.probe, targets))
        with self.store.session() as s:
            for target, check in zip(targets, checks, strict=True):
                if not self._record_begun(s, target.env_id, check):
                    continue
                s.add(m.UptimeCheck(environment_id=target.env_id, at=check.at, ok=check.ok, status=check.status,
                                    error=check.error, duration_ms=check.duration_ms))
                self._last[(target.project, target.environment)] = (check.at, 1.0 if check.ok else 0.0)
        now = time.time()
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            with self.store.session() as s:
                s.execute(delete(m.UptimeCheck).where(m.UptimeCheck.at < now - RETENTION))

    def _record_begun(self, s: Session, env_id: int, check: Check) -> bool:
        """An environment's uptime record begins with its first successful check: failures before it (a first deploy
        between its switch and its route, an app that never answered) are not downtime of something that was up."""
        if env_id in self._been_up:
            return True
        if check.ok or s.scalar(select(m.UptimeCheck.id).where(m.UptimeCheck.environment_id == env_id,
                                                                  m.UptimeCheck.ok.is_(True)).limit(1)) is not None:
            self._been_up.add(env_id)
            return True
        return False

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:  # a store hiccup must not end uptime monitoring
                log.exception("uptime pass failed")
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- reading -------------------------------------------------------------------------------

    def summary(self, s: Session, env: m.Environment, config_json: str | None) -> dict[str, Any] | None:
        """`status`'s `uptime`: None for an environment never probed and not monitored. The same values as
        `availability.summary` over all checks (tests/integration/test_uptime_summary.py holds them equal), computed
        in SQLite: 30 days of checks every 30 s are 86,400 rows, and `status` must stay quick."""
        now = time.time()
        is_monitored = monitored(config_json, production=env.production)
        cached = self._summaries.get(env.id)
        if cached is not None and now - cached[0] < min(self.interval, 30.0) and cached[1] == is_monitored:
            return cached[2]  # no new check since (one per interval): the same answer, without the scan
        result = summary_sql(s, env.id, now, monitored=is_monitored)
        self._summaries[env.id] = (now, is_monitored, result)
        return result


_SEGMENTS = """
WITH seg AS (
  SELECT ok, at, COALESCE(LEAD(at) OVER (ORDER BY at), :now) AS nxt
  FROM uptime_checks WHERE environment_id = :env AND at >= :since
)
SELECT {columns} FROM seg
"""
_TRANSITIONS = """
SELECT at, ok, status, error, duration_ms FROM (
  SELECT at, ok, status, error, duration_ms, LAG(ok) OVER (ORDER BY at) AS prev
  FROM uptime_checks WHERE environment_id = :env AND at >= :since
) WHERE prev IS NULL OR prev != ok ORDER BY at
"""


def summary_sql(s: Session, env_id: int, now: float, *, monitored: bool) -> dict[str, Any] | None:
    """availability.summary, with the per-check work done by SQLite's window functions: the time each window's
    checks cover (up and in all), and only the checks where up/down changed (which is all incidents need)."""
    since = now - RETENTION
    columns = []
    params: dict[str, Any] = {"env": env_id, "since": since, "now": now}
    for name, seconds in WINDOWS.items():
        key = f"s{name}"
        params[key] = now - seconds
        cover = f"MAX(0, MIN(nxt, :now) - MAX(at, :{key}))"
        columns += [f"SUM(CASE WHEN ok THEN {cover} ELSE 0 END)", f"SUM({cover})"]
    totals = s.execute(text(_SEGMENTS.format(columns=", ".join(columns))), params).one()
    changes = [Check(r.at, bool(r.ok), r.status, r.error, r.duration_ms)
               for r in s.execute(text(_TRANSITIONS), {"env": env_id, "since": since})]
    last_row = s.execute(select(m.UptimeCheck).where(m.UptimeCheck.environment_id == env_id, m.UptimeCheck.at >= since)
                         .order_by(m.UptimeCheck.at.desc()).limit(1)).scalar_one_or_none()
    if last_row is None and not monitored:
        return None
    last = None if last_row is None else Check(last_row.at, bool(last_row.ok), last_row.status, last_row.error,
                                                last_row.duration_ms)
    out: dict[str, Any] = {}
    for i, name in enumerate(WINDOWS):
        up, total = totals[2 * i], totals[2 * i + 1]
        if not total:  # no time covered: the last check in the window has its own word, else no data
            inside = last is not None and last.at >= now - WINDOWS[name]
            out[name] = None if not inside else (100.0 if last.ok else 0.0)
        else:
            out[name] = round(100.0 * up / total, 3)
    if last is not None and (not changes or changes[-1].at != last.at):
        changes.append(last)  # an incident still going on lasts until the last check
    out["incidents"] = incidents(changes)
    out["last_check"] = None if last is None else {
        "at": last.at, "ok": last.ok, "status": last.status, "error": last.error, "duration_ms": last.duration_ms}
    return out
