"""What moving a database through the control plane costs on Kubernetes (issue 19: data jobs and transfers), each
against a baseline in the same run:

1. A dump's upload through the real transfer route (`POST /internal/transfers/<id>`, api/routes/releases.py: the
   body streamed to a worker thread, checked to be a dump, written whole and fsync'd, sha256'd) by the data job's own
   client (wget --post-file, as the pod runs it) — against `cp` of the same file plus `sync` on the same disk, the
   least any copy to the control plane's disk costs. MB/s and the ratio.
2. A dump's download (`GET /internal/transfers/<id>`, FileResponse) by wget — against `cat` of the file into the same
   destination.

The route runs in uvicorn in this process (a thread), wget in a child process, both on loopback: the ratio is the
route's overhead (HTTP, the thread hand-off, the checks), not a network's.

Usage: .venv/bin/python benchmarks/bench_data_jobs.py [MB] [RUNS]   (default 200 MB, 3 runs)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from branchyard.api.routes import releases  # noqa: E402
from branchyard.transfers import Transfers  # noqa: E402

NO_PROXY = {"no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}


def serve(transfers: Transfers) -> tuple[str, uvicorn.Server]:
    app = FastAPI()
    app.include_router(releases.router(SimpleNamespace(transfers=transfers)))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def timed(argv: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=os.environ | NO_PROXY, **kw)
    return time.perf_counter() - start


def main() -> None:
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    transfers = Transfers()
    url, server = serve(transfers)
    with tempfile.TemporaryDirectory(prefix="bench-transfers-") as tmp:
        work = Path(tmp)
        dump = work / "source.dump"
        with dump.open("wb") as f:  # a dump's magic, then incompressible bytes (a real dump is compressed too)
            f.write(b"PGDMP")
            for _ in range(mb):
                f.write(os.urandom(1 << 20))
        size = dump.stat().st_size / (1 << 20)
        up, cp, down, cat = [], [], [], []
        for i in range(runs):
            target = work / f"up-{i}.dump"
            t = transfers.expect_upload(target)
            up.append(timed(["wget", "-q", "-O", "/dev/null", "--header", f"Authorization: Bearer {t.token}",
                             "--header", "Content-Type: application/octet-stream", f"--post-file={dump}",
                             f"{url}/internal/transfers/{t.id}"]))
            transfers.close(t)
            cp.append(timed(["sh", "-c", f"cp {dump} {work}/cp-{i}.dump && sync {work}/cp-{i}.dump"]))
            t = transfers.offer_download(dump)
            down.append(timed(["wget", "-q", "-O", str(work / f"down-{i}.dump"), "--header",
                               f"Authorization: Bearer {t.token}", f"{url}/internal/transfers/{t.id}"]))
            transfers.close(t)
            cat.append(timed(["sh", "-c", f"cat {dump} > {work}/cat-{i}.dump"]))
            for name in (f"up-{i}", f"cp-{i}", f"down-{i}", f"cat-{i}"):
                (work / f"{name}.dump").unlink()
    server.should_exit = True
    print(f"dump of {size:.0f} MiB, {runs} runs, medians:")
    for label, route, base, base_label in (("upload (POST, checked, fsync'd)", up, cp, "cp + sync"),
                                           ("download (GET)", down, cat, "cat")):
        r, b = statistics.median(route), statistics.median(base)
        print(f"  {label:34s} {r:6.2f} s  {size / r:7.1f} MiB/s   {base_label}: {b:6.2f} s  {size / b:7.1f} MiB/s"
              f"   ratio {r / b:5.2f}x")


if __name__ == "__main__":
    main()
