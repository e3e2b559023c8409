"""Metrics on a real control plane (issue 16): the example app deployed to production (two replicas, a dedicated
PostgreSQL, a Redis); the sampler's replica CPU/RSS, PostgreSQL and Redis series appear in `metrics --json` and on
the token-protected Prometheus endpoint, which parses with prometheus_client's own parser.

(The HTTP series come from the log shipper, another part of issue 16: its sink is tested in
tests/unit/test_metrics_recorder.py; the lead adds the N-requests/M-500s test once the shipper is wired to it.)"""

from __future__ import annotations

import httpx
import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from branchyard import monitoring as mon

pytestmark = pytest.mark.integration

SAMPLED = {mon.REPLICA_CPU_PERCENT, mon.REPLICA_MEMORY_BYTES, mon.REPLICA_RESTARTS, mon.REPLICAS_HEALTHY,
           mon.REPLICAS_DESIRED, mon.MEMORY_PERCENT_OF_LIMIT, mon.POSTGRES_DATABASE_BYTES, mon.POSTGRES_CONNECTIONS,
           mon.POSTGRES_STORAGE_PERCENT, mon.REDIS_MEMORY_BYTES, mon.REDIS_KEYS}


def test_replica_and_data_service_series_in_the_cli_and_on_the_prometheus_endpoint(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="mtr")
    plane.git(repo, "push", "branchyard", "main")
    wait_for(lambda: plane.json("status", "-e", "production", cwd=repo)["status"] == "SUCCESS", timeout=300)

    def sampled():
        data = plane.json("metrics", "-e", "production", "--since", "10m", cwd=repo)
        return data if SAMPLED <= set(data["current"]) else None

    # CPU % needs two readings 10 s apart: the first samples after the deploy take up to ~20 s
    data = wait_for(sampled, timeout=120, interval=1)
    assert set(data) == {"project", "environment", "now", "since_seconds", "resolution_seconds", "current", "series"}
    assert (data["project"], data["environment"], data["since_seconds"], data["resolution_seconds"]) == \
        ("mtr", "production", 600, 10)
    current = data["current"]
    assert current[mon.REPLICAS_DESIRED] == 2 and current[mon.REPLICAS_HEALTHY] == 2
    assert 5 * 2**20 < current[mon.REPLICA_MEMORY_BYTES] < 2**30  # a Python web app: some MiB, less than its 1 GB
    assert 0 < current[mon.MEMORY_PERCENT_OF_LIMIT] < 100
    assert current[mon.POSTGRES_DATABASE_BYTES] > 2**20  # an empty PostgreSQL database is already a few MiB
    assert current[mon.REDIS_MEMORY_BYTES] > 0 and current[mon.REDIS_KEYS] >= 0
    assert 0 <= current[mon.POSTGRES_STORAGE_PERCENT] < 100  # of production's 10 GB
    replicas = {s["replica"] for s in data["series"] if s["name"] == mon.REPLICA_MEMORY_BYTES}
    assert replicas == {"production.web.0", "production.web.1"}
    services = {(s["name"], s["service"]) for s in data["series"] if s["service"] not in (None, "web")}
    assert (mon.POSTGRES_DATABASE_BYTES, "Postgres") in services and (mon.REDIS_KEYS, "Redis") in services
    for s in data["series"]:
        assert all(ts % 10 == 0 for ts, _ in s["points"]), s  # 10 s buckets

    table = plane.run("metrics", "-e", "production", cwd=repo).stdout
    assert mon.REPLICA_CPU_PERCENT in table and "production.web.0" in table and "MiB" in table
    assert any(c in table for c in "▁▂▃▄▅▆▇█"), table

    refused = plane.run("metrics", "-e", "production", "--since", "forever", cwd=repo, check=False)
    assert refused.returncode == 2 and "--since 'forever'" in refused.stderr, refused.stderr

    api = plane.json("server", "status")["api_url"]
    assert httpx.get(f"{api}/metrics", timeout=10, trust_env=False).status_code == 401
    viewer = plane.add_user("vera", "viewer").env["BRANCHYARD_TOKEN"]  # READ is enough to scrape
    scraped = httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {viewer}"}, timeout=10, trust_env=False)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    mine = [s for s in families["branchyard_replica_memory_bytes"].samples if s.labels["project"] == "mtr"]
    assert {s.labels["replica"] for s in mine} == {"production.web.0", "production.web.1"}
    assert all(s.labels["environment"] == "production" and s.labels["service"] == "web" and s.value > 0 for s in mine)
    for name in (mon.REPLICA_CPU_PERCENT, mon.POSTGRES_CONNECTIONS, mon.REDIS_MEMORY_BYTES, mon.REPLICAS_HEALTHY):
        assert any(s.labels["project"] == "mtr" for s in families[f"branchyard_{name}"].samples), name

    # housekeeping (about once a minute) rolls complete minutes up: `--since 1d` reads the 1 min tier
    def rolled_up():
        day = plane.json("metrics", "-e", "production", "--since", "1d", cwd=repo)
        points = [p for s in day["series"] if s["name"] == mon.REPLICA_MEMORY_BYTES for p in s["points"]]
        return day if points else None

    day = wait_for(rolled_up, timeout=240, interval=5)
    assert day["resolution_seconds"] == 60
    assert all(ts % 60 == 0 for s in day["series"] for ts, _ in s["points"])
