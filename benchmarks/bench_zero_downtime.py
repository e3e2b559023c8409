"""Zero-downtime under load: deploy, rollback, redeploy by id and scale 1→3→1 while 16 connections hammer the router.

Prints total and failed requests (by kind), the seconds from the rollback command to 100 % of
responses coming from the old release, and router vs direct throughput measured in the same run.

    .venv/bin/python benchmarks/bench_zero_downtime.py [--concurrency 16] [--direct-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter

import httpx
from harness import bench_plane


class Load:
    """N keep-alive connections sending GET /health in a loop; records (time, commit) of every answer."""

    def __init__(self, url: str, host: str | None, concurrency: int) -> None:
        self.url, self.host, self.concurrency = url, host, concurrency
        self.ok = 0
        self.failed: Counter[str] = Counter()
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _worker(self, client: httpx.AsyncClient) -> None:
        headers = {"Host": self.host} if self.host else {}
        while not self._stop.is_set():
            try:
                r = await client.get(self.url, headers=headers)
                if r.status_code == 200:
                    self.ok += 1
                    self.answers.append((time.monotonic(), r.json().get("commit", "")))
                else:
                    self.failed[f"HTTP {r.status_code}"] += 1
            except httpx.HTTPError as err:
                self.failed[type(err).__name__] += 1

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=10, trust_env=False) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> int:
        return self.ok + sum(self.failed.values())


def throughput(url: str, host: str | None, concurrency: int, seconds: float) -> float:
    load = Load(url, host, concurrency).start()
    time.sleep(seconds)
    load.stop()
    return load.total / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--direct-seconds", type=float, default=5.0)
    parser.add_argument("--pause", type=float, default=4.0, help="seconds of steady load between operations")
    args = parser.parse_args()
    # Short drains keep the run brief; old replicas still get SIGTERM and finish in-flight requests.
    with bench_plane(branch="develop", railway_extra="drainingSeconds = 5\n") as b:
        b.git("push", "-q", "branchyard", "develop")
        v1 = b.git("rev-parse", "HEAD").strip()
        host = "yoto-staging.localhost"
        router = f"http://127.0.0.1:{b.http_port}/health"
        status = json.loads(b.by("status", "-e", "staging", "--json"))
        direct = f"http://127.0.0.1:{status['replicas'][0]['port']}/health"

        # Router vs direct, same replica, same run.
        rps_direct = throughput(direct, None, args.concurrency, args.direct_seconds)
        rps_router = throughput(router, host, args.concurrency, args.direct_seconds)

        load = Load(router, host, args.concurrency).start()
        steps: list[tuple[str, float, float]] = []

        def step(name: str, run) -> None:  # noqa: ANN001
            started = time.monotonic()
            run()
            steps.append((name, started, time.monotonic() - started))
            time.sleep(args.pause)

        time.sleep(args.pause)
        (b.repo / "VERSION").write_text("2\n")
        b.git("add", "-A")
        b.git("commit", "-qm", "v2")
        v2 = b.git("rev-parse", "HEAD").strip()
        step("deploy v2 (git push)", lambda: b.git("push", "-q", "branchyard", "develop"))
        v2_id = json.loads(b.by("deployments", "-e", "staging", "--json"))[0]["id"]
        step("rollback to v1", lambda: b.by("rollback", "-e", "staging"))
        step("redeploy v2 by id", lambda: b.by("redeploy", v2_id, "-e", "staging"))
        step("scale web=3", lambda: b.by("scale", "web=3", "-e", "staging"))
        step("scale web=1", lambda: b.by("scale", "web=1", "-e", "staging"))
        load.stop()

    rollback_started, redeploy_started = steps[1][1], steps[2][1]
    last_v2 = max((t for t, c in load.answers if rollback_started <= t < redeploy_started and c == v2), default=rollback_started)
    print(f"load: {args.concurrency} keep-alive connections through the router, GET /health")
    for name, _, seconds in steps:
        print(f"  {name:<24} {seconds:6.2f} s")
    print(f"requests: {load.total}   failed: {sum(load.failed.values())}   {dict(load.failed) or ''}")
    print(f"rollback command → 100% of responses from v1 ({v1[:8]}): {last_v2 - rollback_started:.2f} s")
    print(f"throughput direct to one replica: {rps_direct:.0f} req/s; through the router: {rps_router:.0f} req/s;"
          f" ratio {rps_router / rps_direct:.2f}")
    print("goals: ≥ 10,000 requests with 0 failed; rollback ≤ 1 s; ratio ≥ 0.90")


if __name__ == "__main__":
    main()
