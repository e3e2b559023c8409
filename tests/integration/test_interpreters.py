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
