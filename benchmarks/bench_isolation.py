"""What isolation costs (issue 17), with vs without, in the same run.

## Network namespaces

A trivial ASGI app (uvicorn, one worker, a two-byte answer) runs twice, spawned by the real `LocalRuntime`: once on
the host's loopback (no placement), once in an environment's network namespace (`ip netns exec`, reached over its
veth at the namespace's address). The real `Router` (both Caddy tiers) serves one host to each. The same keep-alive
load (`wrk -t2 -c16`, else a Python client) is sent in alternating rounds to both hosts through the router.

- **throughput**: req/s through the router to the replica in a namespace ÷ to the replica on loopback (goal ≥ 0.97);
- **start time**: spawn → first healthy answer of a replica, with vs without namespace placement, alternating, the
  namespace already made (goal ≤ 1.05×); and what making an environment's namespace costs once (first spawn).

Needs root, `ip` and `nft` (as the control plane's isolation does).

    .venv/bin/python benchmarks/bench_isolation.py [--seconds 3] [--rounds 6] [--starts 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
from branchyard.backends.local.runtime import LocalRuntime  # noqa: E402
from branchyard.backends.local.tasks import TaskRecords  # noqa: E402
from branchyard.backends.ports import Placement  # noqa: E402

HOSTS = {"loopback": "loopback.localhost", "namespace": "netns.localhost"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()

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
    main()
