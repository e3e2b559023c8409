"""`branchyard up|down|redeploy|rollback|scale|status|deployments`: what runs in an environment, and changing it."""

from __future__ import annotations

import datetime as dt
import subprocess

import click

from .. import errors, isolation
from . import ui
from .context import State, env_option, follow_deployment, json_option, pass_state, repo_root, resolve_environment, resolve_project


@click.command()
@env_option
@pass_state
def up(state: State, environment: str | None, project: str | None) -> None:
    """Bring a sleeping environment back (its last deployment), else deploy the current HEAD to it."""
    project = resolve_project(project)
    env = resolve_environment(environment)
    client = state.client()
    try:
        info = client.get(f"/api/projects/{project}/environments/{env}")
    except errors.NotFound:
        info = None
    if info and info["state"] == "SLEEPING":
        woke = client.post(f"/api/projects/{project}/environments/{env}/wake", {})
        if (info.get("sleeping") or {}).get("kind") == "idle":  # its replicas are back already (no new deployment)
            ui.success(f"{env} is awake (deployment {woke['deployment_id']})")
            return
        follow_deployment(client, woke["deployment_id"])
        return
    repo_root()
    client.get(f"/api/projects/{project}")  # fail fast, with a clear message, if unknown
    done = subprocess.run(["git", "push", "--force", "--quiet", "branchyard", f"HEAD:refs/branchyard/up/{env}"])
    if done.returncode != 0:
        raise errors.DeployFailed(f"deployment of HEAD to {env} did not succeed (see the output above)")


@click.command()
@env_option
@pass_state
def down(state: State, environment: str | None, project: str | None) -> None:
    """Stop the environment's app processes and route a 503 page; data, variables and releases are kept."""
    env = resolve_environment(environment)
    state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/down", {})
    ui.success(f"{env} is down (SLEEPING); `branchyard up -e {env}` brings it back")


@click.command()
@click.argument("deployment_id", required=False)
@env_option
@pass_state
def redeploy(state: State, deployment_id: str | None, environment: str | None, project: str | None) -> None:
    """Redeploy a deployment's release and variables without rebuilding (default: the current one)."""
    client = state.client()
    env = resolve_environment(environment)
    dep = client.post(f"/api/projects/{resolve_project(project)}/environments/{env}/redeploy", {"deployment_id": deployment_id})
    follow_deployment(client, dep["deployment_id"])


@click.command()
@env_option
@pass_state
def rollback(state: State, environment: str | None, project: str | None) -> None:
    """Bring back the previous successful deployment (release and variables; the database is not reverted)."""
    client = state.client()
    env = resolve_environment(environment)
    dep = client.post(f"/api/projects/{resolve_project(project)}/environments/{env}/rollback", {})
    follow_deployment(client, dep["deployment_id"])


def parse_scale(assignment: str) -> tuple[str, int]:
    """`SERVICE=N` → (service, N): web needs one replica at least (`down` stops it), a Procfile service such as
    worker may be 0 (stopped); whether the environment has that service is the control plane's to say."""
    service, sep, count = assignment.partition("=")
    try:
        replicas = int(count)
    except ValueError:
        replicas = None
    if not sep or replicas is None or not service:
        raise errors.BadInput(f"scale: expected SERVICE=N (e.g. web=3, worker=2), got {assignment!r}")
    if service == "web" and replicas < 1:
        raise errors.BadInput(f"scale: {assignment}: expected at least 1 replica (use `branchyard down` to stop)")
    if replicas < 0:
        raise errors.BadInput(f"scale: {assignment}: expected 0 or more replicas")
    return service, replicas


@click.command()
@click.argument("assignment", metavar="SERVICE=N")
@env_option
@json_option
@pass_state
def scale(state: State, assignment: str, environment: str | None, project: str | None, as_json: bool) -> None:
    """Change the number of replicas of web (or of a Procfile process type: worker=2, worker=0) without a rebuild;
    returns when they serve."""
    service, replicas = parse_scale(assignment)
    env = resolve_environment(environment)
    info = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/scale",
                               {"service": service, "replicas": replicas})
    if as_json:
        ui.print_json(info)
    else:
        running = (info.get("services") or {}).get(service, {}).get("total", len(info["replicas"]))
        ui.success(f"{env}: {service} runs {running} replica(s)")


