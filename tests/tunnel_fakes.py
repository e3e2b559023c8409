"""For the tests of `connect`'s tunnel: the API app over a stand-in controller that names the server (recording what
it was asked), and a real TCP server standing in for the environment's PostgreSQL or Redis."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator

from api_users import single_token

from branchyard.access import Actor
from branchyard.api.app import create_app

TOKEN = "the-right-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PATH = "/api/projects/yoto/environments/staging/connection/postgres/tunnel"


class _Upper(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.accepted.append(self.client_address)  # type: ignore[attr-defined]
        while data := self.request.recv(65536):
            if data == b"bye":
                self.request.sendall(b"BYE")
                return  # the server ends the connection
            if data == b"reset":  # the server is lost: a reset, not an end
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.request.close()
                return
            self.request.sendall(data.upper())


@contextlib.contextmanager
def upper_server() -> Iterator[socketserver.ThreadingTCPServer]:
    """The environment's server, real TCP: echoes upper-cased; after b"bye", answers and closes; b"reset" resets the
    connection. `accepted`: its connections."""
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Upper)
    srv.daemon_threads = True
    srv.accepted = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


class FakeDatabases:
    """The controller's side, recorded: where the tunnel goes (the test's server), and the audit call."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[tuple] = []

    def tunnel_target(self, project: str, env: str, kind: str) -> tuple[str, int]:
        self.calls.append(("target", project, env, kind))
        return "127.0.0.1", self.port

    def tunnel_opened(self, project: str, env: str, kind: str, *, actor: Actor) -> None:
        self.calls.append(("opened", project, env, kind, actor.name))


class FakeController:
    def __init__(self, databases: FakeDatabases) -> None:
        self.databases = databases


def app_for(databases: FakeDatabases, *, role: str = "admin", protected: bool = False):
    keeper = single_token(TOKEN, role=role, protected=lambda project, env: protected)
    return create_app(FakeController(databases), gatekeeper=keeper, dashboard=False)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
