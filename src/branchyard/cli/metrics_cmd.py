"""`branchyard metrics`: an environment's current values, with a sparkline of each series over `--since`."""

from __future__ import annotations

import click

from .. import metrics as mx
from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project

SPARK_WIDTH = 20  # characters: the table fits 80 columns


@click.command()
@env_option
@click.option("--since", default="1h", show_default=True, help="How far back the sparklines go: 10m, 1h, 1d, 30d.")
@json_option
@pass_state
def metrics(state: State, environment: str | None, project: str | None, since: str, as_json: bool) -> None:
    """CPU, memory and restarts per replica; requests, latency, errors and bytes; PostgreSQL and Redis."""
    mx.parse_since(since)  # a bad value is refused here, before any request
    data = state.client().get(
        f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/metrics", since=since)
    if as_json:
        ui.print_json(data)
        return
    rows = []
    for s in data["series"]:
        values = [v for _ts, v in s["points"]]
        labels = s["replica"] or s["service"] or ""  # a replica's name says its service: production.web.0
        last = mx.human(s["name"], values[-1]) if values else ""
        rows.append((s["name"], labels, last, mx.sparkline(values, SPARK_WIDTH)))
    if not rows:
        ui.info(f"no samples in the last {since} (metrics are sampled every {mx.WINDOW} s)")
        return
    ui.table(["SERIES", "OF", "LAST", f"LAST {since} (every {data['resolution_seconds']} s)"], rows)
