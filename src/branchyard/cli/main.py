"""The `branchyard` command, shaped like Railway's CLI (`-e/--environment`, `--json` on reads).

Here: the root group, its global options and the one top-level error catch; each noun's commands live in a
module of their own (`deploy_cmd`, `data_cmd` …), their shared helpers in `context`."""

from __future__ import annotations

import sys

import click

from .. import errors
from . import ui
from .alerts_cmd import alerts
from .config_cmd import config
from .context import State
from .cost_cmd import cost_command
from .cron_cmd import cron
from .data_cmd import add, backup, connect, db, restore, run
from .deploy_cmd import deployments, down, redeploy, rollback, scale, status, up
from .domain_cmd import domain
from .environment_cmd import environment
from .github_cmd import github
from .login_cmd import context, git_credential, login, logout
from .logs_cmd import events, logs
from .metrics_cmd import metrics
from .previews_cmd import previews
from .project_cmd import init, link
from .promote_cmd import approve, check, promote
from .render_cmd import render
from .server_cmd import server
from .tls_cmd import tls
from .users_cmd import tokens, users, whoami
from .variables_cmd import variables


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.option("--context", "context_name", default=None, metavar="NAME",
              help="The control plane to talk to: a context `login` stored, or `local` (this machine's).")
@click.version_option(package_name="branchyard")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, context_name: str | None) -> None:
    """branchyard: Railway-style environments (production, staging, PR previews) on your own machines."""
    ctx.obj = State(verbose, context_name)


# One module per noun; `branchyard --help` lists them alphabetically whatever the order here.
for command in (
    server,  # server_cmd
    init, link,  # project_cmd
    environment,  # environment_cmd
    domain,  # domain_cmd
    tls,  # tls_cmd
    up, down, redeploy, rollback, scale, status, deployments,  # deploy_cmd
    logs, events,  # logs_cmd
    metrics,  # metrics_cmd
    alerts,  # alerts_cmd
    cost_command,  # cost_cmd
    cron,  # cron_cmd
    variables,  # variables_cmd
    add, run, connect, backup, restore, db,  # data_cmd
    previews,  # previews_cmd
    github,  # github_cmd
    promote, approve, check,  # promote_cmd
    config,  # config_cmd (no server needed)
    render,  # render_cmd (no server, no cluster needed)
    login, logout, context, git_credential,  # login_cmd (a control plane elsewhere)
    users, tokens, whoami,  # users_cmd
):
    cli.add_command(command)


def verbose_anywhere(argv: list[str]) -> tuple[list[str], bool]:
    """`--verbose` is the root group's option, but users put it anywhere (`branchyard status --verbose`): it is
    moved to the front. After `--` everything is the command's own (`run -e pr-1 -- pytest --verbose`)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    if "--verbose" not in argv[:cut]:
        return argv, False
    return ["--verbose", *(a for a in argv[:cut] if a != "--verbose"), *argv[cut:]], True


def context_anywhere(argv: list[str]) -> list[str]:
    """`--context NAME` (or `--context=NAME`) is the root group's option too, taken anywhere before a `--` and moved
    to the front (`branchyard status -e staging --context prod`); a `--context` without a name is left for click."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head, taken = [], []
    i = 0
    while i < cut:
        arg = argv[i]
        if arg == "--context" and i + 1 < cut:
            taken += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--context="):
            taken.append(arg)
        else:
            head.append(arg)
        i += 1
    return [*taken, *head, *argv[cut:]]


def main() -> None:
    """Entry point: one top-level rescue, one-line errors, tracebacks only with --verbose."""
    args, verbose = verbose_anywhere(context_anywhere(sys.argv[1:]))
    try:
        cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        ui.error("aborted")
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except errors.BranchyardError as err:
        if verbose:
            raise
        ui.error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # an unexpected failure is still one line unless asked for more
        if verbose:
            raise
        ui.error(f"{type(err).__name__}: {err} (run with --verbose for details)")
        sys.exit(1)


if __name__ == "__main__":
    main()
