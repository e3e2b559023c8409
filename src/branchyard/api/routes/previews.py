"""Previews: the pull requests and branches known, and approving a fork's preview."""

from __future__ import annotations

from fastapi import APIRouter

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The preview routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/previews")
    def previews(project: str, who: Actor = allow(Permission.READ)) -> list[dict]:
        rows = ctl.previews.list(project)
        monthly = ctl.costs.monthly_totals(project)  # issue 17: each preview's projected $/month (None: not deployed)
        return [r | {"monthly_cost": monthly.get(r["environment"])} for r in rows]

    @r.post("/api/projects/{project}/previews/{number}/approve")
    def approve_preview(project: str, number: int, who: Actor = allow(Permission.APPROVE)) -> dict:
        return ctl.previews.approve(project, number, actor=who)

    return r
