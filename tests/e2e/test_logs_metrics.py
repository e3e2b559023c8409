"""The router's access log feeds the HTTP metrics (issue 16): exactly N requests through the router, M of them 5xx →
the Prometheus counters say N and M per status class, and `logs --http` shows the same requests."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_previews_rules import branch_commit, tiny_project

from branchyard import monitoring as mon

pytestmark = pytest.mark.integration

HOST = "hm-staging.localhost"


def test_exact_requests_through_the_router_become_exact_counters_and_http_records(plane, tmp_path):
    repo, _ = tiny_project(plane, tmp_path, "hm")
    branch_commit(plane, repo, "develop", "v1", remote="branchyard")
    ok, failed, missing = 12, 5, 3
    for i in range(ok):
        assert plane.get(HOST, f"/health?ok-{i}").status_code == 200
    for _ in range(failed):
        assert plane.request("DELETE", HOST, "/health").status_code == 501  # http.server: unsupported method
    for i in range(missing):
        assert plane.get(HOST, f"/missing-{i}").status_code == 404

    api = plane.json("server", "status")["api_url"]
    token = plane.add_user("vera", "viewer").env["BRANCHYARD_TOKEN"]

    def counters() -> dict[str, float] | None:
        text = httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False).text
        family = {f.name: f for f in text_string_to_metric_families(text)}.get("branchyard_http_requests")
        got = {s.labels["status_class"]: s.value for s in (family.samples if family else [])
               if s.name.endswith("_total") and s.labels["project"] == "hm" and s.labels["environment"] == "staging"}
        return got if sum(got.values()) >= ok + failed + missing else None

    assert wait_for(counters) == {"2xx": ok, "4xx": missing, "5xx": failed}

    out = plane.run("logs", "-e", "staging", "--http", "-n", "1000", "--json", cwd=repo).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["method"], r["status"]) for r in records) == sorted(
        [("GET", 200)] * ok + [("DELETE", 501)] * failed + [("GET", 404)] * missing)
    assert {r["path"] for r in records} == {"/health"} | {f"/missing-{i}" for i in range(missing)}

    # the 10 s windows' series: over them, the same requests (rate × 10 s) and the 5xx among them
    def windows():
        data = plane.json("metrics", "-e", "staging", "--since", "10m", cwd=repo)
        series = {s["name"]: [v for _, v in s["points"]] for s in data["series"] if not s.get("labels", {}).get("replica")}
        rps = series.get(mon.HTTP_REQUESTS_PER_SECOND, [])
        return series if round(sum(rps) * 10) == ok + failed + missing else None

    series = wait_for(windows, timeout=60, interval=1)
    assert max(series[mon.HTTP_5XX_RATE]) > 0 and max(series[mon.HTTP_4XX_RATE]) > 0
