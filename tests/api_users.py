"""For API tests: a Gatekeeper that needs no store (one token, one user, nothing protected or what you say), and a
stand-in controller that records which of its methods a request reached."""

from __future__ import annotations

from collections.abc import Callable

from branchyard.access import ADMIN, Actor
from branchyard.api.guard import Gate, Throttle
from branchyard.api.permissions import Gatekeeper
from branchyard.errors import Unauthorized


def single_token(token: str, *, role: str = ADMIN, throttle: Throttle | None = None,
                 protected: Callable[[str, str], bool] = lambda project, env: False) -> Gatekeeper:
    """`token` is user `tester` with `role`; any other token is wrong."""

    def authenticate(given: str) -> Actor:
        if given != token:
            raise Unauthorized("missing or wrong API token")
        return Actor("tester", 1, role)

    return Gatekeeper(Gate(authenticate, throttle), protected)


class Recorder:
    """A stand-in controller that records which of its methods a request reached."""

    def __init__(self, calls: list[str], name: str = "controller") -> None:
        self.calls, self.name = calls, name

    def __getattr__(self, attr: str) -> Recorder:
        return Recorder(self.calls, f"{self.name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> dict:
        self.calls.append(self.name)
        return {}
