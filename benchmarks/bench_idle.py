"""What the platform costs while nothing happens: CPU per second of the control plane, both Caddy tiers, the
shared PostgreSQL and staging's Redis, beside the app replica's own idle CPU measured in the same window.

A staging deployment of the example app runs; nobody sends it requests. The control plane still reconciles
every second (replicas, routes, previews) and checks the router's two tiers.

    .venv/bin/python benchmarks/bench_idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from bench_zero_downtime import cpu_ticks
from harness import bench_plane


def children(pid: int) -> list[int]:
    """`pid` and its live descendants (PostgreSQL's backends and helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with bench_plane(branch="develop") as b:
        b.git("push", "-q", "branchyard", "develop")
        home = b.tmp / "home"
        status = json.loads(b.by("status", "-e", "staging", "--json"))
        postmaster = next(home.glob("postgres/shared/**/postmaster.pid"), None)
        redis_pid = next(home.glob("redis/yoto/staging/*.pid"), None)
        groups = {
            "control plane": [json.loads((home / "server.json").read_text())["pid"]],
            "edge Caddy": [int((home / "caddy" / "edge.pid").read_text())],
            "routes Caddy": [int((home / "caddy" / "caddy.pid").read_text())],
            "PostgreSQL (all processes)": children(int(postmaster.read_text().split()[0])) if postmaster else [],
            "Redis (staging)": [int(redis_pid.read_text())] if redis_pid else [],
            "app replica (baseline)": [r["pid"] for r in status["replicas"]],
        }
        time.sleep(5)  # let the deployment's own after-work settle
        before = {name: Counter({p: cpu_ticks(p) for p in pids}) for name, pids in groups.items()}
        started = time.monotonic()
        time.sleep(args.seconds)
        took = time.monotonic() - started
        hz = os.sysconf("SC_CLK_TCK")
        used = {name: sum(cpu_ticks(p) - t for p, t in before[name].items()) * 1000 / hz / took for name in groups}
    print(f"idle for {took:.0f} s, one staging deployment running, no requests: CPU ms per second (of one CPU)")
    base = used["app replica (baseline)"]
    for name, ms in used.items():
        ratio = f"   {ms / base:.1f}x the idle app" if base > 0 and "baseline" not in name else ""
        print(f"  {name:<28} {ms:6.1f} ms/s{ratio}")


if __name__ == "__main__":
    main()
