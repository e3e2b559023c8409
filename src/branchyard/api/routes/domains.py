"""Custom domains of an environment: list (with certificate states), add, delete; the local CA's root."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...controller.core import Controller


class DomainIn(BaseModel):
    host: str


def router(ctl: Controller) -> APIRouter:
    """The domain routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/domains")
    def domains(project: str, env: str) -> list[dict]:
        return ctl.domains.list(project, env)

    @r.post("/api/projects/{project}/environments/{env}/domains")
    def add_domain(project: str, env: str, body: DomainIn) -> dict:
        return ctl.domains.add(project, env, body.host)

    @r.delete("/api/projects/{project}/environments/{env}/domains/{host}")
    def delete_domain(project: str, env: str, host: str) -> dict:
        return ctl.domains.delete(project, env, host)

    @r.get("/api/tls/root")
    def tls_root() -> dict:
        return {"pem": ctl.domains.local_ca_root()}

    return r
