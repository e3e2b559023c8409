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


def test_the_edge_config_with_tls_and_the_control_plane():
    from branchyard.backends.local.caddy import ControlPlane, EdgeTLS, render_edge_config

    tls = EdgeTLS(mode="acme", https_port=8443, acme=Acme(email="ops@shop.test"), ask_url=ASK)
    config = render_edge_config(http_port=8080, routes_port=41000, admin_port=2998, storage_dir=Path("/x"),
                                listen="fd/3", tls=tls, https_listen="fd/4",
                                control=ControlPlane(host="deploy.shop.test", api_port=5000))
    http = config["apps"]["http"]
    assert (http["http_port"], http["https_port"]) == (8080, 8443)
    main, plain = http["servers"]["branchyard"], http["servers"]["branchyard-http"]
    assert main["listen"] == ["fd/4"] and plain["listen"] == ["fd/3"]
    assert main["tls_connection_policies"] == [{"protocol_min": "tls1.2"}]
    assert main["automatic_https"] == {"disable_redirects": True} and main["protocols"] == ["h1", "h2"]
    assert plain["routes"] == [edge_tls.redirect_to_https(8443)]
    assert main["read_header_timeout"] == plain["read_header_timeout"] == "10s"
    assert config["apps"]["tls"] == edge_tls.tls_app("acme", acme=tls.acme, ask_url=ASK)
    control, proxy = main["routes"]
    assert control["match"] == [{"host": ["deploy.shop.test"]}]
    api, refuse = control["handle"][0]["routes"]
    # never /internal (the ask and wake endpoints) nor /metrics; the dashboard's pages (issue 18) too
    assert api["match"] == [{"path": ["/api/*", "/git/*", "/webhooks/*", "/", "/login", "/logout", "/static/*",
                                      "/projects/*", "/promotions/*"]}]
    assert api["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:5000"}]
    assert refuse["handle"][0]["status_code"] == 404
    assert proxy["@id"] == "branchyard-edge-proxy"

    off = render_edge_config(http_port=8080, routes_port=41000, admin_port=2998, storage_dir=Path("/x"))
    assert "tls" not in off["apps"] and list(off["apps"]["http"]["servers"]) == ["branchyard"]
    assert "https_port" not in off["apps"]["http"]


def test_an_hsts_route_carries_the_header_and_reads_back():
    from branchyard.backends.local.caddy import parse_routes, render_config
    from branchyard.backends.ports import Route

    routes = [Route(host="shop.apps.test", project="shop", environment="production", upstreams=("127.0.0.1:5001",), hsts=True),
              Route(host="shop-staging.apps.test", project="shop", environment="staging", upstreams=(), state="sleeping")]
    config = render_config(routes, routes_port=41000, admin_port=2999, storage_dir=Path("/x"))
    prod = next(r for r in config["apps"]["http"]["servers"]["branchyard"]["routes"] if r.get("match") == [{"host": ["shop.apps.test"]}])
    assert prod["handle"][1]["headers"]["response"]["set"]["Strict-Transport-Security"] == ["max-age=31536000"]
    assert sorted(parse_routes(config), key=lambda r: r.host) == sorted(routes, key=lambda r: r.host)
