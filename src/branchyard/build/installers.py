"""From the detected installer and the build command to the steps of a build (pure: commands as text, run nowhere).

Steps come in three groups: `dependencies` install third-party packages into the shared virtualenv, cached by
dependency hash + interpreter; `app` installs the app itself into the release's own layer (a virtualenv that sees
the shared one through a .pth file), every build; `other` are the build command's remaining steps, every build.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildFailed
from .detect import NO_INSTALLER, NONE, PIP, PIPENV, POETRY, PROJECT, UV, Installer
from .steps import IMPLICIT_INSTALL, editable_projects, is_install_step, split_build_command, split_local_lines


@dataclass(frozen=True)
class Step:
    command: str  # run with /bin/sh -c, the layer's virtualenv active
    label: str  # how the log shows it (`$ label`)
    writes: tuple[tuple[str, str], ...] = ()  # (file under the app's directory, text) written before it runs
    # run instead when this step fails because the build backend cannot install editable (no PEP 660 hook)
    not_editable: Step | None = None

# Requirements files made from the app's own, next to it (so that its relative -r includes still resolve).
DEPENDENCY_LINES = ".branchyard-dependencies.txt"
LOCAL_LINES = ".branchyard-local.txt"


@dataclass(frozen=True)
class InstallPlan:
    source: str  # what decided the install: "requirements.txt", "buildCommand", …
    installer: str  # a detect.* kind, or "buildCommand" when the build command installs the dependencies
    dependencies: tuple[Step, ...] = ()
    app: tuple[Step, ...] = ()
    other: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()
    editable: tuple[str, ...] = ()  # the directories `app` installs editable: its layer may be reused (app_layer)

    @property
    def cache_key(self) -> list[str]:
        """What, besides the dependency files and the interpreter, keys the shared virtualenv: the same install
        steps share it, whether the build command or the detected installer asked for them."""
        return [s.label for s in self.dependencies]


def _step(command: str, label: str | None = None, writes: tuple[tuple[str, str], ...] = ()) -> Step:
    return Step(command, label or command, writes)


TOOLS = {UV: "uv", POETRY: "poetry", PIPENV: "pipenv"}  # installer kind → the executable it runs


def plan(src: Path, build_command: str | None, installer: Installer, *, tool: str | None, python: str,
         uv: str | None = None) -> InstallPlan:
    """The build's steps. The build command's leading pip installs, when it has some, replace the detected installer
    (the app took the install in hand); its other steps run after the install, as Railway runs a buildCommand.

    tool: the path of the installer's executable (uv, poetry, pipenv); None: its bare name (the labels, and so the
    cache key, are the same either way). uv: the uv executable, which installs the app itself into its layer
    (`uv pip install --no-deps`: its build environments are cached, where pip builds a fresh one every push)."""
    install, other = split_build_command(build_command, src) if build_command is not None else ([], [])
    others = tuple(_step(s) for s in other)
    if install:
        return InstallPlan("buildCommand", "buildCommand", tuple(_step(s) for s in install), (), others)
    base = _detected(src, installer, tool=shlex.quote(tool or TOOLS.get(installer.kind, "")), python=python,
                     uv=shlex.quote(uv or "uv"))
    return InstallPlan(base.source, base.installer, base.dependencies, base.app, others, base.notes, base.editable)


def _app_step(uv: str, args: str, label_args: str | None = None, writes: tuple[tuple[str, str], ...] = ()) -> Step:
    """Installs the app (only) into the release's layer, the active virtualenv."""
    return _step(f"{uv} pip install --no-deps {args}", f"uv pip install --no-deps {label_args or args}", writes)


def _editable_app_step(uv: str) -> Step:
    """Installs the app editable into the release's layer (its code stays in the release's directory, which never
    changes), so that a code-only push can reuse the layer; a copy when the build backend cannot do editable."""
    editable = _app_step(uv, "-e .")
    return Step(editable.command, editable.label, not_editable=_app_step(uv, "."))


def _detected(src: Path, installer: Installer, *, tool: str, python: str, uv: str) -> InstallPlan:
    kind = installer.kind
    if kind == PIP:
        if is_install_step(IMPLICIT_INSTALL, src):
            return InstallPlan("requirements.txt", PIP, (_step(IMPLICIT_INSTALL),))
        split = split_local_lines(src)
        if split is None:
            note = ("requirements.txt installs local code (-e . or a path) in a file it includes: "
                    "all of it is installed with the app, every build")
            return InstallPlan("requirements.txt", PIP, (), (_step(IMPLICIT_INSTALL),), notes=(note,))
        # The dependencies in the shared cached virtualenv; the local lines (the app) in the release's own layer.
        deps_text, local_text = split
        deps = _step(f"pip install -r {DEPENDENCY_LINES}", "pip install -r requirements.txt (its dependency lines)",
                     ((DEPENDENCY_LINES, deps_text),))
        app = _app_step(uv, f"-r {LOCAL_LINES}", "-r requirements.txt (its local lines: " + ", ".join(local_text.splitlines())
                        + ")", ((LOCAL_LINES, local_text),))
        return InstallPlan("requirements.txt", PIP, (deps,) if deps_text else (), (app,),
                           editable=tuple(editable_projects(local_text) or ()))
    if kind == UV:
        sync = (f"{tool} sync --frozen --no-dev --no-install-project --inexact --python {shlex.quote(python)}",
                "uv sync --frozen --no-dev --no-install-project")
        app = (_editable_app_step(uv),) if installer.package else ()
        return InstallPlan("pyproject.toml + uv.lock", UV, (_step(*sync),), app, editable=(".",) if app else ())
    if kind == PROJECT:
        if installer.dynamic:
            note = "pyproject.toml: its dependencies are dynamic (computed by its build backend): installed with the app, every build"
            return InstallPlan("pyproject.toml", PROJECT, (), (_step("pip install ."),), notes=(note,))
        deps = (_step("pip install " + " ".join(shlex.quote(d) for d in installer.dependencies)),) if installer.dependencies else ()
        return InstallPlan("pyproject.toml", PROJECT, deps, (_editable_app_step(uv),), editable=(".",))
    if kind == POETRY:
        # virtualenvs.create = false: poetry installs into the active virtualenv (VIRTUAL_ENV), the one being built.
        label = "poetry install --no-root --only main"
        deps = _step(f"POETRY_VIRTUALENVS_CREATE=false {tool} install --no-root --only main --no-interaction --no-ansi", label)
        app = (_editable_app_step(uv),) if installer.package else ()
        return InstallPlan("pyproject.toml + poetry.lock", POETRY, (deps,), app, editable=(".",) if app else ())
    if kind == PIPENV:
        if "Pipfile.lock" not in installer.files:
            raise BuildFailed("Pipfile: no Pipfile.lock next to it: run `pipenv lock` and commit Pipfile.lock")
        # --system: the python on PATH, i.e. the active virtualenv's; --deploy: refuse a Pipfile.lock out of date.
        deps = _step(f"PIPENV_VERBOSITY=-1 {tool} install --system --deploy", "pipenv install --system --deploy")
        return InstallPlan("Pipfile + Pipfile.lock", PIPENV, (deps,))
    assert kind == NONE
    return InstallPlan("nothing", NONE, notes=(NO_INSTALLER,))
