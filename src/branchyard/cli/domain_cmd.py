"""`branchyard domain add|list|delete HOST -e ENV`: an environment's custom domains (Railway: `railway domain`)."""

from __future__ import annotations

from urllib.parse import quote

import click

from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project


@click.group()
def domain() -> None:
    """Add, list and delete an environment's custom domains."""


def _base(project: str | None, environment: str | None) -> tuple[str, str]:
    env = resolve_environment(environment)
    return f"/api/projects/{resolve_project(project)}/environments/{env}/domains", env


@domain.command("add")
@click.argument("host")
@env_option
@pass_state
def domain_add(state: State, host: str, environment: str | None, project: str | None) -> None:
    """Route HOST to the environment (point HOST's DNS at this machine); its certificate follows on demand."""
    path, env = _base(project, environment)
    done = state.client().post(path, {"host": host})
    if done["created"]:
        ui.success(f"{done['host']} added to {env}: {done['url']}")
    else:
        ui.success(f"{done['host']} is already a domain of {env}: {done['url']}")


@domain.command("list")
@env_option
@json_option
@pass_state
def domain_list(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """The environment's custom domains and their certificates (pending, issued until DATE, failed: why)."""
    path, env = _base(project, environment)
    rows = state.client().get(path)
    if as_json:
        ui.print_json(rows)
        return
    if not rows:
        ui.info(f"{env} has no custom domains (add one with `branchyard domain add HOST -e {env}`)")
        return
    source = {"cli": "domain add", "spec": "branchyard.toml"}
    ui.table(["DOMAIN", "CERTIFICATE", "SOURCE"], [(r["host"], r["certificate"], source.get(r["source"], r["source"]))
                                                  for r in rows])


@domain.command("delete")
@click.argument("host")
@env_option
@pass_state
def domain_delete(state: State, host: str, environment: str | None, project: str | None) -> None:
    """Stop routing HOST to the environment (no certificate is ordered for it any more)."""
    path, env = _base(project, environment)
    done = state.client().delete(f"{path}/{quote(host, safe='')}")
    ui.success(f"{done['deleted']} deleted from {env}")
