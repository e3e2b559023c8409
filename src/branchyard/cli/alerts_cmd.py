"""`branchyard alerts [-e ENV] [--json]`: firing and recent alerts, and the rules in effect (issue 16)."""

from __future__ import annotations

import click

from .. import names
from . import ui
from .context import State, json_option, pass_state, resolve_project


def _threshold(rule: dict) -> str:
    if rule["name"] == "down":
        return "down"
    op, value = (">", rule["above"]) if rule["above"] is not None else ("<", rule["below"])
    return f"{op} {value:g}"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@click.command()
@click.option("-e", "--environment", "environment", default=None,
              help="One environment (default: every environment of the project).")
@click.option("-p", "--project", "project", default=None, help="Project (default: the linked one).")
@json_option
@pass_state
def alerts(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """Firing and recent alerts (rule, state, value/threshold, since) and each environment's rules — the tier's
    defaults or branchyard.toml's [environments.<env>.alerts]."""
    base = f"/api/projects/{resolve_project(project)}"
    path = f"{base}/environments/{names.environment_name(environment)}/alerts" if environment else f"{base}/alerts"
    data = state.client().get(path)
    if as_json:
        ui.print_json(data)
        return
    for env in data["environments"]:
        firing = [a for a in env["alerts"] if a["state"] == "firing"]
        ui.info(f"{env['environment']} ({env['tier']}): " + (f"{len(firing)} firing" if firing else "nothing firing"))
        if env["alerts"]:
            ui.table(["RULE", "STATE", "VALUE", "THRESHOLD", "SINCE", "RESOLVED"],
                     [(a["rule"], a["state"].upper(), _value(a["value"]), _value(a["threshold"]), a["since"],
                       a["resolved_at"] or "-") for a in env["alerts"]])
        if env["rules"]:
            origin = {"default": f"default ({env['tier']})", "default+spec": "default, changed in branchyard.toml",
                      "spec": "branchyard.toml"}
            ui.table(["RULE", "CONDITION", "FOR", "FROM"],
                     [(r["name"], _threshold(r), f"{r['for_s']:g}s", origin.get(r["origin"], r["origin"]))
                      for r in env["rules"]])
        else:
            ui.info("  no alert rules (previews have none by default; add [environments.<env>.alerts])")
        if env["webhooks"]:
            ui.info(f"  notifications: {', '.join(env['webhooks'])}")
