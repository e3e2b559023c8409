"""HTTPS at the edge, for real: clients verify the chain with only the CA's root, each host gets its own certificate
by SNI, an unknown name gets none (and causes no order), plain HTTP redirects, HSTS only on production, the control
plane answers at its public host (a laptop logs in, pushes over HTTPS and drives the CLI through it), and a restart
reuses what was issued.

`internal` mode (Caddy's local CA, `branchyard tls root`) runs anywhere. `acme` mode runs against a real ACME CA on
loopback (tests/acme_ca.py: Caddy's acme_server validating HTTP-01), which needs root: skipped otherwise, saying why.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from acme_ca import TestCA, requirements
from conftest import free_port, new_home, start_plane, stop_plane, wait_for
from test_remote_cli import Laptop

pytestmark = pytest.mark.integration

RAILWAY = """[deploy]
startCommand = "exec python3 -m http.server $PORT --bind 127.0.0.1"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""
TOML = """[project]
name = "shop"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
"""
DOMAIN = "apps.test"
PROD, STAGING = f"shop.{DOMAIN}", f"shop-staging.{DOMAIN}"


def https(port: int, host: str, path: str, *, root: Path, version: ssl.TLSVersion | None = None,
          method: str = "GET", body: bytes | None = None) -> httpx.Response:
    """A request to https://host:port/path with SNI `host`, to 127.0.0.1, trusting only `root`."""
    ctx = ssl.create_default_context(cafile=str(root))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    with httpx.Client(verify=ctx, timeout=30, trust_env=False) as client:
        request = client.build_request(method, f"https://127.0.0.1:{port}{path}", headers={"Host": host},
                                       content=body, extensions={"sni_hostname": host})
        return client.send(request)


def peer_names(port: int, host: str, root: Path) -> list[str]:
    """The DNS names of the certificate the edge presents for SNI `host` (verified against `root`)."""
    ctx = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        return [value for kind, value in tls.getpeercert()["subjectAltName"] if kind == "DNS"]


def shop(plane, tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML)
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "push", "branchyard", "main:develop")
    return repo


def stored_certificate(home: Path, host: str) -> list[Path]:
    return sorted((home / "caddy" / "data").glob(f"*/certificates/*/{host}/{host}.crt"))


