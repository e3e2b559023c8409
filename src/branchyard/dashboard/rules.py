"""Whether the signed-in user may use an API route — asked of the API's own routes, so that the buttons the
dashboard shows follow exactly the permissions the API enforces (the API refuses anyway; this only hides what would
be refused)."""

from __future__ import annotations

import fastapi.routing
from starlette.routing import compile_path

from ..access import Permission, allowed
from ..api.permissions import permission_of


class RouteRules:
    """The permission each API route declares (`allow(Permission.X)`), looked up by method and path."""

    def __init__(self, routes: list) -> None:
        contexts = getattr(fastapi.routing, "iter_route_contexts", None)  # newer FastAPI nests included routers
        self._rules: list[tuple[object, frozenset[str], Permission | None]] = []
        for route in (contexts(routes) if contexts else routes):
            dependant = getattr(getattr(route, "original_route", route), "dependant", None)
            path = route.path
            if dependant is None or not path or not path.startswith("/api/"):
                continue
            regex, _, _ = compile_path(path)
            self._rules.append((regex, frozenset(route.methods or ()), permission_of(dependant.dependencies)))

    def permission(self, method: str, path: str) -> Permission | None:
        for regex, methods, permission in self._rules:
            if method in methods and regex.match(path):
                return permission
        return None

    def may(self, role: str | None, method: str, path: str, *, protected: bool = False) -> bool:
        """True when a user of `role` gets past the route's permission (in an environment protected or not)."""
        permission = self.permission(method, path)
        return permission is not None and role is not None and allowed(role, permission, protected=protected)
