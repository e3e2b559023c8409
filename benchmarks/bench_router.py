"""The router's own cost, on a fast app (issue 14): a trivial ASGI app direct vs through the router.

One uvicorn process (one worker) serves a two-byte answer. The same keep-alive load (`wrk -t2 -c16` when wrk
is installed, else a Python client in two processes) is sent, in alternating rounds of the same run, to:

- **direct**: the app's own port;
- **router**: the real `Router` of this checkout (backends/local/caddy.py), started in a temporary home on
  free loopback ports, serving one route to the app;
- **old router**: the `Router` of another checkout (`--old-src`, default /work/wt-old/src, else /work/main/src),
  run by that checkout's own interpreter when it has a .venv, so the two designs are compared in one run;
- **router + access log** (issue 16): the same Router writing each environment's access log, and in its process the
  log shipper (`controller/logship.py`) reading it into records and the metrics' HTTP windows every 0.5 s, as the
  control plane does — the whole cost of HTTP monitoring (Caddy's encoder, the shipper's parse); the ratio to
  **router** is the issue's "metrics and access logs on vs off" (`--no-access-log` skips it);
- **router over HTTPS**: the same Router with TLS on (Caddy's local CA, on-demand certificate, TLS 1.3,
  keep-alive), host `localhost` so that wrk's SNI resolves (`--no-https` skips it);
- **one static Caddy** (`--floor`, on by default): a single Caddy with a fixed reverse_proxy config and
  GOMAXPROCS=1, no branchyard at all: what any design built on one Caddy hop could reach on this machine.

Prints req/s per side, each side's ratio to direct (mean of rounds and median of per-round ratios), the
CPU µs per request of each Caddy process, of the app and of the load generator (it runs on the same
cores: on a 2-CPU machine it takes CPU from the router and the app it measures).

    .venv/bin/python benchmarks/bench_router.py [--seconds 3] [--rounds 8] [--old-src PATH] [--no-floor] [--no-https]
        [--no-access-log]
"""

from __future__ import annotations

import argparse
import http.server
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "bench.localhost"

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''

