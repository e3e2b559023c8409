"""Users and their API tokens: who is asking (`authenticate`), `users add/list/remove`, `tokens create/list/revoke`.

A token is 256 random bits shown once, when it is made; only its SHA-256 is stored (a token is not a password a
person picks: a fast hash of 256 random bits cannot be reversed, and the check stays cheap on every request). Each
request looks its token up again, so a revoked or expired token, or a removed user's, is refused at once.

The bootstrap admin: the first start registers the machine's own token (`$BRANCHYARD_HOME/token`, mode 0600, the one
the local CLI and the git hook read from server.json) as the token of an admin named `admin`. The operator on the
machine is that admin without a step of their own. Deleting the token file and restarting makes a new one for the
same admin (the way back in for whoever holds the machine, after the bootstrap token was revoked).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from ..access import ADMIN, Actor, check_role, check_user_name
from ..errors import BadInput, Conflict, NotFound, Unauthorized
from ..store import models as m
from ..store.db import Store

BOOTSTRAP_ADMIN = "admin"
BOOTSTRAP_TOKEN_NAME = "bootstrap (BRANCHYARD_HOME/token)"
TOKEN_PREFIX = "byd_"
MAX_EXPIRY_DAYS = 3650
_LAST_USED_EVERY = dt.timedelta(minutes=1)  # at most one write per token per minute for `last_used_at`
_WRONG = "missing or wrong API token"


# Built once: building and compiling the statement was most of a lookup's time.
_TOKEN_QUERY = (select(m.ApiToken.id, m.ApiToken.expires_at, m.ApiToken.revoked_at, m.ApiToken.last_used_at,
                       m.User.id, m.User.name, m.User.role, m.User.removed_at)
                .join(m.User, m.User.id == m.ApiToken.user_id).where(m.ApiToken.token_hash == bindparam("digest")))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Users:
    """The users and tokens of one control plane, in its store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- who is asking ---------------------------------------------------------------------------------------

    def authenticate(self, token: str) -> Actor:
        """The user a token belongs to, or Unauthorized (missing, unknown, revoked, expired, or the user removed).

        On every request (on the API's event loop), so one prepared Core SELECT on a connection of its own, outside
        the store's write lock (SQLite's WAL lets it read beside a writer): ~50 µs, where an ORM session cost ~1.7 ms
        (benchmarks/bench_auth.py)."""
        if not token:
            raise Unauthorized(_WRONG)
        now = m.utcnow()
        with self.store.engine.connect() as connection:
            row = connection.execute(_TOKEN_QUERY, {"digest": token_hash(token)}).first()
        if row is None:
            raise Unauthorized(_WRONG)
        token_id, expires_at, revoked_at, last_used_at, user_id, name, role, removed_at = row
        if removed_at is not None:
            raise Unauthorized(f"token {token_id} belongs to a removed user")
        if revoked_at is not None:
            raise Unauthorized(f"token {token_id} was revoked")
        if expires_at is not None and expires_at <= now:
            raise Unauthorized(f"token {token_id} expired at {_iso(expires_at)}; make a new one with "
                               "`branchyard tokens create`")
        if last_used_at is None or now - last_used_at >= _LAST_USED_EVERY:
            # a plain UPDATE, not a session under the store's lock: this runs on the API's event loop, which must
            # never wait for a lock a deploy thread holds (at worst SQLite makes it wait for one short transaction)
            with self.store.engine.begin() as connection:
                connection.execute(update(m.ApiToken).where(m.ApiToken.id == token_id).values(last_used_at=now))
        return Actor(name, user_id, role)

    def bootstrap(self, token: str) -> Actor:
        """Make `token` (the machine's own) an admin's: the first admin's, or a new `admin` when there is none."""
        digest = token_hash(token)
        with self.store.session() as s:
            known = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
            if known is not None:
                return _actor(s.get(m.User, known.user_id))
            admin = s.scalar(select(m.User).where(m.User.role == ADMIN, m.User.removed_at.is_(None)).order_by(m.User.id))
            if admin is None:
                taken = _active(s, BOOTSTRAP_ADMIN)
                admin = m.User(name=BOOTSTRAP_ADMIN if taken is None else _free_name(s, BOOTSTRAP_ADMIN), role=ADMIN,
                               created_by="system")
                s.add(admin)
                s.flush()
            s.add(m.ApiToken(id=_token_id(s), user_id=admin.id, name=BOOTSTRAP_TOKEN_NAME, token_hash=digest))
            return _actor(admin)

    # --- users -----------------------------------------------------------------------------------------------

    def add(self, name: str, role: str, by: Actor) -> dict[str, Any]:
        """A new user with their first token (in the answer, once)."""
        name, role = check_user_name(name), check_role(role)
        token = new_token()
        with self.store.session() as s:
            if _active(s, name) is not None:
                raise Conflict(f"users add: a user named {name!r} exists already")
            user = m.User(name=name, role=role, created_by=by.name)
            s.add(user)
            s.flush()
            s.add(m.ApiToken(id=_token_id(s), user_id=user.id, name="first token", token_hash=token_hash(token)))
            self.store.record(s, "-", "user.added", f"user {name} added as {role}", actor=by)
            return _user_dict(user) | {"token": token}

    def list(self) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return [_user_dict(u) for u in s.scalars(select(m.User).where(m.User.removed_at.is_(None)).order_by(m.User.name))]

    def remove(self, name: str, by: Actor) -> dict[str, Any]:
        """Remove a user (their tokens stop working at once); never the last admin."""
        name = check_user_name(name)
        with self.store.session() as s:
            user = _active(s, name)
            if user is None:
                raise NotFound(f"users remove: no user named {name!r} (see `branchyard users list`)")
            if user.role == ADMIN:
                admins = s.scalar(select(func.count()).select_from(m.User)
                                  .where(m.User.role == ADMIN, m.User.removed_at.is_(None)))
                if admins <= 1:
                    raise Conflict(f"users remove: {name} is the last admin; add another admin first")
            user.removed_at = m.utcnow()
            self.store.record(s, "-", "user.removed", f"user {name} removed", actor=by)
            return {"removed": name}

    # --- one's own tokens ------------------------------------------------------------------------------------

    def create_token(self, actor: Actor, name: str | None, expires_days: float | None) -> dict[str, Any]:
        """A new token for `actor` (in the answer, once), optionally expiring after `expires_days`."""
        label = (name or "").strip() or "token"
        if len(label) > 64 or not label.isprintable():
            raise BadInput(f"tokens create --name {name!r}: at most 64 printable characters")
        expires = None
        if expires_days is not None:
            if not 0 < expires_days <= MAX_EXPIRY_DAYS:
                raise BadInput(f"tokens create --expires {expires_days:g}: expected days from more than 0 to "
                               f"{MAX_EXPIRY_DAYS}")
            expires = m.utcnow() + dt.timedelta(days=expires_days)
        token = new_token()
        with self.store.session() as s:
            row = m.ApiToken(id=_token_id(s), user_id=_user_id(actor), name=label, token_hash=token_hash(token),
                             expires_at=expires)
            s.add(row)
            s.flush()
            self.store.record(s, "-", "token.created", f"{actor.name} created token {row.id} ({label})", actor=actor)
            return _token_dict(row) | {"token": token}

    def tokens(self, actor: Actor) -> list[dict[str, Any]]:
        with self.store.session() as s:
            rows = s.scalars(select(m.ApiToken).where(m.ApiToken.user_id == _user_id(actor)).order_by(m.ApiToken.created_at))
            return [_token_dict(r) for r in rows]

    def revoke(self, actor: Actor, token_id: str) -> dict[str, Any]:
        """Revoke one of `actor`'s own tokens (refused at once from then on)."""
        with self.store.session() as s:
            row = s.get(m.ApiToken, (token_id or "").strip())
            if row is None or row.user_id != _user_id(actor):
                raise NotFound(f"tokens revoke: you have no token {token_id!r} (see `branchyard tokens list`)")
            if row.revoked_at is None:
                row.revoked_at = m.utcnow()
                self.store.record(s, "-", "token.revoked", f"{actor.name} revoked token {row.id} ({row.name})", actor=actor)
            return _token_dict(row)

    def whoami(self, actor: Actor) -> dict[str, Any]:
        return {"name": actor.name, "role": actor.role, "id": actor.user_id}


