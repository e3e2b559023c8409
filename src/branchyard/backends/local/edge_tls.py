"""The router's TLS as Caddy JSON (pure): from whom Caddy gets certificates and for which names, the HTTPS listener's
connection policy, HTTP → HTTPS, and HSTS.

Certificates are issued **on demand**: at the first TLS handshake for a name, Caddy asks the control plane
(`ask_url`: 200 only for a host the router serves — an environment's generated host or an attached domain, see
api/routes/tls.py) and only then orders a certificate. So preview hosts need no configuration change when pull
requests come and go, and a handshake for any other name never causes an order. `acme` mode orders from an ACME
CA (Let's Encrypt unless BRANCHYARD_ACME_CA says otherwise) and proves control of the name with the HTTP-01
challenge, which Caddy answers on the HTTP port before any route (so the HTTP → HTTPS redirect never hides it),
or TLS-ALPN-01 on the HTTPS port. `internal` mode signs with Caddy's own local CA (`branchyard tls root` prints its
root). Certificates, the ACME account and the local CA live in Caddy's storage under BRANCHYARD_HOME: a restart
loads them and orders nothing.
"""

from __future__ import annotations

from typing import Any

from ...settings import Acme

HSTS = "max-age=31536000"  # a year; no includeSubDomains: other environments' hosts are siblings, not children
MIN_TLS = "tls1.2"


def tls_app(mode: str, *, acme: Acme, ask_url: str) -> dict[str, Any]:
    """Caddy's `tls` app for `mode` ("internal" | "acme"): every certificate on demand, gated by `ask_url`."""
    if mode == "internal":
        issuer: dict[str, Any] = {"module": "internal"}
    elif mode == "acme":
        issuer = {"module": "acme", "ca": acme.ca}
        if acme.email:
            issuer["email"] = acme.email
        if acme.eab_key_id and acme.eab_mac_key:
            issuer["external_account"] = {"key_id": acme.eab_key_id, "mac_key": acme.eab_mac_key}
        if acme.ca_root is not None:
            issuer["trusted_roots_pem_files"] = [str(acme.ca_root)]
    else:
        raise ValueError(f"no TLS app for mode {mode!r}")
    return {"automation": {
        "on_demand": {"permission": {"module": "http", "endpoint": ask_url}},
        "policies": [{"on_demand": True, "issuers": [issuer]}],
    }}


def connection_policies() -> list[dict[str, Any]]:
    """The HTTPS listener's: TLS 1.2 and later, the certificate chosen by SNI."""
    return [{"protocol_min": MIN_TLS}]


def redirect_to_https(https_port: int) -> dict[str, Any]:
    """A route sending every plain-HTTP request to the same host and URI over HTTPS (308: the method is kept)."""
    port = "" if https_port == 443 else f":{https_port}"
    return {"handle": [{
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
    }]}


def hsts_handler() -> dict[str, Any]:
    """Sets Strict-Transport-Security on the responses of the route it leads."""
    return {"handler": "headers", "response": {"set": {"Strict-Transport-Security": [HSTS]}}}
