"""POST /api/projects/{project}/push: the git remote's pre-receive hook hands a pushed ref to the control plane."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ...controller.core import Controller


class PushIn(BaseModel):
    ref: str
    old: str
    new: str
    git_env: dict[str, str] = Field(default_factory=dict)


def router(ctl: Controller) -> APIRouter:
    """The push route."""
    r = APIRouter()

    @r.post("/api/projects/{project}/push")
    def push(project: str, body: PushIn) -> dict:
        result = ctl.pushes.receive(project, body.ref, body.old, body.new, body.git_env)
        return {"deployment_id": result.deployment_id, "note": result.note}

    return r
