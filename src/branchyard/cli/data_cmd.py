"""`branchyard add|run|connect|backup|restore|db`: an environment's own database and Redis, its backups, and the
project's databases across environments (`db refresh`, `db templates`)."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

import click

from .. import errors, names
from . import ui
from .context import State, env_option, json_option, pass_state, resolve_environment, resolve_project, typed_confirmation

if TYPE_CHECKING:
    from .websocket import Endpoint


@click.command()
@click.option("--plugin", required=True, help="postgresql or redis")
@env_option
@pass_state
def add(state: State, plugin: str, environment: str | None, project: str | None) -> None:
    """Add a database to an environment (Railway: `railway add --plugin postgresql -e ENV`)."""
    env = resolve_environment(environment)
    done = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/plugins", {"plugin": plugin})
    namespace, wired = ("Postgres", "DATABASE_URL, PG*") if "post" in plugin else ("Redis", "REDIS_URL, REDIS*")
    ui.success(f"{plugin} ready in {env}; the app gets {wired} at its next deploy unless its variables set any of "
               f"them (then reference ${{{{{namespace}.…}}}})")
    for key, value in done["variables"].items():
        ui.info(f"  {key}={value}")


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@env_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_state
def run(state: State, environment: str | None, project: str | None, command: tuple[str, ...]) -> None:
    """Run a command in the environment's current release: its code as the working directory, its virtualenv first
    on PATH, its variables (Railway: `railway run -e ENV -- CMD`). On Kubernetes it runs in the cluster, in the
    environment's namespace (stdin closed)."""
    env = resolve_environment(environment)
    exec_path = f"/api/projects/{resolve_project(project)}/environments/{env}/exec"
    if state.target is not None:
        _run_remote(state, exec_path, list(command))
        return
    ctx = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/run", {})
    if ctx.get("where") == "cluster":  # a cluster backend: the release is a Job's to run, not this machine's
        _run_remote(state, exec_path, list(command))
        return
    venv = ctx["venv"]
    path = f"{venv}/bin" + (f":{os.environ['PATH']}" if os.environ.get("PATH") else "")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}  # it would point python away from the venv
    os.chdir(ctx["cwd"])
    _exec(list(command), base | ctx["variables"] | {"PATH": path, "VIRTUAL_ENV": venv})


def _run_remote(state: State, path: str, command: list[str]) -> None:
    """`run` against a control plane elsewhere, or on a cluster: the command runs there (stdin closed), its output
    streams here, and its exit code is ours."""
    code = 1
    for message in state.client().stream_json(path, {"command": command}):
        if "output" in message:
            ui.raw(message["output"])
        elif "exit" in message:
            code = int(message["exit"])
    sys.stdout.flush()
    if code:
        sys.exit(code if 0 < code < 256 else 1)