def test_internal_mode_serves_verified_https_per_host(venv_cache, tmp_path):
    https_port = free_port()
    # The control plane's public host is `localhost`: the laptop below reaches it by name with no DNS of ours.
    env = {"BRANCHYARD_TLS": "internal", "BRANCHYARD_HTTPS_PORT": str(https_port), "BRANCHYARD_DOMAIN": DOMAIN,
           "BRANCHYARD_PUBLIC_URL": f"https://localhost:{https_port}"}
    plane = start_plane(new_home(), venv_cache, extra_env=env)
    try:
        repo = shop(plane, tmp_path)
        root = tmp_path / "root.pem"
        plane.run("tls", "root", "-o", str(root), cwd=repo)
        assert root.read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert plane.run("tls", "root", cwd=repo).stdout == root.read_text()

        # Verified with the root alone; each host its own certificate (SNI); HSTS on production only.
        prod = https(https_port, PROD, "/health", root=root)
        assert (prod.status_code, prod.text, prod.headers["X-Branchyard-Environment"]) == (200, "ok\n", "production")
        assert prod.headers["Strict-Transport-Security"] == "max-age=31536000"
        staging = https(https_port, STAGING, "/health", root=root)
        assert staging.status_code == 200 and "Strict-Transport-Security" not in staging.headers
        assert peer_names(https_port, PROD, root) == [PROD]
        assert peer_names(https_port, STAGING, root) == [STAGING]
        # TLS 1.2 is enough; nothing older is offered.
        assert https(https_port, PROD, "/health", root=root, version=ssl.TLSVersion.TLSv1_2).status_code == 200

        # A name no environment has: no certificate, the handshake fails, nothing is stored for it.
        with pytest.raises(httpx.ConnectError):
            https(https_port, f"nosuch.{DOMAIN}", "/health", root=root)
        assert stored_certificate(plane.home, f"nosuch.{DOMAIN}") == []

        # Plain HTTP: a redirect to the same host and URI over HTTPS, keeping the method (308).
        plain = plane.request("POST", PROD, "/form?a=1", follow_redirects=False)
        assert (plain.status_code, plain.headers["Location"]) == (308, f"https://{PROD}:{https_port}/form?a=1")

        # The control plane at its public host: the API (token and all), never /internal.
        control = "localhost"
        assert https(https_port, control, "/api/health", root=root).json()["ok"] is True
        assert https(https_port, control, f"/internal/tls/ask?domain={PROD}", root=root).status_code == 404
        assert https(https_port, control, "/api/projects", root=root).status_code == 401
        # A client that never finishes its request headers is cut off by the edge (read_header_timeout).
        with socket.create_connection(("127.0.0.1", plane.http_port), timeout=60) as slow:
            slow.sendall(f"GET /health HTTP/1.1\r\nHost: {PROD}\r\n".encode())  # no blank line: never complete
            assert slow.recv(4096) == b""  # the edge closed it
        # An over-limit webhook body through the edge: a 413 the client reads, not a reset.
        big = https(https_port, control, "/webhooks/github", root=root, method="POST", body=b"x" * (6 << 20))
        assert big.status_code == 413 and "detail" in big.json()
        assert plane.json("server", "status")["public_url"] == f"https://localhost:{https_port}"
        assert f"https://{PROD}:{https_port}" in plane.run("status", "-e", "production", cwd=repo).stdout

        # A laptop (its own HOME, no access to the plane's home) through the edge only, over HTTPS: login, init,
        # git push (streams; exit 0 on SUCCESS), status, variables, logs, rollback, promote.
        laptop = Laptop(tmp_path / "laptop")
        laptop.root.mkdir()
        laptop.env |= {"SSL_CERT_FILE": str(root), "GIT_SSL_CAINFO": str(root)}
        public = f"https://localhost:{https_port}"
        token = (plane.home / "token").read_text().strip()
        laptop.by("login", public, "--token-stdin", input=token + "\n")
        kiosk = laptop.root / "kiosk"
        kiosk.mkdir()
        (kiosk / "branchyard.toml").write_text(TOML.replace('name = "shop"', 'name = "kiosk"')
                                               + '\n[environments.production.promotion]\nfrom = "staging"\n')
        (kiosk / "railway.toml").write_text(RAILWAY)
        (kiosk / "health").write_text("v1\n")
        laptop.git(kiosk, "init", "--quiet", "--initial-branch=main")
        laptop.commit(kiosk, "v1")
        laptop.by("init", cwd=kiosk)
        assert laptop.git(kiosk, "remote", "get-url", "branchyard").stdout.strip() == f"{public}/git/kiosk.git"
        pushed = laptop.git(kiosk, "push", "branchyard", "main")
        assert "remote: -----> deployment SUCCESS: https://kiosk.apps.test" in pushed.stderr, pushed.stderr
        (kiosk / "health").write_text("v2\n")
        laptop.commit(kiosk, "v2")
        laptop.git(kiosk, "push", "branchyard", "main")
        assert https(https_port, f"kiosk.{DOMAIN}", "/health", root=root).text == "v2\n"
        assert laptop.json("status", "-e", "production", cwd=kiosk)["url"] == f"https://kiosk.{DOMAIN}:{https_port}"
        laptop.by("variables", "set", "-e", "production", "--skip-deploys", "GREETING=hello", cwd=kiosk)
        assert "GREETING" in laptop.by("variables", "list", "-e", "production", cwd=kiosk).stdout
        assert "deployment SUCCESS" in laptop.by("logs", "-e", "production", "--build", cwd=kiosk).stdout
        laptop.by("rollback", "-e", "production", cwd=kiosk)
        assert https(https_port, f"kiosk.{DOMAIN}", "/health", root=root).text == "v1\n"
        laptop.git(kiosk, "checkout", "--quiet", "-b", "develop")
        (kiosk / "health").write_text("v3\n")
        laptop.commit(kiosk, "v3 on develop")
        laptop.git(kiosk, "push", "branchyard", "develop")
        assert https(https_port, f"kiosk-staging.{DOMAIN}", "/health", root=root).text == "v3\n"
        laptop.by("promote", "staging", "production", "--confirm", "PROMOTE", cwd=kiosk)
        assert https(https_port, f"kiosk.{DOMAIN}", "/health", root=root).text == "v3\n"
        assert not any(token in out for out in laptop.outputs)

        # A restart of the control plane keeps the edge (same process) and its certificates (same one served).
        edge_pid = (plane.home / "caddy" / "edge.pid").read_text()
        before = stored_certificate(plane.home, PROD)
        assert len(before) == 1
        first = before[0].read_bytes()
        plane.run("server", "stop")
        plane.run("server", "--detach", timeout=120)
        assert (plane.home / "caddy" / "edge.pid").read_text() == edge_pid
        assert https(https_port, PROD, "/health", root=root).status_code == 200
        assert stored_certificate(plane.home, PROD)[0].read_bytes() == first
    finally:
        stop_plane(plane)


