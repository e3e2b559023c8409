"""`branchyard config check|show`: validate and explain the project files, no server needed."""

from __future__ import annotations

import os
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
    from ..build import detect
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
    problems = check(root, strict=True if strict else None,
                     infers_start=lambda root_dir: detect.infer_start_command(_source(root, root_dir)) is not None)
    if problems:
        for problem in problems:
            ui.error(problem)
        sys.exit(2)
    assert spec is not None  # no problems: it loaded
    for note in spec.ignored:
        ui.info(f"note: {note}")
    reports = _build_reports(root, spec)
    for line in (line for _, report in reports for line in report if line.startswith("error: ")):
        ui.error(line.removeprefix("error: "))
    if any(line.startswith("error: ") for _, report in reports for line in report):
        sys.exit(2)
    files = list(spec.files) or ["no branchyard.toml or railway.toml (defaults)"]
    ui.success(f"{', '.join(files)}: OK (project {spec.name}; environments: {', '.join(spec.declared_names())})")
    for root_dir, report in reports:
        where = "" if root_dir in ("", ".") else f"{root_dir}: "
        for line in report:
            (ui.warn if line.startswith("warning: ") else ui.info)(where + line.removeprefix("warning: "))


def _source(root: Path, root_dir: str) -> Path:
    return root if root_dir in ("", ".") else names.safe_join(root, root_dir)


def _build_reports(root: Path, spec) -> list[tuple[str, list[str]]]:
    """Per source root of the project's environments: what the build will use (python, installer, start command)."""
    from ..build import detect, installers
    from ..errors import BranchyardError

    out: list[tuple[str, list[str]]] = []
    configs = [spec.environment(name) for name in spec.environments]
    for root_dir in sorted({c.web.root_dir for c in configs}):
        src = _source(root, root_dir)
        lines: list[str] = []
        try:
            mine = [c for c in configs if c.web.root_dir == root_dir]
            report = detect.build_report(src, mine[0].variables, start_command=mine[0].web.start_command,
                                         build_command=mine[0].web.build_command)
            lines.append(f"python: {report.python} ({report.python_source})")
            lines.append(f"installer: {report.install}" + (" (buildCommand)" if report.install_source == "buildCommand" else ""))
            installers.plan(src, mine[0].web.build_command, report.installer, tool=None, python="python3")
            if report.installer.kind == detect.NONE and report.install_source != "buildCommand":
                lines.append(f"warning: {detect.NO_INSTALLER}")
            if report.start is not None:
                lines.append(f"start command: {report.start.command} (inferred: {report.start.reason})")
        except BranchyardError as err:
            lines.append(f"error: {err}")
        out.append((root_dir, lines))
    return out


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
    from ..build import detect
    from ..settings import preview_sleep_after
    from ..spec import explain, load_project
    from ..spec import sleep as sleep_rule
    from ..spec.alerts import mask

    root = _root(path)
    spec = load_project(root)
    cfg = spec.environment(names.environment_name(environment))
    report = detect.build_report(_source(root, cfg.web.root_dir), cfg.variables, start_command=cfg.web.start_command,
                                 build_command=cfg.web.build_command)
    if report.start is not None:
        cfg = detect.with_inferred_start(cfg, report.start)
    # issue 17: seconds without a request before it sleeps (None: never), and which rule says so
    after, source = sleep_rule.effective(cfg.sleep_after, sleep_application=cfg.web.sleep_application,
                                         production=cfg.production, ephemeral=cfg.ephemeral,
                                         preview_default=preview_sleep_after(dict(os.environ)),
                                         cron=bool(cfg.web.cron_schedule))
    if as_json:
        shown = cfg.to_dict()
        shown["alerts"]["webhooks"] = [hook | {"target": mask(hook["target"])} for hook in shown["alerts"]["webhooks"]]
        tests = spec.tests_for(cfg.name)  # post-deploy tests: [environments.<env>.tests], a preview's from the pr template
        shown["tests"] = None if tests is None else {"commands": list(tests.commands), "timeout": tests.timeout}
        shown["sleep"] = {"after": after, "from": source}
        ui.print_json(shown | {"build": {key.removeprefix("build."): {"value": value, "from": source}
                                         for key, value, source in report.rows()}})
        return
    rows = [(k, v, src) for k, v, src in explain(cfg)] + report.rows()
    rows.append(("sleep", f"after {after} s without a request" if after else "never", source))
    ui.table(["KEY", "VALUE", "FROM"], rows, title=f"{spec.name} / {cfg.name}")