@click.command()
@click.argument("service", type=click.Choice(["postgres", "redis"]))
@env_option
@pass_state
def connect(state: State, service: str, environment: str | None, project: str | None) -> None:
    """Open psql / redis-cli on the environment's own database (stdin works: `echo 'select 1' | … connect postgres`);
    through the control plane when it is elsewhere or only it reaches the servers (a cluster)."""
    env = resolve_environment(environment)
    client = state.client()
    path = f"/api/projects/{resolve_project(project)}/environments/{env}/connection/{service}"
    conn = client.post(path, {})
    if state.target is not None or conn.get("tunnel"):
        _connect_through_tunnel(client.websocket_endpoint(f"{path}/tunnel"), service, conn)
        return
    if service == "postgres":
        from ..backends.local.postgres import pg_bin

        pg_env = {k: conn[k] for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")}
        _exec([pg_bin("psql"), "--no-psqlrc"], os.environ | pg_env)
    else:
        from ..backends.local.redis import find_redis

        args = [find_redis("redis-cli"), "-h", conn["REDISHOST"], "-p", conn["REDISPORT"], "--no-auth-warning"]
        _exec(args, os.environ | {"REDISCLI_AUTH": conn["REDISPASSWORD"]})  # never on the command line


def _connect_through_tunnel(endpoint: Endpoint, service: str, conn: dict) -> None:
    """psql / redis-cli here, its connections relayed through the control plane (cli/tunnel.py); exits with its code.
    The credentials go into its environment, never its command line."""
    from .tunnel import LISTEN_HOST, run_through_tunnel

    if service == "postgres":
        from ..backends.local.postgres import pg_bin

        psql = pg_bin("psql")
        mine = {k: v for k, v in os.environ.items() if k != "PGHOSTADDR"}  # it would send psql past the listener
        env = mine | {k: conn[k] for k in ("PGUSER", "PGPASSWORD", "PGDATABASE")}
        code = run_through_tunnel(endpoint, lambda port: [psql, "--no-psqlrc", "-h", LISTEN_HOST, "-p", str(port)], env)
    else:
        from ..backends.local.redis import find_redis

        cli = find_redis("redis-cli")
        code = run_through_tunnel(endpoint, lambda port: [cli, "-h", LISTEN_HOST, "-p", str(port), "--no-auth-warning"],
                                  os.environ | {"REDISCLI_AUTH": conn["REDISPASSWORD"]})
    sys.stdout.flush()
    sys.exit(code)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with `argv` (stdin, stdout and the exit code are the command's own)."""
    import shutil as _shutil

    path = argv[0] if "/" in argv[0] else _shutil.which(argv[0], path=env.get("PATH"))
    if path is None:
        raise errors.BadInput(f"command not found: {argv[0]}")
    sys.stdout.flush()
    os.execve(path, argv, env)


@click.group(invoke_without_command=True)
@env_option
@pass_state
@click.pass_context
def backup(ctx: click.Context, state: State, environment: str | None, project: str | None) -> None:
    """Back up the environment's database now (pg_dump, sha256 recorded); `backup list` shows them."""
    if ctx.invoked_subcommand is not None:
        return
    env = resolve_environment(environment)
    b = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/backups", {})
    ui.success(f"backup {b['id']} of {env}: {b['size']} bytes, sha256 {b['sha256']}")


@backup.command("list")
@env_option
@json_option
@pass_state
def backup_list(state: State, environment: str | None, project: str | None, as_json: bool) -> None:
    """The environment's backups, newest first."""
    rows = state.client().get(f"/api/projects/{resolve_project(project)}/environments/{resolve_environment(environment)}/backups")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["ID", "KIND", "CREATED", "SIZE", "SHA256"],
             [(b["id"], b["kind"], b["created_at"][:19], b["size"], b["sha256"][:16]) for b in rows])


@click.command()
@click.argument("backup_id")
@env_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@pass_state
def restore(state: State, backup_id: str, environment: str | None, project: str | None, yes: bool) -> None:
    """Replace the environment's database with one of its backups (production asks for typed confirmation)."""
    env = resolve_environment(environment)
    if env == "production" and not yes:
        typed_confirmation(env, f"Restoring backup {backup_id} replaces production's database.")
    b = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{env}/restore", {"backup_id": backup_id})
    ui.success(f"backup {b['id']} ({b['created_at'][:19]}) restored into {env}")


@click.group()
def db() -> None:
    """Database operations across environments."""


@db.command("refresh")
@click.argument("target")
@click.option("--from", "source", required=True, help="The environment to copy from (e.g. production).")
@click.option("-p", "--project", default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@json_option
@pass_state
def db_refresh(state: State, target: str, source: str, project: str | None, yes: bool, as_json: bool) -> None:
    """Replace TARGET's database with SOURCE's, sanitized by the [sanitize] rules (production is never a target)."""
    target, source = names.environment_name(target), names.environment_name(source)
    if not yes:
        if not sys.stdin.isatty():
            raise errors.BadInput(f"db refresh replaces {target}'s database; refusing without confirmation: pass --yes")
        click.confirm(f"Replace {target}'s database with a sanitized copy of {source}'s?", abort=True)
    result = state.client().post(f"/api/projects/{resolve_project(project)}/environments/{target}/refresh", {"source": source})
    if as_json:
        ui.print_json(result)
        return
    for line in result["log"]:
        ui.info(f"  {line}")
    ui.success(f"{target} refreshed from {source}: {result['tables_sanitized']} tables sanitized, "
               f"{result['tables_truncated']} truncated")


@db.group("templates", invoke_without_command=True)
@click.option("-p", "--project", default=None)
@json_option
@pass_state
@click.pass_context
def db_templates(ctx: click.Context, state: State, project: str | None, as_json: bool) -> None:
    """The project's database templates (postgres.templateFiles): key, database, who made it, last use."""
    if ctx.invoked_subcommand is not None:
        return
    rows = state.client().get(f"/api/projects/{resolve_project(project)}/templates")
    if as_json:
        ui.print_json(rows)
        return
    ui.table(["KEY", "DATABASE", "MADE BY", "CREATED", "LAST USED"],
             [(t["key"][:16], t["database"], t["made_by"], t["created_at"][:19], t["last_used_at"][:19]) for t in rows])


@db_templates.command("drop")
@click.argument("key", required=False)
@click.option("--all", "drop_all", is_flag=True, help="Drop every template of the project.")
@click.option("-p", "--project", default=None)
@json_option
@pass_state
def db_templates_drop(state: State, key: str | None, drop_all: bool, project: str | None, as_json: bool) -> None:
    """Drop the template whose key starts with KEY (or --all): the next preview runs its hooks again."""
    if (key is None) == (not drop_all):
        raise errors.BadInput("db templates drop: give a KEY (its first characters will do) or --all, not both")
    if key is not None and not re.fullmatch(r"[0-9a-f]{1,64}", key):
        raise errors.BadInput(f"db templates drop: {key!r} is not a template key (hex digits, see `branchyard db templates`)")
    path = f"/api/projects/{resolve_project(project)}/templates" + (f"?key={key}" if key else "")
    result = state.client().delete(path)
    if as_json:
        ui.print_json(result)
        return
    dropped = result["dropped"]
    ui.success(f"dropped {len(dropped)} template{'s' if len(dropped) != 1 else ''}" +
               (f": {', '.join(dropped)}" if dropped else ""))
