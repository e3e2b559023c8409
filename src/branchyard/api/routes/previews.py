"""Previews: the pull requests and branches known, and approving a fork's preview."""

from __future__ import annotations

from fastapi import APIRouter

from ...controller.core import Controller


def router(ctl: Controller) -> APIRouter:
    """The preview routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/previews")
    def previews(project: str) -> list[dict]:
        return ctl.previews.list(project)

    @r.post("/api/projects/{project}/previews/{number}/approve")
    def approve_preview(project: str, number: int) -> dict:
        return ctl.previews.approve(project, number)

    return r
