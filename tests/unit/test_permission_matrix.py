"""The permission matrix: every API route × {no token, bad token, revoked, expired, removed user's, viewer, member,
admin} × {protected, unprotected environment}, against real users and tokens in a real store.

The routes are enumerated from the app itself. Each must be in ROUTES below with the permission this test expects
of it — written here, not read from the code — so a new route that nobody classified fails
`test_every_route_is_classified_here`, and a route whose declared permission changes fails
`test_each_route_declares_the_expected_permission`. WHO_MAY is the policy in plain sets, also written here (not
computed by access.py), so the matrix checks the code against the documented rule rather than against itself.

Behind an allowed request sits a controller that only records which method was reached (the routes' own work is
tested elsewhere, for real); behind a refused one, nothing may be reached.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import fastapi.routing
import pytest
from api_users import Recorder
from fastapi.testclient import TestClient
from starlette.routing import WebSocketRoute
from starlette.testclient import WebSocketDenialResponse

from branchyard.access import Permission
from branchyard.api.app import create_app
from branchyard.api.guard import Gate, Throttle
from branchyard.api.permissions import Gatekeeper, permission_of
from branchyard.controller.users import Users
from branchyard.dashboard.app import route_table
from branchyard.store import models as m
from branchyard.store.db import Store

P = Permission
ROUTES: dict[tuple[str, str], Permission] = {
    ("GET", "/api/projects"): P.READ,
    ("POST", "/api/projects"): P.DEPLOY,  # `init`: creating a project is an admin's (checked inside, see below)
    ("POST", "/api/projects/{project}/github"): P.ADMIN,
    ("GET", "/api/projects/{project}"): P.READ,
    ("GET", "/api/projects/{project}/previews"): P.READ,
    ("POST", "/api/projects/{project}/previews/{number}/approve"): P.APPROVE,
    ("GET", "/api/projects/{project}/environments"): P.READ,
    ("POST", "/api/projects/{project}/environments"): P.CONFIGURE,
    ("GET", "/api/projects/{project}/environments/{env}"): P.READ,
    ("DELETE", "/api/projects/{project}/environments/{env}"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/environments/{env}/down"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/environments/{env}/wake"): P.DEPLOY,
    ("POST", "/api/projects/{project}/environments/{env}/scale"): P.CONFIGURE,
    ("GET", "/api/projects/{project}/environments/{env}/deployments"): P.READ,
    ("GET", "/api/projects/{project}/environments/{env}/logs"): P.READ,
    ("POST", "/api/projects/{project}/environments/{env}/redeploy"): P.DEPLOY,
    ("POST", "/api/projects/{project}/environments/{env}/rollback"): P.DEPLOY,
    ("GET", "/api/deployments/{deployment_id}"): P.READ,
    ("GET", "/api/deployments/{deployment_id}/log"): P.READ,
    ("GET", "/api/projects/{project}/environments/{env}/variables"): P.READ,
    ("POST", "/api/projects/{project}/environments/{env}/variables/reveal"): P.SHELL,
    ("POST", "/api/projects/{project}/environments/{env}/run"): P.SHELL,
    ("POST", "/api/projects/{project}/environments/{env}/exec"): P.SHELL,
    ("POST", "/api/projects/{project}/environments/{env}/variables"): P.CONFIGURE,
    ("DELETE", "/api/projects/{project}/environments/{env}/variables/{key}"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/environments/{env}/plugins"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/environments/{env}/connection/{kind}"): P.SHELL,
    # connect's tunnel: a WebSocket, whose handshake passes the same check (method WEBSOCKET in this table)
    ("WEBSOCKET", "/api/projects/{project}/environments/{env}/connection/{kind}/tunnel"): P.SHELL,
    ("GET", "/api/projects/{project}/templates"): P.READ,
    ("DELETE", "/api/projects/{project}/templates"): P.ADMIN,
    ("POST", "/api/projects/{project}/environments/{env}/backups"): P.BACKUP,
    ("GET", "/api/projects/{project}/environments/{env}/backups"): P.READ,
    ("POST", "/api/projects/{project}/environments/{env}/restore"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/environments/{env}/refresh"): P.CONFIGURE,
    ("POST", "/api/projects/{project}/push"): P.DEPLOY,  # which branch a user may push: checked per ref (git rules)
    ("POST", "/api/projects/{project}/promotions"): P.PROMOTE,
    ("GET", "/api/projects/{project}/promotions"): P.READ,
    ("GET", "/api/promotions/{promotion_id}"): P.READ,
    ("POST", "/api/promotions/{promotion_id}/confirm"): P.PROMOTE,
    ("POST", "/api/promotions/{promotion_id}/approvals"): P.APPROVE,
    ("POST", "/api/promotions/{promotion_id}/cancel"): P.PROMOTE,
    ("GET", "/api/projects/{project}/policy"): P.READ,
    ("GET", "/api/events"): P.READ,
    ("GET", "/api/projects/{project}/environments/{env}/metrics"): P.READ,
    ("GET", "/metrics"): P.READ,  # Prometheus text exposition (Bearer token)
    ("GET", "/api/projects/{project}/cost"): P.READ,  # `branchyard cost` (issue 17)
    ("GET", "/api/projects/{project}/environments/{env}/domains"): P.READ,
    ("GET", "/api/projects/{project}/alerts"): P.READ,
    ("GET", "/api/projects/{project}/environments/{env}/alerts"): P.READ,
    ("GET", "/api/projects/{project}/environments/{env}/cron/runs"): P.READ,
    ("POST", "/api/projects/{project}/environments/{env}/domains"): P.CONFIGURE,
    ("DELETE", "/api/projects/{project}/environments/{env}/domains/{host}"): P.CONFIGURE,
    ("GET", "/api/tls/root"): P.READ,
    ("GET", "/api/whoami"): P.SELF,
    ("GET", "/api/users"): P.READ,
    ("POST", "/api/users"): P.ADMIN,
    ("DELETE", "/api/users/{name}"): P.ADMIN,
    ("GET", "/api/tokens"): P.SELF,
    ("POST", "/api/tokens"): P.SELF,
    ("DELETE", "/api/tokens/{token_id}"): P.SELF,
}
OPEN = {("GET", "/api/health"), ("POST", "/webhooks/github"), ("GET", "/internal/tls/ask"),
        ("GET", "/internal/wake/{project}/{env}"), ("GET", "/openapi.json"),
        # a Kubernetes environment's pods: a release's or the environment's own token, or a data job's one-time
        # transfer token (api/routes/releases.py)
        ("GET", "/internal/releases/{deployment_id}.tar.gz"), ("POST", "/internal/backups/{project}/{environment}"),
        ("GET", "/internal/transfers/{transfer_id}"), ("POST", "/internal/transfers/{transfer_id}")}
GIT = ("GET", "/git/{project}.git/{rest:path}"), ("POST", "/git/{project}.git/{rest:path}")  # api/git_http.py, own tests

ALL, WRITERS, ADMINS = {"viewer", "member", "admin"}, {"member", "admin"}, {"admin"}
# permission → (roles allowed in an unprotected environment or outside environments, roles allowed in a protected one)
WHO_MAY = {
    P.SELF: (ALL, ALL),
    P.READ: (ALL, ALL),
    P.DEPLOY: (WRITERS, ADMINS),
    P.CONFIGURE: (WRITERS, ADMINS),
    P.SHELL: (WRITERS, ADMINS),
    P.BACKUP: (WRITERS, WRITERS),
    P.PROMOTE: (WRITERS, WRITERS),
    P.APPROVE: (WRITERS, WRITERS),
    P.ADMIN: (ADMINS, ADMINS),
}
REFUSED_TOKENS = ("none", "wrong", "revoked", "expired", "removed user")


class World:
    """A store with a project (production protected, staging not), users of each role and refused tokens."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root / "state.db")
        self.users = Users(self.store)
        admin = self.users.bootstrap("admin-token")
        self.tokens = {"admin": "admin-token", "none": "", "wrong": "byd_not-a-token"}
        for role in ("viewer", "member"):
            self.tokens[role] = self.users.add(f"a-{role}", role, admin)["token"]
        gone = self.users.add("gone", "member", admin)["token"]
        self.users.remove("gone", admin)
        self.tokens["removed user"] = gone
        member = self.users.authenticate(self.tokens["member"])
        revoked = self.users.create_token(member, "old", None)
        self.users.revoke(member, revoked["id"])
        self.tokens["revoked"] = revoked["token"]
        expired = self.users.create_token(member, "short", 1)
        with self.store.session() as s:
            s.get(m.ApiToken, expired["id"]).expires_at = m.utcnow() - dt.timedelta(seconds=1)
        self.tokens["expired"] = expired["token"]
        with self.store.session() as s:
            p = m.Project(name="yoto", repo_path=str(root / "yoto.git"))
            s.add(p)
            s.flush()
            s.add(m.Environment(project_id=p.id, name="production", production=True, protected=True))
            s.add(m.Environment(project_id=p.id, name="staging"))

    def protected(self, project: str, env: str) -> bool:
        with self.store.session() as s:
            p = self.store.project(s, project)
            found = self.store.find_environment(s, p, env)
            return bool(found and found.protected)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("matrix"))
    yield w
    w.store.close()