def _actor(user: m.User) -> Actor:
    return Actor(user.name, user.id, user.role)


def _user_id(actor: Actor) -> int:
    if actor.user_id is None:
        raise BadInput(f"{actor.name} is not a user: tokens belong to users")
    return actor.user_id


def _active(s: Session, name: str) -> m.User | None:
    return s.scalar(select(m.User).where(m.User.name == name, m.User.removed_at.is_(None)))


def _free_name(s: Session, base: str) -> str:
    n = 2
    while _active(s, f"{base}{n}") is not None:
        n += 1
    return f"{base}{n}"


def _token_id(s: Session) -> str:
    while True:
        candidate = secrets.token_hex(4)
        if s.get(m.ApiToken, candidate) is None:
            return candidate


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") + "Z" if at else None


def _user_dict(u: m.User) -> dict[str, Any]:
    return {"name": u.name, "role": u.role, "id": u.id, "created_at": _iso(u.created_at), "created_by": u.created_by}


def _token_dict(t: m.ApiToken) -> dict[str, Any]:
    now = m.utcnow()
    state = ("revoked" if t.revoked_at else "expired" if t.expires_at and t.expires_at <= now else "active")
    return {"id": t.id, "name": t.name, "state": state, "created_at": _iso(t.created_at),
            "expires_at": _iso(t.expires_at), "revoked_at": _iso(t.revoked_at), "last_used_at": _iso(t.last_used_at)}
