"""A small WebSocket client for `connect`'s tunnel: asyncio streams and wsproto's protocol (sans-IO, the library
uvicorn serves the control plane's WebSockets with), binary messages only.

A refused handshake is the API's own answer (status and JSON detail), raised as the project's error like any
other API call (`client.refusal`); a WebSocket closed with an error raises its reason, in one line. The server's
pings are answered, so an idle session stays open through the control plane's keep-alive and an edge's timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import ProtocolError

from .. import errors
from .client import refusal

CHUNK = 64 * 1024  # bytes read from the socket at a time
HANDSHAKE_TIMEOUT = 30.0  # seconds: the control plane opens the connection to the server before it answers (10 s at most)
NORMAL = (1000, 1001)  # close codes of an ordinary end: the server's connection closed, or the control plane stopping


@dataclass(frozen=True)
class Endpoint:
    """Where one WebSocket is opened: the control plane's URL (for messages), host and port, TLS (None: plain), the
    request target, and the headers (the token's: never printed)."""

    url: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    target: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def authority(self) -> str:
        """The Host header: host, and the port when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls is not None else 80
        return host if self.port == default else f"{host}:{self.port}"


class WebSocket:
    """One open WebSocket: `send` bytes, `receive` bytes (None once closed normally), `close`."""

    def __init__(self, url: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: WSConnection,
                 pending: list[Event]) -> None:
        self.url = url
        self._reader, self._writer, self._conn = reader, writer, conn
        self._events: deque[Event] = deque(pending)  # what arrived with the handshake's answer

    async def send(self, data: bytes) -> None:
        if self._conn.state is not ConnectionState.OPEN:  # closed meanwhile: the relay ends, as on a lost socket
            raise ConnectionResetError(f"the WebSocket to {self.url} is closed")
        self._writer.write(self._conn.send(Message(data=data)))
        await self._writer.drain()

    async def receive(self) -> bytes | None:
        """The next bytes; None when the WebSocket closed normally; the close reason raised when it did not."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, BytesMessage) and event.data:
                    return bytes(event.data)
                if isinstance(event, Ping):
                    await self._write(event.response())
                elif isinstance(event, CloseConnection):
                    await self._closed(event)
                    if event.code in NORMAL:
                        return None
                    if event.code == 1006:  # the connection ended without a close frame
                        raise errors.ServerUnavailable(f"lost the control plane at {self.url}")
                    raise errors.BackendError(event.reason or f"the control plane at {self.url} closed the tunnel "
                                                               f"(WebSocket close code {event.code})")
            if self._conn.state is ConnectionState.CLOSED:
                return None
            try:
                data = await self._reader.read(CHUNK)
            except OSError:
                data = b""
            self._conn.receive_data(data or None)
            self._events.extend(self._conn.events())

    async def close(self) -> None:
        """Say goodbye (when still open) and close the connection; never raises."""
        with contextlib.suppress(Exception):
            if self._conn.state is ConnectionState.OPEN:
                await self._write(CloseConnection(code=1000))
        self._writer.close()

    async def _closed(self, event: CloseConnection) -> None:
        with contextlib.suppress(Exception):
            if self._conn.state is ConnectionState.REMOTE_CLOSING:
                await self._write(event.response())
        self._writer.close()

    async def _write(self, event: Event) -> None:
        self._writer.write(self._conn.send(event))
        await self._writer.drain()


async def connect(endpoint: Endpoint, *, timeout: float = HANDSHAKE_TIMEOUT) -> WebSocket:
    """Open the WebSocket; the API's refusal (401, 403, 404, 502 …) or ServerUnavailable raised as one line."""
    try:
        async with asyncio.timeout(timeout):
            return await _handshake(endpoint)
    except TimeoutError:
        raise errors.ServerUnavailable(f"the control plane at {endpoint.url} did not answer within {timeout:.0f}s") from None
    except (OSError, ssl.SSLError) as err:
        raise errors.ServerUnavailable(f"cannot reach the control plane at {endpoint.url}: {err or type(err).__name__}") from None
    except ProtocolError as err:  # something else than a WebSocket server answered (a proxy, not the control plane)
        raise errors.ServerUnavailable(f"the control plane at {endpoint.url} did not answer as a WebSocket server: {err}") from None


async def _handshake(endpoint: Endpoint) -> WebSocket:
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=endpoint.tls,
                                                   server_hostname=endpoint.host if endpoint.tls else None)
    conn = WSConnection(ConnectionType.CLIENT)
    headers = [(name.encode(), value.encode()) for name, value in endpoint.headers]
    try:
        writer.write(conn.send(Request(host=endpoint.authority, target=endpoint.target, extra_headers=headers)))
        status, body = 0, bytearray()
        while True:
            data = await reader.read(CHUNK)
            conn.receive_data(data or None)
            events = list(conn.events())
            for i, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    return WebSocket(endpoint.url, reader, writer, conn, events[i + 1:])
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise _refused(endpoint, status, "")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise _refused(endpoint, status, body.decode(errors="replace"))
            if not data:
                raise errors.ServerUnavailable(f"the control plane at {endpoint.url} closed the connection during the "
                                               "WebSocket handshake")
    except BaseException:
        writer.close()
        raise


def _refused(endpoint: Endpoint, status: int, text: str) -> errors.BranchyardError:
    """The API's refusal (its JSON detail), or one line naming the route (a refusal without a reason: e.g. an older
    control plane, which has no such WebSocket route)."""
    return refusal(status, text, otherwise=f"the control plane at {endpoint.url} refused the WebSocket {endpoint.target} "
                                           f"(HTTP {status}, no reason given: is it older than this CLI?)")
