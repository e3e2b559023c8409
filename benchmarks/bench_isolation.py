"""What isolation costs (issue 17), with vs without, in the same run.

## Limits (a cgroup per replica)

spawn → first successful health probe of a tiny app (`python3 -m http.server`), with a cgroup per replica (memory
256 MB, cpu 1: the group made, its limits written, the shell joining it before the exec) vs without, interleaved so
that both see the same machine; and the cgroup's own work (create + remove) per replica. Goal: ≤ 1.05×.

## Network namespaces

A trivial ASGI app (uvicorn, one worker, a two-byte answer) runs twice, spawned by the real `LocalRuntime`: once on
the host's loopback (no placement), once in an environment's network namespace (`ip netns exec`, reached over its
veth at the namespace's address). The real `Router` (both Caddy tiers) serves one host to each. The same keep-alive
load (`wrk -t2 -c16`, else a Python client) is sent in alternating rounds to both hosts through the router.

- **throughput**: req/s through the router to the replica in a namespace ÷ to the replica on loopback (goal ≥ 0.97);
- **start time**: spawn → first healthy answer of a replica, with vs without namespace placement, alternating, the
  namespace already made (goal ≤ 1.05×); and what making an environment's namespace costs once (first spawn).

Needs root (cgroups), `ip` and `nft` (as the control plane's isolation does).

    .venv/bin/python benchmarks/bench_isolation.py [--limit-rounds 40] [--seconds 3] [--rounds 6] [--starts 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_router import APP, free_port, python_load, wait_http, wrk_load  # noqa: E402

from branchyard.backends.local import netns  # noqa: E402
from branchyard.backends.local.caddy import Route, Router  # noqa: E402
from branchyard.backends.local.cgroups import Cgroups  # noqa: E402
from branchyard.backends.local.runtime import LocalRuntime  # noqa: E402
from branchyard.backends.local.tasks import TaskRecords  # noqa: E402
from branchyard.backends.ports import Placement  # noqa: E402

TINY_APP = f"{sys.executable} -m http.server $PORT --bind 127.0.0.1"


def first_answer(port: int, timeout: float = 30.0) -> bool:
    """Poll `GET /` every millisecond until it answers 200 (the runtime's own wait_healthy polls every 20 ms: its
    quantum would hide a difference of a few ms between the two runs)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.0 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


SPAWN: dict[bool, list[float]] = {False: [], True: []}  # the spawn() call alone: placed or not


def start_once(runtime: LocalRuntime, tmp: Path, slot: int, cpu: float | None = 1) -> float:
    """Seconds from spawn to the first successful probe; the replica is stopped afterwards (not timed)."""
    port = free_port()
    placement = Placement("bench", "staging", "web", slot, memory_mb=256, cpu=cpu)
    started = time.perf_counter()
    h = runtime.spawn(TINY_APP, cwd=tmp, env={"PORT": str(port), "PATH": "/usr/bin:/bin"}, log_path=tmp / f"web.{slot}.log",
                      port=port, placement=placement)
    SPAWN[runtime.limits.enforced].append(time.perf_counter() - started)
    ok = first_answer(port)
    took = time.perf_counter() - started
    runtime.stop(h, grace=2)
    if not ok:
        raise SystemExit(f"the tiny app did not start: {runtime.tail(tmp / f'web.{slot}.log', 5)}")
    return took


