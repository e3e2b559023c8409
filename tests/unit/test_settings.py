"""Operator settings fail fast, naming the variable."""

import pytest

from branchyard.errors import BadInput
from branchyard.settings import load


def test_defaults(tmp_path):
    s = load({"HOME": str(tmp_path), "BRANCHYARD_HOME": str(tmp_path / "h")})
    assert (s.http_port, s.domain, s.home, s.cache_dir) == (8080, "localhost", tmp_path / "h", tmp_path / "h" / "cache")
    assert s.public_url("yoto.localhost") == "http://yoto.localhost:8080"


def test_port_80_is_left_out_of_urls(tmp_path):
    assert load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_HTTP_PORT": "80"}).public_url("a.b") == "http://a.b"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BRANCHYARD_HTTP_PORT": "abc"}, "BRANCHYARD_HTTP_PORT: expected a TCP port number, got 'abc'"),
        ({"BRANCHYARD_HTTP_PORT": "0"}, "BRANCHYARD_HTTP_PORT: expected a TCP port number between 1 and 65535, got '0'"),
        ({"BRANCHYARD_API_PORT": "70000"}, "BRANCHYARD_API_PORT: expected a TCP port number between 0 and 65535, got '70000'"),
        ({"BRANCHYARD_DOMAIN": "bad domain"}, "BRANCHYARD_DOMAIN: not a valid domain name: 'bad domain'"),
        ({"BRANCHYARD_HTTP_PORT": "9000", "BRANCHYARD_API_PORT": "9000"},
         "BRANCHYARD_HTTP_PORT: 9000 is also used by another BRANCHYARD_*_PORT setting"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, env, message):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path)} | env)
    assert str(err.value) == message


def test_releases_retained(tmp_path):
    assert load({"BRANCHYARD_HOME": str(tmp_path)}).releases_retained == 10
    assert load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_RELEASES_RETAINED": "3"}).releases_retained == 3
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_RELEASES_RETAINED": "0"})
    assert str(err.value) == "BRANCHYARD_RELEASES_RETAINED: expected a whole number of releases (at least 1), got '0'"
