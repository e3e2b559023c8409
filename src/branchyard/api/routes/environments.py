"""Environments: list, add, status, delete, down, wake (`up`) and scale."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


class EnvironmentIn(BaseModel):
    name: str
    branch: str | None = None


class ScaleIn(BaseModel):
    service: str = "web"
    replicas: int


def router(ctl: Controller) -> APIRouter:
    """The environment routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments")
    def environments(project: str, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.environments.list(project)

    @r.post("/api/projects/{project}/environments")
    def add_environment(project: str, body: EnvironmentIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.environments.add(project, body.name, branch=body.branch, actor=who)

    @r.get("/api/projects/{project}/environments/{env}")
    def environment(project: str, env: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.environments.info(project, env)

    @r.delete("/api/projects/{project}/environments/{env}")
    def delete_environment(project: str, env: str, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        ctl.teardown.delete_environment(project, env, actor=who)
        return {"deleted": env}

    @r.post("/api/projects/{project}/environments/{env}/down")
    def down(project: str, env: str, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.environments.down(project, env, actor=who)

    @r.post("/api/projects/{project}/environments/{env}/wake")
    def wake(project: str, env: str, who: Actor = allow(Permission.DEPLOY)) -> dict:
        return {"deployment_id": ctl.environments.wake(project, env, actor=who)}

    @r.post("/api/projects/{project}/environments/{env}/scale")
    def scale(project: str, env: str, body: ScaleIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.environments.scale(project, env, body.replicas, service=body.service, actor=who)

    return r
