"""What isolation costs a replica's start (issue 17), in process, same run:

1. limits: spawn → first successful health probe of a tiny app (`python3 -m http.server`), with a cgroup per replica
   (memory 256 MB, cpu 1: the group made, its limits written, the shell joining it before the exec) vs without,
   interleaved so that both see the same machine; and the cgroup's own work (create + remove) per replica;
2. network (a namespace per environment, the veth hop): added by the network helper of issue 17.

Goal: start with placement ≤ 1.05× without. Usage: python benchmarks/bench_isolation.py [ROUNDS]   (root: cgroups)
"""

from __future__ import annotations

import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from branchyard.backends.local.cgroups import Cgroups
from branchyard.backends.local.processes import free_port
from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords
from branchyard.backends.ports import Placement

APP = f"{sys.executable} -m http.server $PORT --bind 127.0.0.1"


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
    h = runtime.spawn(APP, cwd=tmp, env={"PORT": str(port), "PATH": "/usr/bin:/bin"}, log_path=tmp / f"web.{slot}.log",
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
    leftover = placed.limits.sweep()
    if leftover:
        print(f"  WARNING: groups left behind: {leftover}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    limits(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
