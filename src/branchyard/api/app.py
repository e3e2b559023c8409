"""The control plane's HTTP API (bearer tokens of users). Thin: every route calls the controller.

The routes live in `api/routes/`, one module per resource, each built by `router(ctl)`. Every route of a resource
router declares the permission it needs (`who: Actor = allow(Permission.X)`, api/permissions.py), which
authenticates the request and checks the user's role; `create_app` refuses to build an app with a resource route
that declares none, so a route added later cannot forget it. Only the three routers below that say why (and
FastAPI's /openapi.json) answer without a token. tests/unit/test_api_auth.py and test_permission_matrix.py ask
every route.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from .. import __version__, internal_auth, names
from ..controller.core import Controller
from ..dashboard.app import Dashboard
from ..dashboard.session import KEY_FILE
from ..errors import BranchyardError, TooManyRequests
from .git_http import GitHttp
from .guard import BodyLimit, Gate, Throttle
from .permissions import Gatekeeper, permission_of
from .routes import (
    alerts,
    cost,
    cron,
    data,
    deployments,
    domains,
    environments,
    events,
    git,
    health,
    metrics,
    previews,
    projects,
    promotions,
    releases,
    tls,
    tunnel,
    users,
    variables,
    wake,
    webhooks,
)

# Order matters only between routes whose paths can match one URL (the first answers a method neither has:
# 405 and its Allow header); such routes share a module, which keeps their order.
RESOURCES = (projects, previews, environments, deployments, variables, data, git, promotions, events, domains, users,
             metrics, alerts, cost, cron, tunnel)


def create_app(controller: Controller, *, gatekeeper: Gatekeeper | None = None,
               throttle: Throttle | None = None, dashboard: bool = True,
               dashboard_key: Callable[[], str] | None = None) -> FastAPI:
    """The API app: every route behind a user's token and a permission, except the health check, GitHub's webhook
    and the TLS ask; git over HTTP at /git/{project}.git (the token as the Basic password); bodies over the limit
    get 413, wrong-token bursts 429. `gatekeeper` defaults to the controller's users and environments. With
    `dashboard`, the web dashboard's pages at `/` (dashboard/app.py: a client of these same routes, in-process); its
    CSRF key is the home's `dashboard.key` unless `dashboard_key` gives one."""
    app = FastAPI(title="branchyard", version=__version__, docs_url=None, redoc_url=None)
    if gatekeeper is None:
        gatekeeper = Gatekeeper(Gate(controller.users.authenticate, throttle), controller.environments.protected)
    app.state.gatekeeper = gatekeeper

    @app.exception_handler(BranchyardError)
    async def _error(_request: Request, err: BranchyardError) -> JSONResponse:
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, TooManyRequests) else None
        return JSONResponse({"detail": str(err), "error": type(err).__name__}, status_code=err.http_status,
                            headers=headers)

    def repo_of(project: str) -> Path:
        return Path(controller.projects.info(names.project_name(project))["repo_path"])

    # open: `branchyard server status` asks whether the control plane answers, token or not
    app.include_router(health.router())
    # open: GitHub cannot send the token; the route verifies each delivery's HMAC signature instead
    app.include_router(webhooks.router(controller))
    # open: Caddy asks before ordering a certificate and cannot send the token; it answers yes/no and nothing else
    app.include_router(tls.router(controller))
    # the routes tier's wake call (issue 17): no user's token but the home's wake secret, checked inside
    app.include_router(wake.router(controller))
    # a Kubernetes environment's pods (issue 19): no user's token but a release's fetch token or the environment's
    # backup upload token, derived from the home's cluster key and checked inside
    app.include_router(releases.router(controller))
    for resource in RESOURCES:
        router = resource.router(controller)
        _check_declared(router)
        app.include_router(router)
    # checked inside (Basic auth, streamed bodies): an ASGI app of its own, see api/git_http.py
    git = Route("/git/{project}.git/{rest:path}", GitHttp(gatekeeper.gate, repo_of), methods=["GET", "POST"],
                include_in_schema=False)
    git.methods.discard("HEAD")  # git never sends one
    app.router.routes.append(git)
    if dashboard:
        # after every API route: the pages call them, in-process, with the signed-in user's token
        pages = Dashboard(app, list(app.routes), csrf_key=dashboard_key or (
            lambda: internal_auth.home_secret(controller.settings.home, KEY_FILE)))
        app.router.routes.extend(pages.routes())
    app.add_middleware(BodyLimit)
    return app


def _check_declared(router: fastapi.APIRouter) -> None:
    """Every route of a resource router declares its permission (a route that forgot would answer anyone): its
    WebSocket routes too (connect's tunnel), whose handshake passes the same check."""
    for route in router.routes:
        if isinstance(route, fastapi.routing.APIWebSocketRoute) and permission_of(route.dependant.dependencies) is None:
            raise RuntimeError(f"WebSocket {route.path} declares no permission: add `who: Actor = allow(Permission.X)` "
                               "(api/permissions.py)")
        if isinstance(route, fastapi.routing.APIRoute) and permission_of(route.dependant.dependencies) is None:
            raise RuntimeError(f"{sorted(route.methods)} {route.path} declares no permission: add "
                               "`who: Actor = allow(Permission.X)` (api/permissions.py)")
