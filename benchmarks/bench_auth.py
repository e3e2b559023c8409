"""What identity costs per API request (issue 15): every request now looks its token up (SHA-256, one indexed SQLite
read, a write at most once a minute per token) and checks a role, where before it compared one static token.

Two measurements, each against its baseline in the same run:
1. in process: `Users.authenticate` with 200 users and 1,000 tokens in the store vs `hmac.compare_digest` of one
   static token (what the old Gate did);
2. over HTTP against a real control plane: a guarded read (`GET /api/whoami`, authenticate + role check) vs the open
   `GET /api/health` (no token), one keep-alive client, sequential requests.

Usage: python benchmarks/bench_auth.py [N]
"""

from __future__ import annotations

import hmac
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import bench_plane

from branchyard.controller.users import Users
from branchyard.store.db import Store


def per_call(fn, n: int) -> float:
    """Median of 5 rounds of seconds per call."""
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - start) / n)
    return statistics.median(rounds)


def in_process(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state.db")
        users = Users(store)
        admin = users.bootstrap("machine-token")
        tokens = []
        for i in range(200):
            user = users.authenticate(users.add(f"user{i}", "member" if i % 3 else "viewer", admin)["token"])
            tokens += [users.create_token(user, f"t{j}", None)["token"] for j in range(4)]
        probe = tokens[len(tokens) // 2]
        users.authenticate(probe)
        static = b"x" * 43
        given = b"x" * 43
        new = per_call(lambda: users.authenticate(probe), n)
        old = per_call(lambda: hmac.compare_digest(given, static), n * 10)
        store.close()
    print(f"in process: authenticate {new * 1e6:.1f} µs per call (200 users, {len(tokens) + 1} tokens); "
          f"one static token compared (before): {old * 1e6:.2f} µs; added per request: {(new - old) * 1e6:.1f} µs")


def over_http(n: int) -> None:
    with bench_plane() as bench:
        info = json.loads(bench.by("server", "status", "--json"))
        url, token = info["api_url"], json.loads((Path(bench.env["BRANCHYARD_HOME"]) / "server.json").read_text())["token"]
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
            auth = {"authorization": f"Bearer {token}"}
            for _ in range(50):  # warm up both paths
                client.get("/api/health")
                client.get("/api/whoami", headers=auth)

            def open_route() -> None:
                assert client.get("/api/health").status_code == 200

            def guarded() -> None:
                assert client.get("/api/whoami", headers=auth).status_code == 200

            bases, checks = [], []
            for _ in range(5):  # interleaved rounds: a busy machine slows both alike
                bases.append(per_call(open_route, n // 5 or 1))
                checks.append(per_call(guarded, n // 5 or 1))
            base, checked = statistics.median(bases), statistics.median(checks)
    print(f"over HTTP: GET /api/health (open) {base * 1e3:.2f} ms, GET /api/whoami (token → user → role) "
          f"{checked * 1e3:.2f} ms per request; ratio {checked / base:.2f}× (+{(checked - base) * 1e3:.2f} ms)")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    in_process(count)
    over_http(count)
