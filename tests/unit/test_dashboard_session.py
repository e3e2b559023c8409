"""dashboard/session.py (pure): the session cookie's value, CSRF tokens bound to a session or a sign-in nonce, where
sign-in may send the browser next, the Origin check of form posts, and the cookies' options."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from branchyard.dashboard.session import Csrf, Session, cookie_options, safe_next, same_origin

TOKEN = "byd_" + "Q2x1ZS1mb3ItdGhlLXRlc3Qtb25seV9hYmNkZWZnaGlq"  # the API's shape: byd_ + token_urlsafe(32)
SESSION = Session("0a1b2c3d", TOKEN)
OTHER = Session("4e5f6a7b", "byd_" + "b3RoZXItdG9rZW4tb2YtYW5vdGhlci1icm93c2VyXzEy")


# --------------------------------------------------------------------------------------------- the cookie


@pytest.mark.parametrize("session", [
    SESSION,
    OTHER,
    Session("a", "b"),
    Session("0a1b2c3d", "byd_-_-_"),  # urlsafe base64's - and _
])  # fmt: skip
def test_cookie_value_round_trip(session: Session) -> None:
    value = session.cookie_value()
    assert value == f"{session.token_id}.{session.token}"
    assert Session.from_cookie(value) == session


@pytest.mark.parametrize("value", [
    None,
    "",
    "0a1b2c3d" + TOKEN,  # no dot
    "0a1b2c3d.byd_abc.def",  # two dots
    ".",
    f".{TOKEN}",  # empty id
    "0a1b2c3d.",  # empty token
    "0a1b2c3d.byd abc",  # a space
    '0a1b2c3d."byd_abc"',  # quotes
    "0a1b2c3d.byd_abc;path=/",  # a semicolon (and an attribute)
    "0a1b2c3d.byd_abc=",  # base64 padding is not in token_urlsafe
    "0a1b2c3d.byd+abc/",  # plain base64's + and /
    "0a 1b.byd_abc",  # outside urlsafe base64 in the id
    "0a1b2c3d.byd_abc\n",
    "0a1b2c3d.byd%5Fabc",
    pytest.param("0a1b2c3d.byd_t\u00f6k\u00e9n", id="non-ascii-letters"),  # httpx could not send it (a 500)
    pytest.param("\u0661\u0662.\u0663", id="non-ascii-digits"),
])  # fmt: skip
def test_from_cookie_refuses(value: str | None) -> None:
    assert Session.from_cookie(value) is None


# --------------------------------------------------------------------------------------------- CSRF


class CountingKey:
    """The home's key, read through a callable that counts its calls."""

    def __init__(self, value: str = "the-dashboard-key") -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_csrf_for_session_is_deterministic_per_key_and_token() -> None:
    a, b = Csrf(CountingKey("k1")), Csrf(CountingKey("k1"))
    assert a.for_session(SESSION) == a.for_session(SESSION) == b.for_session(SESSION)
    assert a.for_session(Session("another-id", TOKEN)) == a.for_session(SESSION)  # bound to the token, not its id
    assert len(a.for_session(SESSION)) == 64 and set(a.for_session(SESSION)) <= set("0123456789abcdef")  # SHA-256


@pytest.mark.parametrize(("first", "second"), [
    pytest.param(lambda: Csrf(CountingKey("k1")).for_session(SESSION),
                 lambda: Csrf(CountingKey("k1")).for_session(OTHER), id="another-token"),
    pytest.param(lambda: Csrf(CountingKey("k1")).for_session(SESSION),
                 lambda: Csrf(CountingKey("k2")).for_session(SESSION), id="another-key"),
    pytest.param(lambda: Csrf(CountingKey("k1")).for_session(SESSION),
                 lambda: Csrf(CountingKey("k1")).for_login(SESSION.token), id="login-vs-session-purpose"),
    pytest.param(lambda: Csrf(CountingKey("k1")).for_login("nonce-1"),
                 lambda: Csrf(CountingKey("k1")).for_login("nonce-2"), id="another-nonce"),
    pytest.param(lambda: Csrf(CountingKey("k1")).for_login("nonce-1"),
                 lambda: Csrf(CountingKey("k2")).for_login("nonce-1"), id="another-key-login"),
])  # fmt: skip
def test_csrf_tokens_differ(first: Callable[[], str], second: Callable[[], str]) -> None:
    assert first() != second()


def test_a_login_token_never_passes_as_a_session_token_nor_the_reverse() -> None:
    csrf = Csrf(CountingKey())
    nonce = SESSION.token  # the same value under both purposes
    assert csrf.login_ok(nonce, csrf.for_login(nonce)) and csrf.session_ok(SESSION, csrf.for_session(SESSION))
    assert not csrf.session_ok(SESSION, csrf.for_login(nonce))
    assert not csrf.login_ok(nonce, csrf.for_session(SESSION))


