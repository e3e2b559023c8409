"""`branchyard run -e ENV -- CMD`: where a one-off command runs — the environment's current release (its code as
the working directory, its virtualenv first on PATH) with its resolved variables."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from .. import names
from ..build import release
from ..errors import BadInput, NotFound
from ..store.db import Store
from .env_vars import EnvVariables
from .replicas import PORT_PLACEHOLDER
from .snapshot import web_of


class OneOffs:
    def __init__(self, store: Store, *, variables: EnvVariables) -> None:
        self.store = store
        self.variables = variables

    def context(self, project: str, env_name: str) -> dict[str, Any]:
        """{cwd, venv, variables (revealed, without PORT)} for a command run in env_name's current release.

        NotFound, naming the push that makes one, while the environment has no deployment with a retained release."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            current = self.store.current_deployment(s, env)
            branch, dep_id = env.branch, current.id if current is not None else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
            web = web_of(current.config_json) if current is not None else None
        meta = release.read_release_meta(release_dir) if release_dir is not None else None
        venv = Path(str(meta.get("venv"))) if meta and meta.get("venv") else None
        if meta is None or web is None or venv is None or not (venv / "bin").is_dir():
            push = f"`git push branchyard {branch}`" if branch else f"`branchyard up -e {env_name}`"
            raise NotFound(f"run: environment {env_name!r} has no deployment yet; commands run in its current release "
                           f"(deploy one first: {push})")
        assert release_dir is not None
        root = web.root_dir or "."
        cwd = release_dir if root in ("", ".") else names.safe_join(release_dir, root)
        values = self.variables.effective(project, env_name, reveal=True)["variables"]
        return {"cwd": str(cwd), "venv": str(venv), "deployment_id": dep_id,
                "variables": {k: v for k, v in values.items() if PORT_PLACEHOLDER not in v}}


_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")  # of the control plane's own environment


def command_environment(where: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
    """What a command `run` on the control plane's machine gets: a few of the machine's variables, the
    environment's (revealed), its virtualenv first on PATH (pure)."""
    venv = where["venv"]
    path = f"{venv}/bin" + (f":{base['PATH']}" if base.get("PATH") else "")
    kept = {k: base[k] for k in _KEPT_ENV if k in base}
    return kept | where["variables"] | {"PATH": path, "VIRTUAL_ENV": venv}


def execute(where: dict[str, Any], command: Sequence[str]) -> AsyncIterator[bytes]:
    """Run `command` in `where` (a `context()`), stdin closed; its output (stdout and stderr merged) as JSON lines
    {"output": text}, last {"exit": code}. BadInput at once when the program is not there. Stopping the iteration
    (the client went away) kills the command's process group."""
    env = command_environment(where, dict(os.environ))
    program = command[0] if "/" in command[0] else shutil.which(command[0], path=env["PATH"])
    if program is None:
        raise BadInput(f"run: command not found on the control plane's machine: {command[0]}")
    return _stream([program, *command[1:]], where["cwd"], env)


async def _stream(argv: list[str], cwd: str, env: dict[str, str]) -> AsyncIterator[bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may straddle two reads
    try:
        while chunk := await proc.stdout.read(65536):
            if text := decoder.decode(chunk):
                yield (json.dumps({"output": text}) + "\n").encode()
        if tail := decoder.decode(b"", final=True):
            yield (json.dumps({"output": tail}) + "\n").encode()
        code = await proc.wait()
        yield (json.dumps({"exit": code if code >= 0 else 128 - code}) + "\n").encode()  # killed by signal N: 128+N
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
