"""`branchyard logs` and `branchyard events`: an environment's build and runtime logs, and the audit log."""

from __future__ import annotations

import json
import time

import click

from .. import logrecords
from ..errors import ServerUnavailable
from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project

FOLLOW_EVERY = 1.0  # seconds between polls of `logs -f`


@click.command()
@env_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records (across restarts and deploys); Ctrl-C ends.")
@click.option("--since", default=None, help="Records from then on: a duration (10m, 2h, 3d) or an ISO time.")
@click.option("--until", default=None, help="Records before then: a duration (10m, 2h, 3d) or an ISO time.")
@click.option("--level", default=None, help="At least this level: debug, info, warning, error, critical.")
@click.option("--grep", default=None, help="Only records whose message contains TEXT (case-insensitive).")
@click.option("-d", "--deployment", default=None, help="Only one deployment's records (an id or a prefix).")
@click.option("--http", is_flag=True, help="Only the router's access records (left out otherwise).")
@click.option("--build", is_flag=True, help="Only the build/deploy log of a deployment (default: current, else latest).")
@click.option("-n", "--lines", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="How many of the last records (--build: the whole deploy log).")
@json_option
@pass_state
def logs(state: State, environment: str | None, project: str | None, follow: bool, since: str | None,
         until: str | None, level: str | None, grep: str | None, deployment: str | None, http: bool, build: bool,
         lines: int, as_json: bool) -> None:
    """An environment's logs: one line per record (`time service.replica stream level message`), JSON lines with
    --json. Every replica's stdout and stderr, deploy logs, and with --http the router's access log."""
    client = state.client()
    path = f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/logs"
    params = {"lines": lines, "build": str(build).lower(), "deployment": deployment, "since": since, "until": until,
              "level": level, "grep": grep, "http": "only" if http else "exclude"}
    data = client.get(path, **params)
    if build and not follow:
        if as_json:
            ui.print_json(data)
            return
        ui.info(f"==> build/deploy log of {data['deployment_id']} ({data['status']})")
        for line in data["build"]:
            ui.info(line.rstrip("\n"))
        return
    try:
        _print(data["records"], as_json)
        cursor = data["cursor"]
        waiting = False
        while follow:
            time.sleep(FOLLOW_EVERY)
            try:
                data = client.get(path, **params, cursor=cursor, limit=10_000)
            except ServerUnavailable as err:  # the control plane restarts: the cursor stays good, wait for it
                if not waiting:
                    ui.warn(f"{err}; still following")
                waiting = True
                continue
            waiting = False
            _print(data["records"], as_json)
            cursor = data["cursor"]
    except KeyboardInterrupt:  # Ctrl-C ends -f: not an error
        return


def _print(records: list[dict], as_json: bool) -> None:
    for r in records:
        ui.raw((json.dumps(r, ensure_ascii=False) if as_json else logrecords.human(r)) + "\n")


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
