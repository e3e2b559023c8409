"""A new environment with a fresh PostgreSQL database and Redis → healthy, against a bare app start; and
CREATE DATABASE vs cloning a template database.

Each run registers a new project and pushes `develop`: staging gets a new database (migrated by
preDeployCommand, seeded by seedCommand) and a new redis-server, on a warm build cache. The baseline
starts the same app, same virtualenv, with no database, in the same run.

    .venv/bin/python benchmarks/bench_data_plane.py [--runs 3] [--databases 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_push import bare_start, wait_http
from harness import bench_plane

from branchyard.backends.local.postgres import Admin, LocalServer


def fresh_environments(runs: int) -> tuple[list[float], list[float]]:
    env_times, bare_times = [], []
    with bench_plane(branch="develop") as b:
        secrets = ["YOTO_CLIENT_ID=bench", "YOTO_CLIENT_SECRET=bench-secret"]
        for i in range(runs + 1):  # the first push warms the build cache and the shared PostgreSQL server
            project = f"bench{i}"
            toml = b.repo / "branchyard.toml"
            toml.write_text(toml.read_text().replace(f'name = "bench{i - 1}"' if i else 'name = "yoto"', f'name = "{project}"', 1))
            b.git("add", "-A")
            b.git("commit", "-qm", project)
            b.by("init")
            b.by("variables", "set", "--secret", "--skip-deploys", "-e", "staging", *secrets,
                 "SENTRY_DSN_STAGING=https://k@sentry.invalid/2")
            started = time.monotonic()
            b.git("push", "-q", "branchyard", "develop")
            wait_http(f"http://127.0.0.1:{b.http_port}/health", host=f"{project}-staging.localhost")
            if i:
                env_times.append(time.monotonic() - started)
                marker = next((b.tmp / "home" / "releases" / project).glob("*/.branchyard-release.json"))
                bare_times.append(bare_start(Path(json.loads(marker.read_text())["venv"]), b.repo))
    return env_times, bare_times


def create_vs_template(count: int) -> tuple[float, float]:
    root = Path(tempfile.mkdtemp(prefix="branchyard-bench-"))
    server = LocalServer(data_dir=root / "pg")
    try:
        server.ensure_running()
        admin = Admin(server.admin_url())
        tpl = admin.create_database("bench_template", "bench_template")
        admin.psql(tpl, "create table users (id serial primary key, email text unique, name text);"
                        "insert into users (email, name) select 'u' || g || '@x.invalid', 'n' || g from generate_series(1, 20000) g;")
        started = time.monotonic()
        for i in range(count):
            admin.create_database(f"bench_plain_{i}", f"bench_plain_{i}")
        plain = (time.monotonic() - started) / count
        started = time.monotonic()
        for i in range(count):
            admin.create_database(f"bench_clone_{i}", f"bench_clone_{i}", template="bench_template")
        clone = (time.monotonic() - started) / count
        return plain, clone
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--databases", type=int, default=10)
    args = parser.parse_args()
    env_times, bare_times = fresh_environments(args.runs)
    plain, clone = create_vs_template(args.databases)
    env, bare = statistics.median(env_times), statistics.median(bare_times)
    print(f"runs: {args.runs} (medians, seconds)")
    print(f"bare uvicorn start → /health 200 (no database):                     {bare:.3f}")
    print(f"push → new environment healthy (new database migrated + seeded, new Redis): {env:.3f}"
          f"   ratio {env / bare:.2f}x   (min {min(env_times):.3f}, max {max(env_times):.3f})")
    print(f"create_database, empty:                      {plain * 1000:.0f} ms")
    print(f"create_database from a template (20k rows):  {clone * 1000:.0f} ms   ratio {clone / plain:.2f}x")


if __name__ == "__main__":
    main()
