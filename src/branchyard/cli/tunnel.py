"""`connect` through the control plane: psql or redis-cli runs here, pointed at a listener on 127.0.0.1, and every
connection it opens there is relayed over a WebSocket of its own to the control plane's tunnel route
(api/routes/tunnel.py), which opens the connection to the environment's server.

The first WebSocket is opened before the command starts, so a refusal (token, permission) or a server the control
plane cannot reach is one line and the command never runs. Ctrl-C belongs to the command (psql cancels its query
through a tunnel of its own); stdin, stdout and the exit code are the command's.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from .. import errors
from . import ui
from .websocket import CHUNK, Endpoint, WebSocket, connect

LISTEN_HOST = "127.0.0.1"  # only this machine's processes reach the listener


def run_through_tunnel(endpoint: Endpoint, command: Callable[[int], list[str]], env: dict[str, str]) -> int:
    """Run `command(port)` with `env` while connections to 127.0.0.1:port are relayed to `endpoint`; its exit code
    (128 + N when a signal N ended it)."""
    return asyncio.run(_run(endpoint, command, env))


async def _run(endpoint: Endpoint, command: Callable[[int], list[str]], env: dict[str, str]) -> int:
    spare: list[WebSocket] = [await connect(endpoint)]
    relays: set[asyncio.Task] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relays.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            websocket = spare.pop() if spare else await connect(endpoint)
        except errors.BranchyardError as err:
            ui.error(str(err))
            writer.close()
            return
        except asyncio.CancelledError:
            writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # ended by the command's exit: Python 3.11's start_server
            await relay(reader, writer, websocket)          # would log a cancelled handler as an error

    server = await asyncio.start_server(accepted, LISTEN_HOST, 0)
    port = server.sockets[0].getsockname()[1]
    argv = command(port)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the terminal's Ctrl-C reaches the command too: its call
    try:
        try:
            child = await asyncio.create_subprocess_exec(*argv, env=env)
        except OSError as err:
            raise errors.BadInput(f"connect: cannot run {argv[0]}: {err.strerror or err}") from None
        code = await child.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        server.close()
        for websocket in spare:
            await websocket.close()
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    return code if code >= 0 else 128 - code


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, websocket: WebSocket) -> None:
    """Bytes both ways between one local connection and its WebSocket until either side closes; a tunnel closed with
    an error is said in one line."""

    async def to_tunnel() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send(data)

    async def from_tunnel() -> None:
        while (data := await websocket.receive()) is not None:
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(to_tunnel()), asyncio.create_task(from_tunnel())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await websocket.close()
        writer.close()
    failed = next((t.exception() for t in done if not t.cancelled() and t.exception() is not None), None)
    if isinstance(failed, errors.BranchyardError):
        ui.error(str(failed))
    elif failed is not None and not isinstance(failed, (OSError, asyncio.IncompleteReadError)):
        raise failed

