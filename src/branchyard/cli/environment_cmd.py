"""`branchyard environment list|add|delete`."""

from __future__ import annotations

import sys

import click

from .. import errors, names
from . import ui
from .context import State, json_option, pass_state, resolve_project, typed_confirmation


@click.group()
def environment() -> None:
    """List, add and delete environments."""


@environment.command("list")
@click.option("-p", "--project", default=None)
@click.option("--ephemeral", is_flag=True, help="Only ephemeral (preview) environments.")
@json_option
@pass_state
def environment_list(state: State, project: str | None, ephemeral: bool, as_json: bool) -> None:
    """List the project's environments."""
    envs = state.client().get(f"/api/projects/{resolve_project(project)}/environments")
    if ephemeral:
        envs = [e for e in envs if e["ephemeral"]]
    if as_json:
        ui.print_json(envs)
        return
    ui.table(
        ["ENVIRONMENT", "BRANCH", "STATUS", "URL"],
        [(e["name"], e["branch"] or "", ui.status_word(e["status"]), e["url"]) for e in envs],
    )


@environment.command("add")
@click.argument("name")
@click.option("--branch", default=None, help="Branch that deploys to it.")
@click.option("-p", "--project", default=None)
@pass_state
def environment_add(state: State, name: str, branch: str | None, project: str | None) -> None:
    """Create an environment (Railway: `railway environment add NAME`)."""
    env = state.client().post(f"/api/projects/{resolve_project(project)}/environments", {"name": name, "branch": branch})
    if env.get("created", True):
        ui.success(f"environment {env['name']} created: {env['url']}")
    else:  # it existed (declared by the project files): it now deploys the branch given
        ui.success(f"environment {env['name']} now deploys branch {env['branch']} (never overwritten by a deploy): "
                   f"`git push branchyard {env['branch']}`")


@environment.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--confirm", default=None, metavar="production", help="Typed confirmation, required to delete production.")
@click.option("-p", "--project", default=None)
@pass_state
def environment_delete(state: State, name: str, yes: bool, confirm: str | None, project: str | None) -> None:
    """Delete an environment: stop its processes, remove its route, releases and logs."""
    name = names.environment_name(name)
    project = resolve_project(project)
    if name == "production":
        if confirm != "production":
            if sys.stdin.isatty() and confirm is None:
                typed_confirmation("production", "Deleting production drops its database (after a final backup).")
            else:
                raise errors.BadInput("deleting production needs typed confirmation: pass --confirm production")
    elif not yes:
        if not sys.stdin.isatty():
            raise errors.BadInput("refusing to delete without confirmation: pass --yes")
        click.confirm(f"Delete environment {name} of {project}?", abort=True)
    state.client().delete(f"/api/projects/{project}/environments/{name}")
    ui.success(f"environment {name} deleted")
