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


def test_github_settings(tmp_path):
    s = load({"BRANCHYARD_HOME": str(tmp_path)})
    assert (s.github_token, s.github_api_url) == (None, "https://api.github.com")
    s = load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_GITHUB_TOKEN": " ghp_secretvalue \n",
              "BRANCHYARD_GITHUB_API_URL": "https://ghe.example.com/api/v3/"})
    assert (s.github_token, s.github_api_url) == ("ghp_secretvalue", "https://ghe.example.com/api/v3")
    assert "ghp_secretvalue" not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BRANCHYARD_GITHUB_TOKEN": "two words"},
         "BRANCHYARD_GITHUB_TOKEN: contains whitespace or control characters (value not shown)"),
        ({"BRANCHYARD_GITHUB_API_URL": "api.github.com"},
         "BRANCHYARD_GITHUB_API_URL: expected an http(s):// URL like https://api.github.com, got 'api.github.com'"),
        ({"BRANCHYARD_GITHUB_API_URL": "https://user:pw@ghe.example.com"},
         "BRANCHYARD_GITHUB_API_URL: expected an http(s):// URL like https://api.github.com, got a URL with credentials (not shown); "
         "the token goes in BRANCHYARD_GITHUB_TOKEN"),
    ],
)
def test_bad_github_settings(tmp_path, env, message):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path)} | env)
    assert str(err.value) == message
    assert "words" not in str(err.value) and "pw@" not in str(err.value)


def test_tls_settings_and_public_urls(tmp_path):
    base = {"BRANCHYARD_HOME": str(tmp_path)}
    off = load(base)
    assert (off.tls, off.https_port, off.hsts, off.acme.ca, off.public_port) == (
        "off", 443, "production", "https://acme-v02.api.letsencrypt.org/directory", 8080)
    on = load(base | {"BRANCHYARD_TLS": "ACME", "BRANCHYARD_ACME_EMAIL": "ops@example.com", "BRANCHYARD_HTTP_PORT": "80"})
    assert (on.tls, on.acme.email, on.public_port, on.public_url("a.b")) == ("acme", "ops@example.com", 443, "https://a.b")
    odd = load(base | {"BRANCHYARD_TLS": "internal", "BRANCHYARD_HTTPS_PORT": "8443", "BRANCHYARD_HSTS": "all"})
    assert (odd.public_url("a.b"), odd.public_port, odd.hsts) == ("https://a.b:8443", 8443, "all")
    root = tmp_path / "root.pem"
    root.write_text("-----BEGIN CERTIFICATE-----\n")
    eab = load(base | {"BRANCHYARD_ACME_EAB_KEY_ID": "kid", "BRANCHYARD_ACME_EAB_MAC_KEY": "s3cret",
                       "BRANCHYARD_ACME_CA": "https://ca.example/dir", "BRANCHYARD_ACME_CA_ROOT": str(root)})
    assert (eab.acme.eab_key_id, eab.acme.ca, eab.acme.ca_root) == ("kid", "https://ca.example/dir", root)
    assert "s3cret" not in repr(eab)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BRANCHYARD_TLS": "on"}, "BRANCHYARD_TLS: expected one of off, internal, acme, got 'on'"),
        ({"BRANCHYARD_HSTS": "yes"}, "BRANCHYARD_HSTS: expected one of production, all, off, got 'yes'"),
        ({"BRANCHYARD_HTTPS_PORT": "99999"}, "BRANCHYARD_HTTPS_PORT: expected a TCP port number between 1 and 65535, got '99999'"),
        ({"BRANCHYARD_TLS": "acme", "BRANCHYARD_HTTPS_PORT": "8080"},
         "BRANCHYARD_HTTPS_PORT: 8080 is also used by another BRANCHYARD_*_PORT setting"),
        ({"BRANCHYARD_ACME_CA": "http://ca.example/dir"},
         "BRANCHYARD_ACME_CA: expected the https:// URL of an ACME directory, got 'http://ca.example/dir'"),
        ({"BRANCHYARD_ACME_CA": "https://user:pw@ca.example/dir"},
         "BRANCHYARD_ACME_CA: expected the https:// URL of an ACME directory, got a URL with credentials (not shown)"),
        ({"BRANCHYARD_ACME_EMAIL": "ops"}, "BRANCHYARD_ACME_EMAIL: not an e-mail address: 'ops'"),
        ({"BRANCHYARD_ACME_EAB_MAC_KEY": "s3cret"},
         "BRANCHYARD_ACME_EAB_KEY_ID: External Account Binding needs both BRANCHYARD_ACME_EAB_KEY_ID and "
         "BRANCHYARD_ACME_EAB_MAC_KEY (value not shown)"),
        ({"BRANCHYARD_ACME_CA_ROOT": "/nonexistent/root.pem"}, "BRANCHYARD_ACME_CA_ROOT: no such file: '/nonexistent/root.pem'"),
    ],
)
def test_bad_tls_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path)} | env)
    assert str(err.value) == message


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), ("https://Deploy.Example.com/", "https://deploy.example.com"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
])
def test_public_url(tmp_path, raw, expected):
    env = {"BRANCHYARD_HOME": str(tmp_path)} | ({"BRANCHYARD_PUBLIC_URL": raw} if raw is not None else {})
    assert load(env).control_url == expected


