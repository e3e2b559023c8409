"""Where an instant rollback's time goes: from the command to 100 % of responses from the old release.

The app sets `overlapSeconds`, so each rollback (and each redeploy of the newer deployment after it) re-adopts
warm standby replicas. For each of `--rounds` alternations it prints, from the moment the command starts:

- switch: the first response from the target release (a poller sends back-to-back GETs on 4 connections);
- 100 %: the last response from the release being replaced;
- return: the CLI command exits (it follows the deployment's log to its end);
- api: the same operation through the HTTP API with no CLI process (POST, then the same poller).

and the control plane's own account, from the deployment's log ("routed … N ms after it was queued").
Run it with another interpreter to measure another checkout side by side (same example app, same script):

    .venv/bin/python benchmarks/bench_rollback.py [--rounds 6]
    /path/to/old/.venv/bin/python benchmarks/bench_rollback.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import threading
import time

import httpx
from harness import bench_plane


class Poller:
    """Back-to-back GETs through the router on a few keep-alive connections: (time, commit) of every answer."""

    def __init__(self, port: int, host: str, connections: int = 4) -> None:
        self.port, self.host = port, host
        self.answers: list[tuple[float, str]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers={"Host": self.host}, timeout=10,
                          trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/health")
                    if r.status_code == 200:
                        self.answers.append((time.monotonic(), r.json()["commit"]))
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1

    def start(self) -> Poller:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def times(self, started: float, target: str, old: str) -> tuple[float, float]:
        """(first answer from target, last answer from old) after `started`, in seconds from it."""
        after = [(t, c) for t, c in self.answers if t >= started]
        first = min((t for t, c in after if c == target), default=float("nan"))
        last = max((t for t, c in after if c == old), default=started)
        return first - started, last - started


def api_post(plane_env: dict[str, str], path: str, body: dict) -> dict:
    home = plane_env["BRANCHYARD_HOME"]
    info = json.loads(open(f"{home}/server.json").read())
    host, port = info["url"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"Authorization": f"Bearer {info['token']}",
                                                               "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6, help="rollback + redeploy pairs, by CLI and by API each")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between operations")
    args = parser.parse_args()
    with bench_plane(branch="develop", railway_extra="drainingSeconds = 5\noverlapSeconds = 600\n") as b:
        b.git("push", "-q", "branchyard", "develop")
        v1 = b.git("rev-parse", "HEAD").strip()
        (b.repo / "VERSION").write_text("2\n")
        b.git("add", "-A")
        b.git("commit", "-qm", "v2")
        v2 = b.git("rev-parse", "HEAD").strip()
        b.git("push", "-q", "branchyard", "develop")
        deps = json.loads(b.by("deployments", "-e", "staging", "--json"))
        v2_id, v1_id = deps[0]["id"], deps[1]["id"]
        poller = Poller(b.http_port, "yoto-staging.localhost").start()
        time.sleep(args.pause)
        rows: dict[str, list[tuple[float, float, float]]] = {"CLI rollback": [], "CLI redeploy": [], "API rollback": [],
                                                             "API redeploy": []}
        server_ms: list[float] = []
        serving = v2
        for i in range(args.rounds * 2):
            via_api = i >= args.rounds
            target = v1 if serving == v2 else v2
            kind = ("API " if via_api else "CLI ") + ("rollback" if target == v1 else "redeploy")
            started = time.monotonic()
            if via_api:
                path = "rollback" if target == v1 else "redeploy"
                body = {} if target == v1 else {"deployment_id": v2_id}
                api_post(b.env, f"/api/projects/yoto/environments/staging/{path}", body)
                returned = float("nan")
            elif target == v1:
                b.by("rollback", "-e", "staging")
                returned = time.monotonic() - started
            else:
                b.by("redeploy", v2_id, "-e", "staging")
                returned = time.monotonic() - started
            time.sleep(args.pause)
            switch, full = poller.times(started, target, serving)
            rows[kind].append((switch, full, returned))
            log = b.by("logs", "-e", "staging", "--build", "-n", "200")
            found = re.findall(r"routed .*?\((\d+) ms after it was queued", log)
            if found:
                server_ms.append(float(found[-1]))
            serving = target
        poller.stop()
        adopted = "re-adopted from standby" in b.by("logs", "-e", "staging", "--build", "-n", "200")
    print(f"overlapSeconds = 600 (standby replicas re-adopted: {adopted}); poller answers: {len(poller.answers)}, "
          f"failed: {poller.failed}; v1 {v1[:8]} deployment {v1_id[:8]}, v2 {v2[:8]} deployment {v2_id[:8]}")
    print(f"{'':14} {'switch (median)':>16} {'100 % (median, max)':>22} {'CLI returns (median)':>22}")
    for kind, got in rows.items():
        if not got:
            continue
        sw, full, ret = zip(*got)
        rets = [r for r in ret if r == r]
        print(f"{kind:14} {statistics.median(sw):14.3f} s {statistics.median(full):12.3f} / {max(full):.3f} s "
              f"{(f'{statistics.median(rets):18.3f} s') if rets else '':>22}")
    if server_ms:
        print(f"control plane's own account, queued → routed: median {statistics.median(server_ms):.0f} ms "
              f"(min {min(server_ms):.0f}, max {max(server_ms):.0f})")
    print("goal: rollback command → 100 % of responses from the old release ≤ 0.5 s")


if __name__ == "__main__":
    main()
