"""controller/alerts.py against a real store and real HTTP receivers: the 5xx rate from a metric source the test
controls (the metrics store is another part of issue 16), a restart that neither fires again nor forgets, Slack's
payload, and failed deliveries as events (retried, never raised)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from branchyard import settings as st
from branchyard.controller.alerts import Alerts, Notifier
from branchyard.spec.alerts import AlertRule, AlertsSpec, Webhook
from branchyard.store import models as m
from branchyard.store.db import Store


class Source:
    """A MetricSource whose values the test sets."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def current(self, project: str, environment: str) -> dict[str, float]:
        return dict(self.values)


class NoUptime:
    def current(self, project: str, environment: str) -> float | None:
        return None


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []
    yield lambda status=200: made.append(Receiver(status)) or made[-1]
    for r in made:
        r.close()


def environment(store: Store, spec: AlertsSpec) -> None:
    with store.session() as s:
        p = m.Project(name="shop", repo_path="/r")
        s.add(p)
        s.flush()
        env = m.Environment(project_id=p.id, name="production", production=True)
        s.add(env)
        s.flush()
        dep = m.Deployment(id=m.new_id(), project_id=p.id, environment_id=env.id, status=m.SUCCESS, commit_sha="a" * 40,
                           trigger="push", config_json=json.dumps({"alerts": spec.to_dict(), "uptime": False}))
        s.add(dep)
        s.flush()
        env.current_deployment_id = dep.id
        s.add(m.Replica(deployment_id=dep.id, environment_id=env.id, slot=0, pid=1, start_time=1, port=1, log_path="/l",
                        state=m.REPLICA_RUNNING))


def kinds(store: Store) -> list[tuple[str, str]]:
    with store.session() as s:
        return [(e.kind, e.message) for e in s.query(m.Event).order_by(m.Event.id)]


def service(store: Store, tmp_path: Path, source: Source, secrets: dict[str, str]) -> tuple[Alerts, Notifier]:
    notifier = Notifier(store, lookup=lambda env_id, name: secrets.get(name), delays=(0.0, 0.05, 0.05), timeout=1.0)
    alerts = Alerts(st.load({"BRANCHYARD_HOME": str(tmp_path)}), store, uptime=NoUptime(), notifier=notifier,
                    metrics=source, url_of=lambda p, e: "http://shop.localhost")
    return alerts, notifier


def test_the_5xx_rate_fires_once_survives_a_restart_and_resolves_once(tmp_path: Path, receivers) -> None:
    plain, slack = receivers(), receivers()
    rule = AlertRule("http_5xx_rate", above=0.05, for_s=10.0)
    spec = AlertsSpec(rules=(rule,), webhooks=(Webhook(plain.url), Webhook("${{SLACK}}", slack=True)), tier="production")
    store = Store(tmp_path / "state.db")
    environment(store, spec)
    source = Source()
    alerts, notifier = service(store, tmp_path, source, {"SLACK": slack.url})
    try:
        source.values = {"http_5xx_rate": 0.5}
        alerts.evaluate_all(1000.0)  # pending
        alerts.evaluate_all(1009.0)
        assert [k for k, _ in kinds(store)] == []
        alerts.evaluate_all(1010.0)  # held 10 s: fires
        alerts.evaluate_all(1020.0)
        assert notifier.wait_idle(10)
        assert [k for k, _ in kinds(store)] == ["alert.firing"]
        assert plain.bodies == [{
            "project": "shop", "environment": "production", "rule": "http_5xx_rate", "state": "firing", "value": 0.5,
            "threshold": 0.05, "since": "1970-01-01T00:16:40+00:00", "at": "1970-01-01T00:16:50+00:00",
            "url": "http://shop.localhost",
            "message": "[shop/production] FIRING: http_5xx_rate = 0.5 (threshold 0.05) since 1970-01-01T00:16:40+00:00"}]
        assert slack.bodies == [{"text": plain.bodies[0]["message"]}]
    finally:
        notifier.shutdown()

    # a restart: a new service over the same store neither fires again nor forgets
    alerts, notifier = service(store, tmp_path, source, {"SLACK": slack.url})
    try:
        alerts.evaluate_all(2000.0)
        listed = alerts.list("shop")["environments"][0]["alerts"]
        assert [(a["rule"], a["state"], a["value"]) for a in listed] == [("http_5xx_rate", "firing", 0.5)]
        source.values = {}  # no data: nothing resolves on it
        alerts.evaluate_all(2001.0)
        source.values = {"http_5xx_rate": 0.01}
        alerts.evaluate_all(2002.0)
        alerts.evaluate_all(2003.0)
        assert notifier.wait_idle(10)
        assert [k for k, _ in kinds(store)] == ["alert.firing", "alert.resolved"]
        assert [b["state"] for b in plain.bodies] == ["firing", "resolved"]
        listed = alerts.list("shop")["environments"][0]["alerts"]
        assert [(a["rule"], a["state"], a["value"], a["threshold"]) for a in listed] == [
            ("http_5xx_rate", "resolved", 0.01, 0.05)]
    finally:
        notifier.shutdown()
        store.close()


def test_failed_deliveries_are_events_naming_no_url(tmp_path: Path, receivers) -> None:
    failing = receivers(500)
    secret_url = failing.url + "/T000-very-secret"
    spec = AlertsSpec(rules=(AlertRule("down", for_s=0.0),), tier="production",
                      webhooks=(Webhook("${{HOOK}}"), Webhook("${{MISSING}}"), Webhook("http://127.0.0.1:9/refused")))
    store = Store(tmp_path / "state.db")
    environment(store, spec)
    with store.session() as s:
        s.query(m.Replica).delete()  # no running replica: down
    alerts, notifier = service(store, tmp_path, Source(), {"HOOK": secret_url})
    try:
        alerts.evaluate_all(100.0)
        assert notifier.wait_idle(20)
        failed = sorted(text for kind, text in kinds(store) if kind == "alert.delivery_failed")
        assert len(failed) == 7  # 3 attempts to each of two URLs, and a reference to no variable
        assert "down firing: webhook 1 (${{HOOK}}): attempt 3/3: HTTP 500; giving up" in failed
        assert "down firing: webhook 2 (${{MISSING}}): variable MISSING is not set to an http(s) URL: nothing sent" in failed
        assert any(t.startswith("down firing: webhook 3 (http://127.0.0.1:9/***): attempt 1/3: ConnectError")
                   for t in failed)
        assert len(failing.bodies) == 3
        assert not any("very-secret" in text or "/refused" in text for _, text in kinds(store))
    finally:
        notifier.shutdown()
        store.close()


def test_an_environment_put_to_sleep_resolves_what_fired(tmp_path: Path, receivers) -> None:
    plain = receivers()
    spec = AlertsSpec(rules=(AlertRule("down", for_s=0.0),), webhooks=(Webhook(plain.url),), tier="production")
    store = Store(tmp_path / "state.db")
    environment(store, spec)
    with store.session() as s:
        s.query(m.Replica).delete()  # no running replica: down
    alerts, notifier = service(store, tmp_path, Source(), {})
    try:
        alerts.evaluate_all(100.0)
        with store.session() as s:
            s.query(m.Environment).update({m.Environment.state: m.ENV_SLEEPING})  # `branchyard down`
        alerts.evaluate_all(101.0)
        alerts.evaluate_all(102.0)
        assert notifier.wait_idle(10)
        assert [k for k, _ in kinds(store)] == ["alert.firing", "alert.resolved"]
        assert [b["state"] for b in plain.bodies] == ["firing", "resolved"]
    finally:
        notifier.shutdown()
        store.close()
