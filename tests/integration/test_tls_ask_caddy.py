"""The TLS `ask` contract with a real Caddy: on-demand TLS (Caddy's internal CA as the issuer, so no ACME server is
needed) asks branchyard's real API app, served by uvicorn over a real store, before it issues. A served host gets a
certificate, which the local Certificates port then reads from Caddy's storage ("issued until DATE"); an unknown
name gets no certificate at all (the handshake fails and nothing is stored); a deleted domain gets none any more."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import uvicorn
from conftest import free_port, new_home, wait_for

from branchyard import settings as settings_mod
from branchyard.api.app import create_app
from branchyard.api.routes.tls import ASK_PATH
from branchyard.backends.local.caddy import find_caddy
from branchyard.backends.local.certificates import CaddyCertificates
from branchyard.backends.ports import Route
from branchyard.controller.domains import Domains
from branchyard.controller.routes import Routes
from branchyard.domains import certificate_state
from branchyard.store import models as m
from branchyard.store.db import Store

pytestmark = pytest.mark.integration


class NullRouter:
    def ensure_running(self) -> None: ...

    def apply(self, routes: Sequence[Route]) -> None: ...

    def stop(self) -> None: ...


def caddy_config(storage: Path, *, admin: int, https: int, http: int, ask_url: str) -> dict[str, Any]:
    """An HTTPS server whose certificates are all on demand from Caddy's internal CA, gated by `ask_url` (the shape
    the edge's TLS config will take; Caddy appends `?domain=<SNI name>`)."""
    return {
        "admin": {"listen": f"127.0.0.1:{admin}"},
        "storage": {"module": "file_system", "root": str(storage)},
        "apps": {
            "http": {"http_port": http, "https_port": https, "servers": {"edge": {
                "listen": [f"127.0.0.1:{https}"],
                "automatic_https": {"disable_redirects": True},
                "routes": [{"handle": [{"handler": "static_response", "body": "ok"}]}],
                "tls_connection_policies": [{}],
            }}},
            "tls": {"automation": {
                "policies": [{"issuers": [{"module": "internal"}], "on_demand": True}],
                "on_demand": {"permission": {"module": "http", "endpoint": ask_url}},
            }},
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }


def handshake(port: int, sni: str) -> bool:
    """A TLS handshake with this SNI name (the chain is not checked: only whether Caddy has a certificate to give)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw, ctx.wrap_socket(raw, server_hostname=sni):
            return True
    except (ssl.SSLError, OSError):
        return False


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home), "BRANCHYARD_DOMAIN": "apps.example.com"})
    store = Store(settings.state_db)
    routes = Routes(settings, store, NullRouter())
    domains = Domains(settings, store, routes=routes, certificates=None)
    api_port = free_port()
    ctl = cast(Any, type("Ctl", (), {"routes": routes}))  # the ask route reads only ctl.routes
    server = uvicorn.Server(uvicorn.Config(create_app(ctl, "token"), host="127.0.0.1", port=api_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20)
    storage, https, admin = tmp_path / "storage", free_port(), free_port()
    config = tmp_path / "caddy.json"
    config.write_text(json.dumps(caddy_config(storage, admin=admin, https=https, http=free_port(),
                                              ask_url=f"http://127.0.0.1:{api_port}{ASK_PATH}")))
    log = (tmp_path / "caddy.log").open("w")
    caddy = subprocess.Popen([find_caddy(), "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        wait_for(lambda: _listening(https), timeout=30)
        with store.session() as s:
            p = m.Project(name="shop", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            s.add(m.Environment(project_id=p.id, name="production", production=True))
        yield {"store": store, "domains": domains, "routes": routes, "https": https, "storage": storage}
    finally:
        caddy.terminate()  # the Caddy this fixture started, by its pid
        try:
            caddy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            caddy.kill()
            caddy.wait()
        log.close()
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_caddy_issues_on_demand_only_for_hosts_branchyard_serves(edge: dict[str, Any]) -> None:
    certs = CaddyCertificates([edge["storage"]])
    edge["domains"].add("shop", "production", "www.shop.test")

    assert handshake(edge["https"], "www.shop.test")  # a custom domain: asked, allowed, issued
    assert handshake(edge["https"], "shop.apps.example.com")  # the environment's generated host
    assert not handshake(edge["https"], "evil.test")  # not ours: refused, nothing ordered
    assert not handshake(edge["https"], "shop-staging.apps.example.com")  # no such environment
    stored = sorted(p.name for p in (edge["storage"] / "certificates" / "local").iterdir())
    assert stored == ["shop.apps.example.com", "www.shop.test"]

    status = certs.certificate("www.shop.test")
    assert status is not None and status.issuer == "local" and status.error is None
    now = m.utcnow()
    assert now < status.not_after < now + dt.timedelta(days=8)  # Caddy's internal CA: short-lived leaves
    assert certificate_state(status.not_after, status.error, now).text() == f"issued until {status.not_after:%Y-%m-%d}"
    assert certs.certificate("evil.test") is None

    # deleted: no certificate for a new name any more (a name already issued keeps its stored certificate until it
    # expires; Caddy asks again only for names it has none for)
    edge["domains"].delete("shop", "production", "www.shop.test")
    edge["domains"].add("shop", "production", "shop.test")
    edge["domains"].delete("shop", "production", "shop.test")
    assert not handshake(edge["https"], "shop.test")
    time.sleep(0.2)
    assert not (edge["storage"] / "certificates" / "local" / "shop.test").exists()
