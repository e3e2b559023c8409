"""GET /internal/wake/{project}/{env}: the router's call before it proxies a request to an environment asleep for
want of requests (issue 17; backends/local/wake_route.py builds the route).

Answers 200 once a replica is healthy AND the router serves the woken route, so the held request goes on to it; 503
with a one-line reason when waking failed or took longer than the deployment's health check timeout (the router then
answers its own "unavailable" page; the reason is in `environment.wake_failed` and the server log). Concurrent
requests share one wake (controller/sleep.py). Not behind a user's token: the routes tier sends the home's wake
secret (internal_auth.py), compared in constant time; 403 without it, and nothing else said. Reached on the API's
loopback listener only: the edge publishes `/api`, `/git` and `/webhooks` of the control plane, never `/internal`.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from ... import internal_auth
from ...controller.core import Controller
from ...errors import BranchyardError

log = logging.getLogger("branchyard.api.wake")
WAKE_PATH = "/internal/wake/{project}/{env}"
WAIT_FLOOR = 30.0  # seconds: at least this long, whatever the health check timeout says


def router(ctl: Controller) -> APIRouter:
    """The wake route (its own check: the wake secret; see api/app.py)."""
    r = APIRouter()
    secret: list[str] = []  # read at the first call (the file is made at start, before the router is configured)

    @r.get(WAKE_PATH, include_in_schema=False)
    async def wake(project: str, env: str, request: Request) -> Response:
        if not secret:
            secret.append(internal_auth.wake_secret(ctl.settings.home))
        if not internal_auth.matches(request.headers.get(internal_auth.WAKE_HEADER), secret[0]):
            return Response(status_code=403, headers={"Cache-Control": "no-store"})
        try:
            future = ctl.sleeper.wake(project, env, trigger="request")
            # shielded: a client that leaves (or times out) must not cancel the wake other requests wait for
            detail = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout=_timeout(ctl, project, env))
        except asyncio.TimeoutError:
            return _unavailable(f"{env} is still waking")
        except BranchyardError as err:
            log.warning("wake %s/%s: %s", project, env, err)
            return _unavailable(str(err))
        return Response(f"{detail}\n", status_code=200, media_type="text/plain", headers={"Cache-Control": "no-store"})

    return r


def _timeout(ctl: Controller, project: str, env: str) -> float:
    """The deployment's health check timeout and some (its replicas may take that long to pass), at least WAIT_FLOOR."""
    try:
        limit = ctl.sleeper.health_timeout(project, env)
    except BranchyardError:
        limit = None
    return max(WAIT_FLOOR, limit + 10.0) if limit is not None else WAIT_FLOOR


def _unavailable(reason: str) -> Response:
    line = reason.splitlines()[0][:300] if reason else "not woken"
    return Response(f"{line}\n", status_code=503, media_type="text/plain", headers={"Cache-Control": "no-store"})
