"""`branchyard users add|list|remove`, `branchyard tokens create|list|revoke` and `branchyard whoami`: the people on
a control plane, their roles, and their API tokens (a new token is printed once and never again)."""

from __future__ import annotations

from urllib.parse import quote

import click

from .. import errors
from . import ui
from .context import State, json_option, pass_state

ROLES = ("admin", "member", "viewer")


@click.group()
def users() -> None:
    """The control plane's users and their roles (admin, member, viewer)."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, help="admin, member or viewer.")
@json_option
@pass_state
def users_add(state: State, name: str, role: str, as_json: bool) -> None:
    """Add a user (admins only) and print their first token, once."""
    if role.strip().lower() not in ROLES:
        raise errors.BadInput(f"users add: --role {role!r}: expected one of {', '.join(ROLES)}")
    user = state.client().post("/api/users", {"name": name, "role": role})
    if as_json:
        ui.print_json(user)
        return
    ui.success(f"user {user['name']} added as {user['role']}")
    ui.info(f"their token (shown once; give it to {user['name']} over a private channel):")
    ui.info(f"  {user['token']}")


@users.command("list")
@json_option
@pass_state
def users_list(state: State, as_json: bool) -> None:
    """The users and their roles."""
    rows = state.client().get("/api/users")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["NAME", "ROLE", "ADDED", "BY"], [(u["name"], u["role"], (u["created_at"] or "")[:10], u["created_by"] or "")
                                             for u in rows])


@users.command("remove")
@click.argument("name")
@pass_state
def users_remove(state: State, name: str) -> None:
    """Remove a user (admins only): their tokens stop working at once. The last admin cannot be removed."""
    state.client().delete(f"/api/users/{quote(name, safe='')}")
    ui.success(f"user {name} removed; their tokens no longer work")


@click.group()
def tokens() -> None:
    """Your own API tokens."""


@tokens.command("create")
@click.option("--name", default=None, help="What the token is for (e.g. laptop, ci).")
@click.option("--expires", "expires", type=float, default=None, metavar="DAYS", help="Expire after DAYS days.")
@json_option
@pass_state
def tokens_create(state: State, name: str | None, expires: float | None, as_json: bool) -> None:
    """Make a new token for yourself and print it, once."""
    made = state.client().post("/api/tokens", {"name": name, "expires_days": expires})
    if as_json:
        ui.print_json(made)
        return
    until = f", expires {made['expires_at']}" if made["expires_at"] else ""
    ui.success(f"token {made['id']} ({made['name']}{until}); shown once:")
    ui.info(f"  {made['token']}")


@tokens.command("list")
@json_option
@pass_state
def tokens_list(state: State, as_json: bool) -> None:
    """Your tokens (never their values)."""
    rows = state.client().get("/api/tokens")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["ID", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED"],
             [(t["id"], t["name"], t["state"], t["created_at"] or "", t["expires_at"] or "never", t["last_used_at"] or "")
              for t in rows])


@tokens.command("revoke")
@click.argument("token_id")
@pass_state
def tokens_revoke(state: State, token_id: str) -> None:
    """Revoke one of your tokens: refused from now on."""
    done = state.client().delete(f"/api/tokens/{quote(token_id, safe='')}")
    ui.success(f"token {done['id']} ({done['name']}) revoked")


@click.command()
@json_option
@pass_state
def whoami(state: State, as_json: bool) -> None:
    """Who the control plane takes you for: your user name and role."""
    me = state.client().get("/api/whoami")
    if as_json:
        ui.print_json(me)
        return
    ui.info(f"{me['name']} ({me['role']})")