class Caller:
    """One app over the world, the calls its controller saw for the last request."""

    def __init__(self, world: World) -> None:
        self.calls: list[str] = []
        self.client = TestClient(app_for(world, self.calls), raise_server_exceptions=False)

    def __call__(self, method: str, path: str, token: str):
        self.calls.clear()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if method == "WEBSOCKET":
            return websocket(self.client, path, headers)
        return self.client.request(method, path, headers=headers, json={})


def websocket(client: TestClient, path: str, headers: dict[str, str]):
    """A WebSocket handshake's answer: the refusal (a response), or past the check (status 101)."""
    try:
        with client.websocket_connect(path, headers=headers):
            return SimpleNamespace(status_code=101, text="")
    except WebSocketDenialResponse as refused:
        return refused
    except Exception as err:  # past the check: the stand-in controller's answers are not a server's address
        return SimpleNamespace(status_code=101, text=repr(err))


@pytest.fixture(scope="module")
def caller(world: World) -> Caller:
    return Caller(world)


def app_for(world: World, calls: list[str]):
    keeper = Gatekeeper(Gate(world.users.authenticate, Throttle(failures=10**9)), world.protected)
    return create_app(Recorder(calls), gatekeeper=keeper)


DASHBOARD = route_table()  # not API routes: a session's pages, clients of these (test_dashboard_pages.py)