@pytest.mark.parametrize(("raw", "message"), [
    ("deploy.example.com", "BRANCHYARD_PUBLIC_URL: expected the control plane's http(s):// URL without a path, like "
                           "https://deploy.example.com, got 'deploy.example.com'"),
    ("https://deploy.example.com/api", "BRANCHYARD_PUBLIC_URL: expected the control plane's http(s):// URL without a "
                                       "path, like https://deploy.example.com, got 'https://deploy.example.com/api'"),
    ("https://u:pw@deploy.example.com", "BRANCHYARD_PUBLIC_URL: expected the control plane's http(s):// URL without a "
                                        "path, like https://deploy.example.com, got a URL with credentials (not shown)"),
])
def test_a_bad_public_url_names_the_variable(tmp_path, raw, message):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_PUBLIC_URL": raw})
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("env", "uptime", "alerts"),
    [({}, 30.0, 10.0), ({"BRANCHYARD_UPTIME_INTERVAL": "0.5", "BRANCHYARD_ALERTS_INTERVAL": " 60 "}, 0.5, 60.0),
     ({"BRANCHYARD_UPTIME_INTERVAL": ""}, 30.0, 10.0)],
)
def test_monitoring_intervals(tmp_path, env, uptime, alerts):
    settings = load({"BRANCHYARD_HOME": str(tmp_path), **env})
    assert (settings.uptime_interval, settings.alerts_interval) == (uptime, alerts)


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "86401"])
def test_bad_monitoring_intervals_name_the_variable(tmp_path, raw):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path), "BRANCHYARD_UPTIME_INTERVAL": raw})
    assert str(err.value) == f"BRANCHYARD_UPTIME_INTERVAL: expected seconds from 0.1 to 86400, got {raw!r}"


@pytest.mark.parametrize(("env", "access_log", "cap"), [
    ({}, True, 256), ({"BRANCHYARD_ACCESS_LOG": "off"}, False, 256), ({"BRANCHYARD_ACCESS_LOG": "on"}, True, 256),
    ({"BRANCHYARD_ACCESS_LOG": "0", "BRANCHYARD_LOG_CAP_MB": "64"}, False, 64),
])
def test_access_log_and_log_cap(tmp_path, env, access_log, cap):
    s = load({"BRANCHYARD_HOME": str(tmp_path), **env})
    assert (s.access_log, s.log_cap_mb) == (access_log, cap)


@pytest.mark.parametrize(("env", "message"), [
    ({"BRANCHYARD_ACCESS_LOG": "maybe"}, "BRANCHYARD_ACCESS_LOG: expected 1/true/yes or 0/false/no, got 'maybe'"),
    ({"BRANCHYARD_LOG_CAP_MB": "0"}, "BRANCHYARD_LOG_CAP_MB: expected a whole number of at least 1, got '0'"),
    ({"BRANCHYARD_LOG_CAP_MB": "1.5"}, "BRANCHYARD_LOG_CAP_MB: expected a whole number of at least 1, got '1.5'"),
])
def test_bad_log_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(BadInput) as err:
        load({"BRANCHYARD_HOME": str(tmp_path), **env})
    assert str(err.value) == message
