"""The dashboard's sessions and CSRF tokens (pure: values in, values out; the routes in `dashboard/app.py` use them).

A **session** is an API token of the signed-in user, made by the API itself at sign-in (`POST /api/tokens`, named
`dashboard session`, expiring after `SESSION_HOURS`) with the token the user typed. The cookie carries it (with its
id, so that sign-out can revoke it: `DELETE /api/tokens/{id}`); the store keeps only its SHA-256 like every token's.
So a session is exactly as strong as the API's own check on every request: revoked, expired, or the user removed →
refused at once, and every page's API call is the user's own, checked by the API's permissions. It appears in
`branchyard tokens list`, where the user can revoke it from a terminal too.

The cookie is HttpOnly (no script reads it), SameSite=Lax (no other site's form posts it), `Secure` and named
`__Host-…` when the request came over HTTPS (the edge's `X-Forwarded-Proto`, trusted from loopback by uvicorn; see
`cookie_name`), `Path=/`, and as long-lived as the token.

**CSRF**: every state-changing form carries a token that is an HMAC, under a key of this home (`dashboard.key`,
0600), of the session's token — a page of another site can neither read it nor compute it. Sign-in, before any
session exists, is protected the same way with a random nonce in a short-lived cookie of its own (a login-CSRF
attack would sign the victim in as the attacker).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

SESSION_COOKIE = "branchyard_session"
LOGIN_COOKIE = "branchyard_login"
SESSION_HOURS = 12.0
SESSION_TOKEN_NAME = "dashboard session"
LOGIN_NONCE_SECONDS = 3600
KEY_FILE = "dashboard.key"
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")  # a token's and a token id's alphabet (secrets.token_urlsafe, token_hex)


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the id and the value of the API token made for it at sign-in."""

    token_id: str
    token: str

    def cookie_value(self) -> str:
        return f"{self.token_id}.{self.token}"

    @classmethod
    def from_cookie(cls, value: str | None) -> Session | None:
        """The session a cookie names, None for a missing or malformed one (the API decides whether it is valid)."""
        if not value or value.count(".") != 1:
            return None
        token_id, token = value.split(".")
        if not _URLSAFE.fullmatch(token_id) or not _URLSAFE.fullmatch(token):
            return None
        return cls(token_id, token)


class Csrf:
    """CSRF tokens bound to a session (or to a sign-in nonce), checked in constant time."""

    def __init__(self, key: Callable[[], str]) -> None:
        self._key_source = key  # read at first use (the home's key file, made then if new)
        self._key: bytes | None = None

    def _mac(self, purpose: str, value: str) -> str:
        if self._key is None:
            self._key = self._key_source().encode()
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def for_session(self, session: Session) -> str:
        return self._mac("session", session.token)

    def for_login(self, nonce: str) -> str:
        return self._mac("login", nonce)

    def session_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and _same(self.for_session(session), given or "")

    def login_ok(self, nonce: str | None, given: str | None) -> bool:
        return bool(nonce) and bool(given) and _same(self.for_login(nonce or ""), given or "")


def _same(expected: str, given: str) -> bool:
    """Constant time, on bytes (a str with non-ASCII characters makes compare_digest raise: a forged form, not a 500)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def cookie_name(base: str, *, secure: bool) -> str:
    """Over HTTPS a dashboard cookie's name starts with `__Host-`: a browser then takes it only from this very host,
    Secure, with Path=/ and no Domain — so an app on a sibling host (a preview runs any pull request's code, on
    `<app>-pr-N.<domain>` beside the control plane's `deploy.<domain>`) cannot plant a session or a sign-in nonce of its
    choosing. Plain HTTP (loopback, `*.localhost`) cannot use the prefix: the name is `base`."""
    return f"__Host-{base}" if secure else base


def cookie_options(*, secure: bool, max_age: int) -> dict[str, object]:
    """Starlette's `set_cookie` arguments of every dashboard cookie."""
    return {"max_age": max_age, "path": "/", "httponly": True, "samesite": "lax", "secure": secure}


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path on this host only (`/…`, never `//host` or a URL), else the board."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def same_origin(origin: str | None, host: str | None) -> bool:
    """A form post's `Origin` header (when the browser sends one) names the host it was posted to. Browsers send it
    on every cross-site POST, so a mismatch is a forged form; no header (an old client, or curl) leaves the CSRF
    token alone to decide."""
    if not origin:
        return True
    if origin == "null" or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
