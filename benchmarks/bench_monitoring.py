"""How fast monitoring notices (issue 16): from an app's first 500 to the alert's webhook notification, and from a
replica hanging (SIGSTOP) to it leaving the route.

The example app runs in production (2 replicas) with the 5xx rule shortened to `for = "1s"`, a webhook to a
receiver in this process, liveness probes every second with 2 failures to evict, and the alert evaluator every
second (BRANCHYARD_ALERTS_INTERVAL=1). A light load (GET /health through the router) runs throughout; each round
switches it to GET /debug/error (the example app's route that raises, on with YOTO_DEBUG_ERROR_ROUTE=1) and times
the notification, then switches back and waits for the resolution. Then one replica is frozen per round and the
time to its `replica.unhealthy` event (sent once it is out of the route) is measured.

What bounds each figure, so the defaults can be read from the measured ones:
- alert: the 10 s metrics window the first 500 fell in ends (0-10 s) → it is summarised 2 s later (the shipper reads
  the access log every 0.5 s) → the rule holds for `for` → the next evaluation (`BRANCHYARD_ALERTS_INTERVAL`) → the
  webhook POST. With the defaults (`for = "5m"`, evaluation every 10 s) add about 5 min + 10 s.
- eviction: `healthcheckInterval` × `healthcheckFailures` (+ a probe's timeout) → the next reconciler pass (1 s).
  With the defaults (5 s × 3) about 15-20 s.

    .venv/bin/python benchmarks/bench_monitoring.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import statistics
import threading
import time

import httpx
from harness import bench_plane, free_port

HOST = "yoto.localhost"


class Receiver:
    """A webhook receiver on loopback: the monotonic time each alert notification arrived, with its payload."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[float, dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.got.append((time.monotonic(), json.loads(body or b"{}")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, state: str, after: float, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, payload in self.got:
                if at >= after and payload.get("state") == state:
                    return at
            time.sleep(0.02)
        raise SystemExit(f"no {state!r} notification within {timeout} s: {self.got[-3:]}")


class Load:
    """Requests through the router from two threads; `path` switches what they ask for."""

    def __init__(self, router_port: int) -> None:
        self.path = "/health"
        self.stop = threading.Event()
        self.first_error_at: float | None = None
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, args=(router_port,), daemon=True) for _ in range(2)]
        for t in self.threads:
            t.start()

    def _run(self, port: int) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.stop.is_set():
                path = self.path
                try:
                    status = client.get(f"http://127.0.0.1:{port}{path}", headers={"Host": HOST}).status_code
                except httpx.HTTPError:
                    status = 0
                self.sent += 1
                if status >= 500 and self.first_error_at is None:
                    self.first_error_at = time.monotonic()
                time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = Receiver()
    extra = {"BRANCHYARD_ALERTS_INTERVAL": "1", "BRANCHYARD_UPTIME_INTERVAL": "3600"}
    with bench_plane(branch="main", extra_env=extra) as b:
        toml = b.repo / "branchyard.toml"
        web = "[environments.production.services.web]\nreplicas = 2\n"
        text = toml.read_text()
        assert web in text, "the example's production web table moved"
        text = text.replace(web, web + "healthcheckInterval = 1\nhealthcheckFailures = 2\n", 1)
        text += (f'\n[environments.production.alerts]\nwebhooks = ["http://127.0.0.1:{receiver.port}/hook"]\n'
                 'http_5xx_rate = { above = 0.05, for = "1s" }\n')
        toml.write_text(text)
        b.git("commit", "-qam", "bench: short alert and liveness windows")
        b.by("variables", "set", "--skip-deploys", "-e", "production", "YOTO_DEBUG_ERROR_ROUTE=1")
        b.git("push", "-q", "branchyard", "main")
        info = json.loads((b.tmp / "home" / "server.json").read_text())
        api = httpx.Client(base_url=info["url"], headers={"Authorization": f"Bearer {info['token']}"}, trust_env=False)

        def status() -> dict:
            return json.loads(b.by("status", "-e", "production", "--json"))

        deadline = time.monotonic() + 300
        while not (len((s := status())["replicas"]) == 2 and all(r["health"] == "healthy" for r in s["replicas"])):
            if time.monotonic() > deadline:
                raise SystemExit("production never became healthy")
            time.sleep(0.5)

        load = Load(b.http_port)
        alert_times = []
        for _ in range(args.rounds):
            time.sleep(12)  # a clean 10 s window of 200s first
            load.first_error_at = None
            load.path = "/debug/error"
            while load.first_error_at is None:
                time.sleep(0.01)
            fired = receiver.wait("firing", load.first_error_at)
            alert_times.append(fired - load.first_error_at)
            load.path = "/health"
            receiver.wait("resolved", fired)

        def unhealthy_events() -> list[dict]:
            rows = api.get("/api/events", params={"project": "yoto", "environment": "production", "limit": 50}).json()
            return [e for e in rows if e["kind"] == "replica.unhealthy"]

        evict_times = []
        for _ in range(args.rounds):
            s = status()
            while not (len(s["replicas"]) == 2 and all(r["health"] == "healthy" for r in s["replicas"])):
                time.sleep(0.2)
                s = status()
            seen = len(unhealthy_events())
            victim = s["replicas"][0]
            hung_at = time.monotonic()
            os.killpg(os.getpgid(victim["pid"]), signal.SIGSTOP)
            while len(unhealthy_events()) == seen:
                time.sleep(0.05)
            evict_times.append(time.monotonic() - hung_at)
            try:  # stopped, then killed by the reconciler: a continue lets a SIGTERM it may still be waiting on act
                os.killpg(os.getpgid(victim["pid"]), signal.SIGCONT)
            except ProcessLookupError:
                pass
        load.stop.set()

    def line(name: str, values: list[float], bound: str) -> None:
        print(f"{name:<44} median {statistics.median(values):6.2f} s  min {min(values):6.2f}  max {max(values):6.2f}"
              f"  ({len(values)} rounds; bound: {bound})")

    print(f"load: {load.sent} requests through the router")
    line("first 500 → webhook notification", alert_times, "window end 0-10 s + 2 s + for 1 s + evaluation 1 s")
    line("replica frozen → out of the route (event)", evict_times, "2 probes × 1 s + probe timeout + pass")


if __name__ == "__main__":
    main()
