"""`run`'s streamed output keeps the connection alive (controller/oneoff.py `kept_alive`): an empty line while the
command is quiet — which the CLI skips — the command's lines as they come, and closing the stream closes the command's."""

from __future__ import annotations

import asyncio

from branchyard.controller.oneoff import kept_alive


def test_a_quiet_command_gets_empty_lines_until_it_speaks_and_its_lines_pass_unchanged():
    async def scenario() -> list[bytes]:
        spoke = asyncio.Event()

        async def command():
            yield b'{"output": "starting"}\n'
            await spoke.wait()  # quiet until the test has seen a keep-alive line
            yield b'{"exit": 0}\n'

        seen = []
        async for line in kept_alive(command(), every=0.01):
            seen.append(line)
            if line == b"\n":
                spoke.set()
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == b'{"output": "starting"}\n' and seen[-1] == b'{"exit": 0}\n'
    assert set(seen[1:-1]) == {b"\n"} and len(seen) >= 3


def test_closing_the_stream_closes_the_command_while_it_waits():
    async def scenario() -> bool:
        closed = asyncio.Event()

        async def command():
            try:
                yield b'{"output": "x"}\n'
                await asyncio.Event().wait()  # never speaks again
            finally:
                closed.set()

        stream = kept_alive(command(), every=0.01)
        assert await anext(stream) == b'{"output": "x"}\n'
        assert await anext(stream) == b"\n"
        await stream.aclose()  # the client went away
        return closed.is_set()

    assert asyncio.run(scenario())
