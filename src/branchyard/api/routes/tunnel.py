"""`connect`'s tunnel: a WebSocket whose binary messages carry one TCP connection from the control plane to an
environment's own PostgreSQL or Redis, so `connect` works from another machine and on a cluster whose servers only
the control plane reaches.

The handshake passes the same check as every route (`allow(Permission.SHELL)`, the Bearer token of the handshake's
Authorization header) before anything is opened; the controller says where the server is (`tunnel_target`: the
environment's own connection variables, never an address from the client). A server that cannot be reached is
refused before the WebSocket is accepted (502, one line naming host:port), so the CLI reports it before it starts
psql or redis-cli. Then bytes go both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from ...access import Actor, Permission
from ...controller.core import Controller
from ...errors import BackendError, BadInput
from ..permissions import allow

KINDS = ("postgres", "redis")
CONNECT_TIMEOUT = 10.0  # seconds to open the connection to the server (a Service with no endpoint never answers)
CHUNK = 64 * 1024  # bytes per message at most (uvicorn's limit per message is 16 MiB)


def router(ctl: Controller) -> APIRouter:
    """The tunnel's WebSocket route."""
    r = APIRouter()

    @r.websocket("/api/projects/{project}/environments/{env}/connection/{kind}/tunnel")
    async def tunnel(websocket: WebSocket, project: str, env: str, kind: str,
                     who: Actor = allow(Permission.SHELL)) -> None:
        if kind not in KINDS:
            raise BadInput(f"connect: unknown service {kind!r} (postgres or redis)")
        host, port = await run_in_threadpool(ctl.databases.tunnel_target, project, env, kind)
        reader, writer = await open_server(host, port, what=f"{env}'s {kind}")
        try:
            await run_in_threadpool(ctl.databases.tunnel_opened, project, env, kind, actor=who)
            await websocket.accept()
            await relay(websocket, reader, writer, what=f"{env}'s {kind} at {host}:{port}")
        finally:
            writer.close()

    return r


async def open_server(host: str, port: int, *, what: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the server, or BackendError in one line naming it."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as err:
        why = str(err) or f"no answer within {CONNECT_TIMEOUT:.0f}s"
        raise BackendError(f"connect: the control plane cannot reach {what} at {host}:{port}: {why}") from None


async def relay(websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, what: str) -> None:
    """The client's binary messages to the server, the server's bytes to the client as binary messages, until either
    side closes (the server's end closes the WebSocket normally; losing the server closes it with 1011 and why)."""

    async def to_server() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:  # a text message: not part of a byte stream
                raise BadInput("connect: the tunnel carries binary messages only")
            writer.write(data)
            await writer.drain()

    async def to_client() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    ended: list[tuple[str, BaseException | None]] = []  # which direction ended first, and how

    async def until_either_ends(group: anyio.abc.TaskGroup, name: str, direction: Callable[[], Awaitable[None]]) -> None:
        try:
            await direction()
            ended.append((name, None))
        except Exception as err:  # (cancellation is not an Exception: the other direction ended first)
            ended.append((name, err))
        group.cancel_scope.cancel()

    # anyio's task group, not asyncio's tasks: the server's own cancel scope (a client gone, a shutdown) must reach
    # both directions and end this route as a cancellation it recognises
    async with anyio.create_task_group() as group:
        group.start_soon(until_either_ends, group, "client", to_server)
        group.start_soon(until_either_ends, group, "server", to_client)
    first, failed = ended[0]
    if first == "client" and failed is None:
        return  # the client left: nothing to tell it
    if isinstance(failed, BadInput):
        code, reason = 1003, str(failed)
    elif failed is not None:
        code, reason = 1011, f"connect: lost {what}: {failed or type(failed).__name__}"
    else:
        code, reason = 1000, ""
    with contextlib.suppress(Exception):  # the client may be gone already
        await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))  # a close reason's limit
