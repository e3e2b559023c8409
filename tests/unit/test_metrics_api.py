"""The metrics routes over a real Metrics and store: `--since` refused in one line (400), the pinned JSON shape, and
the Prometheus text behind the token."""

from __future__ import annotations

from api_users import Recorder, single_token
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_metrics_recorder import T0, Clock, Runtime, add_environment, entry

from branchyard import monitoring as mon
from branchyard.api.app import create_app
from branchyard.controller.metrics import Metrics
from branchyard.store.db import Store


def test_metrics_routes(tmp_path):
    store = Store(tmp_path / "state.db")
    try:
        add_environment(store, "production", replicas=[])
        clock = Clock(T0 + 15)
        metrics = Metrics(store, Runtime(), service_variables=lambda env_id: {}, clock=clock)
        metrics.observe_http("yoto", "production", entry(T0 + 1, 500))
        metrics.tick(clock.now, wait=True)
        ctl = Recorder([])
        ctl.metrics = metrics
        client = TestClient(create_app(ctl, gatekeeper=single_token("t0ken", role="viewer")))
        auth = {"authorization": "Bearer t0ken"}
        base = "/api/projects/yoto/environments/production/metrics"

        refused = client.get(base, params={"since": "forever"}, headers=auth)
        assert refused.status_code == 400 and refused.json()["detail"].startswith("--since 'forever'")
        assert client.get(base, params={"since": "1h"}).status_code == 401
        assert client.get("/api/projects/yoto/environments/nowhere/metrics", headers=auth).status_code == 404

        data = client.get(base, params={"since": "10m"}, headers=auth).json()
        assert data["current"][mon.HTTP_5XX_RATE] == 1.0 and data["resolution_seconds"] == 10
        assert {"name": mon.HTTP_REQUESTS_PER_SECOND, "service": None, "replica": None,
                "points": [[T0, 0.1]]} in data["series"]

        assert client.get("/metrics").status_code == 401
        scraped = client.get("/metrics", headers=auth)
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
        assert [(s.labels["status_class"], s.value) for s in families["branchyard_http_requests"].samples] == [("5xx", 1.0)]
        assert families["branchyard_http_5xx_rate"].samples[0].value == 1.0
        metrics.shutdown()
    finally:
        store.close()
