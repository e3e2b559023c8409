"""`run` against a remote control plane: the command runs on the control plane's machine (controller/oneoff.py),
its output streamed as JSON lines, its exit code last."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from branchyard.controller.oneoff import command_environment, execute
from branchyard.errors import BadInput


def where(tmp_path, **variables: str) -> dict:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    return {"cwd": str(tmp_path), "venv": str(venv), "variables": variables}


def test_the_command_environment(tmp_path) -> None:
    w = where(tmp_path, GREETING="hi", PATH="/app/bin")
    env = command_environment(w, {"PATH": "/usr/bin", "HOME": "/root", "BRANCHYARD_GITHUB_TOKEN": "ghp_x"})
    assert env == {"HOME": "/root", "GREETING": "hi", "PATH": f"{w['venv']}/bin:/usr/bin", "VIRTUAL_ENV": w["venv"]}


def collect(stream) -> list[dict]:
    async def drain() -> list[dict]:
        return [json.loads(line) async for line in stream]

    return asyncio.run(drain())


def test_output_streams_and_the_exit_code_comes_last(tmp_path) -> None:
    script = "import os, sys; print('out', os.environ['GREETING'], os.getcwd()); print('é', file=sys.stderr); sys.exit(4)"
    messages = collect(execute(where(tmp_path, GREETING="hi"), [sys.executable, "-c", script]))
    assert messages[-1] == {"exit": 4}
    text = "".join(m["output"] for m in messages[:-1])
    assert f"out hi {tmp_path}\n" in text and "é\n" in text


def test_a_missing_program_is_refused_before_anything_runs(tmp_path) -> None:
    with pytest.raises(BadInput, match="^run: command not found on the control plane's machine: no-such-tool$"):
        execute(where(tmp_path), ["no-such-tool"])


def test_a_client_that_goes_away_kills_the_command(tmp_path) -> None:
    marker = tmp_path / "still-running"
    script = f"import time; print('started', flush=True); time.sleep(3); open({str(marker)!r}, 'w').write('x')"

    async def first_line_then_leave() -> None:
        stream = execute(where(tmp_path), [sys.executable, "-c", script])
        assert json.loads(await stream.__anext__()) == {"output": "started\n"}
        await stream.aclose()  # what Starlette does when the client disconnects

    asyncio.run(first_line_then_leave())
    asyncio.run(asyncio.sleep(4))
    assert not marker.exists()
