"""The self-hosted git remote: a bare repository per project whose pre-receive hook deploys."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..errors import BackendError

HOOK = """#!/bin/sh
# Installed by branchyard: deploys pushed branches and streams progress back to `git push`.
BRANCHYARD_HOME={home}
export BRANCHYARD_HOME
exec {python} -m branchyard.triggers.hook {project}
"""


def create_bare_repo(path: Path, *, project: str, home: Path) -> None:
    """Create (or repair) the bare repository and install its pre-receive hook."""
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            raise BackendError(f"git: cannot create repository {path}: {detail.strip()}") from None
    hook = path / "hooks" / "pre-receive"
    hook.write_text(
        HOOK.format(
            home=shlex.quote(str(home)),
            python=shlex.quote(sys.executable),
            project=shlex.quote(project),
        )
    )
    hook.chmod(0o755)


def quarantine_env() -> dict[str, str]:
    """The variables git gives a pre-receive hook so the pushed (still quarantined) objects can be read."""
    keys = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")
    return {k: os.environ[k] for k in keys if k in os.environ}


def has_commit(repo: Path, sha: str) -> bool:
    """The bare repository holds commit `sha`."""
    done = subprocess.run(["git", f"--git-dir={repo}", "cat-file", "-e", f"{sha}^{{commit}}"],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return done.returncode == 0


def fetch_commit(repo: Path, upstream: str | None, sha: str, *, refs: tuple[str, ...] = ()) -> None:
    """Make commit `sha` present in the project's bare repository, fetched from its configured upstream.

    The exact sha is asked for first; servers that refuse unadvertised objects get the named refs
    (e.g. refs/pull/12/head, refs/heads/feature/x) instead. BackendError when the commit is not there after."""
    if has_commit(repo, sha):
        return
    if not upstream:
        raise BackendError(f"commit {sha[:12]} is not in the project's repository and no upstream is configured "
                           "(`branchyard init --repo URL`)")
    env = os.environ | {"GIT_TERMINAL_PROMPT": "0"}
    attempts = [[sha], [f"+{r}:refs/branchyard/fetched/{i}" for i, r in enumerate(refs)]] if refs else [[sha]]
    errors = []
    for specs in attempts:
        done = subprocess.run(["git", f"--git-dir={repo}", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                               "--", upstream, *specs], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=300)
        if done.returncode != 0:
            errors.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
        if has_commit(repo, sha):
            return
    detail = f": {errors[-1]}" if errors else ""
    raise BackendError(f"commit {sha[:12]} could not be fetched from the project's upstream{detail}")
