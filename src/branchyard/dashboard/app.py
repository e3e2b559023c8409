"""The web dashboard (issue 18): server-rendered pages at `/` on the control plane's host, each a client of the API.

Every page and every button calls the API in-process with the signed-in user's session token (`api_client.py`), so
the API's permission checks, masking and errors are the only ones; nothing here is possible only in the browser.
Buttons a user's role cannot use are not shown (`rules.py` asks the API's own route table), and the API refuses
them anyway. Sessions and CSRF: `session.py`. What the pages show: `views.py` (pure) and the templates.

Paths mirror the API's without `/api`:

    GET  /                                            the board: every project, a card per environment
    GET  /login   POST /login   POST /logout          sign-in with a token → a session cookie; sign-out revokes it
    GET  /projects/{p}                                one project's board
    GET  /projects/{p}/environments/{env}             deployments, logs, metrics, variables, domains, events
    GET  /projects/{p}/environments/{env}/logs/stream live logs (server-sent events, from the logs API's cursor)
    POST /projects/{p}/environments/{env}/rollback    POST …/redeploy   POST …/variables   POST …/variables/{key}/delete
    GET  /projects/{p}/promotions   POST /projects/{p}/promotions       list; plan one
    GET  /promotions/{id}   POST /promotions/{id}/approve|confirm|cancel
    GET  /projects/{p}/previews     POST /projects/{p}/previews/{n}/approve
    GET  /static/{file}                               the stylesheet and the script (no build step)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from .. import __version__, promotion_text
from ..api.guard import client_address
from ..promotion import CONFIRM_WORD
from . import views
from .api_client import ApiClient, ApiError, UserApi
from .rules import RouteRules
from .session import (
    LOGIN_COOKIE,
    LOGIN_NONCE_SECONDS,
    SESSION_COOKIE,
    SESSION_HOURS,
    SESSION_TOKEN_NAME,
    Csrf,
    Session,
    cookie_name,
    cookie_options,
    new_nonce,
    safe_next,
    same_origin,
)

FLASH_COOKIE = "branchyard_flash"
MAX_FORM_BYTES = 256 * 1024
LOG_LINES = 200
LOG_STREAM_SECONDS = 10.0  # one event stream's life; the browser reconnects from its last cursor (Last-Event-ID)
LOG_POLL_SECONDS = 1.0
LEVELS = ("", "debug", "info", "warning", "error")
_STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
_ENDED = ("SUCCESS", "FAILED", "CANCELLED")


def route_table() -> set[tuple[str, str]]:
    """Every (method, path) the dashboard answers (the API's route tests leave these to tests/unit/test_dashboard_*)."""
    routes = Dashboard(None, [], csrf_key=lambda: "").routes()  # type: ignore[arg-type]
    return {(method, r.path) for r in routes for method in (getattr(r, "methods", None) or ())}


class Refused(Exception):
    """A form the dashboard itself refuses (CSRF, origin, a malformed field): the status and one line."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Dashboard:
    """The dashboard's routes over one API app (`api`: the app whose routes `api_routes` are)."""

    def __init__(self, api: ASGIApp, api_routes: list, *, csrf_key: Callable[[], str], session_hours: float = SESSION_HOURS,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.client = ApiClient(api)
        self.rules = RouteRules(api_routes)
        self.csrf = Csrf(csrf_key)
        self.session_hours = session_hours
        self.clock = clock
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("branchyard.dashboard", "templates"),
                                            autoescape=True, undefined=jinja2.StrictUndefined,
                                            trim_blocks=True, lstrip_blocks=True)
        self.templates.globals.update(version=__version__, kind=views.status_kind, quote=_path_quote)

    def routes(self) -> list[BaseRoute]:
        page = self._page
        act = self._action
        return [
            Route("/", page(self._board_all), methods=["GET"]),
            Route("/login", self._login_form, methods=["GET"]),
            Route("/login", self._login, methods=["POST"]),
            Route("/logout", act(self._logout), methods=["POST"]),
            Route("/static/{name}", self._static, methods=["GET"]),
            Route("/projects/{project}", page(self._board_one), methods=["GET"]),
            Route("/projects/{project}/environments/{env}", page(self._environment), methods=["GET"]),
            Route("/projects/{project}/environments/{env}/logs/stream", self._log_stream, methods=["GET"]),
            Route("/projects/{project}/environments/{env}/rollback", act(self._rollback), methods=["POST"]),
            Route("/projects/{project}/environments/{env}/redeploy", act(self._redeploy), methods=["POST"]),
            Route("/projects/{project}/environments/{env}/variables", act(self._set_variable), methods=["POST"]),
            Route("/projects/{project}/environments/{env}/variables/{key}/delete", act(self._delete_variable),
                  methods=["POST"]),
            Route("/projects/{project}/promotions", page(self._promotions), methods=["GET"]),
            Route("/projects/{project}/promotions", act(self._plan_promotion), methods=["POST"]),
            Route("/promotions/{promotion_id}", page(self._promotion), methods=["GET"]),
            Route("/promotions/{promotion_id}/approve", act(self._approve), methods=["POST"]),
            Route("/promotions/{promotion_id}/confirm", act(self._confirm), methods=["POST"]),
            Route("/promotions/{promotion_id}/cancel", act(self._cancel), methods=["POST"]),
            Route("/projects/{project}/previews", page(self._previews), methods=["GET"]),
            Route("/projects/{project}/previews/{number:int}/approve", act(self._approve_preview), methods=["POST"]),
        ]

    # --- plumbing: pages, actions, rendering -----------------------------------------------------------------

    def _render(self, request: Request, template: str, context: dict[str, Any], *, status: int = 200,
                session: Session | None = None, me: dict[str, Any] | None = None) -> HTMLResponse:
        flash = request.cookies.get(_name(request, FLASH_COOKIE))
        body = self.templates.get_template(template).render(
            **context, me=me, csrf=self.csrf.for_session(session) if session else "",
            flash=_flash_text(flash), path=request.url.path)
        response = HTMLResponse(body, status_code=status, headers=_NO_STORE)
        if flash:
            _forget(response, request, FLASH_COOKIE)
        return response

    def _to_login(self, request: Request, *, why: str | None = None) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        if why:
            _set_flash(response, request, why)
        if request.cookies.get(_name(request, SESSION_COOKIE)):
            _forget(response, request, SESSION_COOKIE)
        return response

    def _user_api(self, request: Request, session: Session) -> UserApi:
        return self.client.as_user(session.token, client_address(request.scope))

    def _page(self, build: Callable[[Request, UserApi, dict], Awaitable[tuple[str, dict[str, Any]]]]):
        """A GET page: signed in (else to sign-in), the user (`whoami`), then the page's own API calls."""

        async def endpoint(request: Request) -> Response:
            session = Session.from_cookie(request.cookies.get(_name(request, SESSION_COOKIE)))
            if session is None:
                return self._to_login(request)
            api = self._user_api(request, session)
            me: dict | None = None
            try:
                me = await api.get("/api/whoami")
                template, context = await build(request, api, me)
            except ApiError as err:
                if err.status == 401:
                    return self._to_login(request, why=f"signed out: {err.detail}")
                return self._render(request, "error.html", {"status": err.status, "detail": err.detail},
                                    status=err.status, session=session, me=me)
            return self._render(request, template, context, session=session, me=me)

        return endpoint

    def _action(self, do: Callable[[Request, UserApi, dict[str, str], dict], Awaitable[tuple[str, str]]]):
        """A form post: signed in, same origin, the session's CSRF token; then the API call(s), and a redirect
        (303) to the page to see the outcome, with a one-line note. The API's refusal is shown with its status."""

        async def endpoint(request: Request) -> Response:
            session = Session.from_cookie(request.cookies.get(_name(request, SESSION_COOKIE)))
            if session is None:
                return self._to_login(request)
            try:
                form = await _form(request)
                if not same_origin(request.headers.get("origin"), request.headers.get("host")):
                    raise Refused(403, "refused: this form was posted from another site")
                if not self.csrf.session_ok(session, form.get("csrf")):
                    raise Refused(403, "refused: the form's CSRF token is missing or wrong (reload the page and try again)")
            except Refused as err:
                return self._render(request, "error.html", {"status": err.status, "detail": err.detail},
                                    status=err.status)
            api = self._user_api(request, session)
            me: dict | None = None
            try:
                me = await api.get("/api/whoami")
                back, note = await do(request, api, form, me)
            except Refused as err:
                return self._render(request, "error.html", {"status": err.status, "detail": err.detail},
                                    status=err.status, session=session, me=me)
            except ApiError as err:
                if err.status == 401:
                    return self._to_login(request, why=f"signed out: {err.detail}")
                return self._render(request, "error.html", {"status": err.status, "detail": err.detail},
                                    status=err.status, session=session, me=me)
            response = RedirectResponse(back, status_code=303)
            if note:
                _set_flash(response, request, note)
            return response

        return endpoint

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        body = resources.files("branchyard.dashboard").joinpath("static").joinpath(name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers={"Cache-Control": "max-age=300"})

    # --- sign-in and sign-out --------------------------------------------------------------------------------

    async def _login_form(self, request: Request, *, error: str | None = None, status: int = 200) -> Response:
        nonce = request.cookies.get(_name(request, LOGIN_COOKIE)) or new_nonce()
        response = self._render(request, "login.html", {
            "login_csrf": self.csrf.for_login(nonce), "next": safe_next(request.query_params.get("next")),
            "error": error}, status=status)
        response.set_cookie(_name(request, LOGIN_COOKIE), nonce,
                            **cookie_options(secure=_secure(request), max_age=LOGIN_NONCE_SECONDS))
        return response

    async def _login(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except Refused as err:
            return await self._login_form(request, error=err.detail, status=err.status)
        if not same_origin(request.headers.get("origin"), request.headers.get("host")) or \
                not self.csrf.login_ok(request.cookies.get(_name(request, LOGIN_COOKIE)), form.get("csrf")):
            return await self._login_form(request, status=403, error="refused: the sign-in form's CSRF token is "
                                          "missing or wrong (this page was reloaded for you: sign in again)")
        token = (form.get("token") or "").strip()
        if not token:
            return await self._login_form(request, error="token: paste your API token (from `branchyard users add` "
                                          "or `branchyard tokens create`)", status=400)
        api = self.client.as_user(token, client_address(request.scope))
        try:
            made = await api.post("/api/tokens", {"name": SESSION_TOKEN_NAME, "expires_days": self.session_hours / 24})
        except ApiError as err:
            return await self._login_form(request, error=f"sign-in refused: {err.detail}", status=err.status)
        session = Session(made["id"], made["token"])
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        response.set_cookie(_name(request, SESSION_COOKIE), session.cookie_value(),
                            **cookie_options(secure=_secure(request), max_age=int(self.session_hours * 3600)))
        _forget(response, request, LOGIN_COOKIE)
        return response

    async def _logout(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        session = Session.from_cookie(request.cookies.get(_name(request, SESSION_COOKIE)))
        assert session is not None  # _action checked it
        await api.delete(f"/api/tokens/{quote(session.token_id, safe='')}")
        return "/login", "signed out"

    # --- the board -------------------------------------------------------------------------------------------

    async def _board_all(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        projects = await api.get("/api/projects")
        boards = await asyncio.gather(*(self._board_of(api, p["name"]) for p in projects))
        return "board.html", {"boards": boards, "title": "Environments"}

    async def _board_one(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        project = request.path_params["project"]
        return "board.html", {"boards": [await self._board_of(api, project)], "title": project}

    async def _board_of(self, api: UserApi, project: str) -> views.Board:
        p = quote(project, safe="")
        envs, cost = await asyncio.gather(api.get(f"/api/projects/{p}/environments"), api.get(f"/api/projects/{p}/cost"))
        return views.board(project, envs, cost, self.clock())

    # --- an environment --------------------------------------------------------------------------------------

    async def _environment(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        project, env = request.path_params["project"], request.path_params["env"]
        level = request.query_params.get("level") or ""
        if level not in LEVELS:
            raise ApiError(400, f"level {level!r}: expected one of {', '.join(x for x in LEVELS if x)}")
        base = f"/api/projects/{quote(project, safe='')}/environments/{quote(env, safe='')}"
        info, deployments, variables, domains, events, logs, metrics = await asyncio.gather(
            api.get(base), api.get(f"{base}/deployments", limit=30), api.get(f"{base}/variables"),
            api.get(f"{base}/domains"), api.get("/api/events", project=project, environment=env, limit=30),
            api.get(f"{base}/logs", lines=LOG_LINES, level=level or None), api.get(f"{base}/metrics", since="1h"))
        protected = bool(info.get("protected"))
        role = me.get("role")
        may = {
            "deploy": self.rules.may(role, "POST", f"{base}/rollback", protected=protected),
            "configure": self.rules.may(role, "POST", f"{base}/variables", protected=protected),
        }
        now = self.clock()
        return "environment.html", {
            "project": project, "env": info, "may": may, "level": level, "levels": LEVELS,
            "card": views.card(info, None, now),
            "deployments": views.deployment_rows(deployments, now),
            "variables": _variable_rows(variables), "domains": domains, "events": events,
            "logs": [logrecords_line(r) for r in logs.get("records") or []], "cursor": logs.get("cursor"),
            "metrics": views.metric_lines(metrics.get("series") or []),
        }

    async def _log_stream(self, request: Request) -> Response:
        """Server-sent events: new log lines from the logs API's cursor, for `LOG_STREAM_SECONDS`, then the stream
        ends and the browser reconnects with the last cursor (`Last-Event-ID`): no stream outlives a restart long."""
        session = Session.from_cookie(request.cookies.get(_name(request, SESSION_COOKIE)))
        if session is None:
            return Response("sign in first\n", status_code=401, media_type="text/plain")
        project, env = request.path_params["project"], request.path_params["env"]
        level = request.query_params.get("level") or None
        if level is not None and level not in LEVELS:
            return Response(f"level {level!r}: unknown\n", status_code=400, media_type="text/plain")
        cursor_text = request.headers.get("last-event-id") or request.query_params.get("cursor") or ""
        cursor = int(cursor_text) if cursor_text.isdigit() else None
        api = self._user_api(request, session)
        path = f"/api/projects/{quote(project, safe='')}/environments/{quote(env, safe='')}/logs"
        try:  # the first call before the stream starts: a refusal (403, 404) is the response's own status
            first = await api.get(path, level=level, cursor=cursor, limit=1000) if cursor is not None else \
                await api.get(path, lines=1, level=level) | {"records": []}  # no cursor: from now on
        except ApiError as err:
            return Response(f"{err.detail}\n", status_code=err.status, media_type="text/plain")

        async def events() -> AsyncIterator[str]:
            data = first
            yield "retry: 1000\n\n"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOG_STREAM_SECONDS
            while True:
                yield _sse(data["cursor"], [logrecords_line(r) for r in data.get("records") or []])
                if loop.time() >= deadline or await request.is_disconnected():
                    return
                await asyncio.sleep(LOG_POLL_SECONDS)
                try:
                    data = await api.get(path, level=level, cursor=data["cursor"], limit=1000)
                except ApiError:
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers=_NO_STORE | {"X-Accel-Buffering": "no"})

    async def _rollback(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project, env = request.path_params["project"], request.path_params["env"]
        made = await api.post(f"{_env_api(project, env)}/rollback")
        return _env_page(project, env), f"rollback queued: deployment {made['deployment_id'][:8]}"

    async def _redeploy(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project, env = request.path_params["project"], request.path_params["env"]
        body = {"deployment_id": form["deployment_id"]} if form.get("deployment_id") else {}
        made = await api.post(f"{_env_api(project, env)}/redeploy", body)
        return _env_page(project, env), f"redeploy queued: deployment {made['deployment_id'][:8]}"

    async def _set_variable(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project, env = request.path_params["project"], request.path_params["env"]
        key = (form.get("key") or "").strip()
        if not key:
            raise Refused(400, "variables: key is empty")
        await api.post(f"{_env_api(project, env)}/variables", {
            "variables": {key: form.get("value", "")}, "secret": form.get("secret") == "on",
            "skip_deploys": form.get("skip_deploys") == "on"})
        return _env_page(project, env) + "#variables", f"{key} set" + (" (secret)" if form.get("secret") == "on" else "")

    async def _delete_variable(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project, env, key = (request.path_params[k] for k in ("project", "env", "key"))
        await api.delete(f"{_env_api(project, env)}/variables/{quote(key, safe='')}")
        return _env_page(project, env) + "#variables", f"{key} deleted"

    # --- promotions ------------------------------------------------------------------------------------------

    async def _promotions(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        project = request.path_params["project"]
        p = quote(project, safe="")
        promotions, envs = await asyncio.gather(api.get(f"/api/projects/{p}/promotions"),
                                                api.get(f"/api/projects/{p}/environments"))
        persistent = [e["name"] for e in envs if not e.get("ephemeral")]
        source = "staging" if "staging" in persistent else (persistent[0] if persistent else "")
        target = next((e["name"] for e in envs if e.get("production")), "")
        return "promotions.html", {
            "project": project, "promotions": promotions, "environments": [e["name"] for e in envs],
            "source": source, "target": target, "may_plan": self.rules.may(me.get("role"), "POST", f"/api/projects/{p}/promotions"),
        }

    async def _plan_promotion(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project = request.path_params["project"]
        promo = await api.post(f"/api/projects/{quote(project, safe='')}/promotions",
                               {"source": form.get("source", ""), "target": form.get("target", "")})
        return f"/promotions/{quote(promo['id'], safe='')}", f"promotion {promo['id'][:8]} planned: {promo['state']}"

    async def _promotion(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        pid = request.path_params["promotion_id"]
        promo = await api.get(f"/api/promotions/{quote(pid, safe='')}")
        logs = []
        for key in ("target_deployment_id", "rollback_deployment_id"):
            if promo.get(key):
                logs.append((key.split("_")[0], promo[key], await api.text(f"/api/deployments/{promo[key]}/log")))
        open_ = promo["state"] in ("PLANNED", "PENDING_APPROVAL", "WAITING")
        role = me.get("role")
        return "promotion.html", {
            "promo": promo, "plan_lines": promotion_text.plan_lines(promo), "people_lines": promotion_text.people_lines(promo),
            "logs": logs, "running": promo["state"] not in _ENDED and not open_, "open": open_,
            "may_approve": open_ and self.rules.may(role, "POST", f"/api/promotions/{pid}/approvals")
            and (promo.get("your_approval") or {}).get("counts", True) and me.get("name") not in (promo.get("approvers") or []),
            "approval_note": (promo.get("your_approval") or {}).get("why") if open_ else None,
            "may_confirm": promo["state"] in ("PLANNED", "PENDING_APPROVAL") and not promo.get("confirmed_by")
            and self.rules.may(role, "POST", f"/api/promotions/{pid}/confirm"),
            "may_cancel": open_ and self.rules.may(role, "POST", f"/api/promotions/{pid}/cancel"),
            "confirm_word": CONFIRM_WORD,
        }

    async def _approve(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        pid = request.path_params["promotion_id"]
        promo = await api.post(f"/api/promotions/{quote(pid, safe='')}/approvals", {})
        return f"/promotions/{quote(pid, safe='')}", f"approved by {me['name']}: {promotion_text.approvals_detail(promo)}"

    async def _confirm(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        pid = request.path_params["promotion_id"]
        promo = await api.post(f"/api/promotions/{quote(pid, safe='')}/confirm", {"confirm": form.get("confirm", "")})
        return f"/promotions/{quote(pid, safe='')}", f"confirmed by {me['name']}: {promo['state']}"

    async def _cancel(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        pid = request.path_params["promotion_id"]
        await api.post(f"/api/promotions/{quote(pid, safe='')}/cancel", {"reason": f"cancelled in the dashboard by {me['name']}"})
        return f"/promotions/{quote(pid, safe='')}", "promotion cancelled"

    # --- previews --------------------------------------------------------------------------------------------

    async def _previews(self, request: Request, api: UserApi, me: dict) -> tuple[str, dict[str, Any]]:
        project = request.path_params["project"]
        p = quote(project, safe="")
        rows = await api.get(f"/api/projects/{p}/previews")
        now = self.clock()
        return "previews.html", {
            "project": project,
            "previews": [(r, views.preview_line(r, now), views.money(r.get("monthly_cost"))) for r in rows],
            "may_approve": self.rules.may(me.get("role"), "POST", f"/api/projects/{p}/previews/1/approve"),
        }

    async def _approve_preview(self, request: Request, api: UserApi, form: dict[str, str], me: dict) -> tuple[str, str]:
        project, number = request.path_params["project"], request.path_params["number"]
        await api.post(f"/api/projects/{quote(project, safe='')}/previews/{number}/approve")
        return f"/projects/{quote(project, safe='')}/previews", f"pull request #{number}'s preview approved by {me['name']}"


# --- helpers -------------------------------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
             "X-Content-Type-Options": "nosniff",
             "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"}


def _path_quote(value: object) -> str:
    return quote(str(value), safe="")


def _env_api(project: str, env: str) -> str:
    return f"/api/projects/{quote(project, safe='')}/environments/{quote(env, safe='')}"


def _env_page(project: str, env: str) -> str:
    return f"/projects/{quote(project, safe='')}/environments/{quote(env, safe='')}"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_flash(response: Response, request: Request, text: str) -> None:
    response.set_cookie(_name(request, FLASH_COOKIE), quote(text[:300], safe=""),
                        **cookie_options(secure=_secure(request), max_age=60))


def _name(request: Request, base: str) -> str:
    return cookie_name(base, secure=_secure(request))


def _forget(response: Response, request: Request, base: str) -> None:
    secure = _secure(request)
    response.delete_cookie(cookie_name(base, secure=secure), path="/", secure=secure, httponly=True, samesite="lax")


def _flash_text(value: str | None) -> str | None:
    return unquote(value)[:300] if value else None


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (all a dashboard form sends), the last value of each field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise Refused(415, f"refused: a form body must be application/x-www-form-urlencoded, not {kind}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, f"refused: the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Refused(400, "refused: the form is not UTF-8") from None
    return {k: v[-1] for k, v in fields.items()}


def _variable_rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """`GET …/variables` (values already masked by the API) → rows: key, shown value, source, secret."""
    secrets_ = set(answer.get("secrets") or ())
    sources = answer.get("sources") or {}
    return [{"key": k, "value": v, "source": sources.get(k, "-"), "secret": k in secrets_}
            for k, v in sorted((answer.get("variables") or {}).items())]


def logrecords_line(record: dict[str, Any]) -> dict[str, str]:
    """One log record as the page prints it (the CLI's columns: time, where, level, message)."""
    where = record.get("service") or "-"
    if record.get("replica") is not None:
        where = f"{where}.{record['replica']}"
    return {"time": (record.get("time") or "")[11:19], "where": where, "level": record.get("level") or "-",
            "message": record.get("message") or ""}


def _sse(cursor: int, lines: list[dict[str, str]]) -> str:
    return f"id: {cursor}\ndata: {json.dumps(lines)}\n\n"

