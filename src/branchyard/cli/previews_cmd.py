"""`branchyard previews approve|list`: the preview environments of pull requests and branches."""

from __future__ import annotations

import click

from ..cost import money
from . import ui
from .context import State, json_option, pass_state, resolve_project


@click.group()
def previews() -> None:
    """Preview environments: one per pull request (or per branch)."""


@previews.command("approve")
@click.argument("number", type=int)
@click.option("-p", "--project", default=None)
@pass_state
def previews_approve(state: State, number: int, project: str | None) -> None:
    """Let a fork's pull request get its preview (at its current head commit)."""
    info = state.client().post(f"/api/projects/{resolve_project(project)}/previews/{number}/approve", {})
    ui.success(f"pull request #{number} approved at {info['approved_sha'][:12]}; {info['environment']} will be deployed")


@previews.command("list")
@click.option("-p", "--project", default=None)
@json_option
@pass_state
def previews_list(state: State, project: str | None, as_json: bool) -> None:
    """The previews the control plane knows: open pull requests and branches, and what was decided for each."""
    rows = state.client().get(f"/api/projects/{resolve_project(project)}/previews")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["PREVIEW", "BRANCH", "OPEN", "DECISION", "$/MONTH", "REASON"],
             [(r["environment"], r["branch"] or "", "yes" if r["open"] else "no", r["decision"] or "deciding",
               money(r["monthly_cost"]) if r.get("monthly_cost") is not None else "—",
               (f"#{r['waiting_position']} in line; " if r.get("waiting_position") else "") + (r["reason"] or ""))
              for r in rows])