@pytest.mark.skipif(requirements() is not None, reason=f"a real ACME CA on loopback {requirements()}")
def test_acme_mode_orders_from_a_real_ca_only_for_served_hosts(venv_cache, tmp_path):
    custom = "www.shop.test"
    ca = TestCA(tmp_path / "ca", [PROD, STAGING, f"nosuch.{DOMAIN}", custom]).start()
    https_port = free_port()
    env = {"BRANCHYARD_TLS": "acme", "BRANCHYARD_HTTPS_PORT": str(https_port), "BRANCHYARD_DOMAIN": DOMAIN,
           "BRANCHYARD_ACME_CA": ca.directory, "BRANCHYARD_ACME_CA_ROOT": str(ca.root),
           "BRANCHYARD_ACME_EMAIL": "ops@shop.test"}
    plane = start_plane(new_home(), venv_cache, http_port=80, extra_env=env)
    try:
        repo = shop(plane, tmp_path)
        assert ca.orders() == []  # nothing is ordered before a client asks
        prod = https(https_port, PROD, "/health", root=ca.root)  # HTTP-01 through the router's port 80
        assert (prod.status_code, prod.headers["Strict-Transport-Security"]) == (200, "max-age=31536000")
        assert peer_names(https_port, PROD, ca.root) == [PROD]
        assert len(ca.orders()) == 1

        # An unknown name: no order at the CA at all.
        with pytest.raises(httpx.ConnectError):
            https(https_port, f"nosuch.{DOMAIN}", "/health", root=ca.root)
        assert len(ca.orders()) == 1

        # A custom domain gets its own certificate, and `domain list` shows it issued.
        plane.run("domain", "add", custom, "-e", "production", cwd=repo)
        assert https(https_port, custom, "/health", root=ca.root).status_code == 200
        assert peer_names(https_port, custom, ca.root) == [custom]
        assert len(ca.orders()) == 2
        [listed] = plane.json("domain", "list", "-e", "production", cwd=repo)
        assert listed["certificate"].startswith("issued until ")

        # A full restart (control plane, router, apps): the stored certificates are used, nothing is ordered.
        plane.run("server", "stop", "--all")
        plane.run("server", "--detach", timeout=120)
        wait_for(lambda: https(https_port, PROD, "/health", root=ca.root).status_code == 200, timeout=60)
        assert https(https_port, custom, "/health", root=ca.root).status_code == 200
        assert len(ca.orders()) == 2

        # Deleting the domain deletes its certificate; after the edge restarts, it has none and orders none.
        plane.run("domain", "delete", custom, "-e", "production", cwd=repo)
        assert stored_certificate(plane.home, custom) == []
        plane.run("server", "stop", "--all")
        plane.run("server", "--detach", timeout=120)
        wait_for(lambda: https(https_port, PROD, "/health", root=ca.root).status_code == 200, timeout=60)
        with pytest.raises(httpx.ConnectError):
            https(https_port, custom, "/health", root=ca.root)
        assert len(ca.orders()) == 2
    finally:
        stop_plane(plane)
        ca.stop()
