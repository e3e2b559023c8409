"""Operator settings of builds: BRANCHYARD_PYTHON_DOWNLOADS, BRANCHYARD_PIP_INDEX_URL."""

from __future__ import annotations

import pytest

from branchyard.errors import BadInput
from branchyard.settings import load


def test_defaults_keep_downloads_off_and_no_index():
    s = load({"BRANCHYARD_HOME": "/tmp/h"})
    assert (s.python_downloads, s.pip_index_url) == (False, None)


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("off", False)])
def test_python_downloads(raw, value):
    assert load({"BRANCHYARD_HOME": "/tmp/h", "BRANCHYARD_PYTHON_DOWNLOADS": raw}).python_downloads is value


def test_bad_values_name_the_variable():
    with pytest.raises(BadInput, match=r"^BRANCHYARD_PYTHON_DOWNLOADS: expected 1/true/yes or 0/false/no, got 'maybe'$"):
        load({"BRANCHYARD_HOME": "/tmp/h", "BRANCHYARD_PYTHON_DOWNLOADS": "maybe"})
    with pytest.raises(BadInput, match=r"^BRANCHYARD_PIP_INDEX_URL: expected an http\(s\):// or file:// URL"):
        load({"BRANCHYARD_HOME": "/tmp/h", "BRANCHYARD_PIP_INDEX_URL": "pypi.org/simple"})
    url = "https://mirror.example/simple"
    assert load({"BRANCHYARD_HOME": "/tmp/h", "BRANCHYARD_PIP_INDEX_URL": f" {url} "}).pip_index_url == url
