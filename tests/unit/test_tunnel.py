"""`connect`'s tunnel. The route (api/routes/tunnel.py): bytes both ways to the server the controller names, after the
same token and permission check as every route, refused before anything is opened; a server it cannot reach is one
line naming host:port; losing it closes the WebSocket with why. The controller (controller/databases.py): where the
tunnel goes, `tunnel` in the connection, the audit event. The CLI's WebSocket client answers the server's pings.
The CLI's side against a real uvicorn and real servers: tests/integration/test_connect_tunnel.py.

The "environment's server" is a real TCP server (an upper-casing echo, tests/tunnel_fakes.py); the control plane the
real app over a stand-in controller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, WebSocket
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from tunnel_fakes import AUTH, PATH, TOKEN, FakeDatabases, app_for, closed_port, upper_server
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Pong, Request

from branchyard.access import Actor
from branchyard.api.app import _check_declared
from branchyard.cli.websocket import Endpoint, connect
from branchyard.controller.databases import Databases
from branchyard.store import models as m
from branchyard.store.db import Store


@pytest.fixture()
def server():
    with upper_server() as srv:
        yield srv


# --- the route ----------------------------------------------------------------------------------------------------


def test_bytes_go_both_ways_to_the_server_the_controller_names(server) -> None:
    databases = FakeDatabases(server.server_address[1])
    client = TestClient(app_for(databases))
    # an address in the request is nobody's business: the controller says where
    with client.websocket_connect(PATH + "?host=10.9.9.9&port=1", headers=AUTH) as ws:
        ws.send_bytes(b"select 1;")
        assert ws.receive_bytes() == b"SELECT 1;"
        ws.send_bytes(b"again")
        assert ws.receive_bytes() == b"AGAIN"
    assert databases.calls == [("target", "yoto", "staging", "postgres"),
                               ("opened", "yoto", "staging", "postgres", "tester")]
    assert len(server.accepted) == 1


def test_the_servers_end_closes_the_websocket_normally(server) -> None:
    client = TestClient(app_for(FakeDatabases(server.server_address[1])))
    with client.websocket_connect(PATH, headers=AUTH) as ws:
        ws.send_bytes(b"bye")
        assert ws.receive_bytes() == b"BYE"
        assert ws.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}


def test_losing_the_server_closes_the_websocket_with_why(server) -> None:
    port = server.server_address[1]
    with TestClient(app_for(FakeDatabases(port))).websocket_connect(PATH, headers=AUTH) as ws:
        ws.send_bytes(b"reset")
        assert ws.receive() == {"type": "websocket.close", "code": 1011,
                                "reason": f"connect: lost staging's postgres at 127.0.0.1:{port}: [Errno 104] Connection reset by peer"}


REFUSALS = {  # (role, headers, environment protected) → status
    "no token": ("admin", {}, False, 401),
    "wrong token": ("admin", {"authorization": "Bearer wrong"}, False, 401),
    "another scheme": ("admin", {"authorization": f"Basic {TOKEN}"}, False, 401),
    "viewer": ("viewer", AUTH, False, 403),
    "member, protected environment": ("member", AUTH, True, 403),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_before_anything_is_opened(server, case: str) -> None:
    role, headers, protected, status = REFUSALS[case]
    databases = FakeDatabases(server.server_address[1])
    client = TestClient(app_for(databases, role=role, protected=protected))
    with pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect(PATH, headers=headers):
            pass
    assert refused.value.status_code == status
    detail = refused.value.json()["detail"]
    assert "\n" not in detail
    if status == 403:
        assert detail.startswith(f"WEBSOCKET {PATH}: permission 'shell'") and f"tester is {role}" in detail
    assert databases.calls == [] and server.accepted == []


@pytest.mark.parametrize(("role", "protected"), [("member", False), ("admin", True)])
def test_the_roles_that_hold_shell_get_through(server, role: str, protected: bool) -> None:
    # the control of the test above: the refusals come from the permission, not from the request's shape
    databases = FakeDatabases(server.server_address[1])
    with TestClient(app_for(databases, role=role, protected=protected)).websocket_connect(PATH, headers=AUTH) as ws:
        ws.send_bytes(b"x")
        assert ws.receive_bytes() == b"X"


def test_an_unknown_service_is_refused_before_the_controller_is_asked(server) -> None:
    databases = FakeDatabases(server.server_address[1])
    with pytest.raises(WebSocketDenialResponse) as refused:
        with TestClient(app_for(databases)).websocket_connect(PATH.replace("postgres", "mysql"), headers=AUTH):
            pass
    assert (refused.value.status_code, refused.value.json()["detail"]) == (
        400, "connect: unknown service 'mysql' (postgres or redis)")
    assert databases.calls == []


def test_a_server_the_control_plane_cannot_reach_is_one_line_naming_it() -> None:
    port = closed_port()
    databases = FakeDatabases(port)
    with pytest.raises(WebSocketDenialResponse) as refused:
        with TestClient(app_for(databases)).websocket_connect(PATH, headers=AUTH):
            pass
    detail = refused.value.json()["detail"]
    assert refused.value.status_code == 502 and "\n" not in detail
    assert detail.startswith(f"connect: the control plane cannot reach staging's postgres at 127.0.0.1:{port}: "), detail
    assert databases.calls == [("target", "yoto", "staging", "postgres")]  # no tunnel was opened: no event


def test_an_app_whose_websocket_route_declares_no_permission_is_refused() -> None:
    router = APIRouter()

    @router.websocket("/api/projects/{project}/open")
    async def open_to_anyone(websocket: WebSocket, project: str) -> None:
        await websocket.accept()

    with pytest.raises(RuntimeError, match=r"^WebSocket /api/projects/\{project\}/open declares no permission"):
        _check_declared(router)


# --- the controller: where, `tunnel`, the event ------------------------------------------------------------------


class FakeDataPlane:
    def __init__(self, variables: dict[str, dict[str, str]]) -> None:
        self.variables = variables

    def service_variables(self, env_id: int) -> dict[str, dict[str, str]]:
        return self.variables


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    with s.session() as session:
        p = m.Project(name="yoto", repo_path=str(tmp_path / "yoto.git"))
        session.add(p)
        session.flush()
        env = m.Environment(project_id=p.id, name="staging")
        session.add(env)
        session.flush()
        for kind, name in (("postgres", "Postgres"), ("redis", "Redis")):
            session.add(m.Service(environment_id=env.id, kind=kind, name=name, source="spec", location="shared"))
    yield s
    s.close()


VARIABLES = {
    "Postgres": {"PGHOST": "postgres.by-yoto-staging", "PGPORT": "5432", "PGUSER": "app", "PGPASSWORD": "pg-secret",
                 "PGDATABASE": "app"},
    "Redis": {"REDISHOST": "redis.by-yoto-staging", "REDISPORT": "6379", "REDISPASSWORD": "redis-secret"},
}


@pytest.mark.parametrize("in_cluster", [False, True])
def test_the_connection_says_whether_only_the_control_plane_reaches_the_servers(store: Store, in_cluster: bool) -> None:
    cluster = object() if in_cluster else None  # a cluster backend's rollouts (only their presence counts here)
    databases = Databases(None, store, data=FakeDataPlane(VARIABLES), deployer=None,  # type: ignore[arg-type]
                          cluster=cluster)  # type: ignore[arg-type]
    assert databases.connection("yoto", "staging", "postgres") == VARIABLES["Postgres"] | {"tunnel": in_cluster}
    assert databases.connection("yoto", "staging", "redis") == VARIABLES["Redis"] | {"tunnel": in_cluster}


def test_the_tunnel_goes_where_the_connection_variables_say_and_is_recorded_without_credentials(store: Store) -> None:
    databases = Databases(None, store, data=FakeDataPlane(VARIABLES), deployer=None)  # type: ignore[arg-type]
    assert databases.tunnel_target("yoto", "staging", "postgres") == ("postgres.by-yoto-staging", 5432)
    assert databases.tunnel_target("yoto", "staging", "redis") == ("redis.by-yoto-staging", 6379)
    databases.tunnel_opened("yoto", "staging", "redis", actor=Actor("alice", 7, "member"))
    with store.session() as s:
        events = [(e.kind, e.environment, e.actor, e.actor_id, e.message) for e in s.query(m.Event)]
    assert events == [("tunnel.opened", "staging", "alice", 7, "alice opened a tunnel to staging's redis")]


# --- the client answers the server's pings (an idle psql session stays open) ----------------------------------------


def test_the_client_answers_a_ping_before_it_gets_more_bytes() -> None:
    """A WebSocket server (wsproto, as uvicorn's) that pings, and sends its bytes only once the pong came back."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = WSConnection(ConnectionType.SERVER)
        while True:
            conn.receive_data(await reader.read(65536))
            if any(isinstance(event, Request) for event in conn.events()):
                break
        writer.write(conn.send(AcceptConnection()) + conn.send(Ping(b"are you there")))
        while not seen:
            data = await reader.read(65536)
            conn.receive_data(data or None)
            for event in conn.events():
                seen.append(type(event).__name__ + (f":{bytes(event.payload).decode()}" if isinstance(event, Pong) else ""))
            if not data:
                break
        writer.write(conn.send(Message(data=b"after the pong")) + conn.send(CloseConnection(code=1000)))
        await writer.drain()

    async def scenario() -> tuple[bytes | None, bytes | None]:
        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            websocket = await connect(Endpoint("http://127.0.0.1", "127.0.0.1", port, None, "/", ()))
            first, then = await websocket.receive(), await websocket.receive()
            await websocket.close()
            return first, then

    assert asyncio.run(scenario()) == (b"after the pong", None)
    assert seen == ["Pong:are you there"]
