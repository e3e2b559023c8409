"""`branchyard cron runs -e ENV [--json]`: a cron service's runs, newest first (issue 17)."""

from __future__ import annotations

import click

from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project


@click.group()
def cron() -> None:
    """Cron services (Railway's cronSchedule): their runs."""


@cron.command("runs")
@env_option
@json_option
@pass_state
def cron_runs(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """The environment's cron runs, newest first: scheduled time (UTC), status, exit code, duration, log."""
    runs = state.client().get(f"/api/projects/{resolve_project(project)}/environments/"
                              f"{resolve_environment(environment)}/cron/runs")
    if as_json:
        ui.print_json(runs)
        return
    if not runs:
        ui.info("no cron runs yet (a service with a cronSchedule runs at its next slot; `branchyard status` shows it)")
        return
    ui.table(["SCHEDULED", "STATUS", "EXIT", "DURATION", "LOG"],
             [(r["scheduled_for"], r["status"].upper(), "-" if r["exit_code"] is None else r["exit_code"],
               "-" if r["duration_s"] is None else f"{r['duration_s']:.1f}s", _log(r)) for r in runs])


def _log(run: dict) -> str:
    """`12 lines, last: done` — or why it was skipped or failed when it printed nothing."""
    last = run["log_tail"][-1] if run["log_tail"] else ""
    text = f"{run['log_lines']} lines" + (f", last: {last[:60]}" if last else "")
    if run["status"] in ("skipped", "failed") and run.get("detail"):
        return run["detail"] if not run["log_lines"] else f"{run['detail']}; {text}"
    return text