# Runs in a child interpreter against one checkout's src: starts that checkout's Router, serves one route to the
# app, prints {"pids": ...}, and stops the router when its stdin closes.
ROUTER_HELPER = r'''
import json, os, sys
from pathlib import Path
src, home, http_port, upstream, host = sys.argv[1:6]
sys.path.insert(0, src)
from branchyard.backends.local.caddy import Route, Router  # Route: re-exported there, old checkouts too
tls = None
if len(sys.argv) > 6:  # HTTPS: <https port> <ask url> (Caddy's local CA; this checkout only)
    from branchyard.backends.local.caddy import EdgeTLS
    from branchyard.settings import Acme
    tls = EdgeTLS(mode="internal", https_port=int(sys.argv[6]), acme=Acme(), ask_url=sys.argv[7])
monitored = os.environ.get("BENCH_ACCESS_LOG") == "1"  # the access log, shipped into records and metrics
extra = {"access_log_dir": Path(home) / "logs"} if monitored else {}
router = Router(home=Path(home), http_port=int(http_port), admin_port=0, **({"tls": tls} if tls else {}), **extra)
try:
    router.ensure_running()
    router.apply([Route(host, "bench", "production", (upstream,))])
    pids = router.pids() if hasattr(router, "pids") else {"caddy": router.pid()}
    if monitored:  # as the control plane runs them: the shipper's thread, feeding the metrics' HTTP windows
        import threading
        from branchyard.controller.logship import LogShipper
        from branchyard.controller.metrics import HttpRecorder
        shipper = LogShipper(Path(home) / "logs", redactor=lambda p, e: (lambda s: s), http_sink=HttpRecorder().observe)
        threading.Thread(target=shipper.run_forever, args=(threading.Event(),), daemon=True).start()
        pids["shipper"] = os.getpid()
    print(json.dumps({"pids": pids}), flush=True)
    sys.stdin.read()
finally:
    router.stop()
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _connect(port: int, host: str, tls: bool, timeout: float) -> socket.socket:
    """A connection to 127.0.0.1:port; with `tls`, a TLS one with SNI `host` (not verified: this measures cost)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if not tls:
        return sock
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(sock, server_hostname=host)


def wait_http(port: int, host: str, timeout: float = 20.0, tls: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with _connect(port, host, tls, 5) as sock:
                sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing answered 200 on port {port} for {host} within {timeout:.0f}s")


def cpu_ticks(pid: int | None) -> int:
    """CPU time (user + system, in clock ticks) used so far by `pid`; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0
    return int(fields[11]) + int(fields[12])


def children_cpu() -> float:
    """CPU seconds used by our reaped children so far (the load generator's processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------- load


def wrk_load(port: int, host: str, connections: int, seconds: float, tls: bool = False) -> tuple[int, int]:
    """(requests answered 2xx/3xx, failed ones) with wrk, keep-alive connections. With `tls`, the URL names
    `host` (wrk sends it as SNI), which must then resolve to 127.0.0.1 (`localhost`)."""
    url = f"https://{host}:{port}/" if tls else f"http://127.0.0.1:{port}/"
    done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-H", f"Host: {host}", url],
                          capture_output=True, text=True, check=True)
    total = int(re.search(r"(\d+) requests in", done.stdout).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return total - (int(non_2xx.group(1)) if non_2xx else 0), failed


def _python_worker(port: int, host: str, threads: int, seconds: float, out: multiprocessing.Queue, tls: bool) -> None:
    """One load process: `threads` keep-alive connections on raw sockets, GET / in a loop."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        ok = failed = 0
        sock = None
        while time.monotonic() < stop_at:
            try:
                if sock is None:
                    sock = _connect(port, host, tls, 10)
                sock.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                while len(body) < length:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed")
                    body += chunk
                if head.startswith(b"HTTP/1.1 2"):
                    ok += 1
                else:
                    failed += 1
                if re.search(rb"(?i)connection: *close", head):
                    sock.close()
                    sock = None
            except (OSError, AttributeError):
                failed += 1
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()
        with lock:
            counts["ok"] += ok
            counts["failed"] += failed

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((counts["ok"], counts["failed"]))


def python_load(port: int, host: str, connections: int, seconds: float, tls: bool = False) -> tuple[int, int]:
    """(answered, failed) with a Python client: two processes of connections/2 threads each (no GIL contention
    between the two)."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_python_worker, args=(port, host, connections // 2, seconds, out, tls))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), sum(r[1] for r in results)


# ------------------------------------------------------------------------------------------- sides


class Side:
    """One target of the load: a port, the Caddy pids behind it, and what it served."""

    def __init__(self, name: str, port: int, caddy_pids: dict[str, int], *, host: str = HOST, tls: bool = False) -> None:
        self.name, self.port, self.caddy_pids = name, port, caddy_pids
        self.host, self.tls = host, tls  # the Host (and SNI) it is loaded with; HTTPS or not
        self.rates: list[float] = []
        self.served = 0
        self.ticks: Counter[str] = Counter()
        self.load_cpu = 0.0


def start_router(python: str, src: Path, home: Path, upstream: str, *, host: str = HOST,
                 https: tuple[int, str] | None = None, access_log: bool = False
                 ) -> tuple[subprocess.Popen, int, dict[str, int]]:
    """The router of checkout `src` serving `host`; with `https` = (port, ask url), over HTTPS on that port
    (the port returned); with `access_log`, writing the access log that a log shipper in the helper process reads
    into records and the metrics' HTTP windows (its CPU counted as the side's `shipper`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | {"BENCH_ACCESS_LOG": str(int(access_log))}
    extra = [str(https[0]), https[1]] if https else []
    proc = subprocess.Popen([python, "-c", ROUTER_HELPER, str(src), str(home), str(port), upstream, host, *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the router from {src} did not start (run with {python})")
    pids = {k: v for k, v in json.loads(line)["pids"].items() if v}
    if https:
        wait_http(https[0], host, tls=True, timeout=60)  # the first handshake issues the certificate
        return proc, https[0], pids
    wait_http(port, host)
    return proc, port, pids


def start_ask(host: str) -> tuple[http.server.HTTPServer, str]:
    """The on-demand TLS permission endpoint the edge asks: yes for `host` only (the control plane's, in miniature)."""
    class Ask(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            allowed = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("domain") == [host]
            self.send_response(200 if allowed else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ask)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/ask"


def start_floor(caddy: str, home: Path, upstream: str) -> tuple[subprocess.Popen, int, dict[str, int]]:
    port, admin = free_port(), free_port()
    config = {"admin": {"listen": f"127.0.0.1:{admin}"}, "apps": {"http": {"servers": {"bench": {
        "listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True},
        "routes": [{"match": [{"host": [HOST]}], "terminal": True,
                    "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}]}]}}}}}
    (home / "floor.json").write_text(json.dumps(config))
    env = os.environ | {"GOMAXPROCS": "1", "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    proc = subprocess.Popen([caddy, "run", "--config", str(home / "floor.json")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(port, HOST)
    return proc, port, {"caddy": proc.pid}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of each measurement")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds (every side once per round)")
    parser.add_argument("--connections", type=int, default=16)
    default_old = next((p for p in (Path("/work/wt-old/src"), Path("/work/main/src")) if p.is_dir()), None)
    parser.add_argument("--old-src", type=Path, default=default_old, help="another checkout's src/ (the old design)")
    parser.add_argument("--no-floor", action="store_true", help="skip the single static Caddy")
    parser.add_argument("--no-access-log", action="store_true",
                        help="skip the router with its access log shipped into records and metrics (issue 16)")
    parser.add_argument("--no-https", action="store_true", help="skip the router over HTTPS (keep-alive, TLS 1.3)")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if wrk is installed")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from branchyard.backends.local.caddy import find_caddy

    use_wrk = bool(shutil.which("wrk")) and not args.python_client
    load = wrk_load if use_wrk else python_load
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-router-"))
    procs: list[subprocess.Popen] = []
    try:
        (tmp / "app.py").write_text(APP)
        app_port = free_port()
        app = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(app_port),
                                "--workers", "1", "--log-level", "warning", "--no-access-log"], cwd=tmp,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(app)
        wait_http(app_port, HOST)
        upstream = f"127.0.0.1:{app_port}"
        sides = [Side("direct", app_port, {})]

        proc, port, pids = start_router(sys.executable, ROOT / "src", tmp / "router-home", upstream)
        procs.append(proc)
        sides.append(Side("router", port, pids))
        if not args.no_access_log:
            proc, port, pids = start_router(sys.executable, ROOT / "src", tmp / "monitored-home", upstream,
                                            access_log=True)
            procs.append(proc)
            sides.append(Side("router + access log", port, pids))
        if not args.no_https:
            ask, ask_url = start_ask("localhost")  # `localhost`: wrk sends the URL's host as SNI, and it resolves
            proc, port, pids = start_router(sys.executable, ROOT / "src", tmp / "tls-home", upstream, host="localhost",
                                            https=(free_port(), ask_url))
            procs.append(proc)
            sides.append(Side("router over HTTPS", port, pids, host="localhost", tls=True))
        if args.old_src:
            venv_python = args.old_src.parent / ".venv" / "bin" / "python"
            python = str(venv_python) if venv_python.exists() else sys.executable
            proc, port, pids = start_router(python, args.old_src, tmp / "old-home", upstream)
            procs.append(proc)
            sides.append(Side("old router", port, pids))
        if not args.no_floor:
            proc, port, pids = start_floor(find_caddy(), tmp, upstream)
            procs.append(proc)
            sides.append(Side("one static Caddy", port, pids))

        for side in sides:  # warm-up: connections, pools, Go's and Python's caches
            load(side.port, side.host, args.connections, 2.0, tls=side.tls)
        hz = os.sysconf("SC_CLK_TCK")
        for i in range(args.rounds):
            order = sides[i % len(sides):] + sides[:i % len(sides)]  # every side goes first in turn
            rates = {}
            for side in order:
                before = {k: cpu_ticks(p) for k, p in side.caddy_pids.items()} | {"app": cpu_ticks(app.pid)}
                load_before = children_cpu()
                ok, failed = load(side.port, side.host, args.connections, args.seconds, tls=side.tls)
                side.load_cpu += children_cpu() - load_before
                for k, p in side.caddy_pids.items():
                    side.ticks[k] += cpu_ticks(p) - before[k]
                side.ticks["app"] += cpu_ticks(app.pid) - before["app"]
                if failed:
                    raise SystemExit(f"{side.name}: {failed} failed requests")
                side.served += ok
                rates[side.name] = ok / args.seconds
            for side in sides:
                side.rates.append(rates[side.name])

        client = "wrk -t2" if use_wrk else "a Python client (2 processes × threads)"
        if not use_wrk and not args.python_client:
            client += " because wrk is not installed (apt-get install -y wrk)"
        print(f"trivial ASGI app (uvicorn, 1 worker), {client}, {args.connections} keep-alive connections,"
              f" {args.rounds} alternating rounds of {args.seconds:g} s, {os.cpu_count()} CPUs")
        direct = sides[0]
        direct_rps = statistics.mean(direct.rates)
        for side in sides:
            rps = statistics.mean(side.rates)
            per_round = [r / d for r, d in zip(side.rates, direct.rates)]
            ratio = "" if side is direct else (f"  ratio {rps / direct_rps:.2f} (median of rounds"
                                               f" {statistics.median(per_round):.2f}; per round:"
                                               f" {', '.join(f'{x:.2f}' for x in per_round)})")
            print(f"{side.name:>19}: {rps:7.0f} req/s{ratio}")
            cpu = {k: 1e6 * t / hz / max(1, side.served) for k, t in side.ticks.items()}
            parts = [f"{k} {v:.0f} µs" for k, v in cpu.items()]
            parts.append(f"load generator {1e6 * side.load_cpu / max(1, side.served):.0f} µs")
            print(f"{'':>21}CPU per request: {', '.join(parts)}")
        print("goals (issue 14): router ≥ 0.90 × direct over plain HTTP, ≥ 0.85 × over HTTPS (keep-alive)")
        by_name = {side.name: side for side in sides}
        if "router + access log" in by_name:
            on, off = by_name["router + access log"], by_name["router"]
            per_round = [a / b for a, b in zip(on.rates, off.rates)]
            print(f"issue 16: router + access log / router {statistics.mean(on.rates) / statistics.mean(off.rates):.3f}"
                  f" (median of rounds {statistics.median(per_round):.3f}); goal ≥ 0.97")
    finally:
        for proc in reversed(procs):
            if proc.stdin:
                proc.stdin.close()  # the router helper stops its router and exits
            else:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
