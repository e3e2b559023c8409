"""The routes a Kubernetes environment's pods call on the control plane (issue 19, the "slug" model), at
BRANCHYARD_KUBE_CONTROL_URL:

- `GET /internal/releases/{deployment_id}.tar.gz`: an app pod's init container fetches the release archive the
  control plane built once (backends/kubernetes/workloads.py, FETCH_RELEASE). It sends the release's token, which
  lets it fetch that one archive and nothing else; it checks the archive against the digest in its spec itself.
- `POST /internal/backups/{project}/{environment}`: the environment's daily backup CronJob uploads a
  `pg_dump --format=custom` file (backends/kubernetes/data_services.py). It sends the environment's backup token,
  which lets it add a backup of that one environment and nothing else (not read, list or restore one). The dump is
  recorded as a `scheduled` backup, so `backup list/restore` find it as they find local ones.
- `POST /internal/transfers/{id}` and `GET /internal/transfers/{id}`: a data job (backends/kubernetes/data_jobs.py)
  uploads the dump it made, or downloads the dump it is to restore, for one open transfer (transfers.py). It sends
  that transfer's one-time token, which opens that one file in that one direction while the transfer is open.

Not behind a user's token: no user is there, and a pod must not hold one (a user's token opens every route its
role allows). Each token is derived from the home's cluster key and what it is for (internal_auth.py), so the
control plane keeps no token rows and a token of one release, environment or kind is never one of another. A wrong
or missing token gets 403 with an empty body, before anything is looked up: an unknown id answers the same 403, so
nobody can probe which deployments or environments exist. (A transfer's token is random, not derived: a transfer
is short-lived and held in memory, transfers.py.)
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from ... import internal_auth
from ...build import archive
from ...controller.core import Controller
from ...data.dumps import write_dump
from ...errors import BadInput, NotFound, PayloadTooLarge
from ...store import models as m
from ...transfers import DOWNLOAD, UPLOAD
from ..guard import BACKUP_MAX_BODY, bearer

RELEASE_PATH = "/internal/releases/{deployment_id}.tar.gz"
BACKUP_PATH = "/internal/backups/{project}/{environment}"
TRANSFER_PATH = "/internal/transfers/{transfer_id}"
# Uploads are written in threads of their own: every environment's job starts at the same hour, and a thread waits
# on the network for as long as its upload lasts; in FastAPI's shared pool they would starve the API's other routes.
UPLOADS_AT_ONCE = 8  # more wait their turn (their bodies unread meanwhile)
STALL_SECONDS = 300.0  # an upload that sends nothing for this long is dropped (the thread must not wait forever)
NO_STORE = {"Cache-Control": "no-store"}
DIGEST_HEADER = "X-Branchyard-Sha256"  # the archive's digest as recorded when packed (the pod checks its spec's own)


def router(ctl: Controller) -> APIRouter:
    """The release fetch and backup upload routes (their own check: the tokens above; see api/app.py)."""
    r = APIRouter()
    uploads = ThreadPoolExecutor(max_workers=UPLOADS_AT_ONCE, thread_name_prefix="backup-upload")  # threads on use

    @r.get(RELEASE_PATH, include_in_schema=False)
    def release(deployment_id: str, request: Request) -> Response:
        if not _allowed(request, lambda: internal_auth.release_token(ctl.settings.home, deployment_id)):
            return Response(status_code=403, headers=NO_STORE)
        path, found = _archive(ctl, deployment_id)
        digest = archive.recorded_sha256(path)
        headers = NO_STORE | ({DIGEST_HEADER: digest} if digest else {})
        return FileResponse(path, stat_result=found, media_type="application/gzip", headers=headers)

    @r.post(BACKUP_PATH, include_in_schema=False)
    async def backup(project: str, environment: str, request: Request) -> Response:
        if not _allowed(request, lambda: internal_auth.backup_token(ctl.settings.home, project, environment)):
            return Response(status_code=403, headers=NO_STORE)
        receive = functools.partial(ctl.backups.receive, project, environment, _dump_body(request), kind="scheduled")
        done = await asyncio.get_running_loop().run_in_executor(uploads, receive)
        return JSONResponse(done, status_code=201, headers=NO_STORE)

    @r.post(TRANSFER_PATH, include_in_schema=False)
    async def upload(transfer_id: str, request: Request) -> Response:
        transfers = ctl.transfers
        found = transfers.find(transfer_id, UPLOAD, bearer(request.headers.get("authorization"))) if transfers else None
        if found is None:
            return Response(status_code=403, headers=NO_STORE)
        receive = functools.partial(_receive_transfer, found.path, _dump_body(request))
        sha256, size = await asyncio.get_running_loop().run_in_executor(uploads, receive)
        return JSONResponse({"sha256": sha256, "size": size}, status_code=201, headers=NO_STORE)

    @r.get(TRANSFER_PATH, include_in_schema=False)
    def download(transfer_id: str, request: Request) -> Response:
        transfers = ctl.transfers
        found = transfers.find(transfer_id, DOWNLOAD, bearer(request.headers.get("authorization"))) if transfers else None
        if found is None:
            return Response(status_code=403, headers=NO_STORE)
        try:
            stat_result = found.path.stat()
        except OSError:
            raise NotFound(f"transfer {transfer_id}: its file is gone") from None
        return FileResponse(found.path, stat_result=stat_result, media_type="application/octet-stream",
                            headers=NO_STORE)

    return r


def _dump_body(request: Request) -> Iterator[bytes]:
    """An uploaded dump's body for a worker thread, PayloadTooLarge past BACKUP_MAX_BODY (at once when declared so)."""
    limit = BACKUP_MAX_BODY
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    return _capped(_pulled(request.stream(), asyncio.get_running_loop()), limit)


