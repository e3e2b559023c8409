"""The TLS `ask` contract with a real Caddy: on-demand TLS (Caddy's internal CA as the issuer, so no ACME server is
needed) asks branchyard's real API app, served by uvicorn over a real store, before it issues. A served host gets a
certificate, which the local Certificates port then reads from Caddy's storage ("issued until DATE"); an unknown
name gets no certificate at all (the handshake fails and nothing is stored); a deleted domain gets none any more.
And a real ACME CA (Caddy's `acme_server`) refusing an order shows as `failed: <its error>`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
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
from api_users import single_token
from conftest import free_port, new_home, wait_for

from branchyard import settings as settings_mod
from branchyard.api.app import create_app
from branchyard.api.routes import tls
from branchyard.backends.local.caddy import find_caddy
from branchyard.backends.local.certificates import OBTAINED, CaddyCertificates, CaddyLogErrors, ca_errors
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


def handshake(port: int, sni: str, timeout: float = 15) -> bool:
    """A TLS handshake with this SNI name (the chain is not checked: only whether Caddy has a certificate to give)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, ctx.wrap_socket(raw, server_hostname=sni):
            return True
    except (ssl.SSLError, OSError):
        return False


@contextlib.contextmanager
def running_caddy(config: dict[str, Any], where: Path, name: str, port: int) -> Iterator[Path]:
    """A Caddy of this test's own with `config`, listening on `port`; its log file. Stopped by its pid afterwards."""
    (where / f"{name}.json").write_text(json.dumps(config))
    log = (where / f"{name}.out").open("w")
    # Caddy keeps some state outside its storage (acme_server's database under XDG_DATA_HOME): its own, so that
    # neither another test's Caddy nor the user's can hold the same lock.
    env = {**os.environ, "XDG_DATA_HOME": str(where / f"{name}-data"), "XDG_CONFIG_HOME": str(where / f"{name}-config")}
    caddy = subprocess.Popen([find_caddy(), "run", "--config", str(where / f"{name}.json")], stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        wait_for(lambda: _listening(port) or caddy.poll() is not None, timeout=30)
        assert caddy.poll() is None, (where / f"{name}.out").read_text()
        yield where / f"{name}.out"
    finally:
        caddy.terminate()
        try:
            caddy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            caddy.kill()
            caddy.wait()
        log.close()


@pytest.fixture
def plane_api() -> Iterator[dict[str, Any]]:
    """branchyard's real API app on a loopback port (uvicorn, in a thread) over a real store and Routes."""
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home), "BRANCHYARD_DOMAIN": "apps.example.com"})
    store = Store(settings.state_db)
    routes = Routes(settings, store, NullRouter())
    api_port = free_port()
    ctl = cast(Any, type("Ctl", (), {"routes": routes}))  # the ask route reads only ctl.routes
    app = create_app(ctl, gatekeeper=single_token("token"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=20)
        with store.session() as s:
            p = m.Project(name="shop", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            s.add(m.Environment(project_id=p.id, name="production", production=True))
        yield {"settings": settings, "store": store, "routes": routes,
               "ask_url": tls.ask_url(api_port)}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def edge(plane_api: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An edge Caddy issuing on demand from its internal CA, gated by branchyard's ask endpoint."""
    storage, https, log = tmp_path / "storage", free_port(), tmp_path / "edge.log"
    config = caddy_config(storage, admin=free_port(), https=https, http=free_port(), ask_url=plane_api["ask_url"])
    config["logging"] = {"logs": {"default": {"writer": {"output": "file", "filename": str(log)}}}}
    with running_caddy(config, tmp_path, "edge", https):
        domains = Domains(plane_api["settings"], plane_api["store"], routes=plane_api["routes"], certificates=None)
        yield {"domains": domains, "https": https, "storage": storage, "log": log}


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
    # the success line the error hook clears a host's error with is Caddy's own wording
    log = edge["log"].read_text()
    assert f'"msg":"{OBTAINED}","identifier":"www.shop.test"' in log and ca_errors(log.splitlines()) == {}

    # deleted: no certificate for a new name any more (a name already issued keeps its stored certificate until it
    # expires; Caddy asks again only for names it has none for)
    edge["domains"].delete("shop", "production", "www.shop.test")
    edge["domains"].add("shop", "production", "shop.test")
    edge["domains"].delete("shop", "production", "shop.test")
    assert not handshake(edge["https"], "shop.test")
    time.sleep(0.2)
    assert not (edge["storage"] / "certificates" / "local" / "shop.test").exists()


def test_a_real_acme_ca_refusing_shows_as_failed_with_its_error(plane_api: dict[str, Any], tmp_path: Path) -> None:
    """A second Caddy runs Caddy's own ACME server (its `acme_server` handler) as the CA, with a policy that refuses
    one name; the edge orders from it over ACME on demand. `domain list` then shows the CA's own words, read from the
    edge's log through the Certificates port's error hook."""
    ca_port, https = free_port(), free_port()
    ca_storage, storage = tmp_path / "ca-storage", tmp_path / "storage"
    ca = {
        "admin": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"module": "file_system", "root": str(ca_storage)},
        "apps": {
            "http": {"http_port": free_port(), "https_port": ca_port, "servers": {"ca": {
                "listen": [f"127.0.0.1:{ca_port}"],
                "automatic_https": {"disable_redirects": True},
                "tls_connection_policies": [{"default_sni": "127.0.0.1"}],  # Go sends no SNI to an IP address
                "routes": [{"match": [{"host": ["127.0.0.1"]}],
                            "handle": [{"handler": "acme_server", "ca": "local",
                                        "policy": {"deny": {"domains": ["refused.shop.test"]}}}]}],
            }}},
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    edge_log = tmp_path / "edge.log"
    config = caddy_config(storage, admin=free_port(), https=https, http=free_port(), ask_url=plane_api["ask_url"])
    config["apps"]["tls"]["automation"]["policies"] = [{"on_demand": True, "issuers": [{
        "module": "acme", "ca": f"https://127.0.0.1:{ca_port}/acme/local/directory",
        "trusted_roots_pem_files": [str(ca_storage / "pki" / "authorities" / "local" / "root.crt")]}]}]
    config["logging"] = {"logs": {"default": {"writer": {"output": "file", "filename": str(edge_log)},
                                              "exclude": ["admin.api"]}}}
    with running_caddy(ca, tmp_path, "ca", ca_port):
        wait_for(lambda: (ca_storage / "pki" / "authorities" / "local" / "root.crt").exists(), timeout=20)
        with running_caddy(config, tmp_path, "edge", https):
            certs = CaddyCertificates([storage], errors=CaddyLogErrors([edge_log]))
            domains = Domains(plane_api["settings"], plane_api["store"], routes=plane_api["routes"], certificates=certs)
            domains.add("shop", "production", "refused.shop.test")
            assert [d["certificate"] for d in domains.list("shop", "production")] == ["pending"]
            assert not handshake(https, "refused.shop.test", timeout=3)  # the order is refused: no certificate
            refusal = ("HTTP 400 urn:ietf:params:acme:error:rejectedIdentifier - The server will not issue "
                       "certificates for the identifier")
            [row] = wait_for(lambda: [d for d in domains.list("shop", "production")
                                      if d["certificate_state"] == "failed"], timeout=20)
            assert row["certificate"] == f"failed: {refusal}"
            assert row["certificate_error"] == refusal
            assert not handshake(https, "unknown.shop.test", timeout=3)  # not ours: not even asked of the CA
            time.sleep(0.5)
            obtaining = [line for line in edge_log.read_text().splitlines() if '"obtaining' in line]
            assert obtaining and not any("unknown.shop.test" in line for line in obtaining)
