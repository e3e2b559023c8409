"""Code-only `git push` over HTTPS through the edge (BRANCHYARD_PUBLIC_URL, git's smart protocol, authenticated by
branchyard's credential helper) and over plain HTTP to the API's loopback address → new code serving, against the
same push to the local path remote, same run.

Runs a real control plane in a temporary home with TLS on (`internal`: Caddy's local CA, trusted through
GIT_SSL_CAINFO), pushes the example app once to warm the virtualenv cache, then alternates code-only pushes to
production through each remote (the order rotates every round) and times each from `git push` until the router
answers /health over HTTPS with the new commit. It also times the transport alone (`git ls-remote` through each
remote), which is what HTTP(S) adds to a push.

    .venv/bin/python benchmarks/bench_remote_push.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import time
from pathlib import Path

import httpx
from harness import bench_plane, free_port, sh

from branchyard.cli.project_cmd import credential_helper


def wait_https(port: int, host: str, root: Path, want_commit: str, timeout: float = 60) -> None:
    """Poll https://host/health through the edge (SNI `host`, trusting `root`) until it reports `want_commit`."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(root)), timeout=2, trust_env=False) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            request = client.build_request("GET", f"https://127.0.0.1:{port}/health", headers={"Host": host},
                                           extensions={"sni_hostname": host})
            try:
                r = client.send(request)
                if r.status_code == 200 and r.json().get("commit") == want_commit:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.01)
    raise SystemExit(f"{host} never served {want_commit[:12]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    https_port = free_port()
    public = f"https://localhost:{https_port}"
    with bench_plane(extra_env={"BRANCHYARD_TLS": "internal", "BRANCHYARD_HTTPS_PORT": str(https_port),
                                "BRANCHYARD_PUBLIC_URL": public}) as b:
        api = json.loads(b.by("server", "status", "--json"))["api_url"]
        token = (b.tmp / "home" / "token").read_text().strip()
        root = b.tmp / "root.pem"
        b.by("tls", "root", "-o", str(root))
        # the helper reads the token from the environment (as in CI); it is never in .git/config or argv.
        # A copy: the harness stops the plane with its own environment, which must stay local.
        base_env = b.env | {"BRANCHYARD_TOKEN": token, "GIT_SSL_CAINFO": str(root)}
        git_env = {"branchyard": base_env, "http": base_env | {"BRANCHYARD_URL": api},
                   "https": base_env | {"BRANCHYARD_URL": public}}  # the helper answers for that control plane
        for name, base in (("http", api), ("https", public)):
            b.git("remote", "add", name, f"{base}/git/yoto.git")
            b.git("config", f"credential.{base}.helper", credential_helper())  # what `init` configures remotely
        b.git("push", "-q", "branchyard", "main")  # warms the virtualenv cache

        # the transport alone: ref advertisement through each remote (HTTP(S): the 401, the helper, the retry)
        remotes = ("branchyard", "http", "https")
        transport: dict[str, list[float]] = {r: [] for r in remotes}
        for _ in range(10):
            for remote in remotes:
                started = time.monotonic()
                sh(["git", "ls-remote", remote], cwd=b.repo, env=git_env[remote])
                transport[remote].append(time.monotonic() - started)

        results: dict[str, list[float]] = {r: [] for r in remotes}
        for i in range(args.runs):
            for remote in remotes[i % 3:] + remotes[:i % 3]:
                (b.repo / "VERSION").write_text(f"{remote}-{i}\n")
                b.git("add", "-A")
                b.git("commit", "-qm", f"{remote} {i}")
                sha = b.git("rev-parse", "HEAD").strip()
                started = time.monotonic()
                sh(["git", "push", "-q", remote, "HEAD:main"], cwd=b.repo, env=git_env[remote])
                wait_https(https_port, "yoto.localhost", root, sha)
                results[remote].append(time.monotonic() - started)

    local = statistics.median(results["branchyard"])
    print(f"runs: {args.runs} per remote, rotating (medians; all values in seconds)")
    for label, key in (("push to the local path remote → serving:", "branchyard"),
                       ("push over HTTP (API) → serving:        ", "http"),
                       ("push over HTTPS (edge) → serving:      ", "https")):
        print(f"{label} {statistics.median(results[key]):.3f}   (min {min(results[key]):.3f}, max {max(results[key]):.3f})"
              + ("" if key == "branchyard" else f"   ratio {statistics.median(results[key]) / local:.2f}x (goal ≤ 1.2x)"))
    t_local = statistics.median(transport["branchyard"])
    print("transport alone (git ls-remote, median of 10): "
          + ", ".join(f"{r} {statistics.median(transport[r]) * 1000:.0f} ms" for r in remotes)
          + f" (HTTPS adds {(statistics.median(transport['https']) - t_local) * 1000:.0f} ms per push)")


if __name__ == "__main__":
    main()
