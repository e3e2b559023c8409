"""Metrics (issue 16): an environment's series for `branchyard metrics`, and the Prometheus text endpoint."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ... import metrics as mx
from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The metrics routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/metrics")
    def metrics(project: str, env: str, since: str = "1h", who: Actor = allow(Permission.READ)) -> dict:
        return ctl.metrics.series(project, env, mx.parse_since(since))

    # for a Prometheus scraper: `authorization: Bearer <token>` (a viewer's token is enough)
    @r.get("/metrics")
    def prometheus(who: Actor = allow(Permission.READ)) -> Response:
        return Response(content=ctl.metrics.prometheus(), media_type=CONTENT_TYPE_LATEST)

    return r