def declared(app) -> dict[tuple[str, str], Permission | None]:
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    found = contexts(app.routes) if contexts else app.routes
    out = {}
    for route in found:
        dependant = getattr(route, "dependant", None) or getattr(getattr(route, "route", None), "dependant", None)
        websocket_route = isinstance(getattr(route, "original_route", route), WebSocketRoute)
        for method in route.methods or (("WEBSOCKET",) if websocket_route else ()):
            if (method, route.path) != ("HEAD", "/openapi.json") and (method, route.path) not in DASHBOARD:
                out[(method, route.path)] = permission_of(dependant.dependencies) if dependant else None
    return out


def url(path: str, env: str) -> str:
    path = path.replace("{project}", "yoto").replace("{env}", env)
    return re.sub(r"\{[^}]+\}", "1", path)


CASES = [(method, path, env) for (method, path) in ROUTES for env in
         (("production", "staging") if "{env}" in path else ("-",))]


def test_every_route_is_classified_here(world: World) -> None:
    routes = set(declared(app_for(world, [])))
    unclassified = routes - set(ROUTES) - OPEN - set(GIT)
    assert not unclassified, f"routes nobody classified in this test: {sorted(unclassified)}"
    assert set(ROUTES) <= routes, f"classified routes that are gone: {sorted(set(ROUTES) - routes)}"


def test_each_route_declares_the_expected_permission(world: World) -> None:
    found = declared(app_for(world, []))
    assert {route: found[route] for route in ROUTES} == ROUTES
    assert all(found[route] is None for route in OPEN)  # the open ones declare none (app.py says why for each)


@pytest.mark.parametrize(("method", "path", "env"), CASES, ids=[f"{m} {p} [{e}]" for m, p, e in CASES])
def test_the_matrix(world: World, caller: Caller, method: str, path: str, env: str) -> None:
    permission = ROUTES[(method, path)]
    for who in REFUSED_TOKENS:
        response = caller(method, url(path, env), world.tokens[who])
        assert response.status_code == 401, (who, response.text)
        assert not caller.calls, who
    unprotected, protected = WHO_MAY[permission]
    may = protected if env == "production" else unprotected
    for role in ("viewer", "member", "admin"):
        response = caller(method, url(path, env), world.tokens[role])
        if role in may:
            assert response.status_code not in (401, 403), (role, response.text)
            assert caller.calls or response.status_code in (400, 422), role  # reached the controller, or refused the body
        else:
            assert response.status_code == 403, (role, response.text)
            detail = response.json()["detail"]
            assert f"permission {permission.value!r}" in detail and "\n" not in detail, detail
            if env == "production" and permission in (P.DEPLOY, P.CONFIGURE, P.SHELL) and role == "member":
                assert "in protected environment production needs role admin" in detail
            assert not caller.calls, role
