"""`branchyard logs` and `branchyard events`: an environment's build and runtime logs, and the audit log."""

from __future__ import annotations

import click

from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project


@click.command()
@env_option
@click.option("--build", is_flag=True, help="Only the build/deploy log.")
@click.option("-d", "--deployment", default=None, help="A deployment id (default: current, else latest).")
@click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@pass_state
def logs(state: State, environment: str | None, project: str | None, build: bool, deployment: str | None, lines: int,
         as_json: bool) -> None:
    """Build and runtime logs of an environment's deployment."""
    data = state.client().get(
        f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/logs",
        lines=lines, build=str(build).lower(), deployment=deployment,
    )
    if as_json:
        ui.print_json(data)
        return
    ui.info(f"==> build/deploy log of {data['deployment_id']} ({data['status']})")
    for line in data["build"]:
        ui.info(line.rstrip("\n"))
    for name, tail in data["runtime"].items():
        ui.info(f"==> {name}")
        for line in tail:
            ui.info(line.rstrip("\n"))


@click.command()
@click.option("-e", "--environment", default=None)
@click.option("-p", "--project", default=None)
@click.option("-n", "--limit", default=100, type=click.IntRange(1, 10_000))
@json_option
@pass_state
def events(state: State, environment: str | None, project: str | None, limit: int, as_json: bool) -> None:
    """The audit log: deploys, failures, environment changes, with who/what triggered them."""
    rows = state.client().get("/api/events", project=resolve_project(project), environment=environment, limit=limit)
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["AT", "ENV", "KIND", "ACTOR", "MESSAGE"],
             [(e["at"][:19], e["environment"] or "", e["kind"], e["actor"], e["message"]) for e in rows])
