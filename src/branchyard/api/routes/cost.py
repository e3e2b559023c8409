"""Cost (issue 17): each environment's projected monthly cost and what it cost so far."""

from __future__ import annotations

from fastapi import APIRouter

from ...access import Actor, Permission
from ...controller.core import Controller
from ...names import environment_name
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The cost route."""
    r = APIRouter()

    @r.get("/api/projects/{project}/cost")
    def project_cost(project: str, environment: str | None = None, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.costs.report(project, environment_name(environment) if environment else None)

    return r
