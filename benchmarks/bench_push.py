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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import EXAMPLE, GIT_ENV, free_port  # noqa: E402

BY = [sys.executable, "-m", "branchyard.cli.main"]


def sh(args, cwd=None, env=None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_http(url: str, host: str | None = None, want_commit: str | None = None, timeout: float = 60) -> None:
    headers = {"Host": host} if host else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, headers=headers, timeout=2, trust_env=False)
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
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-"))
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | GIT_ENV | {
        "BRANCHYARD_HOME": str(tmp / "home"),
        "BRANCHYARD_HTTP_PORT": str(http_port),
        "HOME": str(tmp),
    }
    repo = tmp / "app"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    sh(BY + ["server", "--detach"], env=env)
    try:
        sh(["git", "init", "-q", "--initial-branch=main"], cwd=repo, env=env)
        sh(["git", "add", "-A"], cwd=repo, env=env)
        sh(["git", "commit", "-qm", "init"], cwd=repo, env=env)
        sh(BY + ["init"], cwd=repo, env=env)
        sh(["git", "push", "-q", "branchyard", "main"], cwd=repo, env=env)  # warms the venv cache
        sh(["git", "push", "-q", "branchyard", "main:develop"], cwd=repo, env=env)
        marker = next((tmp / "home" / "releases" / "yoto").glob("*/.branchyard-release.json"))
        venv = Path(json.loads(marker.read_text())["venv"])

        results: dict[str, list[float]] = {"staging": [], "production": [], "bare": []}
        for i in range(args.runs):
            results["bare"].append(bare_start(venv, repo))
            for env_name, branch, host in (("staging", "develop", "yoto-staging.localhost"), ("production", "main", "yoto.localhost")):
                (repo / "VERSION").write_text(f"{env_name}-{i}\n")
                sh(["git", "add", "-A"], cwd=repo, env=env)
                sh(["git", "commit", "-qm", f"{env_name} {i}", "--allow-empty"], cwd=repo, env=env)
                sha = sh(["git", "rev-parse", "HEAD"], cwd=repo, env=env).strip()
                started = time.monotonic()
                sh(["git", "push", "-q", "-f", "branchyard", f"HEAD:{branch}"], cwd=repo, env=env)
                wait_http(f"http://127.0.0.1:{http_port}/health", host=host, want_commit=sha)
                results[env_name].append(time.monotonic() - started)

        bare = statistics.median(results["bare"])
        print(f"runs: {args.runs} (medians; all values in seconds)")
        print(f"bare uvicorn start → /health 200:           {bare:.3f}")
        for env_name, replicas in (("staging", 1), ("production", 2)):
            med = statistics.median(results[env_name])
            print(f"push → healthy, {env_name:<10} ({replicas} replica{'s' if replicas > 1 else ''}): {med:.3f}"
                  f"   ratio to bare: {med / bare:.2f}x   (min {min(results[env_name]):.3f}, max {max(results[env_name]):.3f})")
        print("goal: push → healthy ≤ 2 s and ≤ 4× bare")
    finally:
        subprocess.run(BY + ["server", "stop", "--all"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
