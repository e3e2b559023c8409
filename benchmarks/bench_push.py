"""push → healthy for a code-only change (warm build cache), against a bare uvicorn start of the same app.

Runs a real control plane in a temporary home, pushes the example app once to warm the virtualenv
cache, then times N code-only pushes (staging: 1 replica, like the bare start; production: 2) from
`git push` until the router answers /health with the new commit. The baseline starts the same app
with the same virtualenv directly (`uvicorn main:app`) and times until /health answers.

    .venv/bin/python benchmarks/bench_push.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import httpx
from harness import bench_plane, free_port

# One kept-alive client for every poll: a new client per poll (an SSL context each, ~15 ms) would make the
# polls coarse and add the benchmark's own work to the figures it prints.
CLIENT = httpx.Client(trust_env=False, verify=False)


def wait_http(url: str, host: str | None = None, want_commit: str | None = None, timeout: float = 60) -> None:
    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = CLIENT.get(url, headers=headers, timeout=2)
            if r.status_code == 200 and (want_commit is None or r.json().get("commit") == want_commit):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} never became healthy")


def bare_start(venv: Path, app: Path) -> float:
    port = free_port()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PORT": str(port), "HOME": os.environ.get("HOME", "/tmp")}
    started = time.monotonic()
    proc = subprocess.Popen([f"{venv}/bin/uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with bench_plane() as b:
        b.git("push", "-q", "branchyard", "main")  # warms the virtualenv cache
        b.git("push", "-q", "branchyard", "main:develop")
        marker = next((b.tmp / "home" / "releases" / "yoto").glob("*/.branchyard-release.json"))
        venv = Path(json.loads(marker.read_text())["venv"])

        results: dict[str, list[float]] = {"staging": [], "production": [], "bare": []}
        for i in range(args.runs):
            results["bare"].append(bare_start(venv, b.repo))
            for env_name, branch, host in (("staging", "develop", "yoto-staging.localhost"), ("production", "main", "yoto.localhost")):
                (b.repo / "VERSION").write_text(f"{env_name}-{i}\n")
                b.git("add", "-A")
                b.git("commit", "-qm", f"{env_name} {i}")
                sha = b.git("rev-parse", "HEAD").strip()
                started = time.monotonic()
                b.git("push", "-q", "-f", "branchyard", f"HEAD:{branch}")
                wait_http(f"http://127.0.0.1:{b.http_port}/health", host=host, want_commit=sha)
                results[env_name].append(time.monotonic() - started)

    bare = statistics.median(results["bare"])
    print(f"runs: {args.runs} (medians; all values in seconds)")
    print(f"bare uvicorn start → /health 200:           {bare:.3f}")
    for env_name, replicas in (("staging", 1), ("production", 2)):
        med = statistics.median(results[env_name])
        print(f"push → healthy, {env_name:<10} ({replicas} replica{'s' if replicas > 1 else ''}): {med:.3f}"
              f"   ratio to bare: {med / bare:.2f}x   (min {min(results[env_name]):.3f}, max {max(results[env_name]):.3f})")
    print("goal: push → healthy ≤ 2 s and ≤ 4× bare")


if __name__ == "__main__":
    main()