@pytest.mark.parametrize(("given", "ok"), [
    pytest.param("right", True, id="its-own-token"),
    pytest.param(None, False, id="none"),
    pytest.param("", False, id="empty"),
    pytest.param("0" * 64, False, id="wrong-value"),
    pytest.param("right-upper", False, id="upper-case"),
    pytest.param("right-truncated", False, id="truncated"),
    pytest.param("other-session", False, id="another-sessions-token"),
    pytest.param("other-key", False, id="same-session-another-key"),
    pytest.param("\u00e9", False, id="non-ascii"),  # compare_digest on a non-ASCII str raised (a 500, not a 403)
])  # fmt: skip
def test_session_ok(given: str | None, ok: bool) -> None:
    csrf = Csrf(CountingKey())
    right = csrf.for_session(SESSION)
    value = {"right": right, "right-upper": right.upper(), "right-truncated": right[:-1],
             "other-session": csrf.for_session(OTHER), "other-key": Csrf(CountingKey("k2")).for_session(SESSION),
             }.get(given or "", given)
    assert csrf.session_ok(SESSION, value) is ok


@pytest.mark.parametrize(("nonce", "given", "ok"), [
    pytest.param("nonce-1", "right", True, id="its-own-token"),
    pytest.param("nonce-1", None, False, id="none"),
    pytest.param("nonce-1", "", False, id="empty"),
    pytest.param("nonce-1", "0" * 64, False, id="wrong-value"),
    pytest.param("nonce-1", "other-nonce", False, id="another-nonces-token"),
    pytest.param(None, "right", False, id="no-nonce-cookie"),
    pytest.param("", "right", False, id="empty-nonce-cookie"),
    pytest.param(None, "empty-nonce", False, id="no-nonce-cookie-with-the-empty-nonces-token"),
    pytest.param(None, None, False, id="nothing"),
])  # fmt: skip
def test_login_ok(nonce: str | None, given: str | None, ok: bool) -> None:
    csrf = Csrf(CountingKey())
    value = {"right": csrf.for_login("nonce-1"), "other-nonce": csrf.for_login("nonce-2"),
             "empty-nonce": csrf.for_login("")}.get(given or "", given)
    assert csrf.login_ok(nonce, value) is ok


def test_the_key_is_read_once_at_first_use() -> None:
    key = CountingKey()
    csrf = Csrf(key)
    assert key.calls == 0  # not at construction: the key file is made at first use
    token = csrf.for_session(SESSION)
    csrf.for_login("nonce")
    csrf.session_ok(SESSION, token)
    csrf.session_ok(OTHER, token)
    csrf.login_ok("nonce", csrf.for_login("nonce"))
    assert key.calls == 1


# --------------------------------------------------------------------------------------------- sign-in's next


@pytest.mark.parametrize(("target", "goes_to"), [
    ("/", "/"),
    ("/projects/x?y=1", "/projects/x?y=1"),
    ("/projects/shop/environments/pr-12#logs", "/projects/shop/environments/pr-12#logs"),
    (None, "/"),
    ("", "/"),
    ("//evil.test", "/"),
    ("//evil.test/projects", "/"),
    ("https://evil.test/", "/"),
    ("http:/evil.test", "/"),
    ("/\\evil", "/"),
    ("/\\/evil.test", "/"),
    ("/\t/evil.test", "/"),  # a tab that browsers drop: //evil.test
    ("javascript:alert(1)", "/"),
    ("projects", "/"),
])  # fmt: skip
def test_safe_next(target: str | None, goes_to: str) -> None:
    assert safe_next(target) == goes_to


# --------------------------------------------------------------------------------------------- Origin


@pytest.mark.parametrize(("origin", "host", "ok"), [
    (None, "dash.example:8443", True),  # no header: the CSRF token alone decides
    ("", "dash.example:8443", True),
    ("null", "dash.example:8443", False),  # an opaque origin (sandboxed frame, data: URL)
    ("https://dash.example:8443", "dash.example:8443", True),
    ("https://dash.example", "dash.example", True),
    ("http://127.0.0.1:7070", "127.0.0.1:7070", True),
    ("https://evil.test", "dash.example", False),
    ("https://dash.example.evil.test", "dash.example", False),
    ("https://dash.example:9999", "dash.example:8443", False),
    ("https://dash.example", "dash.example:8443", False),
    ("https://DASH.Example:8443", "dash.EXAMPLE:8443", True),
    ("https://dash.example", None, False),  # no Host header
    ("https://dash.example", "", False),
])  # fmt: skip
def test_same_origin(origin: str | None, host: str | None, ok: bool) -> None:
    assert same_origin(origin, host) is ok


# --------------------------------------------------------------------------------------------- cookies


@pytest.mark.parametrize(("secure", "max_age"), [(True, 43200), (False, 3600)])
def test_cookie_options(secure: bool, max_age: int) -> None:
    assert cookie_options(secure=secure, max_age=max_age) == {
        "max_age": max_age, "path": "/", "httponly": True, "samesite": "lax", "secure": secure}


@pytest.mark.parametrize(("secure", "name"), [(True, "__Host-branchyard_session"), (False, "branchyard_session")])
def test_cookie_name_is_host_only_over_https(secure: bool, name: str) -> None:
    from branchyard.dashboard.session import cookie_name

    assert cookie_name("branchyard_session", secure=secure) == name
