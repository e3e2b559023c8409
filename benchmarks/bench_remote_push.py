"""Code-only `git push` over HTTP (git's smart protocol through the control plane's API, authenticated by
branchyard's credential helper) → new code serving, against the same push to the local path remote, same run.

Runs a real control plane in a temporary home, pushes the example app once to warm the virtualenv cache, then
alternates code-only pushes to production through each remote (the order flips every round) and times each from
`git push` until the router answers /health with the new commit. It also times the transport alone (`git ls-remote`
through each remote), which is what HTTP adds to a push. The HTTP remote goes to the API's loopback
address (no TLS: that is the edge's part).

    .venv/bin/python benchmarks/bench_remote_push.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench_push import wait_http
from harness import bench_plane, sh

from branchyard.cli.project_cmd import credential_helper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with bench_plane() as b:
        api = json.loads(b.by("server", "status", "--json"))["api_url"]
        token = (b.tmp / "home" / "token").read_text().strip()
        # the helper reads the token from the environment (as in CI); it is never in .git/config or argv.
        # A copy: the harness stops the plane with its own environment, which must stay local.
        git_env = b.env | {"BRANCHYARD_URL": api, "BRANCHYARD_TOKEN": token}
        b.git("remote", "add", "http", f"{api}/git/yoto.git")
        b.git("config", f"credential.{api}.helper", credential_helper())  # what `init` configures remotely
        b.git("push", "-q", "branchyard", "main")  # warms the virtualenv cache

        # the transport alone: ref advertisement through each remote (for HTTP: the 401, the helper, the retry)
        transport: dict[str, list[float]] = {"branchyard": [], "http": []}
        for _ in range(10):
            for remote in transport:
                started = time.monotonic()
                sh(["git", "ls-remote", remote], cwd=b.repo, env=git_env)
                transport[remote].append(time.monotonic() - started)

        results: dict[str, list[float]] = {"branchyard": [], "http": []}
        for i in range(args.runs):
            for remote in (("branchyard", "http") if i % 2 == 0 else ("http", "branchyard")):
                (b.repo / "VERSION").write_text(f"{remote}-{i}\n")
                b.git("add", "-A")
                b.git("commit", "-qm", f"{remote} {i}")
                sha = b.git("rev-parse", "HEAD").strip()
                started = time.monotonic()
                sh(["git", "push", "-q", remote, "HEAD:main"], cwd=b.repo, env=git_env)
                wait_http(f"http://127.0.0.1:{b.http_port}/health", host="yoto.localhost", want_commit=sha)
                results[remote].append(time.monotonic() - started)

    local, http = statistics.median(results["branchyard"]), statistics.median(results["http"])
    print(f"runs: {args.runs} per remote, alternating (medians; all values in seconds)")
    for label, key in (("push to the local path remote → serving:", "branchyard"), ("push over HTTP → serving:          ", "http")):
        print(f"{label} {statistics.median(results[key]):.3f}   (min {min(results[key]):.3f}, max {max(results[key]):.3f})")
    print(f"ratio HTTP / local: {http / local:.2f}x   (goal ≤ 1.2x)")
    t_local, t_http = statistics.median(transport["branchyard"]), statistics.median(transport["http"])
    print(f"transport alone (git ls-remote, median of 10): local {t_local * 1000:.0f} ms, HTTP {t_http * 1000:.0f} ms "
          f"(+{(t_http - t_local) * 1000:.0f} ms per push)")


if __name__ == "__main__":
    main()
