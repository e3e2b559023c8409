"""New-connection TLS handshakes per second through the edge, against new plain-TCP connections to the same edge, in
the same run; and the edge's CPU per handshake.

A control plane with BRANCHYARD_TLS=internal serves the example app; the certificate for its host is issued by the
first request (not timed). Then, alternating rounds of ROUND seconds each, client processes open connections as fast
as they can: a TLS round does a full handshake (TLS 1.3, SNI = the app's host, chain verified against `tls root`,
no session resumption) and closes; a TCP round only connects to the HTTP port and closes. The edge's CPU comes from
/proc/<pid>/stat before and after each round.

    .venv/bin/python benchmarks/bench_tls.py [--rounds 3] [--clients 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import time
from pathlib import Path

import httpx
from harness import bench_plane, free_port

ROUND = 4.0
HOST = "yoto.localhost"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(kind: str, port: int, root: str, until: float, counts: multiprocessing.Queue) -> None:
    ctx = ssl.create_default_context(cafile=root)
    done = 0
    while time.monotonic() < until:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            if kind == "tls":
                with ctx.wrap_socket(raw, server_hostname=HOST):
                    pass
        done += 1
    counts.put(done)


def one_round(kind: str, port: int, root: Path, clients: int, edge_pid: int) -> tuple[float, float]:
    """(connections per second, edge CPU milliseconds per connection)."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    cpu = cpu_seconds(edge_pid)
    until = time.monotonic() + ROUND
    procs = [multiprocessing.Process(target=client, args=(kind, port, str(root), until, counts)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(counts.get() for _ in procs)
    for p in procs:
        p.join()
    return total / ROUND, (cpu_seconds(edge_pid) - cpu) * 1000 / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    https_port = free_port()
    with bench_plane(extra_env={"BRANCHYARD_TLS": "internal", "BRANCHYARD_HTTPS_PORT": str(https_port)}) as b:
        b.git("push", "-q", "branchyard", "main")
        root = b.tmp / "root.pem"
        b.by("tls", "root", "-o", str(root))
        with httpx.Client(verify=ssl.create_default_context(cafile=str(root)), trust_env=False, timeout=60) as c:
            r = c.send(c.build_request("GET", f"https://127.0.0.1:{https_port}/health", headers={"Host": HOST},
                                       extensions={"sni_hostname": HOST}))  # issues the certificate
            assert r.status_code == 200, r.status_code
        edge_pid = int((b.tmp / "home" / "caddy" / "edge.pid").read_text())
        results: dict[str, list[tuple[float, float]]] = {"tls": [], "tcp": []}
        for i in range(args.rounds):
            for kind in (("tls", "tcp") if i % 2 == 0 else ("tcp", "tls")):
                port = https_port if kind == "tls" else b.http_port
                results[kind].append(one_round(kind, port, root, args.clients, edge_pid))
        info = json.loads(b.by("server", "status", "--json"))
    print(f"{args.rounds} rounds of {ROUND:.0f} s per kind, {args.clients} client processes, alternating "
          f"(medians; control plane {info.get('version')})")
    for kind, label in (("tls", "new TLS 1.3 handshakes"), ("tcp", "new TCP connections (no TLS)")):
        rates = [r for r, _ in results[kind]]
        cpu = statistics.median(c for _, c in results[kind])
        print(f"{label:30} {statistics.median(rates):8.0f} /s   (min {min(rates):.0f}, max {max(rates):.0f}); "
              f"edge CPU {cpu:.2f} ms each")
    tls, tcp = (statistics.median(r for r, _ in results[k]) for k in ("tls", "tcp"))
    print(f"ratio TLS / TCP connections: {tls / tcp:.2f}")


if __name__ == "__main__":
    main()
