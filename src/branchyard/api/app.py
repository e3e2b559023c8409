"""The control plane's HTTP API (loopback, bearer token). Thin: every route calls the controller.

The routes live in `api/routes/`, one module per resource, each built by `router(ctl)`. Every resource
router is included behind the token check here, in one place, so a route added to one of them cannot
forget it; only the three routers below that say why (and FastAPI's /openapi.json) answer without it.
tests/unit/test_api_auth.py asks every route.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..controller.core import Controller
from ..errors import BranchyardError, Unauthorized
from .routes import data, deployments, domains, environments, events, git, health, previews, projects, promotions, tls, variables, webhooks

# Order matters only between routes whose paths can match one URL (the first answers a method neither has:
# 405 and its Allow header); such routes share a module, which keeps their order.
RESOURCES = (projects, previews, environments, deployments, variables, data, git, promotions, events, domains)


def create_app(controller: Controller, token: str) -> FastAPI:
    """The API app: every route behind `token` except the health check and GitHub's webhook."""
    app = FastAPI(title="branchyard", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(BranchyardError)
    async def _error(_request: Request, err: BranchyardError) -> JSONResponse:
        return JSONResponse({"detail": str(err), "error": type(err).__name__}, status_code=err.http_status)

    def auth(authorization: str | None = Header(default=None)) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("missing or wrong API token")

    # open: `branchyard server status` asks whether the control plane answers, token or not
    app.include_router(health.router())
    # open: GitHub cannot send the token; the route verifies each delivery's HMAC signature instead
    app.include_router(webhooks.router(controller))
    # open: Caddy asks before ordering a certificate and cannot send the token; it answers yes/no and nothing else
    app.include_router(tls.router(controller))
    checked = [Depends(auth)]
    for resource in RESOURCES:
        app.include_router(resource.router(controller), dependencies=checked)
    return app
