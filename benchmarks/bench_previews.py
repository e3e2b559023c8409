"""Previews: PR `opened` delivery → preview /health 200 (warm build cache), against the bare app start in
the same run; and a storm of 50 pull requests opened and closed → seconds to converge and leaks found.

The preview of the example app is the seed's: web ×1, a fresh PostgreSQL database, no Redis. The first
preview's database is migrated by preDeployCommand and seeded by seedCommand and kept as a template
(postgres.templateFiles); the warm runs' databases are copies of it. One last run changes a migration, so
its database is migrated and seeded again: that figure is printed too. The upstream is a local bare repository standing in
for GitHub; deliveries are signed like GitHub's.

    .venv/bin/python benchmarks/bench_previews.py [--runs 5] [--storm 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx
from bench_push import bare_start
from harness import BY, bench_plane, sh
from leaks import leaks
from webhooks import deliver, pull_request

SECRET = "bench-webhook-secret"


# One kept-alive client for deliveries and polls: a new client per request (an SSL context and a connection
# each) would add ~20 ms of the benchmark's own work to every figure.
CLIENT = httpx.Client(trust_env=False, verify=False)


def wait_commit(port: int, host: str, sha: str | None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = CLIENT.get(f"http://127.0.0.1:{port}/health", headers={"Host": host}, timeout=2)
            if r.status_code == 200 and (sha is None or r.json().get("commit") == sha):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.01)
    raise SystemExit(f"{host} never served {sha}")


def ephemeral(b, cwd: Path) -> list[dict]:
    return json.loads(sh([*BY, "environment", "list", "--ephemeral", "--json"],
                         cwd=cwd, env=b.env))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--storm", type=int, default=50)
    args = parser.parse_args()
    with bench_plane() as b:
        upstream = b.tmp / "upstream.git"
        sh(["git", "clone", "--quiet", "--bare", str(b.repo), str(upstream)], env=b.env)
        b.git("remote", "add", "upstream", str(upstream))
        b.by("init", "--repo", str(upstream))
        b.by("github", "configure", "--webhook-secret", SECRET)
        api = json.loads(b.by("server", "status", "--json"))["api_url"]
        base = b.git("rev-parse", "HEAD").strip()

        def open_pr(number: int, text: str, *, touch_migration: bool = False) -> tuple[str, float]:
            b.git("checkout", "-q", "-B", f"feature/bench-{number}", "main")
            (b.repo / "VERSION").write_text(text)
            if touch_migration:  # a template file changes: this preview's database is migrated and seeded anew
                migration = b.repo / "migrations" / "versions" / "0001_initial.py"
                migration.write_text(migration.read_text() + f"\n# {text}\n")
            b.git("add", "-A")
            b.git("commit", "-qm", text)
            sha = b.git("rev-parse", "HEAD").strip()
            b.git("push", "-q", "-f", "upstream", f"feature/bench-{number}")
            b.git("checkout", "-q", "main")
            started = time.monotonic()
            r = deliver(api, "pull_request", pull_request("opened", number, head_sha=sha, base_sha=base,
                                                          head_ref=f"feature/bench-{number}",
                                                          repository="owner/yoto-smart-stream"), secret=SECRET,
                        client=CLIENT)
            assert r.status_code == 202, r.text
            wait_commit(b.http_port, f"yoto-pr-{number}.localhost", sha)
            return sha, time.monotonic() - started

        def close_pr(number: int, sha: str) -> None:
            deliver(api, "pull_request", pull_request("closed", number, head_sha=sha, base_sha=base,
                                                      head_ref=f"feature/bench-{number}",
                                                      repository="owner/yoto-smart-stream"), secret=SECRET)

        sha, cold = open_pr(1, "warm-up")  # warms the virtualenv cache
        close_pr(1, sha)
        marker = next((b.tmp / "home" / "releases" / "yoto").glob("*/.branchyard-release.json"))
        venv = Path(json.loads(marker.read_text())["venv"])
        previews, bare = [], []
        for i in range(args.runs):
            bare.append(bare_start(venv, b.repo))
            sha, took = open_pr(i + 2, f"run-{i}")
            previews.append(took)
            close_pr(i + 2, sha)
        # one more, changing a migration: no template matches, so migrate and seed run (and a new template is kept)
        number = args.runs + 2
        sha, miss = open_pr(number, "migration changed", touch_migration=True)
        close_pr(number, sha)
        deadline = time.monotonic() + 120
        while ephemeral(b, b.repo) and time.monotonic() < deadline:
            time.sleep(0.2)

        # the storm: a trivially fast app, so the figure is about the control plane, not the app
        storm = b.tmp / "storm"
        storm.mkdir()
        (storm / "branchyard.toml").write_text('[project]\nname = "storm"\n[github]\nrepository = "owner/storm"\n'
                                               '[environments.production]\nbranch = "main"\n'
                                               '[environments.pr]\nbranches = ["*"]\n')
        (storm / "railway.toml").write_text('[deploy]\nstartCommand = "exec python3 -m http.server $PORT --bind '
                                            '127.0.0.1"\nhealthcheckPath = "/health"\ndrainingSeconds = 1\n')
        (storm / "health").write_text("ok\n")
        git = lambda *a: sh(["git", *a], cwd=storm, env=b.env)  # noqa: E731
        git("init", "-q", "--initial-branch=main")
        git("add", "-A")
        git("commit", "-qm", "storm")
        storm_sha = git("rev-parse", "HEAD").strip()
        storm_up = b.tmp / "storm-upstream.git"
        sh(["git", "clone", "--quiet", "--bare", str(storm), str(storm_up)], env=b.env)
        sh([*BY, "init", "--repo", str(storm_up)], cwd=storm, env=b.env)
        sh([*BY, "github", "configure", "--webhook-secret", SECRET], cwd=storm,
           env=b.env)
        n = args.storm
        started = time.monotonic()
        for action in ("opened", "closed"):
            for i in range(1, n + 1):
                r = deliver(api, "pull_request", pull_request(action, i, head_sha=storm_sha, base_sha=storm_sha,
                                                              head_ref="feature/storm", repository="owner/storm"),
                            secret=SECRET)
                assert r.status_code == 202, r.text
            if action == "opened":  # let a few come up, so closes also cancel builds and tear down running ones
                while sum(e["status"] == "SUCCESS" for e in ephemeral(b, storm)) < 3 and time.monotonic() - started < 120:
                    time.sleep(0.2)
        while ephemeral(b, storm) and time.monotonic() - started < 600:
            time.sleep(0.2)
        converged = time.monotonic() - started
        time.sleep(1)
        left = leaks(b.tmp / "home", b.http_port, "storm", [f"pr-{i}" for i in range(1, n + 1)])
        left += leaks(b.tmp / "home", b.http_port, "yoto", [f"pr-{i}" for i in range(1, args.runs + 3)])
        server_log = (b.tmp / "home" / "logs" / "server.log").read_text(errors="replace")
        tracebacks = server_log.count("Traceback")

    med, bare_med = statistics.median(previews), statistics.median(bare)
    print(f"runs: {args.runs} (medians; seconds)")
    print(f"bare uvicorn start → /health 200:                 {bare_med:.3f}")
    print(f"first PR opened → preview /health 200 (cold cache): {cold:.3f}")
    print(f"PR opened → preview /health 200 (warm cache):       {med:.3f}   ratio to bare: {med / bare_med:.2f}x"
          f"   (min {min(previews):.3f}, max {max(previews):.3f})")
    print(f"PR opened → preview /health 200 (warm cache, a migration changed: no template, migrate + seed run): "
          f"{miss:.3f}   ratio to bare: {miss / bare_med:.2f}x")
    print("goal: ≤ 2 s and ≤ 4× bare")
    print(f"storm: {n} PRs opened then closed → converged in {converged:.1f} s; leaks: {len(left)}"
          + (f" ({'; '.join(left[:5])})" if left else "") + f"; tracebacks in server log: {tracebacks}")


if __name__ == "__main__":
    main()
