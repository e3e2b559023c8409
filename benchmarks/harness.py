"""What the benchmarks share: a control plane in a temporary home and the example app in a git repo."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import EXAMPLE, GIT_ENV, free_port  # noqa: E402

BY = [sys.executable, "-m", "branchyard.cli.main"]


def sh(args, cwd=None, env=None) -> str:
    """Run a command; stop the benchmark with its output if it fails."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Bench:
    tmp: Path
    env: dict[str, str]
    http_port: int
    repo: Path

    def by(self, *args: str) -> str:
        return sh(BY + list(args), cwd=self.repo, env=self.env)

    def git(self, *args: str) -> str:
        return sh(["git", *args], cwd=self.repo, env=self.env)


@contextlib.contextmanager
def bench_plane(*, branch: str = "main", railway_extra: str = "", extra_env: dict[str, str] | None = None) -> Iterator[Bench]:
    """A running control plane and a registered copy of the example app (first commit made, not pushed).

    BENCH_KEEP=1 keeps the temporary directory (the plane's home, logs, repositories) for a look afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-"))
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | GIT_ENV | {
        "BRANCHYARD_HOME": str(tmp / "home"),
        "BRANCHYARD_HTTP_PORT": str(http_port),
        "HOME": str(tmp),
    } | (extra_env or {})
    repo = tmp / "app"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    if railway_extra:
        (repo / "railway.toml").write_text((repo / "railway.toml").read_text() + railway_extra)
    bench = Bench(tmp=tmp, env=env, http_port=http_port, repo=repo)
    sh(BY + ["server", "--detach"], env=env)
    try:
        bench.git("init", "-q", f"--initial-branch={branch}")
        bench.git("add", "-A")
        bench.git("commit", "-qm", "v1")
        bench.by("init")
        for env_name, dsn in (("production", "SENTRY_DSN"), ("staging", "SENTRY_DSN_STAGING")):
            bench.by("variables", "set", "--secret", "--skip-deploys", "-e", env_name, f"YOTO_CLIENT_ID=bench-{env_name}",
                     f"YOTO_CLIENT_SECRET=bench-secret-{env_name}", f"{dsn}=https://{env_name}@sentry.example.invalid/1")
        yield bench
    finally:
        subprocess.run(BY + ["server", "stop", "--all"], env=env, capture_output=True)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
