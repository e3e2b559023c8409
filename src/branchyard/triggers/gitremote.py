"""The self-hosted git remote: a bare repository per project whose pre-receive hook deploys."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .. import names
from ..errors import BackendError, BadInput

HOOK = """#!/bin/sh
# Installed by branchyard: deploys pushed branches and streams progress back to `git push`.
BRANCHYARD_HOME={home}
export BRANCHYARD_HOME
exec {python} -m branchyard.triggers.hook {project}
"""


# Every project's bare repository is configured so: `git push -o force` (an admin's override of the remote's rules,
# git_rules.py) needs the server to advertise push options, else git refuses `-o` before sending anything.
REPO_CONFIG = (("receive.advertisePushOptions", "true"),)


def create_bare_repo(path: Path, *, project: str, home: Path) -> None:
    """Create (or repair) the bare repository: its config and its pre-receive hook."""
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
    for key, value in REPO_CONFIG:
        _git(path, "config", key, value, what=f"cannot configure repository {path}")
    hook = path / "hooks" / "pre-receive"
    hook.write_text(
        HOOK.format(
            home=shlex.quote(str(home)),
            python=shlex.quote(sys.executable),
            project=shlex.quote(project),
        )
    )
    hook.chmod(0o755)


def _git(repo: Path, *args: str, what: str) -> None:
    try:
        subprocess.run(["git", f"--git-dir={repo}", *args], check=True, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise BackendError(f"git: {what}: {_git_error(detail) or err}") from None


def ref_value(repo: Path, ref: str) -> str | None:
    """The commit `ref` points at in the repository now (None: no such ref). In a pre-receive hook, the value
    before the push: git updates refs only after the hook accepts."""
    try:
        done = subprocess.run(["git", f"--git-dir={repo}", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise BackendError(f"git: cannot read {ref} in {repo}: {err}") from None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def contains(repo: Path, new: str, ancestor: str, *, git_env: dict[str, str] | None = None) -> bool:
    """Whether commit `new` contains `ancestor` (`git merge-base --is-ancestor`). `git_env`: a pre-receive hook's
    quarantine variables, so the pushed objects are seen. An `ancestor` the repository lacks is not contained."""
    env = {**os.environ, **(git_env or {})}
    try:
        done = subprocess.run(["git", f"--git-dir={repo}", "merge-base", "--is-ancestor", ancestor, new],
                              capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise BackendError(f"git: cannot compare {new[:12]} with {ancestor[:12]}: {err}") from None
    if done.returncode in (0, 1):
        return done.returncode == 0
    missing = subprocess.run(["git", f"--git-dir={repo}", "cat-file", "-e", f"{ancestor}^{{commit}}"],
                             capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60).returncode != 0
    if missing:  # never pushed here (e.g. deployed from an upstream's webhook): `new` cannot hold it
        return False
    raise BackendError(f"git: cannot compare {new[:12]} with {ancestor[:12]}: {_git_error(done.stderr)}")


QUARANTINE_KEYS = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")


def quarantine_env() -> dict[str, str]:
    """The variables git gives a pre-receive hook so the pushed (still quarantined) objects can be read."""
    return {k: os.environ[k] for k in QUARANTINE_KEYS if k in os.environ}


def checked_quarantine_env(repo: Path, git_env: Mapping[str, str]) -> dict[str, str]:
    """The hook's quarantine variables as the push API received them, or BadInput. They reach the environment of the
    git commands that read the pushed commit, and anyone with `deploy` can call the push API: any other variable
    (LD_PRELOAD, GIT_CONFIG_*, GIT_DIR…) would run code or read another repository as the control plane. So only
    QUARANTINE_KEYS, each naming the project's own objects directory or a directory inside it (git sets absolute
    paths: `<repo>/./objects/tmp_objdir-incoming-…`)."""
    objects = os.path.realpath(repo / "objects")
    checked = {}
    for key, value in git_env.items():
        if key not in QUARANTINE_KEYS:
            raise BadInput(f"push: git_env: {key} is not one of git's quarantine variables ({', '.join(QUARANTINE_KEYS)})")
        for part in value.split(os.pathsep):
            real = os.path.realpath(part) if os.path.isabs(part) else ""
            if real != objects and not real.startswith(objects + os.sep):
                raise BadInput(f"push: git_env: {key} must name the project repository's objects directory")
        checked[key] = value
    return checked


def has_commit(repo: Path, sha: str) -> bool:
    """The bare repository holds commit `sha`."""
    done = subprocess.run(["git", f"--git-dir={repo}", "cat-file", "-e", f"{sha}^{{commit}}"],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return done.returncode == 0


FETCH_TIMEOUT = 300.0  # seconds one `git fetch` from an upstream may take


def fetch_commit(repo: Path, upstream: str | None, sha: str, *, refs: tuple[str, ...] = ()) -> None:
    """Make commit `sha` present in the project's bare repository, fetched from its configured upstream.

    The exact sha is asked for first; servers that refuse unadvertised objects get the named refs
    (e.g. refs/pull/12/head, refs/heads/feature/x) instead. BackendError when the commit is not there after;
    its message never holds the credentials of an upstream URL (https://user:token@host/...)."""
    if has_commit(repo, sha):
        return
    if not upstream:
        raise BackendError(f"commit {sha[:12]} is not in the project's repository and no upstream is configured "
                           "(`branchyard init --repo URL`)")
    env = os.environ | {"GIT_TERMINAL_PROMPT": "0"}
    attempts = [[sha], [f"+{r}:refs/branchyard/fetched/{i}" for i, r in enumerate(refs)]] if refs else [[sha]]
    errors = []
    for specs in attempts:
        try:  # the argv holds the upstream URL: neither it nor a TimeoutExpired naming it leaves this function
            done = subprocess.run(["git", f"--git-dir={repo}", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                                   "--", upstream, *specs], capture_output=True, text=True, env=env,
                                  stdin=subprocess.DEVNULL, timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            errors.append(f"git fetch timed out after {FETCH_TIMEOUT:g}s")
            continue
        except OSError as err:
            raise BackendError(f"git: cannot run git fetch: {err.strerror}") from None
        if done.returncode != 0:
            errors.append(_git_error(done.stderr) or f"exit {done.returncode}")
        if has_commit(repo, sha):
            return
    detail = f": {errors[-1]}" if errors else ""
    raise BackendError(f"commit {sha[:12]} could not be fetched from the project's upstream "
                       f"{names.scrub_credentials(upstream)}{detail}")


def changed_files(repo: Path, old: str, new: str, *, git_env: dict[str, str] | None = None) -> list[str] | None:
    """The paths `git diff --name-only --no-renames old new` lists (a rename: both its old and its new path), in the
    project's bare repository (`git_env`: a pre-receive hook's quarantine variables, so the pushed objects are seen);
    None when git cannot tell (`old` is not in the repository any more)."""
    env = {**os.environ, **(git_env or {})}
    try:
        done = subprocess.run(["git", f"--git-dir={repo}", "diff", "--name-only", "--no-renames", "-z", old, new, "--"],
                              capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [p for p in done.stdout.decode(errors="surrogateescape").split("\0") if p]


def commit_log(repo: Path, old: str | None, new: str, limit: int = 50) -> tuple[tuple[str, str], ...]:
    """(sha, subject) of old..new in the project's repository, newest first (just `new` when old is unknown)."""
    spec = [f"{old}..{new}"] if old and old != new else ([] if old == new else [new, "-1"])
    if not spec:
        return ()
    try:
        done = subprocess.run(["git", "--git-dir", str(repo), "log", f"--max-count={limit}", "--format=%H%x09%s", *spec],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    return tuple(tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in done.stdout.splitlines())  # type: ignore[misc]


def is_merged(repo: Path, branch: str, into: str) -> bool:
    """Whether `branch` has commits of its own and they are all contained in `into` (a branch just created from
    `into`, still at its head, is not merged)."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, timeout=30)

    try:
        heads = git("rev-parse", f"refs/heads/{branch}", f"refs/heads/{into}").stdout.split()
        if len(heads) != 2 or heads[0] == heads[1]:
            return False
        return git("merge-base", "--is-ancestor", heads[0], heads[1]).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _git_error(stderr: str) -> str:
    """The line of git's output that says what failed (its last `fatal:` line, else its last line), credentials
    scrubbed from any URL in it."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("fatal:")]
    line = (fatal or lines or [""])[-1]
    return names.scrub_credentials(line)[:300]
