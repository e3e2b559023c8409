"""`branchyard github configure|protect`: the project's webhook settings, and branch protection as code rendered
from the project files (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import errors
from .. import settings as settings_mod
from . import ui
from .context import State, pass_state, resolve_project

if TYPE_CHECKING:  # imported where used: every CLI command pays for what this module imports (httpx: ~0.1–0.2 s)
    from ..github.protection import BranchRule


@click.group()
def github() -> None:
    """GitHub: the webhook's settings and branch protection as code."""


@github.command("configure")
@click.option("--webhook-secret", default=None, help="This project's webhook secret (else BRANCHYARD_GITHUB_WEBHOOK_SECRET).")
@click.option("--repository", default=None, metavar="OWNER/NAME", help="The GitHub repository (else [github] repository).")
@click.option("-p", "--project", default=None)
@pass_state
def github_configure(state: State, webhook_secret: str | None, repository: str | None, project: str | None) -> None:
    """Set the project's webhook secret (stored encrypted) and/or GitHub repository."""
    if webhook_secret is None and repository is None:
        raise errors.BadInput("github configure: give --webhook-secret and/or --repository")
    info = state.client().post(f"/api/projects/{resolve_project(project)}/github",
                               {"webhook_secret": webhook_secret, "repository": repository})
    secret = "set" if info["webhook_secret_set"] else "not set (BRANCHYARD_GITHUB_WEBHOOK_SECRET is used)"
    ui.success(f"github: repository {info['github_repository'] or '(none)'}, webhook secret {secret}")


@github.command("protect")
@click.option("--apply", "apply_", is_flag=True, help="PUT the rules on GitHub (needs BRANCHYARD_GITHUB_TOKEN).")
@click.option("--path", default=None, help="The app's directory (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the rules and the exact requests).")
def protect(apply_: bool, path: str | None, as_json: bool) -> None:
    """Render the branch protection of the spec's branches; with --apply, set it on GitHub."""
    root = Path(path) if path else Path.cwd()
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--path")
    from ..github.protection import render
    from ..spec import load_project

    spec = load_project(root)
    rules = render(spec)
    repository = spec.github_repository
    if not rules:
        raise errors.BadInput("branchyard.toml: nothing to protect: no environment has a branch and no "
                              "[github.protection.<branch>] table is enabled")
    applied: list[str] = []
    if apply_:
        if repository is None:
            raise errors.BadInput('branchyard.toml: github.repository: not set; add [github] repository = "owner/name" '
                                  "to apply branch protection (nothing was changed)")
        settings = settings_mod.load()
        if not settings.github_token:
            raise errors.BadInput(f"BRANCHYARD_GITHUB_TOKEN is not set: `github protect --apply` needs a token with "
                                  f"administration access to {repository} (nothing was changed)")
        from ..github.client import GitHubClient

        with GitHubClient(settings.github_token, base_url=settings.github_api_url) as client:
            for rule in rules:
                try:
                    client.update_branch_protection(repository, rule.branch, rule.body())
                except errors.BranchyardError as err:
                    done = f"; already applied: {', '.join(applied)}" if applied else "; nothing was changed"
                    raise type(err)(f"{rule.branch}: {err}{done}") from None
                applied.append(rule.branch)
    if as_json:
        ui.print_json({"repository": repository, "applied": apply_, "branches": [r.to_dict(repository) for r in rules]})
        return
    ui.table(
        ["BRANCH", "ENV", "APPROVALS", "REQUIRED CHECKS", "FORCE PUSH/DELETE"],
        [(r.branch, r.environment or "", r.required_approvals, _checks(r),
          f"{_allowed(r.allow_force_push)}/{_allowed(r.allow_deletions)}") for r in rules],
        title=f"branch protection for {repository or 'this project (no [github] repository yet)'}",
    )
    if apply_:
        ui.success(f"branch protection applied on {repository}: {', '.join(applied)}")
    else:
        ui.info("rendered only; `branchyard github protect --apply` sets it on GitHub")


def _checks(rule: BranchRule) -> str:
    if not rule.required_checks:
        return "none"
    return ", ".join(rule.required_checks) + (" (up to date)" if rule.strict else "")


def _allowed(value: bool) -> str:
    return "allowed" if value else "blocked"
