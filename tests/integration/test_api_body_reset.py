"""An over-limit body gets a 413 the client can read, over a real socket (uvicorn), not a connection reset.

The reset came from answering before the body was read: the server closes a socket with unread bytes in it, the
kernel sends RST, and a client that is still sending (urllib, http.client — the CLI's own) sees ECONNRESET
instead of the answer. The control case shows the test can fail: the webhook route alone, as it was, resets.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from api_users import single_token

from branchyard.api.app import create_app

pytestmark = pytest.mark.integration
SIZE = 8 * 1024 * 1024  # over the 5 MB limit


class Controller:
    pass


def serve(app) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def port():
    yield from serve(create_app(Controller(), gatekeeper=single_token("token")))


@pytest.fixture(scope="module")
def bare_port():
    app = create_app(Controller(), gatekeeper=single_token("token"))
    assert [m.cls.__name__ for m in app.user_middleware] == ["BodyLimit"]
    app.user_middleware.clear()  # the app as it was before the limit
    yield from serve(app)


def post(port: int, path: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"x" * SIZE,
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer token"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.parametrize("path", ["/webhooks/github", "/api/projects"])
def test_over_limit_bodies_get_a_readable_413(port, path) -> None:
    status, body = post(port, path)
    assert status == 413 and b'"error": "PayloadTooLarge"' in body


def test_without_the_middleware_the_webhook_route_resets_the_client(bare_port) -> None:
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post(bare_port, "/webhooks/github")


def test_a_client_waiting_for_100_continue_gets_the_413_without_sending_the_body(port) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST /api/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {SIZE}\r\nExpect: 100-continue\r\n\r\n".encode())
        answer = b""
        while b"PayloadTooLarge" not in answer:
            chunk = conn.recv(65536)  # a "100 Continue" and a wait for the body would time out here
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and b"PayloadTooLarge" in answer
