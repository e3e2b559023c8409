"""What every command shares: the state on click's context, the common options, which project and
environment a command is about, and following a deployment until it ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import errors, names
from .. import settings as settings_mod
from . import ui

if TYPE_CHECKING:
    from .client import Client
    from .contexts import ContextStore, Target

ENV_HELP = "Environment (default: the linked one, else production)."

F = TypeVar("F", bound=Callable[..., Any])


class State:
    def __init__(self, verbose: bool, context: str | None = None) -> None:
        self.verbose = verbose
        self.context = context  # --context NAME
        self._settings: settings_mod.Settings | None = None
        self._target: tuple[Target | None] | None = None

    @property
    def settings(self) -> settings_mod.Settings:
        if self._settings is None:
            self._settings = settings_mod.load()
        return self._settings

    def contexts(self) -> ContextStore:
        from .contexts import ContextStore, config_dir

        return ContextStore(config_dir(os.environ))

    @property
    def target(self) -> Target | None:
        """The remote control plane this command talks to, or None for the machine's own (cli/contexts.py)."""
        if self._target is None:
            from .contexts import choose

            self._target = (choose(self.context, os.environ, self.contexts().load()),)
        return self._target[0]

    def client(self) -> Client:
        from .client import Client
        from .contexts import local_token

        target = self.target
        return Client(target) if target is not None else Client(self.settings, token=local_token(os.environ))

    def require_local(self, what: str) -> None:
        """BadInput, in one line, when `what` needs the control plane's own machine and a remote one is active."""
        target = self.target
        if target is not None:
            raise errors.BadInput(f"{what} runs on the control plane's own machine, but the active control plane is "
                                  f"remote ({target.name}: {target.url}); run it there, or use --context local")


pass_state = click.make_pass_decorator(State)


def env_option(f: F) -> F:
    """`-e/--environment` and `-p/--project`, as every command about one environment takes them."""
    f = click.option("-e", "--environment", "environment", default=None, help=ENV_HELP)(f)
    return click.option("-p", "--project", "project", default=None, help="Project (default: the linked one).")(f)


def json_option(f: F) -> F:
    """`--json`: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def repo_root() -> Path:
    """The top of the git repository the command runs in, else BadInput."""
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if done.returncode != 0:
        raise errors.BadInput("not inside a git repository (run this in your app's repository)")
    return Path(done.stdout.strip())


def git_config(key: str) -> str | None:
    """A git config value of the repository the command runs in, or None."""
    done = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def resolve_project(explicit: str | None) -> str:
    """The project: --project, else the linked one (git config branchyard.project), else branchyard.toml's name."""
    if explicit:
        return names.project_name(explicit)
    linked = git_config("branchyard.project")
    if linked:
        return linked
    toml = Path.cwd() / "branchyard.toml"
    if toml.exists():
        from ..spec import load_project

        return load_project(Path.cwd()).name
    raise errors.BadInput("no project linked here: run `branchyard init` or `branchyard link PROJECT`, or pass --project")


def resolve_environment(explicit: str | None) -> str:
    """The environment: -e, else the linked one (git config branchyard.environment), else production."""
    return names.environment_name(explicit or git_config("branchyard.environment") or "production")


def follow_deployment(client: Client, deployment_id: str) -> None:
    """Stream a deployment's log until it ends; non-zero exit unless it is SUCCESS."""
    for chunk in client.follow_log(deployment_id):
        ui.raw(chunk)
    dep = client.get(f"/api/deployments/{deployment_id}")
    if dep["status"] != "SUCCESS":
        raise errors.DeployFailed(f"deployment {deployment_id} ended {dep['status']}: {dep['error'] or 'see the log above'}")


def typed_confirmation(word: str, what: str) -> None:
    """Ask for `word` to be typed on a terminal; BadInput without a terminal or on a mismatch."""
    if not sys.stdin.isatty():
        raise errors.BadInput(f"{what} Refusing without confirmation: pass --yes")
    typed = click.prompt(f"{what}\nType {word} to confirm", default="", show_default=False)
    if typed != word:
        raise errors.BadInput(f"confirmation did not match {word!r}; nothing changed")
