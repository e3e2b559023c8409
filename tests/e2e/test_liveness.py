"""Health that keeps checking (issue 16): a replica that starts healthy and then hangs is taken out of the route, no
request fails after that, and it is restarted and rejoins once healthy."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from conftest import alive, wait_for

pytestmark = pytest.mark.integration

HOST = "live.localhost"
LIVENESS = "healthcheckInterval = 1\nhealthcheckFailures = 2\n"
EVICTION_WINDOW = 30  # seconds: the bound for taking a hung replica out of the route


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_replica_that_hangs_is_taken_out_of_the_route_restarted_and_rejoins(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="live")
    toml = repo / "branchyard.toml"
    web = "[environments.production.services.web]\nreplicas = 2\n"
    assert web in toml.read_text()  # the edit below must land where production's web service is declared
    toml.write_text(toml.read_text().replace(web, web + LIVENESS, 1))
    plane.commit(repo, "liveness: probe every second, evict after 2 failures")
    plane.git(repo, "push", "branchyard", "main")

    def status():
        return plane.json("status", "-e", "production", cwd=repo)

    before = wait_for(lambda: (lambda s: s if len(s["replicas"]) == 2 and all(
        r["state"] == "RUNNING" and r["health"] == "healthy" for r in s["replicas"]) else None)(status()))
    assert before["status"] == "SUCCESS"
    victim, other = before["replicas"]
    pgid = os.getpgid(victim["pid"])  # the replica's process group: the shell and the app it runs stop together

    # Load through the router from a few threads, from before the hang until eviction: requests already on their
    # way to the hung replica fail (or wait) — counted and reported, not asserted.
    outcomes: list[tuple[float, float, bool]] = []  # (monotonic time sent, time answered, succeeded)
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=15, trust_env=False) as client:
            while not stop_load.is_set():
                sent = time.monotonic()
                try:
                    ok = client.get(f"http://127.0.0.1:{plane.http_port}/health", headers={"Host": HOST}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                outcomes.append((sent, time.monotonic(), ok))

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, timeout=30)  # the load runs and the router serves it
        hung_at = time.monotonic()
        os.killpg(pgid, signal.SIGSTOP)

        def evicted():
            return next((e for e in plane.json("events", "-e", "production", cwd=repo)
                         if e["kind"] == "replica.unhealthy" and e["message"].startswith(f"web.{victim['slot']} ")), None)

        event = wait_for(evicted, timeout=EVICTION_WINDOW + 15, interval=0.2)
        evicted_at = time.monotonic()
        assert "failed 2 health checks in a row" in event["message"], event
        assert "taken out of the route and restarted" in event["message"], event
        assert evicted_at - hung_at < EVICTION_WINDOW + 2  # + the poll of `events` itself
        stop_load.set()
        for w in workers:
            w.join(timeout=20)
        # on their way at the hang, or sent before the eviction was seen
        before_eviction = [ok for sent, answered, ok in outcomes if answered >= hung_at and sent < evicted_at]

        # From now on the route holds only the healthy replica: a burst through the router, every request served.
        burst = [plane.get(HOST).status_code for _ in range(200)]
        assert burst == [200] * 200

        after = wait_for(lambda: (lambda s: s if any(
            r["slot"] == victim["slot"] and r["pid"] != victim["pid"] and r["state"] == "RUNNING" and r["health"] == "healthy"
            for r in s["replicas"]) else None)(status()), timeout=90, interval=0.3)
        restarted_at = time.monotonic()
        back = next(r for r in after["replicas"] if r["slot"] == victim["slot"])
        assert back["restarts"] == victim["restarts"] + 1
        assert after["status"] == "SUCCESS"
        assert not alive(victim["pid"]) and not group_alive(pgid)  # the restart killed the hung one
        assert [r["pid"] for r in after["replicas"] if r["slot"] == other["slot"]] == [other["pid"]]  # the other untouched
        assert [plane.get(HOST).status_code for _ in range(50)] == [200] * 50  # and it serves with its peer again

        print(f"\nliveness: hang → eviction {evicted_at - hung_at:.1f}s, eviction → rejoined {restarted_at - evicted_at:.1f}s; "
              f"requests sent between hang and eviction: {len(before_eviction)}, failed: {before_eviction.count(False)}; "
              f"after eviction: {len(burst)} sent, 0 failed")
    finally:
        stop_load.set()
        if group_alive(pgid):  # the test failed before the restart killed it: let `server stop --all` stop it
            os.killpg(pgid, signal.SIGCONT)
