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
from .steps import IMPLICIT_INSTALL, is_install_step, split_build_command


@dataclass(frozen=True)
class Step:
    command: str  # run with /bin/sh -c, the layer's virtualenv active
    label: str  # how the log shows it (`$ label`)


@dataclass(frozen=True)
class InstallPlan:
    source: str  # what decided the install: "requirements.txt", "buildCommand", …
    installer: str  # a detect.* kind, or "buildCommand" when the build command installs the dependencies
    dependencies: tuple[Step, ...] = ()
    app: tuple[Step, ...] = ()
    other: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def cache_key(self) -> list[str]:
        """What, besides the dependency files and the interpreter, keys the shared virtualenv: the same install
        steps share it, whether the build command or the detected installer asked for them."""
        return [s.label for s in self.dependencies]


def _step(command: str, label: str | None = None) -> Step:
    return Step(command, label or command)


def plan(src: Path, build_command: str | None, installer: Installer, *, uv: str | None, python: str) -> InstallPlan:
    """The build's steps. The build command's leading pip installs, when it has some, replace the detected installer
    (the app took the install in hand); its other steps run after the install, as Railway runs a buildCommand."""
    install, other = split_build_command(build_command, src) if build_command is not None else ([], [])
    others = tuple(_step(s) for s in other)
    if install:
        return InstallPlan("buildCommand", "buildCommand", tuple(_step(s) for s in install), (), others)
    base = _detected(src, installer, uv=uv, python=python)
    return InstallPlan(base.source, base.installer, base.dependencies, base.app, others, base.notes)


def _detected(src: Path, installer: Installer, *, uv: str | None, python: str) -> InstallPlan:
    kind = installer.kind
    if kind == PIP:
        if is_install_step(IMPLICIT_INSTALL, src):
            return InstallPlan("requirements.txt", PIP, (_step(IMPLICIT_INSTALL),))
        note = "requirements.txt installs local code (-e . or a path): installed with the app, every build"
        return InstallPlan("requirements.txt", PIP, (), (_step(IMPLICIT_INSTALL),), notes=(note,))
    if kind == UV:
        if uv is None:
            raise BuildFailed("uv.lock: the uv executable is missing (it comes with branchyard's `uv` dependency)")
        uvq = shlex.quote(uv)
        sync = (f"{uvq} sync --frozen --no-dev --no-install-project --inexact --python {shlex.quote(python)}",
                "uv sync --frozen --no-dev --no-install-project")
        app = (_step(f"{uvq} pip install --no-deps .", "uv pip install --no-deps ."),) if installer.package else ()
        return InstallPlan("pyproject.toml + uv.lock", UV, (_step(*sync),), app)
    if kind == PROJECT:
        if installer.dynamic:
            note = "pyproject.toml: its dependencies are dynamic (computed by its build backend): installed with the app, every build"
            return InstallPlan("pyproject.toml", PROJECT, (), (_step("pip install ."),), notes=(note,))
        deps = (_step("pip install " + " ".join(shlex.quote(d) for d in installer.dependencies)),) if installer.dependencies else ()
        return InstallPlan("pyproject.toml", PROJECT, deps, (_step("pip install --no-deps ."),))
    if kind in (POETRY, PIPENV):
        lock = "poetry.lock" if kind == POETRY else "Pipfile"
        raise BuildFailed(f"{lock}: {kind} projects are not built yet: add a requirements.txt "
                          f"({'poetry export -f requirements.txt -o requirements.txt' if kind == POETRY else 'pipenv requirements > requirements.txt'})")
    assert kind == NONE
    return InstallPlan("nothing", NONE, notes=(NO_INSTALLER,))
