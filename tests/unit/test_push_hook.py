"""The pre-receive hook's pure part (triggers/hook.py): git's push options as it hands them to the control plane."""

from __future__ import annotations

import pytest

from branchyard.triggers.hook import push_options


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, []),  # no `-o`: git sets no count
    ({"GIT_PUSH_OPTION_COUNT": "0"}, []),
    ({"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "force", "GIT_PUSH_OPTION_1": "ci.skip"}, ["force", "ci.skip"]),
    ({"GIT_PUSH_OPTION_COUNT": "1", "GIT_PUSH_OPTION_0": "force", "GIT_PUSH_OPTION_1": "not counted"}, ["force"]),
    ({"GIT_PUSH_OPTION_COUNT": "x", "GIT_PUSH_OPTION_0": "force"}, []),
])
def test_push_options(environ, expected) -> None:
    assert push_options(environ) == expected