def limits(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-isolation-"))
    cgroups = Cgroups(tmp / "home")
    if not cgroups.available:
        print(f"limits: not measured: {cgroups.why_not}")
        return
    bare = LocalRuntime(TaskRecords(tmp / "tasks-bare"))
    placed = LocalRuntime(TaskRecords(tmp / "tasks-placed"), cgroups=cgroups)
    start_once(bare, tmp, 0), start_once(placed, tmp, 0)  # warm: the interpreter and http.server in the page cache
    without, with_, memory_only = [], [], []
    for i in range(rounds):
        runs = [(bare, without, 1), (placed, with_, 1), (placed, memory_only, None)]
        for runtime, into, cpu in runs[i % 3:] + runs[:i % 3]:  # rotated: none always goes first
            into.append(start_once(runtime, tmp, i, cpu))
    p = Placement("bench", "staging", "web", 0, memory_mb=256, cpu=1)
    own = []
    for _ in range(200):
        t = time.perf_counter()
        group = cgroups.create(p)
        cgroups.remove(group)
        own.append(time.perf_counter() - t)
    a, b = statistics.median(without), statistics.median(with_)
    print(f"limits (cgroup v{cgroups.layout.version}): replica start → healthy, median of {rounds}: "
          f"{a * 1e3:.1f} ms without a cgroup, {b * 1e3:.1f} ms with one → {b / a:.3f}× (goal ≤ 1.05×)")
    c = statistics.median(memory_only)
    print(f"  with a group but no cpu quota (memory 256 MB only): {c * 1e3:.1f} ms → {c / a:.3f}×")
    print(f"  p90: {sorted(without)[int(0.9 * rounds)] * 1e3:.1f} ms without, {sorted(with_)[int(0.9 * rounds)] * 1e3:.1f} ms with")
    print(f"  the spawn() call alone (fork/exec of the shell; with: the group made and its limits written): "
          f"{statistics.median(SPAWN[False]) * 1e3:.2f} ms without, {statistics.median(SPAWN[True]) * 1e3:.2f} ms with")
    print(f"  the cgroup itself (mkdir ×2, 4 limit files, rmdir ×2): {statistics.median(own) * 1e6:.0f} µs per replica")
    kernel_baseline(cgroups, tmp, rounds)
    leftover = placed.limits.sweep()
    if leftover:
        print(f"  WARNING: groups left behind: {leftover}")
    shutil.rmtree(tmp, ignore_errors=True)


def kernel_baseline(cgroups: Cgroups, tmp: Path, rounds: int) -> None:
    """The same start by hand, without branchyard's runtime: `sh -c '<join>; exec <app>'` into a group made once
    (its limits written) vs `sh -c 'exec <app>'` — what running in a cgroup costs the process itself here."""
    group = cgroups.create(Placement("bench", "staging", "web", 99, memory_mb=256, cpu=1))
    join = cgroups.prelude(group)
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        for i in range(rounds):
            for joined in ((False, True) if i % 2 else (True, False)):
                port = free_port()
                app = TINY_APP.replace("$PORT", str(port))
                started = time.perf_counter()
                proc = subprocess.Popen(["sh", "-c", f"{join}; exec {app}" if joined else f"exec {app}"], cwd=tmp,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ok = first_answer(port)
                times[joined].append(time.perf_counter() - started)
                proc.kill()
                proc.wait()
                if not ok:
                    raise SystemExit("the tiny app did not start by hand")
    finally:
        cgroups.remove(group)
    a, b = statistics.median(times[False]), statistics.median(times[True])
    print(f"  by hand, no branchyard code (sh joins a group made once, then execs the app): {a * 1e3:.1f} ms without, "
          f"{b * 1e3:.1f} ms with → {b / a:.3f}× (the kernel's cost of starting a process in a cgroup here)")


HOSTS = {"loopback": "loopback.localhost", "namespace": "netns.localhost"}


def network(args: argparse.Namespace) -> None:

    tmp = Path(tempfile.mkdtemp(prefix="by-bench-iso-"))
    home = tmp / "home"
    home.mkdir()
    (tmp / "app.py").write_text(APP)
    network, why = netns.from_settings(home, "auto", netns.DEFAULT_POOL)
    if network is None:
        raise SystemExit(f"network isolation is not available here: {why}")
    runtime = LocalRuntime(TaskRecords(home / "tasks"), netns=network)
    router = Router(home=home / "caddy", http_port=free_port(), admin_port=0)
    handles = []
    try:
        network.setup()
        made = time.monotonic()
        network.ensure("bench", "production")  # what a first spawn in a new environment pays once
        made = time.monotonic() - made

        def spawn(placement: Placement | None):
            port = runtime.free_port()
            command = f"{sys.executable} -m uvicorn app:app --host 0.0.0.0 --port {port} --no-access-log --log-level warning"
            started = time.monotonic()
            h = runtime.spawn(command, cwd=tmp, env={"PATH": os.environ["PATH"], "HOME": str(tmp)},
                              log_path=home / "logs" / f"{port}.log", port=port, placement=placement)
            result = runtime.wait_healthy(h, None, timeout=60)
            if not result.ok:
                raise SystemExit(f"replica did not start: {result.detail}")
            return h, time.monotonic() - started

        placement = Placement(project="bench", environment="production")
        # ---- start time, alternating
        starts: dict[str, list[float]] = {"loopback": [], "namespace": []}
        for i in range(args.starts):
            for side in (("loopback", "namespace") if i % 2 == 0 else ("namespace", "loopback")):
                h, took = spawn(placement if side == "namespace" else None)
                starts[side].append(took)
                runtime.stop(h, grace=5)

        # ---- throughput through the router
        for side in ("loopback", "namespace"):
            h, _ = spawn(placement if side == "namespace" else None)
            handles.append(h)
        router.ensure_running()
        router.apply([Route(HOSTS[side], "bench", side if side != "loopback" else "loop", (f"{h.host}:{h.port}",))
                      for side, h in zip(("loopback", "namespace"), handles)])
        for host in HOSTS.values():
            wait_http(router.http_port, host)
        load = wrk_load if shutil.which("wrk") else python_load
        rates: dict[str, list[float]] = {"loopback": [], "namespace": []}
        failed = 0
        for i in range(args.rounds):
            for side in (("loopback", "namespace") if i % 2 == 0 else ("namespace", "loopback")):
                ok, bad = load(router.http_port, HOSTS[side], 16, args.seconds)
                rates[side].append(ok / args.seconds)
                failed += bad
        ratios = [n / lo for n, lo in zip(rates["namespace"], rates["loopback"])]

        print(f"replicas: loopback {handles[0].host}:{handles[0].port}, namespace {handles[1].host}:{handles[1].port} "
              f"({network.name_of('bench', 'production')}); load: {load.__name__}, {args.rounds} rounds × {args.seconds:g}s")
        print(f"throughput via router  loopback  {statistics.mean(rates['loopback']):8.0f} req/s")
        print(f"throughput via router  namespace {statistics.mean(rates['namespace']):8.0f} req/s")
        print(f"  ratio namespace/loopback: mean {statistics.mean(rates['namespace']) / statistics.mean(rates['loopback']):.3f}, "
              f"median of rounds {statistics.median(ratios):.3f} (goal ≥ 0.97); failed requests {failed}")
        lo, ns = statistics.median(starts["loopback"]), statistics.median(starts["namespace"])
        print(f"replica start (spawn → healthy), median of {args.starts}: loopback {lo * 1000:.0f} ms, "
              f"namespace {ns * 1000:.0f} ms, ratio {ns / lo:.3f} (goal ≤ 1.05)")
        print(f"an environment's namespace, veth and /30 made once (first spawn): {made * 1000:.0f} ms")
    finally:
        for h in handles:
            runtime.stop(h, grace=5)
        router.stop()
        network.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-rounds", type=int, default=40, help="replica starts per side for the cgroup figures")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--starts", type=int, default=10)
    arguments = parser.parse_args()
    limits(arguments.limit_rounds)
    network(arguments)
