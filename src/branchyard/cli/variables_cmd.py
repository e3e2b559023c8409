"""`branchyard variables set|list|delete`: an environment's variables and secrets."""

from __future__ import annotations

import click

from .. import errors
from . import ui
from .context import State, env_option, follow_deployment, json_option, pass_state, resolve_environment, resolve_project


@click.group()
def variables() -> None:
    """Set, list and delete an environment's variables and secrets."""


def _pairs(assignments: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.BadInput(f"variables set: expected KEY=VALUE, got {item.split('=')[0]!r}")
        pairs[key] = value
    return pairs


@variables.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@env_option
@click.option("--secret", is_flag=True, help="Encrypt at rest, mask everywhere; reachable as ${{ secrets.KEY }}.")
@click.option("--skip-deploys", is_flag=True, help="Do not redeploy the environment with the new values.")
@pass_state
def variables_set(state: State, assignments: tuple[str, ...], environment: str | None, project: str | None, secret: bool,
                  skip_deploys: bool) -> None:
    """Set variables (Railway: `railway variables set K=V -e ENV`); redeploys unless --skip-deploys."""
    env = resolve_environment(environment)
    client = state.client()
    done = client.post(f"/api/projects/{resolve_project(project)}/environments/{env}/variables",
                       {"variables": _pairs(assignments), "secret": secret, "skip_deploys": skip_deploys})
    ui.success(f"{'secrets' if secret else 'variables'} set in {env}: {', '.join(done['set'])}")
    if done["deployment_id"]:
        follow_deployment(client, done["deployment_id"])


@variables.command("list")
@env_option
@click.option("--kv", is_flag=True, help="KEY=VALUE lines.")
@json_option
@pass_state
def variables_list(state: State, environment: str | None, project: str | None, kv: bool, as_json: bool) -> None:
    """The environment's variables as its processes see them (secret values masked)."""
    data = state.client().get(f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/variables")
    if as_json:
        ui.print_json(data)
    elif kv:
        for key, value in data["variables"].items():
            ui.info(f"{key}={value}")
    else:
        sources = data.get("sources", {})
        ui.table(["VARIABLE", "VALUE", "SOURCE"], [(k, v, _source(sources.get(k))) for k, v in data["variables"].items()])
    for key, why in data["pending"].items():
        ui.warn(f"{key}: {why}")
    if not data.get("deployed", True) and not as_json:
        ui.info("(no deployment yet: the project files' variables and services are added by the first deploy)")


def _source(source: str | None) -> str:
    """Where a listed variable comes from, in words: a service's attached variables say which service."""
    return {"spec": "project files", "set": "variables set", "secret": "secret", None: ""}.get(
        source, f"provided by {source}")


@variables.command("delete")
@click.argument("key")
@env_option
@click.option("--skip-deploys", is_flag=True, help="Do not redeploy the environment.")
@pass_state
def variables_delete(state: State, key: str, environment: str | None, project: str | None, skip_deploys: bool) -> None:
    """Delete a variable or secret set with `variables set`."""
    env = resolve_environment(environment)
    client = state.client()
    done = client.request("DELETE", f"/api/projects/{resolve_project(project)}/environments/{env}/variables/{key}",
                          params={"skip_deploys": str(skip_deploys).lower()})
    ui.success(f"{key} deleted from {env}")
    if done["deployment_id"]:
        follow_deployment(client, done["deployment_id"])
