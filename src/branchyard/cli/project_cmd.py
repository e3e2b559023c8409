"""`branchyard init` and `branchyard link`: tie this git repository to a project and add the `branchyard` git remote."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import click

from .. import errors, names
from . import ui
from .context import State, pass_state, repo_root


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)
    except FileNotFoundError:
        raise errors.BadInput("git is not installed") from None
    except subprocess.CalledProcessError as err:
        raise errors.BadInput(f"git {' '.join(args)}: {(err.stderr or err.stdout).strip()}") from None
    return done.stdout.strip()


def _set_remote(state: State, info: dict) -> str:
    """Point the `branchyard` remote at the project: its bare repository on this machine, or, against a remote
    control plane, its git-over-HTTP URL with branchyard's credential helper for that URL (the token stays in the
    context store, never in .git/config). Returns the remote's URL."""
    target = state.target
    url = info["repo_path"] if target is None else f"{target.url}/git/{info['name']}.git"
    remotes = _git("remote").split()
    if "branchyard" in remotes:
        _git("remote", "set-url", "branchyard", url)
    else:
        _git("remote", "add", "branchyard", url)
    if target is not None:
        key = f"credential.{target.url}.helper"
        _git("config", "--unset-all", key, check=False)
        _git("config", "--add", key, "")  # an empty helper clears those of the user's other configs for this URL
        _git("config", "--add", key, credential_helper())
    return url


def credential_helper() -> str:
    """The git config value that runs branchyard's credential helper (cli/credential.py) with this very interpreter."""
    return f"!{shlex.quote(sys.executable)} -m branchyard.cli.credential"


@click.command()
@click.option("--repo", "upstream", default=None, help="Upstream git URL (a local path works) the server fetches from.")
@click.option("--name", default=None, help="Project name (default: branchyard.toml's, else the directory's).")
@pass_state
def init(state: State, upstream: str | None, name: str | None) -> None:
    """Register this repository as a project (and the environments its files declare) and add the `branchyard` remote."""
    from ..spec import load_project
    from ..spec.branches import push_hint
    from ..spec.model import PR_TEMPLATE

    root = repo_root()
    spec = load_project(root)  # without project files: production deploys main
    github_repository = spec.github_repository
    name = names.project_name(name or (spec.name if (root / "branchyard.toml").exists() else None)
                              or names.slug(root.name, what="directory name"))
    if upstream and Path(upstream).exists():
        if state.target is not None:
            raise errors.BadInput(f"init --repo {upstream}: a path on this machine, but the control plane is remote "
                                  f"({state.target.url}); give a git URL it can fetch from")
        upstream = str(Path(upstream).resolve())  # a local path, made absolute: the server runs elsewhere
    declared = [{"name": d.name, "branch": d.branch, "production": d.production, "protected": d.protected}
                for d in spec.environments.values()
                if d.name != PR_TEMPLATE and not d.ephemeral]
    client = state.client()
    info = client.post("/api/projects", {"name": name, "upstream": upstream, "github_repository": github_repository,
                                         "environments": declared})
    remote = _set_remote(state, info)
    _git("config", "branchyard.project", name)
    envs = client.get(f"/api/projects/{name}/environments")
    pinned = {e["name"]: e["branch"] for e in envs if e.get("branch_pinned") and e["branch"]}
    hint = push_hint(_current_branch(), spec, pinned)
    ui.success(f"project {name} ready (remote: {remote}; environments: "
               f"{', '.join(e['name'] for e in envs) or 'none yet'}); {hint}")


def _current_branch() -> str | None:
    """The branch checked out here (also on a repository without commits yet), else git's default branch, else None."""
    return _git("symbolic-ref", "--quiet", "--short", "HEAD", check=False) or _git(
        "config", "--get", "init.defaultBranch", check=False) or None


@click.command()
@click.argument("project")
@click.option("-e", "--environment", default=None, help="Environment to use by default in this repository.")
@pass_state
def link(state: State, project: str, environment: str | None) -> None:
    """Link this repository to an existing project (and optionally a default environment)."""
    repo_root()
    info = state.client().get(f"/api/projects/{names.project_name(project)}")
    _set_remote(state, info)
    _git("config", "branchyard.project", info["name"])
    if environment:
        _git("config", "branchyard.environment", names.environment_name(environment))
    ui.success(f"linked to {info['name']}" + (f" ({environment})" if environment else ""))
