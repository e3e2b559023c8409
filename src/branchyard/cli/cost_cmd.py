"""`branchyard cost [-e ENV] [--json]`: projected monthly cost of each environment's allocation, and its cost so far."""

from __future__ import annotations

import click

from .. import cost
from ..names import environment_name
from . import ui
from .context import State, json_option, pass_state, resolve_project


@click.command("cost")
@click.option("-e", "--environment", "environment", default=None,
              help="One environment, with its breakdown (default: every environment of the project, previews too).")
@click.option("-p", "--project", "project", default=None, help="Project (default: the linked one).")
@json_option
@pass_state
def cost_command(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """What each environment costs: its allocation priced per month (730 h), and allocation × time running so far."""
    params = {"environment": environment_name(environment)} if environment else {}
    data = state.client().get(f"/api/projects/{resolve_project(project)}/cost", **params)
    if as_json:
        ui.print_json(data)
        return
    envs = data["environments"]
    if not envs:
        ui.info("no environments yet")
        return
    ui.table(["ENVIRONMENT", "STATE", "ALLOCATION", "$/MONTH", "SO FAR", "SINCE"],
             [(e["environment"], e["state"], e["allocation"] or "not deployed",
               cost.money(e["monthly"]["total"]) if e["monthly"] else "—", cost.money(e["measured"]["total"]),
               e["measured"]["since"][:16].replace("T", " ")) for e in envs])
    if environment:
        e = envs[0]
        if e["monthly"]:
            ui.table(["SERVICE", "RESOURCE", "QUANTITY", "UNIT PRICE", "$/MONTH", "NOTE"],
                     [(i["service"], i["resource"], f"{i['quantity']:g}", cost.money(i["unit_price"]),
                       cost.money(i["monthly"]), i["note"] or "") for i in e["monthly"]["items"]],
                     title=f"{e['environment']}: projected per month")
        hours = e["measured"]["running_seconds"] / 3600
        ui.info(f"ran {hours:.2f} h since {e['measured']['since'][:10]}; sleeping time costs nothing")
    p = data["prices"]
    ui.info(f"prices ({data['currency']}): {cost.money(p['memory_gb_month'])}/GB RAM, {cost.money(p['vcpu_month'])}/vCPU, "
            f"{cost.money(p['storage_gb_month'])}/GB volume per month of {data['hours_per_month']} h "
            "(BRANCHYARD_PRICES to change)")
