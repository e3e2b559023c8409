"""Users and tokens (controller/users.py) on a real store: tokens shown once and kept only as a hash, refused at
once when revoked, expired or their user removed; the bootstrap admin; the refusals named by the issue."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from branchyard.access import SYSTEM
from branchyard.controller.users import BOOTSTRAP_ADMIN, Users, token_hash
from branchyard.errors import BadInput, Conflict, NotFound, Unauthorized
from branchyard.store import models as m
from branchyard.store.db import Store


@pytest.fixture
def users(tmp_path):
    store = Store(tmp_path / "state.db")
    yield Users(store)
    store.close()


def events(users: Users) -> list[tuple[str, str, int | None]]:
    with users.store.session() as s:
        return [(e.kind, e.actor, e.actor_id) for e in s.query(m.Event).order_by(m.Event.id)]


def test_the_first_start_makes_the_machines_token_an_admins(users: Users) -> None:
    admin = users.bootstrap("machine-token")
    assert (admin.name, admin.role) == (BOOTSTRAP_ADMIN, "admin")
    assert users.authenticate("machine-token") == admin
    assert users.bootstrap("machine-token") == admin  # every later start: the same admin, no new row
    assert [u["name"] for u in users.list()] == [BOOTSTRAP_ADMIN]
    # the token file deleted and made again: a new token for the same admin (the way back in for the machine's owner)
    assert users.bootstrap("new-machine-token") == admin
    assert users.authenticate("machine-token") == admin  # the old one stays valid until revoked


def test_tokens_are_shown_once_and_stored_only_as_their_hash(users: Users, tmp_path) -> None:
    admin = users.bootstrap("machine-token")
    alice = users.add("alice", "member", admin)
    assert alice["token"].startswith("byd_") and len(alice["token"]) > 40
    assert "token" not in users.list()[0] and all("token" not in t for t in users.tokens(users.authenticate(alice["token"])))
    raw = sqlite3.connect(tmp_path / "state.db").execute("SELECT token_hash FROM api_tokens").fetchall()
    assert (token_hash(alice["token"]),) in raw
    assert not any(alice["token"] in row[0] or "machine-token" in row[0] for row in raw)


def test_a_users_own_tokens(users: Users) -> None:
    admin = users.bootstrap("machine-token")
    bob = users.authenticate(users.add("bob", "viewer", admin)["token"])
    made = users.create_token(bob, "laptop", 30)
    assert users.authenticate(made["token"]) == bob
    listed = {t["id"]: t for t in users.tokens(bob)}
    assert listed[made["id"]]["name"] == "laptop" and listed[made["id"]]["state"] == "active"
    assert listed[made["id"]]["expires_at"] is not None
    with pytest.raises(NotFound, match="you have no token"):
        users.revoke(admin, made["id"])  # not another user's
    users.revoke(bob, made["id"])
    with pytest.raises(Unauthorized, match=f"token {made['id']} was revoked"):
        users.authenticate(made["token"])
    assert {t["id"]: t["state"] for t in users.tokens(bob)}[made["id"]] == "revoked"


def test_an_expired_token_is_refused_at_once(users: Users) -> None:
    admin = users.bootstrap("machine-token")
    made = users.create_token(admin, "short", 1)
    with users.store.session() as s:
        s.get(m.ApiToken, made["id"]).expires_at = m.utcnow() - dt.timedelta(seconds=1)
    with pytest.raises(Unauthorized, match="expired"):
        users.authenticate(made["token"])


def test_a_removed_users_tokens_stop_working_and_the_name_can_be_given_again(users: Users) -> None:
    admin = users.bootstrap("machine-token")
    first = users.add("carol", "member", admin)
    users.remove("carol", admin)
    with pytest.raises(Unauthorized, match="removed user"):
        users.authenticate(first["token"])
    again = users.add("carol", "viewer", admin)  # a new identity: the old token stays refused
    assert users.authenticate(again["token"]).role == "viewer"
    with pytest.raises(Unauthorized):
        users.authenticate(first["token"])
    assert ("user.removed", "admin", admin.user_id) in events(users)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda u, a: u.add("alice", "member", a), Conflict, "users add: a user named 'alice' exists already"),
    (lambda u, a: u.add("Bad Name", "member", a), BadInput, "user name 'Bad Name': expected lower-case letters"),
    (lambda u, a: u.add("system", "member", a), BadInput, "user name 'system' is kept for the platform"),
    (lambda u, a: u.add("dave", "owner", a), BadInput, "users add: --role 'owner': expected one of admin, member, viewer"),
    (lambda u, a: u.remove("nobody", a), NotFound, "users remove: no user named 'nobody'"),
    (lambda u, a: u.remove(BOOTSTRAP_ADMIN, a), Conflict, "users remove: admin is the last admin; add another admin first"),
    (lambda u, a: u.create_token(a, "x", 0), BadInput, "tokens create --expires 0: expected days"),
    (lambda u, a: u.create_token(a, "x" * 65, None), BadInput, "tokens create --name"),
    (lambda u, a: u.create_token(SYSTEM, None, None), BadInput, "system is not a user"),
    (lambda u, a: u.authenticate(""), Unauthorized, "missing or wrong API token"),
    (lambda u, a: u.authenticate("byd_nope"), Unauthorized, "missing or wrong API token"),
])
def test_bad_input_changes_nothing(users: Users, call, error, message) -> None:
    admin = users.bootstrap("machine-token")
    users.add("alice", "member", admin)
    before = (users.list(), users.tokens(admin), events(users))
    with pytest.raises(error) as raised:
        call(users, admin)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert (users.list(), users.tokens(admin), events(users)) == before


def test_removing_an_admin_is_allowed_while_another_remains(users: Users) -> None:
    admin = users.bootstrap("machine-token")
    second = users.authenticate(users.add("erin", "admin", admin)["token"])
    users.remove(BOOTSTRAP_ADMIN, second)
    with pytest.raises(Unauthorized):
        users.authenticate("machine-token")
    with pytest.raises(Conflict, match="erin is the last admin"):
        users.remove("erin", second)
