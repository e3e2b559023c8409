"""Reading and moving branches of a project's bare repository (the adapter behind controller/git_follow.py).

Git's failures become BackendError with git's own line; nothing above this module sees CalledProcessError.
`git update-ref` runs no hook: moving a branch here deploys nothing (production already runs the commit).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..branch_follow import BEHIND, CONTAINS, DIVERGED, MISSING, UNKNOWN
from ..errors import BackendError

TIMEOUT = 30.0  # seconds: each call reads a few objects of a local repository
ZERO = "0" * 40  # update-ref's "must not exist yet"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", f"--git-dir={repo}", *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BackendError(f"git {args[0]} in {repo}: no answer in {TIMEOUT:g}s") from None
    except OSError as err:
        raise BackendError(f"git: cannot run git: {err.strerror}") from None


def branch_head(repo: Path, branch: str) -> str | None:
    """The commit refs/heads/<branch> points at, or None when there is no such branch."""
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _has_commit(repo: Path, sha: str) -> bool:
    return _git(repo, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def _is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    done = _git(repo, "merge-base", "--is-ancestor", ancestor, descendant)
    if done.returncode not in (0, 1):  # 1 is git's "no"; anything else is a failure to answer
        raise BackendError(f"git merge-base in {repo}: {_last_line(done.stderr) or f'exit {done.returncode}'}")
    return done.returncode == 0


def relation(repo: Path, branch: str, commit: str) -> tuple[str, str | None]:
    """(how the branch's head relates to `commit`, the head): one of branch_follow.RELATIONS."""
    head = branch_head(repo, branch)
    if not _has_commit(repo, commit):
        return UNKNOWN, head
    if head is None:
        return MISSING, None
    if head == commit or _is_ancestor(repo, commit, head):
        return CONTAINS, head
    return (BEHIND if _is_ancestor(repo, head, commit) else DIVERGED), head


def move_branch(repo: Path, branch: str, new: str, old: str | None, *, reason: str) -> bool:
    """Point refs/heads/<branch> at `new` if it still points at `old` (None: if it does not exist), in one atomic
    `git update-ref`; False when someone moved it meanwhile (their push wins), BackendError for any other failure."""
    done = _git(repo, "update-ref", "-m", reason, f"refs/heads/{branch}", new, old or ZERO)
    if done.returncode == 0:
        return True
    if branch_head(repo, branch) != old:
        return False
    raise BackendError(f"git update-ref refs/heads/{branch} in {repo}: {_last_line(done.stderr) or f'exit {done.returncode}'}")


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
