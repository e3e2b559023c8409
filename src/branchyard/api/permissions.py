"""Who is asking, and whether they may: the dependency every guarded route declares, with its permission.

A route says what it needs where it is written, e.g.

    @r.post("/api/projects/{project}/environments/{env}/scale")
    def scale(..., who: Actor = allow(Permission.CONFIGURE)) -> dict:

`allow` authenticates the request (Bearer token → the user, through the `Gatekeeper`), then checks the user's role
against the permission (`access.require`); for an environment-scoped permission, in the environment named by the
route's `{project}` and `{env}` (protected or not). The route receives the Actor and passes it on as the actor of
what it does. `create_app` refuses to build an app with a guarded route that declares no permission, and
tests/unit/test_permission_matrix.py checks every route against its own table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Header
from starlette.requests import HTTPConnection

from ..access import Actor, Permission, require
from .guard import Gate, bearer, client_address


@dataclass(frozen=True)
class Gatekeeper:
    """What `allow` needs: the token check (users + slowdown) and whether an environment is protected."""

    gate: Gate
    protected: Callable[[str, str], bool]  # (project, environment) → protected; False for an unknown one


class Allow:
    """The dependency of one permission (its instances are what the route table test reads)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, request: HTTPConnection, authorization: str | None = Header(default=None)) -> Actor:
        # async, so FastAPI runs it on the event loop: a sync dependency costs a hop to the thread pool (~0.7 ms a
        # request, benchmarks/bench_auth.py); the look-ups are one indexed SQLite read each (~50 µs), no lock taken.
        # HTTPConnection, not Request: FastAPI hands a Request-typed parameter nothing on a WebSocket route, and a
        # WebSocket's handshake (connect's tunnel) must pass exactly this check, before the route accepts it.
        keeper: Gatekeeper = request.app.state.gatekeeper
        actor = keeper.gate.check(bearer(authorization), client_address(request.scope))
        params = request.path_params
        environment, protected = None, False
        if self.permission.scoped and "project" in params and "env" in params:
            environment = params["env"]
            protected = keeper.protected(params["project"], environment)
        require(actor, self.permission, environment=environment, protected=protected,
                what=f"{request.scope.get('method', 'WEBSOCKET')} {request.url.path}")
        return actor


def allow(permission: Permission) -> Actor:
    """`who: Actor = allow(Permission.X)` in a route's signature: authenticated, authorised, the Actor handed in."""
    return Depends(Allow(permission))  # type: ignore[no-any-return]


def permission_of(dependencies: list) -> Permission | None:
    """The permission a route's dependant declares (None: none), walking FastAPI's dependency tree."""
    for dependency in dependencies:
        if isinstance(dependency.call, Allow):
            return dependency.call.permission
        found = permission_of(dependency.dependencies)
        if found is not None:
            return found
    return None
