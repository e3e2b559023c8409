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