@click.command()
@env_option
@json_option
@pass_state
def status(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """The environment's current deployment, replicas and URL."""
    info = state.client().get(f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}")
    if as_json:
        ui.print_json(info)
        return
    from rich.text import Text

    current = info["current_deployment"]
    ui.out.print(Text.assemble((f"{info['project']} / {info['name']}", "bold"), "  ", ui.status_word(info["status"]), f"  {info['url']}"))
    if info.get("domains"):
        ui.info(f"domains: {', '.join(info['domains'])}")
    sleeping = info.get("sleeping")
    if sleeping:  # issue 17: since when, and whether a request wakes it
        how = ("idle: its next request wakes it" if sleeping["kind"] == "idle"
               else f"down: `branchyard up -e {info['name']}` brings it back")
        ui.info(f"sleeping since {sleeping['since'] or 'before this version recorded it'} ({how})")
    if current:
        ui.info(f"deployment {current['id']}  commit {current['commit'][:12]}  {current['trigger']}  {current['created_at']}")
        tests = current.get("tests")
        if tests and tests["status"] != "skipped":
            ui.out.print(Text.assemble("post-deploy tests: ", ui.status_word(tests["status"]), f"  {tests['detail'] or ''}"))
    elif not info["latest_deployment"]:
        push = f"`git push branchyard {info['branch']}`" if info["branch"] else f"`branchyard up -e {info['name']}`"
        ui.info(f"no deployment yet: deploy with {push}")
    target = info.get("target_deployment")
    if target:  # what the environment should run and does not yet: in progress, resumed, or given up (why)
        ui.out.print(Text.assemble(f"target: {target['id']} ", ui.status_word(target["status"]),
                                   f" attempt {target['attempts']}" + (f" {target['error']}" if target["error"] else "")))
    latest = info["latest_deployment"]
    if latest and (not current or latest["id"] != current["id"]) and (not target or latest["id"] != target["id"]):
        ui.out.print(Text.assemble(f"latest: {latest['id']} ", ui.status_word(latest["status"]), f" {latest['error'] or ''}"))
    cron = info.get("cron")
    if cron:  # issue 17: a cron service runs on its schedule, with no replicas (`branchyard cron runs`)
        ui.info(f"cron: {cron['schedule']}, next run at {cron['next_run_at']}")
    services = info.get("services") or {}
    every = [r for svc in services.values() for r in svc["replicas"]] or info["replicas"]  # web's, then workers'
    if len(services) > 1:  # issue 17: the Procfile's other process types run beside web
        ui.info("services: " + "  ".join(f"{name} {svc['running']}/{svc['desired']} running"
                                         + (f" ({svc['restarts']} restarts)" if svc["restarts"] else "")
                                         for name, svc in services.items()))
    if every:
        ui.table(
            ["REPLICA", "PID", "PORT", "STATE", "HEALTH", "RESTARTS", "UPTIME"],
            [(r["name"], r["pid"], r["port"], r["state"] if r["alive"] else "DOWN", _health(r), r["restarts"],
              f"{r['uptime_seconds']:.0f}s") for r in every],
        )
    if info.get("pods"):  # issue 19: on Kubernetes, the environment's pods
        ui.table(["POD", "SERVICE", "PHASE", "READY", "RESTARTS", "PROBLEMS"],
                 [(pod["name"], pod["service"], pod["phase"], "yes" if pod["ready"] else "no", pod["restarts"],
                   "; ".join(pod["problems"])) for pod in info["pods"]])
    uptime = info.get("uptime")
    if uptime:  # issue 16: the public URL's availability (probed through the router)
        shown = "  ".join(f"{w} {'-' if uptime[w] is None else f'{uptime[w]:g}%'}" for w in ("24h", "7d", "30d"))
        last = uptime.get("last_check") or {}
        ui.info(f"uptime: {shown}" + ("" if not last else f"  last check {'up' if last['ok'] else 'DOWN'}"
                                      + (f" ({last['error']})" if last.get("error") else "")))
        for incident in uptime.get("incidents", [])[:3]:
            started = dt.datetime.fromtimestamp(incident["started_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            lasted = "ongoing" if incident["ended_at"] is None else f"{incident['duration_s']:.0f}s"
            ui.info(f"  incident {started} UTC, {lasted}: {incident['error']}")
    for line in isolation.lines(info.get("isolation") or {}):  # issue 17: what this machine does not enforce, said
        (ui.info if ": enforced" in line else ui.warn)(line)
    storage = info.get("database_storage")
    if storage:
        ui.info(isolation.storage_line(storage))
        if storage["warning"]:
            ui.warn(storage["warning"])
    for r in info.get("standby") or []:
        ui.info(f"standby: web.{r['slot']} pid {r['pid']} port {r['port']} of deployment {r['deployment_id'][:8]}"
                f" (out of the route; stops in {r['seconds_left']:.0f}s unless a rollback re-adopts it)")


def _health(replica: dict) -> str:
    """`unhealthy (2 in a row)`: a replica still routed that failed its last checks shows how close it is to eviction."""
    health = replica.get("health") or "unknown"
    failures = replica.get("health_failures") or 0
    return f"{health} ({failures} in a row)" if failures and health == "unhealthy" else health


@click.command()
@env_option
@json_option
@pass_state
def deployments(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """The environment's deployments, newest first."""
    rows = state.client().get(f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/deployments")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(
        ["ID", "STATUS", "TESTS", "COMMIT", "TRIGGER", "CREATED", "ROLLBACK", ""],
        [(d["id"], ui.status_word(d["status"]), ui.status_word((d.get("tests") or {}).get("status") or "-"),
          d["commit"][:12], d["trigger"], d["created_at"][:19], "yes" if d["can_rollback"] else "no",
          "current" if d["current"] else "")
         for d in rows],
    )
