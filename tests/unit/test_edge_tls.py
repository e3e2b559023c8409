"""The router's TLS as Caddy JSON: on-demand issuance gated by the ask endpoint, per mode; redirect; HSTS."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard.backends.local import edge_tls
from branchyard.domains import wants_hsts
from branchyard.settings import Acme

ASK = "http://127.0.0.1:5000/internal/tls/ask"


def test_internal_mode_signs_on_demand_with_the_local_ca():
    assert edge_tls.tls_app("internal", acme=Acme(), ask_url=ASK) == {"automation": {
        "on_demand": {"permission": {"module": "http", "endpoint": ASK}},
        "policies": [{"on_demand": True, "issuers": [{"module": "internal"}]}],
    }}


@pytest.mark.parametrize(("acme", "issuer"), [
    (Acme(), {"module": "acme", "ca": "https://acme-v02.api.letsencrypt.org/directory"}),
    (Acme(ca="https://ca.test/dir", email="ops@shop.test", eab_key_id="kid", eab_mac_key="mac", ca_root=Path("/r.pem")),
     {"module": "acme", "ca": "https://ca.test/dir", "email": "ops@shop.test",
      "external_account": {"key_id": "kid", "mac_key": "mac"}, "trusted_roots_pem_files": ["/r.pem"]}),
])
def test_acme_mode_orders_on_demand_from_the_configured_ca(acme, issuer):
    app = edge_tls.tls_app("acme", acme=acme, ask_url=ASK)
    assert app["automation"]["policies"] == [{"on_demand": True, "issuers": [issuer]}]
    assert app["automation"]["on_demand"] == {"permission": {"module": "http", "endpoint": ASK}}


def test_off_has_no_tls_app():
    with pytest.raises(ValueError):
        edge_tls.tls_app("off", acme=Acme(), ask_url=ASK)


@pytest.mark.parametrize(("port", "location"), [
    (443, "https://{http.request.host}{http.request.uri}"),
    (8443, "https://{http.request.host}:8443{http.request.uri}"),
])
def test_plain_http_is_redirected_keeping_host_uri_and_method(port, location):
    [handler] = edge_tls.redirect_to_https(port)["handle"]
    assert (handler["status_code"], handler["headers"]["Location"]) == (308, [location])


@pytest.mark.parametrize(("hsts", "tls", "production", "expected"), [
    ("production", "acme", True, True),
    ("production", "acme", False, False),
    ("production", "off", True, False),
    ("all", "internal", False, True),
    ("off", "acme", True, False),
])
def test_hsts_on_production_hosts_only_by_default(hsts, tls, production, expected):
    assert wants_hsts(hsts, tls=tls, production=production) is expected
    assert edge_tls.hsts_handler()["response"]["set"] == {"Strict-Transport-Security": ["max-age=31536000"]}
