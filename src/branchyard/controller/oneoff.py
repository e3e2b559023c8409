"""`branchyard run -e ENV -- CMD`: where a one-off command runs — the environment's current release (its code as
the working directory, its virtualenv first on PATH) with its resolved variables.

On the local backend that is a directory of the control plane's machine: the CLI runs the command there itself, or
(against a control plane elsewhere) the control plane runs it and streams its output (`execute`). On a cluster
backend (Kubernetes) it is a Job in the environment's namespace, from the current deployment's release, whose output
the control plane streams the same way (`stream_in_cluster`): the release is no directory the CLI could use, and the
environment's database and Redis are reachable only from inside its namespace."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import names
from ..backends.ports import DesiredEnvironment
from ..build import release
from ..errors import BadInput, BranchyardError, NotFound
from ..store.db import Store
from .env_vars import EnvVariables
from .replicas import PORT_PLACEHOLDER
from .snapshot import web_of

if TYPE_CHECKING:
    from .cluster_rollout import ClusterRollouts

log = logging.getLogger("branchyard.run")
IN_CLUSTER = "cluster"  # `context()["where"]` on a cluster backend: the CLI then asks for `exec`
KEEPALIVE_SECONDS = 15.0  # an empty line after this long without output (the CLI skips empty lines)


@dataclass(frozen=True)
class ClusterRun:
    """One command to run as a Job of the environment's namespace: the current deployment as the cluster runs it,
    the argv (exactly), and the run's id (its Job is `run-<id>`)."""

    desired: DesiredEnvironment
    argv: tuple[str, ...]
    run_id: str


class OneOffs:
    def __init__(self, store: Store, *, variables: EnvVariables, cluster: ClusterRollouts | None = None) -> None:
        self.store = store
        self.variables = variables
        self.cluster = cluster  # a cluster backend: commands run as Jobs of its namespaces

    @property
    def in_cluster(self) -> bool:
        """Commands run in the cluster (a Job each), never on the control plane's machine."""
        return self.cluster is not None

    def context(self, project: str, env_name: str) -> dict[str, Any]:
        """{cwd, venv, variables (revealed, without PORT)} for a command run in env_name's current release; on a
        cluster backend {where: "cluster", deployment_id} only (the command runs there: `exec`; nothing revealed).

        NotFound, naming the push that makes one, while the environment has no deployment with a retained release."""
        if self.cluster is not None:
            return {"where": IN_CLUSTER, "deployment_id": self._current_deployment(project, env_name)}
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            current = self.store.current_deployment(s, env)
            branch, dep_id = env.branch, current.id if current is not None else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
            web = web_of(current.config_json) if current is not None else None
        meta = release.read_release_meta(release_dir) if release_dir is not None else None
        venv = Path(str(meta.get("venv"))) if meta and meta.get("venv") else None
        if meta is None or web is None or venv is None or not (venv / "bin").is_dir():
            raise _no_deployment(env_name, branch)
        assert release_dir is not None
        root = web.root_dir or "."
        cwd = release_dir if root in ("", ".") else names.safe_join(release_dir, root)
        values = self.variables.effective(project, env_name, reveal=True)["variables"]
        return {"cwd": str(cwd), "venv": str(venv), "deployment_id": dep_id,
                "variables": {k: v for k, v in values.items() if PORT_PLACEHOLDER not in v}}

    # --- on a cluster backend -----------------------------------------------------------------------

    def cluster_run(self, project: str, env_name: str, command: Sequence[str]) -> ClusterRun:
        """The command as a Job of env_name's namespace will run it: the current deployment's release, variables
        snapshot and size. NotFound as in `context` while there is no deployment."""
        if self.cluster is None:
            raise BadInput("run: this control plane runs commands on its own machine, not in a cluster")
        dep_id = self._current_deployment(project, env_name)
        desired = self.cluster.desired(project, env_name, dep_id, new_database=False)
        return ClusterRun(desired=desired, argv=tuple(command), run_id=secrets.token_hex(4))

    def stream_in_cluster(self, run: ClusterRun) -> AsyncIterator[bytes]:
        """Run `run` in the cluster on a thread of its own; its output as JSON lines {"output": text} as it comes, last
        {"exit": code}, as `execute` streams a local one. Stopping the iteration (the client went away) deletes the
        Job, and with it the command's pod."""
        assert self.cluster is not None
        environments, project, env_name = self.cluster.environments, run.desired.project, run.desired.config.name
        return kept_alive(_stream_from_thread(
            lambda out: environments.run_one_off(run.desired, run.argv, run_id=run.run_id, out=out),
            stop=lambda: environments.stop_one_off(project, env_name, run.run_id), name=f"run-{run.run_id}"))

    def _current_deployment(self, project: str, env_name: str) -> str:
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            current = self.store.current_deployment(s, env)
            if current is None or not current.release_dir:
                raise _no_deployment(env_name, env.branch)
            return current.id


def _no_deployment(env_name: str, branch: str | None) -> NotFound:
    push = f"`git push branchyard {branch}`" if branch else f"`branchyard up -e {env_name}`"
    return NotFound(f"run: environment {env_name!r} has no deployment yet; commands run in its current release "
                    f"(deploy one first: {push})")


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
    return kept_alive(_stream([program, *command[1:]], where["cwd"], env))


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


async def kept_alive(lines: AsyncIterator[bytes], every: float = KEEPALIVE_SECONDS) -> AsyncIterator[bytes]:
    """`lines`, with an empty line after each `every` seconds without one: a quiet command (a long migration) must not
    be cut by an idle timeout between the control plane and the CLI (an Ingress's, a load balancer's). Closing this
    closes `lines` (the command is stopped as when the client goes away)."""
    pending = asyncio.ensure_future(anext(lines))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield b"\n"
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
            pending = asyncio.ensure_future(anext(lines))
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await lines.aclose()


async def _stream_from_thread(work: Callable[[Callable[[str], None]], int], *, stop: Callable[[], None],
                              name: str) -> AsyncIterator[bytes]:
    """`work(out)` on a thread of its own (it blocks: the event loop must not), what it gives `out` as JSON lines
    {"output": text} as it comes, then {"exit": its result} (a BranchyardError: its message, exit 1). Stopped early
    (the client went away): `stop()` on another thread, which ends `work` soon after."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def put(item: bytes | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed (the server stopping): nobody left to tell
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def out(text: str) -> None:
        put(_json_line({"output": text}))

    def run() -> None:
        code = 1
        try:
            code = work(out)
        except BranchyardError as err:
            out(f"error: {err}\n")
        except Exception:
            log.exception("%s failed", name)
            out(f"error: {name} failed on the control plane (its log says why)\n")
        finally:
            put(_json_line({"exit": code}))
            put(None)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        if worker.is_alive():  # not awaited: a cancelled request's awaits would be cancelled at once
            threading.Thread(target=_logged(stop, f"stopping {name}"), name=f"stop-{name}", daemon=True).start()


def _logged(action: Callable[[], None], what: str) -> Callable[[], None]:
    def run() -> None:
        try:
            action()
        except BranchyardError as err:
            log.warning("%s: %s", what, err)

    return run


def _json_line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode()
