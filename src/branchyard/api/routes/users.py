"""Users (`users add/list/remove`, admins), one's own tokens (`tokens create/list/revoke`) and `whoami`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


class UserIn(BaseModel):
    name: str
    role: str


class TokenIn(BaseModel):
    name: str | None = None
    expires_days: float | None = None


def router(ctl: Controller) -> APIRouter:
    """The user and token routes."""
    r = APIRouter()

    @r.get("/api/whoami")
    def whoami(who: Actor = allow(Permission.SELF)) -> dict:
        return ctl.users.whoami(who)

    @r.get("/api/users")
    def users(who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.users.list()

    @r.post("/api/users")
    def add_user(body: UserIn, who: Actor = allow(Permission.ADMIN)) -> dict:
        return ctl.users.add(body.name, body.role, who)

    @r.delete("/api/users/{name}")
    def remove_user(name: str, who: Actor = allow(Permission.ADMIN)) -> dict:
        return ctl.users.remove(name, who)

    @r.get("/api/tokens")
    def tokens(who: Actor = allow(Permission.SELF)) -> list[dict]:
        return ctl.users.tokens(who)

    @r.post("/api/tokens")
    def create_token(body: TokenIn, who: Actor = allow(Permission.SELF)) -> dict:
        return ctl.users.create_token(who, body.name, body.expires_days)

    @r.delete("/api/tokens/{token_id}")
    def revoke_token(token_id: str, who: Actor = allow(Permission.SELF)) -> dict:
        return ctl.users.revoke(who, token_id)

    return r
