"""Projects: list, create, show, and their GitHub settings (webhook secret, repository)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ...controller.projects import Declared
from ..permissions import allow


class DeclaredIn(BaseModel):
    name: str
    branch: str | None = None
    production: bool = False
    protected: bool | None = None  # None: as production


class ProjectIn(BaseModel):
    name: str
    upstream: str | None = None
    github_repository: str | None = None
    environments: list[DeclaredIn] = []  # the persistent environments the project's files declare


class GithubIn(BaseModel):
    webhook_secret: str | None = None
    repository: str | None = None


def router(ctl: Controller) -> APIRouter:
    """The project routes."""
    r = APIRouter()

    @r.get("/api/projects")
    def projects(who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.projects.list()

    @r.post("/api/projects")
    def create_project(body: ProjectIn, who: Actor = allow(Permission.DEPLOY)) -> dict:
        declared = [Declared(e.name, e.branch, e.production, e.protected) for e in body.environments]
        return ctl.projects.create(body.name, body.upstream, body.github_repository, declared, actor=who)

    @r.post("/api/projects/{project}/github")
    def configure_github(project: str, body: GithubIn, who: Actor = allow(Permission.ADMIN)) -> dict:
        return ctl.projects.configure_github(project, webhook_secret=body.webhook_secret, repository=body.repository,
                                         actor=who)

    @r.get("/api/projects/{project}")
    def project(project: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.projects.info(project)

    return r
