"""Wake on request (issue 17): the first request to a sleeping environment → 200, against a bare start of the same app.

The example app (uvicorn + FastAPI, its PostgreSQL and Redis) deploys to staging with `sleepAfter = 3`. While it runs,
the bench reads its replica's command, working directory and environment from /proc: a **bare start** is that same
command spawned by this script on a new port, timed from the spawn to its first `GET /health` → 200 (polled every
10 ms), then killed. A **wake** waits for the `environment.slept` event (the replica gone), then times one `GET
/health` through the router, from sent to answered. Rounds alternate bare start and wake, so both see the same machine.
Last, one sleep more and 20 concurrent first requests: how many failed (goal 0), and their latency p50/max.

    .venv/bin/python benchmarks/bench_sleep.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
from harness import bench_plane, free_port

from branchyard.backends.local.cgroups import Cgroups
from branchyard.backends.ports import Placement

HOST = "yoto-staging.localhost"


def events(b, kind: str) -> list[dict]:
    return [e for e in json.loads(b.by("events", "-e", "staging", "--json")) if e["kind"] == kind]


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit("timed out waiting")


def wait_asleep(b) -> None:
    """Asleep again (the state is ACTIVE from before a wake's first answer on, so this is the next sleep)."""
    wait_for(lambda: (lambda s: s["state"] == "SLEEPING" and not s["replicas"])(
        json.loads(b.by("status", "-e", "staging", "--json"))))


def replica_recipe(pid: int) -> tuple[list[str], str, dict[str, str]]:
    """The replica's argv, working directory and environment, as the runtime started it."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in kv)
    return argv, cwd, env


def bare_start(argv: list[str], cwd: str, env: dict[str, str], old_port: str, join: str | None = None) -> float:
    """Spawn → first GET /health 200, in seconds; the process group is killed after. `join`: shell text that moves
    the process into a cgroup first (the environment's limits, made by hand), else it runs unlimited."""
    port = str(free_port())
    argv = [a.replace(old_port, port) for a in argv]
    if join is not None:
        argv = ["sh", "-c", f'{join}; exec "$@"', "sh", *argv]
    began = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env | {"PORT": port}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.monotonic() - began
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"bare start exited with {proc.returncode}")
                time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def first_request(port: int) -> tuple[int | str, float]:
    began = time.monotonic()
    try:
        status: int | str = httpx.get(f"http://127.0.0.1:{port}/health", headers={"Host": HOST}, timeout=60,
                                      trust_env=False).status_code
    except httpx.HTTPError as err:
        status = type(err).__name__
    return status, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with bench_plane() as b:
        toml = b.repo / "branchyard.toml"
        toml.write_text(toml.read_text().replace('[environments.staging]\nbranch = "develop"\n',
                                                 '[environments.staging]\nbranch = "develop"\nsleepAfter = 3\n', 1))
        b.git("commit", "-qam", "staging sleeps after 3 s without a request")
        b.git("push", "-q", "branchyard", "HEAD:develop")
        status = json.loads(b.by("status", "-e", "staging", "--json"))
        replica = status["replicas"][0]
        argv, cwd, env = replica_recipe(replica["pid"])
        web = json.loads(b.by("config", "show", "-e", "staging", "--json"))["web"]
        cgroups = Cgroups(b.tmp / "bench-cgroups")
        group = cgroups.create(Placement("bench", "staging", "web", 0, memory_mb=web["memory_mb"], cpu=web["cpu"]))
        join = cgroups.prelude(group) if group is not None else None
        print(f"app: {' '.join(argv)}  (1 replica, health check GET /health; staging's limits: "
              f"{web['memory_mb']} MB, {web['cpu']} vCPU{'' if group else ', not enforceable here'})")
        bares, limited, wakes = [], [], []
        for i in range(args.rounds):
            bares.append(bare_start(argv, cwd, env, str(replica["port"])))
            if join is not None:
                limited.append(bare_start(argv, cwd, env, str(replica["port"]), join))
            wait_asleep(b)
            status_code, took = first_request(b.http_port)
            if status_code != 200:
                raise SystemExit(f"round {i}: the first request got {status_code}")
            wakes.append(took)
            inside = events(b, "environment.woke")[0]["message"]  # the control plane's own account
            also = f", under staging's limits {limited[-1] * 1000:.0f} ms" if limited else ""
            print(f"round {i + 1}: bare start {bares[-1] * 1000:.0f} ms{also}, wake (first request → 200) "
                  f"{took * 1000:.0f} ms  [{inside}]")
        if group is not None:
            cgroups.remove(group)
        bare, wake = statistics.median(bares), statistics.median(wakes)
        print(f"median bare start {bare * 1000:.0f} ms (unlimited), median wake {wake * 1000:.0f} ms: "
              f"ratio {wake / bare:.2f}x")
        if limited:  # the wake starts the replica under the environment's limits: compared with the same start
            capped = statistics.median(limited)
            print(f"median bare start under staging's limits {capped * 1000:.0f} ms: wake ratio {wake / capped:.2f}x "
                  "(goal ≤ 1.5x)")

        wait_asleep(b)
        woke_before = len(events(b, "environment.woke"))
        results: list[tuple[int | str, float]] = []
        gate = threading.Barrier(20)

        def one() -> None:
            gate.wait()
            results.append(first_request(b.http_port))

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [s for s, _ in results if s != 200]
        times = sorted(t for _, t in results)
        print(f"20 concurrent first requests: {len(failed)} failed (goal 0){' ' + str(failed) if failed else ''}; "
              f"latency p50 {statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms; "
              f"wakes: {len(events(b, 'environment.woke')) - woke_before}")


if __name__ == "__main__":
    main()
