"""`branchyard login|logout|context` and `git-credential`: the CLI and git against a control plane elsewhere.

The contexts (URL + token) live in the user's config directory (cli/contexts.py); which one a command uses is
decided there. A token is read from a hidden prompt or stdin, never from argv, and never printed.
"""

from __future__ import annotations

import os
import sys

import click

from .. import errors
from . import ui
from .context import State, json_option, pass_state
from .contexts import ENV_TARGET, LOCAL, Target, check_name, default_name, normalize_url


@click.command()
@click.argument("url")
@click.option("--token-stdin", is_flag=True, help="Read the token from stdin (first line) instead of a prompt.")
@click.option("--name", default=None, help="The context's name (default: the URL's host and port).")
@pass_state
def login(state: State, url: str, token_stdin: bool, name: str | None) -> None:
    """Log in to a control plane at URL with its API token; the context becomes the current one."""
    from .client import Client

    url = normalize_url(url, what="login")
    name = check_name(name or default_name(url))
    if token_stdin:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        token = click.prompt(f"API token for {url}", hide_input=True, default="", show_default=False).strip()
    else:
        raise errors.BadInput("login: no terminal to ask for the token on: pass --token-stdin and pipe it in")
    if not token:
        raise errors.BadInput("login: no token given; nothing saved")
    try:
        me = Client(Target(name, url, token)).get("/api/whoami")
    except errors.Unauthorized as err:
        raise errors.Unauthorized(f"login: the control plane at {url} refused the token ({err}); nothing saved") from None
    except errors.ServerUnavailable as err:
        raise errors.ServerUnavailable(f"login: {err}; nothing saved") from None
    store = state.contexts()
    store.add(name, url, token)
    ui.success(f"logged in to {url} as {me['name']} ({me['role']}), context {name} (now current; stored in {store.path})")


@click.command()
@click.argument("name", required=False)
@pass_state
def logout(state: State, name: str | None) -> None:
    """Forget a context and its token (default: the current one)."""
    store = state.contexts()
    name = name or state.context or store.load()["current"]
    if not name or name == LOCAL:
        raise errors.BadInput("logout: not logged in to any control plane (the local one needs no login)")
    store.remove(name)
    ui.success(f"logged out of {name}; its token is deleted (current: {store.load()['current'] or LOCAL})")


@click.group()
def context() -> None:
    """The control planes this CLI knows (`login` adds one): list them, choose the current one."""


@context.command("list")
@json_option
@pass_state
def context_list(state: State, as_json: bool) -> None:
    """Known contexts; `local` is this machine's own control plane (BRANCHYARD_HOME)."""
    data = state.contexts().load()
    active = state.target.name if state.target is not None else LOCAL
    rows = [{"name": LOCAL, "url": None, "current": data["current"] in (None, LOCAL), "active": active == LOCAL}]
    rows += [{"name": n, "url": c["url"], "current": data["current"] == n, "active": active == n}
             for n, c in sorted(data["contexts"].items())]
    if active == ENV_TARGET:
        rows.append({"name": ENV_TARGET, "url": state.target.url, "current": False, "active": True})  # type: ignore[union-attr]
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["", "NAME", "URL"], [("*" if r["active"] else "", r["name"], r["url"] or "(this machine)") for r in rows])


@context.command("use")
@click.argument("name")
@pass_state
def context_use(state: State, name: str) -> None:
    """Make NAME the current context (`local`: this machine's own control plane)."""
    state.contexts().use(name)
    ui.success(f"current context: {name}")


@click.command("git-credential", hidden=True)
@click.argument("action")
def git_credential(action: str) -> None:
    """git's credential helper protocol (`init`/`link` configure the lighter `python -m branchyard.cli.credential`)."""
    from .credential import answer

    sys.stdout.write(answer(action, sys.stdin.read(), os.environ))
