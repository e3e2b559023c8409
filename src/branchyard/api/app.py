"""The control plane's HTTP API (loopback, bearer token). Thin: every route calls the controller.

The routes live in `api/routes/`, one module per resource, each built by `router(ctl)`. Every resource
router is included behind the token check here, in one place, so a route added to one of them cannot
forget it; only the three routers below that say why (and FastAPI's /openapi.json) answer without it.
tests/unit/test_api_auth.py asks every route.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from .. import __version__, names
from ..controller.core import Controller
from ..errors import BranchyardError, TooManyRequests
from .git_http import GitHttp
from .guard import BodyLimit, Gate, Throttle, bearer, client_address
from .routes import data, deployments, domains, environments, events, git, health, previews, projects, promotions, tls, variables, webhooks

# Order matters only between routes whose paths can match one URL (the first answers a method neither has:
# 405 and its Allow header); such routes share a module, which keeps their order.
RESOURCES = (projects, previews, environments, deployments, variables, data, git, promotions, events, domains)


def create_app(controller: Controller, token: str, *, throttle: Throttle | None = None) -> FastAPI:
    """The API app: every route behind `token` except the health check and GitHub's webhook; git over HTTP at
    /git/{project}.git (the token as the Basic password); bodies over the limit get 413, wrong-token bursts 429."""
    app = FastAPI(title="branchyard", version=__version__, docs_url=None, redoc_url=None)
    gate = Gate(token, throttle)

    @app.exception_handler(BranchyardError)
    async def _error(_request: Request, err: BranchyardError) -> JSONResponse:
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, TooManyRequests) else None
        return JSONResponse({"detail": str(err), "error": type(err).__name__}, status_code=err.http_status,
                            headers=headers)

    def auth(request: Request, authorization: str | None = Header(default=None)) -> None:
        gate.check(bearer(authorization), client_address(request.scope))

    def repo_of(project: str) -> Path:
        return Path(controller.projects.info(names.project_name(project))["repo_path"])

    # open: `branchyard server status` asks whether the control plane answers, token or not
    app.include_router(health.router())
    # open: GitHub cannot send the token; the route verifies each delivery's HMAC signature instead
    app.include_router(webhooks.router(controller))
    # open: Caddy asks before ordering a certificate and cannot send the token; it answers yes/no and nothing else
    app.include_router(tls.router(controller))
    checked = [Depends(auth)]
    for resource in RESOURCES:
        app.include_router(resource.router(controller), dependencies=checked)
    # checked inside (Basic auth, streamed bodies): an ASGI app of its own, see api/git_http.py
    git = Route("/git/{project}.git/{rest:path}", GitHttp(gate, repo_of), methods=["GET", "POST"], include_in_schema=False)
    git.methods.discard("HEAD")  # git never sends one
    app.router.routes.append(git)
    app.add_middleware(BodyLimit)
    return app
