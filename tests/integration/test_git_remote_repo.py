"""The project's bare repository (triggers/gitremote.py) with real git: its config repaired on an old repository,
and the ancestry facts the remote's rules read (`ref_value`, `contains`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from branchyard.triggers.gitremote import contains, create_bare_repo, ref_value

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.test", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/nonexistent"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def test_an_old_repository_gets_push_options_and_the_hook(tmp_path: Path) -> None:
    bare = tmp_path / "old.git"
    git(tmp_path, "init", "--quiet", "--bare", str(bare))  # made by an older branchyard: no push options
    assert subprocess.run(["git", f"--git-dir={bare}", "config", "receive.advertisePushOptions"],
                          capture_output=True).returncode == 1
    create_bare_repo(bare, project="old", home=tmp_path / "home")
    assert git(tmp_path, f"--git-dir={bare}", "config", "receive.advertisePushOptions") == "true"
    assert "branchyard.triggers.hook old" in (bare / "hooks" / "pre-receive").read_text()


def test_ref_value_and_contains(tmp_path: Path) -> None:
    work, bare = tmp_path / "work", tmp_path / "repo.git"
    work.mkdir()
    git(work, "init", "--quiet", "--initial-branch=main")
    git(work, "commit", "--quiet", "--allow-empty", "-m", "one")
    one = git(work, "rev-parse", "HEAD")
    git(work, "commit", "--quiet", "--allow-empty", "-m", "two")
    two = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "--quiet", "-b", "side", one)
    git(work, "commit", "--quiet", "--allow-empty", "-m", "side")
    side = git(work, "rev-parse", "HEAD")
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(bare))

    assert ref_value(bare, "refs/heads/main") == two
    assert ref_value(bare, "refs/heads/nope") is None
    assert contains(bare, two, one) and contains(bare, two, two)
    assert not contains(bare, two, side) and not contains(bare, side, two)
    assert not contains(bare, two, "f" * 40)  # a commit the repository never had is not contained
