"""POST /webhooks/github: GitHub deliveries, verified by their HMAC signature rather than the API token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ...controller.core import Controller
from ...triggers.github_webhook import check_size


def router(ctl: Controller) -> APIRouter:
    """The GitHub webhook route, handing each delivery to `ctl.webhooks`."""
    r = APIRouter()

    @r.post("/webhooks/github")
    async def github_webhook(request: Request) -> JSONResponse:
        """GitHub deliveries. Not behind the API token (GitHub cannot send it): the HMAC signature protects it."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit():
            check_size(int(length))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_size(size)  # a chunked body is cut off at the limit, never read whole
            chunks.append(chunk)
        status, answer = await run_in_threadpool(
            ctl.webhooks.receive, event=request.headers.get("x-github-event"),
            delivery=request.headers.get("x-github-delivery"), signature=request.headers.get("x-hub-signature-256"),
            content_type=request.headers.get("content-type"), body=b"".join(chunks),
        )
        return JSONResponse(answer, status_code=status)

    return r
