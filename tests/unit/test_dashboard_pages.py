"""The dashboard's pages without a session, and its forms without the right CSRF token: nothing reaches the API.

The routes are enumerated from the dashboard itself (`route_table`), so a page added later is asked here too. The
controller is a trap: reaching it fails the test (tests/unit/test_api_auth.py's Trap). The signed-in paths, with a
real control plane and a real browser: tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import html
import re

import pytest
from api_users import single_token
from fastapi.testclient import TestClient
from test_api_auth import Trap

from branchyard.api.app import create_app
from branchyard.dashboard.app import route_table
from branchyard.dashboard.session import LOGIN_COOKIE, SESSION_COOKIE, Csrf, Session

TOKEN = "the-right-token"
KEY = "a-test-key"
APP = create_app(Trap(), gatekeeper=single_token(TOKEN), dashboard_key=lambda: KEY)
OPEN = {("GET", "/login"), ("POST", "/login"), ("GET", "/static/{name}")}  # sign-in itself, the stylesheet and script
PAGES = sorted((m, p) for m, p in route_table() if m == "GET" and (m, p) not in OPEN)
FORMS = sorted((m, p) for m, p in route_table() if m == "POST" and (m, p) not in OPEN)
A_SESSION = Session("0badc0de", "byd_not-a-real-token")


def url(path: str) -> str:
    return re.sub(r"\{[^}:]+(:int)?\}", "1", path)


def client(session: Session | str | None = None) -> TestClient:
    c = TestClient(APP, follow_redirects=False, base_url="http://deploy.shop.test")
    if session is not None:
        c.cookies.set(SESSION_COOKIE, session.cookie_value() if isinstance(session, Session) else session)
    return c


def test_the_dashboard_has_pages_and_forms() -> None:
    # were route_table() to come back empty, the tests below would ask nothing
    assert len(PAGES) >= 7 and len(FORMS) >= 10


@pytest.mark.parametrize(("method", "path"), PAGES, ids=[f"{m} {p}" for m, p in PAGES])
def test_every_page_without_a_session_goes_to_sign_in(method: str, path: str) -> None:
    response = client().get(url(path) + "?level=error")
    if path.endswith("/logs/stream"):  # an event stream, not a page: a plain 401 (EventSource cannot follow to a form)
        assert response.status_code == 401
        return
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + url(path).replace("/", "%2F") + "%3Flevel%3Derror"


@pytest.mark.parametrize("cookie", ["", "garbage", "no-dot-here", "a.b.c", "id.has space"])
def test_a_malformed_session_cookie_is_no_session(cookie: str) -> None:
    response = client(cookie).get("/")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


@pytest.mark.parametrize(("method", "path"), FORMS, ids=[f"{m} {p}" for m, p in FORMS])
def test_every_form_without_a_session_goes_to_sign_in_and_does_nothing(method: str, path: str) -> None:
    response = client().post(url(path), data={"csrf": "x", "confirm": "PROMOTE"})
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(("method", "path"), FORMS, ids=[f"{m} {p}" for m, p in FORMS])
@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "another-session"])
def test_every_form_without_its_sessions_csrf_token_is_refused(method: str, path: str, csrf: str | None) -> None:
    given = Csrf(lambda: KEY).for_session(Session("other", "byd_another")) if csrf == "another-session" else csrf
    data = {"deployment_id": "d", "key": "K", "value": "v", "confirm": "PROMOTE"} | ({"csrf": given} if given is not None else {})
    response = client(A_SESSION).post(url(path), data=data)
    assert response.status_code == 403
    assert "CSRF token is missing or wrong" in response.text  # and the trap controller was not reached


@pytest.mark.parametrize(("method", "path"), FORMS, ids=[f"{m} {p}" for m, p in FORMS])
def test_a_form_posted_from_another_site_is_refused_even_with_the_token(method: str, path: str) -> None:
    data = {"csrf": Csrf(lambda: KEY).for_session(A_SESSION)}
    response = client(A_SESSION).post(url(path), data=data, headers={"Origin": "https://evil.test"})
    assert response.status_code == 403 and "posted from another site" in response.text


def test_sign_in_needs_the_login_forms_csrf_token() -> None:
    c = client()
    form = c.get("/login")
    assert form.status_code == 200 and c.cookies.get(LOGIN_COOKIE)
    refused = c.post("/login", data={"token": TOKEN, "csrf": "forged"})
    assert refused.status_code == 403 and "sign-in form's CSRF token" in html.unescape(refused.text)
    assert SESSION_COOKIE not in refused.cookies


def test_sign_in_with_a_wrong_token_is_refused_with_the_apis_words() -> None:
    c = client()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', c.get("/login").text).group(1)
    refused = c.post("/login", data={"token": "wrong", "csrf": csrf})
    assert refused.status_code == 401 and "sign-in refused: missing or wrong API token" in refused.text
    assert SESSION_COOKIE not in refused.cookies


@pytest.mark.parametrize("target", ["//evil.test/", "https://evil.test/x", "/\\evil.test"])
def test_sign_in_never_sends_the_browser_to_another_site(target: str) -> None:
    page = client().get("/login", params={"next": target}).text
    assert 'name="next" value="/"' in page


def test_pages_forbid_framing_and_caching_and_set_a_content_security_policy() -> None:
    response = client().get("/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_static_files_are_served_and_nothing_else() -> None:
    c = client()
    assert c.get("/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert c.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/static/..%2Fapp.py").status_code == 404
    assert c.get("/static/templates").status_code == 404
