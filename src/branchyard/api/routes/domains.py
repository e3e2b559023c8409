"""Custom domains of an environment: list (with certificate states), add, delete; the local CA's root."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


class DomainIn(BaseModel):
    host: str


def router(ctl: Controller) -> APIRouter:
    """The domain routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/domains")
    def domains(project: str, env: str, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.domains.list(project, env)

    @r.post("/api/projects/{project}/environments/{env}/domains")
    def add_domain(project: str, env: str, body: DomainIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.domains.add(project, env, body.host, actor=who)

    @r.delete("/api/projects/{project}/environments/{env}/domains/{host}")
    def delete_domain(project: str, env: str, host: str, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.domains.delete(project, env, host, actor=who)

    @r.get("/api/tls/root")
    def tls_root(who: Actor = allow(Permission.READ)) -> dict:
        return {"pem": ctl.domains.local_ca_root()}

    return r