def _receive_transfer(path: Path, body: Iterator[bytes]) -> tuple[str, int]:
    """A data job's dump, written whole to a partial file then renamed into place: its owner (waiting for the job)
    finds either the complete file or none. A second upload to the same transfer is refused (the file exists)."""
    partial = path.with_name(f".{path.name}.partial")
    if path.exists():
        raise BadInput(f"transfer {path.name}: already received")
    try:
        done = write_dump(partial, body)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return done


def _allowed(request: Request, expected: Callable[[], str]) -> bool:
    """The request's Bearer token is the expected one (constant time); a subject no token is made for never is."""
    try:
        token = expected()
    except ValueError:  # a NUL byte in the path: no token exists for it
        return False
    return internal_auth.matches(bearer(request.headers.get("authorization")), token)


def _archive(ctl: Controller, deployment_id: str) -> tuple[Path, os.stat_result]:
    """The deployment's archive and its stat; NotFound for an unknown deployment or one without an archive file."""
    with ctl.store.session() as s:
        deployment = s.get(m.Deployment, deployment_id)  # the exact id: a token is for one id, never a prefix
        release_dir = deployment.release_dir if deployment is not None else None
    if release_dir is None:
        raise NotFound(f"no release archive for deployment {deployment_id!r}")
    path = archive.archive_path(release_dir)
    try:
        found = path.stat()
    except OSError:
        found = None
    if found is None or not stat.S_ISREG(found.st_mode):
        raise NotFound(f"no release archive for deployment {deployment_id!r}")
    return path, found


def _pulled(stream: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The request body's chunks for a worker thread: each one read on the event loop that owns the request."""

    async def following() -> bytes:
        return await stream.__anext__()

    while True:
        future = asyncio.run_coroutine_threadsafe(following(), loop)
        try:
            chunk = future.result(timeout=STALL_SECONDS)
        except StopAsyncIteration:
            return
        except TimeoutError:
            future.cancel()
            raise BadInput(f"the upload sent nothing for {STALL_SECONDS:.0f} s") from None
        yield chunk


def _capped(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The chunks, PayloadTooLarge once they pass `limit` bytes (a body without a Content-Length too)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(_too_large(limit))
        yield chunk


def _too_large(limit: int) -> str:
    return f"backup upload over the limit of {limit} bytes"
