"""Data plane: plugins, connections, database templates, backups, restore and sanitized refresh."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ...errors import BadInput
from ..permissions import allow


class PluginIn(BaseModel):
    plugin: str


class RestoreIn(BaseModel):
    backup_id: str


class RefreshIn(BaseModel):
    source: str


def router(ctl: Controller) -> APIRouter:
    """The data-plane routes."""
    r = APIRouter()

    @r.post("/api/projects/{project}/environments/{env}/plugins")
    def add_plugin(project: str, env: str, body: PluginIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.databases.add_plugin(project, env, body.plugin, actor=who)

    @r.post("/api/projects/{project}/environments/{env}/connection/{kind}")
    def connection(project: str, env: str, kind: str, who: Actor = allow(Permission.SHELL)) -> dict:
        if kind not in ("postgres", "redis"):
            raise BadInput(f"connect: unknown service {kind!r} (postgres or redis)")
        return ctl.databases.connection(project, env, kind)

    @r.get("/api/projects/{project}/templates")
    def templates(project: str, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.data.list_templates(project)

    @r.delete("/api/projects/{project}/templates")
    def drop_templates(project: str, key: str | None = None, who: Actor = allow(Permission.ADMIN)) -> dict:
        return {"dropped": ctl.data.drop_templates(project, key)}

    @r.post("/api/projects/{project}/environments/{env}/backups")
    def backup(project: str, env: str, who: Actor = allow(Permission.BACKUP)) -> dict:
        return ctl.backups.create(project, env, actor=who)

    @r.get("/api/projects/{project}/environments/{env}/backups")
    def backups(project: str, env: str, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.backups.list(project, env)

    @r.post("/api/projects/{project}/environments/{env}/restore")
    def restore(project: str, env: str, body: RestoreIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.backups.restore(project, env, body.backup_id, actor=who)

    @r.post("/api/projects/{project}/environments/{env}/refresh")
    def refresh(project: str, env: str, body: RefreshIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.databases.refresh(project, env, body.source, actor=who)

    return r
