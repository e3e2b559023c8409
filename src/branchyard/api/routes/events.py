"""GET /api/events: the audit log, optionally for one project or environment."""

from __future__ import annotations

from fastapi import APIRouter

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The audit-log route."""
    r = APIRouter()

    @r.get("/api/events")
    def events(project: str | None = None, environment: str | None = None, limit: int = 100,
               who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.environments.events(project, environment, limit)

    return r
