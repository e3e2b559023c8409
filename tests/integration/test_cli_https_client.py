"""The CLI's client against a control plane over HTTPS: the chain is verified (a CA given by SSL_CERT_FILE is
trusted, an unknown one refused in one line), the token goes in the Authorization header, a path prefix is kept."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from branchyard import errors
from branchyard.cli.client import Client
from branchyard.cli.contexts import Target

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and an HTTPS server that echoes what it received."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            body = json.dumps([{"name": "yoto"}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert, seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_trusted_chain_works(tls, monkeypatch) -> None:
    url, cert, seen = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert Client(Target("t", url + "/prefix", "tok-123")).get("/api/projects") == [{"name": "yoto"}]
    assert seen[-1] == {"path": "/prefix/api/projects", "authorization": "Bearer tok-123"}


def test_an_unknown_ca_is_refused(tls, monkeypatch, tmp_path: Path) -> None:
    url, _, _ = tls
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    with pytest.raises(errors.ServerUnavailable) as err:
        Client(Target("t", url, "tok-123")).get("/api/projects")
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) and "tok-123" not in str(err.value)
