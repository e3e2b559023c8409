"""git over HTTP(S): `/git/{project}.git/…`, git's smart HTTP protocol served by the real `git http-backend` (CGI).

An ASGI app of its own rather than a FastAPI route: request and response bodies are streamed between the client
and the CGI process (a pack is never held in memory), and nothing else reads the request body meanwhile.
Authentication is the API token as the HTTP Basic password (any user name); without it, a 401 with
`WWW-Authenticate: Basic` makes git ask its credential helpers, then the user. The project's bare repository and
its pre-receive hook are the ones a local `git push` uses: the hook's deploy lines reach the pusher as `remote:`.

Who may: `read` to fetch or clone (git-upload-pack), `deploy` to push (git-receive-pack), so a viewer clones but
gets a 403 before sending any pack. Which environment a push deploys, and the remote's other rules, are decided
per ref by the hook's call to the control plane (controller/push_rules.py), as the pushing user: the request's
token is handed to the hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from fastapi.concurrency import run_in_threadpool

from ..access import Permission, require
from ..errors import BranchyardError, Forbidden, TooManyRequests, Unauthorized
from ..names import scrub_credentials
from .guard import Gate, Message, Receive, Scope, Send, basic_password, client_address, error_response

log = logging.getLogger("branchyard.git")

SERVICES = ("git-upload-pack", "git-receive-pack")
# The permission each service needs (unscoped: which environment a pushed ref deploys is the hook's to decide).
NEEDS = {"git-upload-pack": Permission.READ, "git-receive-pack": Permission.DEPLOY}
CHUNK = 65536
REALM = 'Basic realm="branchyard"'
# What the CGI process inherits: what git and the hook need, nothing of the control plane's own secrets.
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "BRANCHYARD_HOME")


def smart_request(method: str, rest: str, query: str) -> str | None:
    """The service a smart-HTTP request is for, or None for anything else (the dumb protocol is not served)."""
    if method in ("GET", "HEAD") and rest == "info/refs":
        match = re.fullmatch(r"(?:.*&)?service=(git-upload-pack|git-receive-pack)(?:&.*)?", query)
        return match.group(1) if match else None
    if method == "POST" and rest in SERVICES:
        return rest
    return None


def cgi_environment(*, repo: Path, rest: str, method: str, query: str, headers: dict[str, str], address: str,
                    token: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The CGI variables `git http-backend` reads for one request (pure)."""
    base = dict(os.environ) if base is None else base
    env = {k: base[k] for k in _KEPT_ENV if k in base}
    if token:
        # The pre-receive hook calls the control plane with BRANCHYARD_TOKEN when it is set, else with the machine's
        # own (admin) token from server.json: without the pusher's token here, every push over HTTP would be the
        # bootstrap admin's, past the rules that depend on who pushes. Only this request's token, never our own.
        env["BRANCHYARD_TOKEN"] = token
    env |= {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GIT_PROJECT_ROOT": str(repo.parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{repo.name}/{rest}",
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "REMOTE_USER": "branchyard",  # receive-pack is only served to an authenticated user
        "REMOTE_ADDR": address,
    }
    for header, variable in (("content-type", "CONTENT_TYPE"), ("content-length", "CONTENT_LENGTH"),
                             ("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "HTTP_GIT_PROTOCOL")):
        if headers.get(header):
            env[variable] = headers[header]
    return env


def parse_cgi_headers(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """A CGI header block → (HTTP status, headers); `Status:` gives the status (200 without it)."""
    status, headers = 200, []
    for line in raw.decode("latin-1").splitlines():
        if not line.strip():
            continue
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip().lower().encode(), value.strip().encode("latin-1")))
    return status, headers


class GitHttp:
    """The ASGI app behind the `/git/{project}.git/{rest}` route."""

    def __init__(self, gate: Gate, repo_of: Callable[[str], Path]) -> None:
        self.gate = gate
        self.repo_of = repo_of  # project → its bare repository; NotFound for an unknown project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        address = client_address(scope)
        token = basic_password(headers.get("authorization"))
        try:
            actor = self.gate.check(token, address)
        except TooManyRequests as err:
            await _answer(send, err, {"retry-after": str(err.retry_after)})
            return
        except Unauthorized as err:
            await _answer(send, err, {"www-authenticate": REALM})
            return
        project, rest = scope["path_params"]["project"], scope["path_params"]["rest"]
        method, query = scope["method"], scope.get("query_string", b"").decode("latin-1")
        try:
            repo = await run_in_threadpool(self.repo_of, project)
        except BranchyardError as err:
            await _answer(send, err)
            return
        service = smart_request(method, rest, query)
        if service is None:
            await _answer(send, _NotServed(f"git: only git's smart HTTP protocol is served here ({method} {rest})"))
            return
        try:
            require(actor, NEEDS[service], what=f"git: {'push to' if service == 'git-receive-pack' else 'fetch'} {project}")
        except Forbidden as err:
            await _answer(send, err)
            return
        env = cgi_environment(repo=repo, rest=rest, method=method, query=query, headers=headers, address=address,
                              token=token)
        try:
            await _run_backend(env, receive, send)
        except BackendGone as err:
            await _answer(send, err)


class _NotServed(BranchyardError):
    http_status = 404


async def _answer(send: Send, err: BranchyardError, headers: dict[str, str] | None = None) -> None:
    start, body = error_response(err.http_status, str(err), type(err).__name__.lstrip("_"), headers)
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _run_backend(env: dict[str, str], receive: Receive, send: Send) -> None:
    """Run `git http-backend`: the request body streamed to its stdin, its output streamed back as the response."""
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    feeding = asyncio.create_task(_feed(receive, proc.stdin))
    logging_task = asyncio.create_task(_log_stderr(proc.stderr))
    started = False
    try:
        head = await _read_headers(proc.stdout)
        status, headers = parse_cgi_headers(head)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        started = True
        while chunk := await proc.stdout.read(CHUNK):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        await proc.wait()
    except BaseException as err:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        if not started or isinstance(err, asyncio.CancelledError):
            raise
        log.warning("git over HTTP: the response was cut off: %s", type(err).__name__)
    finally:
        feeding.cancel()
        with contextlib.suppress(BaseException):
            await feeding
        await proc.wait()
        with contextlib.suppress(BaseException):
            await logging_task


async def _read_headers(stdout: asyncio.StreamReader) -> bytes:
    """The CGI header block (up to the blank line)."""
    lines = []
    while True:
        line = await stdout.readline()
        if not line:
            raise BackendGone("git http-backend ended without an answer")
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)
        lines.append(line)


class BackendGone(BranchyardError):
    http_status = 502


async def _feed(receive: Receive, stdin: asyncio.StreamWriter) -> None:
    """Copy the request body to the backend's stdin as it arrives, then close it."""
    try:
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                break
            if body := message.get("body"):
                stdin.write(body)
                await stdin.drain()
            if not message.get("more_body"):
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(Exception):
            stdin.close()


async def _log_stderr(stderr: asyncio.StreamReader) -> None:
    while line := await stderr.readline():
        log.warning("git http-backend: %s", scrub_credentials(line.decode(errors="replace").rstrip()))
