"""The push API's git_env (triggers/gitremote.checked_quarantine_env): only git's quarantine variables, only inside
the project's own objects directory — anything else would reach the environment of the git commands that read the
pushed commit (LD_PRELOAD, GIT_CONFIG_*, another project's objects)."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard.errors import BadInput
from branchyard.triggers.gitremote import checked_quarantine_env


def test_what_git_gives_the_hook_passes(tmp_path: Path) -> None:
    repo = tmp_path / "yoto.git"
    (repo / "objects" / "tmp_objdir-incoming-KtuaH5").mkdir(parents=True)
    given = {  # as git 2.39 sets them for a pre-receive hook
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": f"{repo}/./objects",
        "GIT_QUARANTINE_PATH": f"{repo}/./objects/tmp_objdir-incoming-KtuaH5",
        "GIT_OBJECT_DIRECTORY": f"{repo}/./objects/tmp_objdir-incoming-KtuaH5",
    }
    assert checked_quarantine_env(repo, given) == given
    assert checked_quarantine_env(repo, {}) == {}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("LD_PRELOAD", "/tmp/evil.so", "LD_PRELOAD is not one of git's quarantine variables"),
    ("GIT_CONFIG_PARAMETERS", "'core.fsmonitor=touch /tmp/pwned'", "GIT_CONFIG_PARAMETERS is not one of"),
    ("GIT_DIR", "/srv/other.git", "GIT_DIR is not one of"),
    ("GIT_OBJECT_DIRECTORY", "{other}/objects", "GIT_OBJECT_DIRECTORY must name the project repository's objects"),
    ("GIT_ALTERNATE_OBJECT_DIRECTORIES", "{repo}/objects:{other}/objects", "GIT_ALTERNATE_OBJECT_DIRECTORIES must name"),
    ("GIT_QUARANTINE_PATH", "{repo}/objects/../../other.git/objects", "GIT_QUARANTINE_PATH must name"),
    ("GIT_OBJECT_DIRECTORY", "objects/incoming", "GIT_OBJECT_DIRECTORY must name"),  # relative: not what git sends
    ("GIT_OBJECT_DIRECTORY", "{repo}/objects-evil", "GIT_OBJECT_DIRECTORY must name"),  # a prefix is not inside
])
def test_anything_else_is_refused(tmp_path: Path, key: str, value: str, message: str) -> None:
    repo, other = tmp_path / "yoto.git", tmp_path / "other.git"
    for path in (repo / "objects", other / "objects"):
        path.mkdir(parents=True)
    with pytest.raises(BadInput) as err:
        checked_quarantine_env(repo, {key: value.format(repo=repo, other=other)})
    assert str(err.value).startswith("push: git_env: ") and message in str(err.value)
