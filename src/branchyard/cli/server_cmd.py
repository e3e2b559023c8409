"""`branchyard server`: run, stop and ask after the control plane (API, git remote, reconciler, router)."""

from __future__ import annotations

import sys

import click

from . import ui
from .context import State, json_option, pass_state


@click.group(invoke_without_command=True)
@click.option("--detach", is_flag=True, help="Run in the background and return when the API answers.")
@pass_state
@click.pass_context
def server(ctx: click.Context, state: State, detach: bool) -> None:
    """Run the control plane (API, git remote, reconciler, router)."""
    state.require_local("branchyard server")
    if ctx.invoked_subcommand is not None:
        return
    from .. import server as srv

    if detach:
        info = srv.detach(state.settings)
        ui.success(f"control plane running (pid {info['pid']}) at {info['url']}; router on :{info['router_port']}")
        return
    srv.run(state.settings)


@server.command("stop")
@click.option("--all", "everything", is_flag=True, help="Also stop every app process and the router.")
@pass_state
def server_stop(state: State, everything: bool) -> None:
    """Stop the control plane. Apps and the router keep serving unless --all."""
    from .. import server as srv

    stopped = srv.stop(state.settings)
    ui.info("control plane stopped" if stopped else "control plane was not running")
    if everything:
        from ..controller.core import Controller
        from ..server import machine_for
        from ..store.db import Store

        if not state.settings.state_db.exists():
            return
        s = state.settings
        store = Store(s.state_db)
        try:
            Controller(s, store, machine_for(s)).stop_everything()
        finally:
            store.close()
        ui.info("app processes and router stopped")


@server.command("status")
@json_option
@pass_state
def server_status(state: State, as_json: bool) -> None:
    """Whether the control plane runs, its API URL and pid."""
    from .. import server as srv

    info = srv.status(state.settings)
    if as_json:
        ui.print_json(info)
    elif info["running"]:
        ui.info(f"running: pid {info['pid']}, API {info['url']}, router :{info['router_port']}, home {info['home']}")
    else:
        ui.info(f"not running (home {info['home']})")
    if not info["running"]:
        sys.exit(1)
