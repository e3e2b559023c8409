"""Finding an app's Python on this machine (PATH, pyenv, uv), and the one-line refusal when there is none."""

from __future__ import annotations

import sys

import pytest

from branchyard.build import interpreters
from branchyard.build.detect import PythonRequest
from branchyard.errors import BadInput

pytestmark = pytest.mark.integration
UV = interpreters.uv_binary()


def test_no_request_keeps_the_operators_default():
    found = interpreters.choose(None, default=sys.executable, uv=UV)
    assert (found.path, found.version, found.origin) == (sys.executable, tuple(sys.version_info[:3]), "BRANCHYARD_PYTHON")


def test_a_request_the_default_satisfies_uses_the_default():
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert interpreters.choose(PythonRequest(here, ".python-version"), default=sys.executable, uv=UV).origin == "BRANCHYARD_PYTHON"


@pytest.mark.parametrize("spec", ["3.12", "3.13", "3.10", ">=3.12,<3.13"])
def test_a_request_finds_a_matching_interpreter(spec):
    request = PythonRequest(spec, ".python-version")
    try:
        found = interpreters.choose(request, default=sys.executable, uv=UV)
    except BadInput:
        pytest.skip(f"no Python {spec} on this machine")
    assert request.matches(found.version) and found.origin in ("PATH", "pyenv", "uv", "BRANCHYARD_PYTHON")
    assert found.path.startswith("/")


def test_a_python_the_machine_lacks_is_refused_in_one_line_naming_version_source_and_remedy():
    with pytest.raises(BadInput) as err:
        interpreters.choose(PythonRequest("3.5", "runtime.txt"), default=sys.executable, uv=UV)
    assert str(err.value) == (
        "Python 3.5 (from runtime.txt) is not installed on this machine: install `pyenv install 3.5` or "
        "`uv python install 3.5`, or let branchyard download it: BRANCHYARD_PYTHON_DOWNLOADS=1; or change runtime.txt"
    )


def _only_on_path(tmp_path, monkeypatch, name: str, target: str) -> None:
    """PATH holds one interpreter, named `name`; no pyenv to be found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).symlink_to(target)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYENV_ROOT", raising=False)


def _pyenv_python(minor: str) -> str:
    found = sorted(interpreters._pyenv_pythons())
    match = [str(p) for p in found if f"/{minor}." in str(p)]
    if not match:
        pytest.skip(f"no pyenv Python {minor} on this machine")
    return match[-1]


def test_uv_finds_what_path_and_pyenv_do_not(tmp_path, monkeypatch):
    # `python3` (not `python3.12`) on PATH: only `uv python find` looks for that name.
    _only_on_path(tmp_path, monkeypatch, "python3", _pyenv_python("3.12"))
    found = interpreters.choose(PythonRequest("3.12", ".python-version"), default=sys.executable, uv=UV)
    assert (found.origin, found.version[:2]) == ("uv", (3, 12))


def test_uv_is_not_asked_when_path_has_a_match(tmp_path, monkeypatch):
    _only_on_path(tmp_path, monkeypatch, "python3.12", _pyenv_python("3.12"))
    asked = tmp_path / "uv-was-asked"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f"#!/bin/sh\n: > {asked}\nexit 1\n")
    fake_uv.chmod(0o755)
    found = interpreters.choose(PythonRequest("3.12", ".python-version"), default=sys.executable, uv=str(fake_uv))
    assert (found.origin, found.version[:2]) == ("PATH", (3, 12))
    assert not asked.exists()
    # …and it is asked when nothing local fits (the same fake, for a version PATH lacks).
    with pytest.raises(BadInput):
        interpreters.choose(PythonRequest("3.5", ".python-version"), default=sys.executable, uv=str(fake_uv))
    assert asked.exists()
