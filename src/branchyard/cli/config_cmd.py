"""`branchyard config check|show`: validate and explain the project files, no server needed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import names
from . import ui


def _root(path: str | None) -> Path:
    root = Path(path) if path else Path.cwd()
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--path")
    return root


@click.group()
def config() -> None:
    """Validate and explain branchyard.toml and railway.toml/json."""


@config.command("check")
@click.option("--strict", is_flag=True, help="Unknown keys and sections are errors, not warnings.")
@click.option("--path", default=None, help="The app's directory (default: the current one).")
def config_check(strict: bool, path: str | None) -> None:
    """Validate the project's files; exit non-zero on any error."""
    from ..errors import SpecError
    from ..spec import check, load_project  # here, not at import: every other command starts faster

    root = _root(path)
    try:
        spec = load_project(root, strict=True if strict else None)
    except SpecError:
        spec = None  # a load error, or (strict) a warning: either way it is among the problems below
    # Warnings first, and also when there are errors: a misspelt key is often why an error happens
    # ([deploy] startCommnd = … is "no start command").
    for warning in spec.warnings if spec else ():
        ui.warn(warning)
    for notice in _notices(root):  # warnings in strict mode too: declared, not done yet (a Procfile's worker:)
        ui.warn(notice)
    problems = check(root, strict=True if strict else None)
    if problems:
        for problem in problems:
            ui.error(problem)
        sys.exit(2)
    assert spec is not None  # no problems: it loaded
    for note in spec.ignored:
        ui.info(f"note: {note}")
    ui.success(f"{', '.join(spec.files)}: OK (project {spec.name}; environments: {', '.join(spec.declared_names())})")


def _notices(root: Path) -> tuple[str, ...]:
    """What the project's files declare and branchyard does not do yet; () when they do not load."""
    from ..errors import SpecError
    from ..spec import load_project

    try:
        return load_project(root, strict=False).notices
    except SpecError:
        return ()


@config.command("show")
@click.option("-e", "--environment", "environment", required=True, help="Environment (e.g. production, pr-123).")
@click.option("--path", default=None, help="The app's directory (default: the current one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_show(environment: str, path: str | None, as_json: bool) -> None:
    """The effective, merged configuration of one environment, with where each value came from."""
    from ..spec import explain, load_project

    spec = load_project(_root(path))
    cfg = spec.environment(names.environment_name(environment))
    if as_json:
        ui.print_json(cfg.to_dict())
        return
    ui.table(["KEY", "VALUE", "FROM"], [(k, v, src) for k, v, src in explain(cfg)], title=f"{spec.name} / {cfg.name}")
