"""Alerts (issue 16): each environment's rules evaluated every ~10 s, open alerts kept in the store, notifications sent
to webhooks off the loop.

`Alerts.run_forever` (a thread of its own): for every ACTIVE environment with a current deployment, the rules of
that deployment's snapshot (`[environments.<env>.alerts]` over the tier's defaults, spec/alerts.py) are evaluated by
`alerting.evaluate` (pure) against the latest values: the metrics store's (`MetricSource.current`), the uptime
probe's `up`, and `down` (the probe failing, or no RUNNING replica). The open alerts (pending, firing) are rows of
`alerts`, so a restart neither fires again nor forgets one that fires. A transition is an event, `alert.firing` or
`alert.resolved` (actor system), and a notification per webhook.

`Notifier`: one `Worker` (github/worker.py: a queue and a thread) per webhook, so a webhook that is down delays only
its own notifications; each delivery is a POST with a short timeout, retried with backoff over about a minute; a
failed attempt is an `alert.delivery_failed` event, never an exception in a loop. The payload carries no secret
(project, environment, rule, state, value, threshold, since, the environment's URL, a message), and no event or log
line carries the webhook's URL (it is often a secret: `${{NAME}}` references are resolved only to send).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete, select

from .. import monitoring
from ..alerting import FIRING, PENDING, RESOLVED, RuleState, Transition, down_value, evaluate
from ..github.worker import Worker
from ..monitoring import MetricSource, UpSource
from ..settings import Settings
from ..spec.alerts import DOWN, AlertRule, AlertsSpec, Webhook, default_alerts, is_slack, mask, tier_of
from ..store import models as m
from ..store.db import Store
from .uptime import monitored

log = logging.getLogger("branchyard.alerts")
RETRY_DELAYS = (0.0, 5.0, 15.0, 40.0)  # seconds before each attempt: four attempts over about a minute
DELIVERY_TIMEOUT = 5.0
RECENT = 20  # resolved alerts listed per environment
KEEP_RESOLVED = 30 * 86400.0  # seconds a resolved alert stays listed


def rules_of(config_json: str | None, *, production: bool, ephemeral: bool) -> AlertsSpec:
    """The alert rules a deployment runs with (its snapshot's; a snapshot from before alerts: the tier's defaults)."""
    raw = None
    if config_json:
        try:
            raw = json.loads(config_json).get("alerts")
        except (ValueError, AttributeError):
            raw = None
    return AlertsSpec.from_dict(raw) or default_alerts(tier_of(production=production, ephemeral=ephemeral))


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def message(project: str, env: str, t: Transition) -> str:
    what = "is down" if t.rule == DOWN else f"= {_num(t.value)} (threshold {_num(t.threshold)})"
    if t.state == FIRING:
        return f"[{project}/{env}] FIRING: {t.rule} {what} since {iso(t.since)}"
    return f"[{project}/{env}] RESOLVED: {t.rule} (value {_num(t.value)}), firing since {iso(t.since)}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


@dataclass(frozen=True)
class Delivery:
    project: str
    environment: str
    env_id: int
    index: int  # the webhook's place in the list (1-based): how events name it, never by URL
    hook: Webhook
    payload: dict[str, Any]


class Notifier:
    """Webhook deliveries on worker threads (one per webhook); `lookup(env_id, name)` resolves `${{NAME}}`."""

    def __init__(self, store: Store, *, lookup: Callable[[int, str], str | None],
                 delays: Sequence[float] = RETRY_DELAYS, timeout: float = DELIVERY_TIMEOUT) -> None:
        self.store = store
        self.lookup = lookup
        self.delays = tuple(delays)
        self.timeout = timeout
        self._workers: dict[tuple[int, int], Worker[Delivery]] = {}
        self._lock = threading.Lock()

    def send(self, delivery: Delivery) -> None:
        worker = self._worker(delivery.env_id, delivery.index)
        if not worker.put(delivery):
            self._failed(delivery, "the webhook's queue is full: notification dropped")

    def _worker(self, env_id: int, index: int) -> Worker[Delivery]:
        with self._lock:
            worker = self._workers.get((env_id, index))
            if worker is None:
                worker = Worker(f"alert-webhook-{env_id}-{index}", lambda d: None,
                                describe=lambda d: f"webhook {d.index} of {d.project}/{d.environment}", max_queue=200)
                worker.handle = lambda d, w=worker: self._deliver(w, d)
                worker.start()
                self._workers[(env_id, index)] = worker
            return worker

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(w.wait_idle(max(0.0, deadline - time.monotonic())) for w in list(self._workers.values()))

    def shutdown(self) -> None:
        for worker in list(self._workers.values()):
            worker.stopping.set()  # retries end at once: nothing waits a minute on a dead webhook at shutdown
        for worker in list(self._workers.values()):
            worker.stop(timeout=1.0)

    def _deliver(self, worker: Worker[Delivery], d: Delivery) -> None:
        url = d.hook.target
        if d.hook.reference is not None:
            url = self.lookup(d.env_id, d.hook.reference) or ""
            if not url.startswith(("http://", "https://")):
                self._failed(d, f"variable {d.hook.reference} is not set to an http(s) URL: nothing sent")
                return
        body = {"text": d.payload["message"]} if is_slack(d.hook, url) else d.payload
        for attempt, delay in enumerate(self.delays, start=1):
            if delay and worker.stopping.wait(delay):
                self._failed(d, f"not sent: the control plane stopped after {attempt - 1} attempt(s)")
                return
            try:
                r = httpx.post(url, json=body, timeout=self.timeout, trust_env=False, follow_redirects=False)
                if 200 <= r.status_code < 300:
                    return
                error = f"HTTP {r.status_code}"
            except httpx.TimeoutException:
                error = f"no answer within {self.timeout:g}s"
            except httpx.HTTPError as err:
                error = f"{type(err).__name__}: {err}".replace(url, mask(url))[:200]
            last = attempt == len(self.delays)
            self._failed(d, f"attempt {attempt}/{len(self.delays)}: {error}"
                         + ("; giving up" if last else f"; retrying in {self.delays[attempt]:g}s"))

    def _failed(self, d: Delivery, why: str) -> None:
        text = f"{d.payload['rule']} {d.payload['state']}: webhook {d.index} ({mask(d.hook.target)}): {why}"
        try:
            with self.store.session() as s:
                self.store.record(s, d.project, "alert.delivery_failed", text, environment=d.environment)
        except Exception:  # the store gone at shutdown: a log line is all that is left
            log.warning("%s/%s: %s", d.project, d.environment, text)


class Alerts:
    def __init__(self, settings: Settings, store: Store, *, uptime: UpSource, notifier: Notifier,
                 metrics: MetricSource | None = None, url_of: Callable[[m.Project, m.Environment], str]) -> None:
        self.store = store
        self.interval = settings.alerts_interval
        self.uptime = uptime
        self.notifier = notifier
        self.metrics = metrics  # the metrics store, when there is one (issue 16's metrics part)
        self.url_of = url_of

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.evaluate_all(time.time())
            except Exception:  # one bad pass must not end alerting
                log.exception("alert evaluation failed")
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def values(self, s: Any, p: m.Project, env: m.Environment, config_json: str | None) -> dict[str, float]:
        """The latest value of every series the rules may name, `up` and `down` included."""
        values: dict[str, float] = {}
        if self.metrics is not None:
            try:
                values.update(self.metrics.current(p.name, env.name))
            except Exception:
                log.exception("metrics of %s/%s unavailable", p.name, env.name)
        up = self.uptime.current(p.name, env.name)
        if up is not None:
            values[monitoring.UP] = up
        running = s.scalar(select(m.Replica.id).where(
            m.Replica.deployment_id == env.current_deployment_id, m.Replica.state == m.REPLICA_RUNNING,
            m.Replica.service == "web").limit(1))  # a running worker does not serve the site
        down = down_value(up, serving=running is not None, probed=monitored(config_json, production=env.production))
        if down is not None:
            values[DOWN] = down
        return values

    def evaluate_all(self, now: float) -> None:
        sends: list[Delivery] = []  # handed to the notifier once the transitions are committed
        with self.store.session() as s:
            envs = s.execute(
                select(m.Environment, m.Project, m.Deployment.config_json).select_from(m.Environment)
                .join(m.Project, m.Project.id == m.Environment.project_id)
                .join(m.Deployment, m.Deployment.id == m.Environment.current_deployment_id)
                .where(m.Environment.state.in_((m.ENV_ACTIVE, m.ENV_SLEEPING)))
            ).all()
            for env, p, config_json in envs:
                spec = rules_of(config_json, production=env.production, ephemeral=env.ephemeral)
                open_rows = {a.rule: a for a in s.scalars(select(m.Alert).where(
                    m.Alert.environment_id == env.id, m.Alert.state.in_((PENDING, FIRING))))}
                sleeping = env.state == m.ENV_SLEEPING  # `down` on purpose: what fired resolves, nothing is checked
                if (sleeping or not spec.rules) and not open_rows:
                    continue
                state = {rule: RuleState(a.state, since=a.since, value=a.value, fired_at=a.fired_at,
                                         clear_since=a.clear_since) for rule, a in open_rows.items()}
                rules = () if sleeping else spec.rules
                new, moves = evaluate(rules, {} if sleeping else self.values(s, p, env, config_json), state, now)
                self._store(s, env, spec.rules, open_rows, new, moves, now)
                for t in moves:
                    text = message(p.name, env.name, t)
                    self.store.record(s, p.name, f"alert.{t.state}", text, environment=env.name)
                    payload = {"project": p.name, "environment": env.name, "rule": t.rule, "state": t.state,
                               "value": t.value, "threshold": t.threshold, "since": iso(t.since), "at": iso(t.at),
                               "url": self.url_of(p, env), "message": text}
                    sends += [Delivery(p.name, env.name, env.id, i, hook, payload)
                              for i, hook in enumerate(spec.webhooks, start=1)]
            s.execute(delete(m.Alert).where(m.Alert.state == RESOLVED, m.Alert.resolved_at < now - KEEP_RESOLVED))
        for delivery in sends:
            self.notifier.send(delivery)

    @staticmethod
    def _store(s: Any, env: m.Environment, rules: Sequence[AlertRule], rows: dict[str, m.Alert],
               new: dict[str, RuleState], moves: list[Transition], now: float) -> None:
        thresholds = {r.name: r.threshold for r in rules}
        resolved = {t.rule for t in moves if t.state == RESOLVED}
        for rule, row in rows.items():
            if rule in new:
                continue
            if rule in resolved:
                row.state, row.resolved_at = RESOLVED, now
                row.value = next((t.value for t in moves if t.rule == rule), row.value)
            else:
                s.delete(row)  # a pending alert whose condition stopped: it never fired, nothing to keep
        for rule, st in new.items():
            row = rows.get(rule)
            if row is None:
                row = m.Alert(environment_id=env.id, rule=rule)
                s.add(row)
            row.state, row.since, row.fired_at, row.clear_since = st.state, st.since, st.fired_at, st.clear_since
            row.value, row.threshold = st.value, thresholds.get(rule)

    # --- reading -------------------------------------------------------------------------------

    def list(self, project: str, env_name: str | None = None) -> dict[str, Any]:
        """`branchyard alerts`: per environment, the firing and recent alerts and the effective rules."""
        out = []
        with self.store.session() as s:
            p = self.store.project(s, project)
            envs = [self.store.environment(s, p, env_name)] if env_name else list(s.scalars(
                select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)))
            for env in envs:
                current = self.store.current_deployment(s, env)
                spec = rules_of(current.config_json if current else None, production=env.production,
                                ephemeral=env.ephemeral)
                rows = list(s.scalars(select(m.Alert).where(m.Alert.environment_id == env.id, m.Alert.state != PENDING)
                                      .order_by(m.Alert.id.desc()).limit(RECENT)))
                out.append({
                    "environment": env.name,
                    "tier": spec.tier,
                    "alerts": [_alert_dict(a) for a in sorted(rows, key=lambda a: (a.state != FIRING, -a.id))],
                    "rules": [r.to_dict() | {"threshold": r.threshold} for r in spec.rules],
                    "webhooks": [mask(w.target) for w in spec.webhooks],
                })
        return {"project": project, "environments": out}


def _alert_dict(a: m.Alert) -> dict[str, Any]:
    return {"rule": a.rule, "state": a.state, "value": a.value, "threshold": a.threshold, "since": iso(a.since),
            "fired_at": iso(a.fired_at), "resolved_at": iso(a.resolved_at)}
