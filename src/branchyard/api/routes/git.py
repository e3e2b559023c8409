"""POST /api/projects/{project}/push: the git remote's pre-receive hook hands a pushed ref to the control plane."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


class PushIn(BaseModel):
    ref: str
    old: str
    new: str
    git_env: dict[str, str] = Field(default_factory=dict)
    push_options: list[str] = Field(default_factory=list)  # `git push -o …` (GIT_PUSH_OPTION_n in the hook)


def router(ctl: Controller) -> APIRouter:
    """The push route."""
    r = APIRouter()

    @r.post("/api/projects/{project}/push")
    def push(project: str, body: PushIn, who: Actor = allow(Permission.DEPLOY)) -> dict:
        result = ctl.pushes.receive(project, body.ref, body.old, body.new, body.git_env, actor=who,
                                     push_options=tuple(body.push_options))
        return {"deployment_id": result.deployment_id, "note": result.note}

    return r
