"""Every API route asks for the token: without it, or with a wrong one, it answers 401 before doing anything.

The routes are enumerated from the app itself, so a route added later without the token check fails here.
Only the routes in OPEN answer without the token, each for the reason given there.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import fastapi.routing
import pytest
from api_users import Recorder, single_token
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import WebSocketRoute
from starlette.testclient import WebSocketDenialResponse

from branchyard.api.app import create_app
from branchyard.api.guard import Throttle
from branchyard.dashboard.app import route_table

# The dashboard's pages are not API routes: they answer a session cookie (never a token) and reach data only through
# these routes, with the session's token (tests/unit/test_dashboard_pages.py asks each of them without a session).
DASHBOARD = route_table()

TOKEN = "the-right-token"
UNAUTHORIZED = {"detail": "missing or wrong API token", "error": "Unauthorized"}
OPEN = {
    ("POST", "/webhooks/github"),  # GitHub cannot send the token: each delivery's HMAC signature is checked instead
    ("GET", "/api/health"),  # `branchyard server status` asks whether the control plane answers, without the token
    ("GET", "/internal/tls/ask"),  # Caddy's on-demand TLS permission check: yes/no for a host name, nothing else
    ("GET", "/internal/wake/{project}/{env}"),  # the routes tier's wake call: the home's wake secret instead (403)
    # a Kubernetes environment's pods: the release's fetch token, the environment's backup token instead (403)
    ("GET", "/internal/releases/{deployment_id}.tar.gz"),
    ("POST", "/internal/backups/{project}/{environment}"),
    # a data job's one-time transfer: its transfer's random token instead (403)
    ("GET", "/internal/transfers/{transfer_id}"),
    ("POST", "/internal/transfers/{transfer_id}"),
    ("GET", "/openapi.json"),  # FastAPI's schema of the routes (which the source says anyway); no data
}
WRONG = {
    "no header": {},
    "empty": {"authorization": ""},
    "empty bearer": {"authorization": "Bearer "},
    "wrong token": {"authorization": "Bearer wrong"},
    "prefix of the token": {"authorization": f"Bearer {TOKEN[:-1]}"},
    "token and more": {"authorization": f"Bearer {TOKEN}x"},
    "other scheme": {"authorization": f"Basic {TOKEN}"},
}


class Trap:
    """A stand-in controller: reaching any of its methods is a test failure (auth answers first)."""

    def __init__(self, name: str = "controller") -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Trap:
        return Trap(f"{self.name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"a request without the right token reached {self.name}()")


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route, those of included routers too."""
    # newer FastAPI keeps an included router as one entry of app.routes; this walks into them (older: a flat list)
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    found = contexts(app.routes) if contexts else app.routes
    return sorted({(method, route.path) for route in found for method in methods_of(route)} - {("HEAD", "/openapi.json")}
                  - DASHBOARD)


def methods_of(route) -> tuple[str, ...]:
    """A route's methods; WEBSOCKET for a WebSocket route (connect's tunnel), whose handshake is checked the same."""
    if isinstance(getattr(route, "original_route", route), WebSocketRoute):
        return ("WEBSOCKET",)
    return tuple(route.methods or ())


def call(client: TestClient, method: str, path: str, headers: dict[str, str]):
    """One request; for WEBSOCKET, the handshake's refusal, or a stand-in with status 101 when it got past the check."""
    if method != "WEBSOCKET":
        return client.request(method, path, headers=headers)
    try:
        with client.websocket_connect(path, headers=headers):
            return SimpleNamespace(status_code=101)
    except WebSocketDenialResponse as refused:
        return refused
    except Exception:  # past the check: the stand-in controller's answers are not a server's address
        return SimpleNamespace(status_code=101)


def url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)  # "1" fits every parameter, the int ones included


APP = create_app(Trap(), gatekeeper=single_token(TOKEN, throttle=Throttle(failures=10**9)))  # the slowdown: test_api_limits.py
ROUTES = routes(APP)
GUARDED = [r for r in ROUTES if r not in OPEN]


def test_the_enumeration_sees_every_route_in_the_schema() -> None:
    # were the walk to miss routes (FastAPI changing how it keeps included routers), this test would check too few
    in_schema = {(method.upper(), path) for path, ops in APP.openapi()["paths"].items() for method in ops}
    assert in_schema <= set(ROUTES)
    assert len(GUARDED) >= 40


def test_the_open_routes_exist() -> None:
    # an OPEN entry whose route has gone (or moved) would otherwise let a new route of that name in unchecked
    assert OPEN <= set(ROUTES)


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
@pytest.mark.parametrize("case", list(WRONG))
def test_every_route_refuses_a_request_without_the_right_token(method: str, path: str, case: str) -> None:
    response = call(TestClient(APP), method, url(path), WRONG[case])
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
def test_with_the_right_token_the_same_request_gets_past_the_check(method: str, path: str) -> None:
    # the control for the test above: the 401 there comes from the token check, not from the request's shape
    calls: list[str] = []
    client = TestClient(create_app(Recorder(calls), gatekeeper=single_token(TOKEN)), raise_server_exceptions=False)
    response = call(client, method, url(path), {"authorization": f"Bearer {TOKEN}"})
    assert response.status_code != 401
    assert calls or response.status_code in (400, 422)  # reached the controller, or refused the (missing) input


def test_the_health_check_answers_without_the_token() -> None:
    response = TestClient(APP).get("/api/health")
    assert response.status_code == 200 and response.json()["ok"] is True
