"""Alerts of a project's environments (issue 16): firing and recent alerts, and the effective rules."""

from __future__ import annotations

from fastapi import APIRouter

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The alert routes (read only: rules live in branchyard.toml)."""
    r = APIRouter()

    @r.get("/api/projects/{project}/alerts")
    def alerts(project: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.alerts.list(project)

    @r.get("/api/projects/{project}/environments/{env}/alerts")
    def environment_alerts(project: str, env: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.alerts.list(project, env)

    return r
