"""What an app's files say about how to build it, the way Railpack's Python provider reads them.

Pure: reads files under the app's directory, runs nothing. Three questions, each answered with the file that
answered it: which Python (`python_request`), which installer (`detect_installer`), and which start command
when the project files give none (`infer_start_command`).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import BadInput
from ..spec.model import EnvironmentConfig
from .steps import split_build_command

# Where the Python version comes from, first match wins (Railpack's order, then PEP 621 as the loosest hint).
VERSION_VARIABLES = ("RAILPACK_PYTHON_VERSION", "NIXPACKS_PYTHON_VERSION")
PYTHON_VERSION_FILE = ".python-version"
RUNTIME_TXT = "runtime.txt"
PIPFILE = "Pipfile"
PYPROJECT = "pyproject.toml"

_EXACT = re.compile(r"^\d+(\.\d+){0,2}$")
_RUNTIME = re.compile(r"^python-(\d+(\.\d+){0,2})$")
_PYENV_NAME = re.compile(r"^(?:cpython-|python-?)?(\d+(\.\d+){0,2})(?:[-+][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class PythonRequest:
    """A Python version the app asks for: `spec` is `3.12`, `3.12.1` or a PEP 440 range like `>=3.11,<3.14`."""

    spec: str
    source: str  # the file (or variable) it came from, as shown to the user

    def matches(self, version: tuple[int, int, int]) -> bool:
        """True if an interpreter of `version` satisfies the request."""
        return version_matches(self.spec, version)

    def describe(self) -> str:
        return f"Python {self.spec} (from {self.source})"


def version_matches(spec: str, version: tuple[int, int, int]) -> bool:
    """`3.12` matches any 3.12.x, `3.12.1` only itself, anything else is read as a PEP 440 specifier set."""
    if _EXACT.match(spec):
        wanted = tuple(int(p) for p in spec.split("."))
        return version[: len(wanted)] == wanted
    try:
        return Version(".".join(map(str, version))) in SpecifierSet(spec)
    except (InvalidSpecifier, InvalidVersion):
        return False


def minor_candidates(spec: str) -> list[str]:
    """`3.X` names worth looking for on PATH (python3.X), newest first."""
    return [f"3.{minor}" for minor in range(20, -1, -1) if _minor_may_match(spec, minor)]


def _minor_may_match(spec: str, minor: int) -> bool:
    if _EXACT.match(spec):
        parts = spec.split(".")
        return parts[0] == "3" and (len(parts) < 2 or int(parts[1]) == minor)
    return any(version_matches(spec, (3, minor, patch)) for patch in (0, 1, 5, 10, 20, 99))


def python_request(src: Path, variables: Mapping[str, str]) -> PythonRequest | None:
    """The Python version the app asks for, and where it said so; None when it says nothing.

    Order: RAILPACK_PYTHON_VERSION, NIXPACKS_PYTHON_VERSION (the environment's variables), .python-version,
    runtime.txt, Pipfile [requires], pyproject.toml [project] requires-python. BadInput on an unreadable value.
    """
    for name in VERSION_VARIABLES:
        value = (variables.get(name) or "").strip()
        if value:
            return PythonRequest(_checked(value, f"variable {name}"), f"variable {name}")
    for reader in (_python_version_file, _runtime_txt, _pipfile, _pyproject):
        found = reader(src)
        if found is not None:
            return found
    return None


def _checked(value: str, label: str) -> str:
    spec = value.strip().removeprefix("python-").removeprefix("python")
    if _EXACT.match(spec):
        return spec
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        raise BadInput(f"{label}: not a Python version: {value!r} (expected e.g. 3.12 or 3.12.1)") from None
    return spec


def _python_version_file(src: Path) -> PythonRequest | None:
    text = _text(src, PYTHON_VERSION_FILE)
    if text is None:
        return None
    for raw in text.splitlines():  # pyenv allows several lines; the first version wins
        line = raw.split("#", 1)[0].strip()
        if not line or line == "system":
            continue
        m = _PYENV_NAME.match(line)
        if not m:
            raise BadInput(f"{PYTHON_VERSION_FILE}: not a Python version: {line!r} (expected e.g. 3.12)")
        return PythonRequest(m.group(1), PYTHON_VERSION_FILE)
    return None


def _runtime_txt(src: Path) -> PythonRequest | None:
    text = _text(src, RUNTIME_TXT)
    if text is None:
        return None
    value = text.strip()
    m = _RUNTIME.match(value)
    if not m:
        raise BadInput(f"{RUNTIME_TXT}: expected python-3.X or python-3.X.Y, got {value!r}")
    return PythonRequest(m.group(1), RUNTIME_TXT)


def _pipfile(src: Path) -> PythonRequest | None:
    data = _toml(src, PIPFILE)
    requires = data.get("requires") if isinstance(data, dict) else None
    if not isinstance(requires, dict):
        return None
    for key in ("python_full_version", "python_version"):
        value = requires.get(key)
        if isinstance(value, str) and value.strip():
            return PythonRequest(_checked(value, f"{PIPFILE}: requires.{key}"), f"{PIPFILE} [requires] {key}")
    return None


def _pyproject(src: Path) -> PythonRequest | None:
    project = _toml(src, PYPROJECT).get("project")
    value = project.get("requires-python") if isinstance(project, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    return PythonRequest(_checked(value, f"{PYPROJECT}: project.requires-python"), f"{PYPROJECT} requires-python")


# -- installers ------------------------------------------------------------------------------------

PIP = "pip"  # requirements.txt
UV = "uv"  # pyproject.toml + uv.lock
POETRY = "poetry"  # pyproject.toml + poetry.lock
PIPENV = "pipenv"  # Pipfile (+ Pipfile.lock)
PROJECT = "pip-project"  # pyproject.toml alone (PEP 621): pip install .
NONE = "none"


@dataclass(frozen=True)
class Installer:
    """How the app's dependencies get installed, and the files that said so."""

    kind: str
    files: tuple[str, ...]  # relative to the app's directory; their bytes key the dependency cache
    dependencies: tuple[str, ...] = ()  # PEP 621 [project] dependencies when they are static (pip-project)
    dynamic: bool = False  # pip-project whose dependencies are computed by its build backend
    package: bool = False  # the project is itself installed (it has a build system)

    def describe(self) -> str:
        return {
            PIP: "pip (requirements.txt)",
            UV: "uv sync --frozen (pyproject.toml + uv.lock)",
            POETRY: "poetry (pyproject.toml + poetry.lock)",
            PIPENV: "pipenv (Pipfile)",
            PROJECT: "pip install . (pyproject.toml, no lock file)",
            NONE: "none: no requirements.txt, pyproject.toml or Pipfile",
        }[self.kind]


NO_INSTALLER = (
    "no dependencies installed: the app has no requirements.txt, pyproject.toml (with or without uv.lock / "
    "poetry.lock) or Pipfile; add one listing what it imports"
)


def detect_installer(src: Path) -> Installer:
    """The installer Railpack would pick: requirements.txt, then uv.lock, poetry.lock, Pipfile, pyproject.toml."""
    has = {name: (src / name).is_file() for name in ("requirements.txt", PYPROJECT, "uv.lock", "poetry.lock",
                                                      PIPFILE, "Pipfile.lock")}
    if has["requirements.txt"]:
        return Installer(PIP, ("requirements.txt",))
    project = _toml(src, PYPROJECT) if has[PYPROJECT] else {}
    package = _is_package(project)
    if has[PYPROJECT] and has["uv.lock"]:
        return Installer(UV, (PYPROJECT, "uv.lock"), package=package)
    if has[PYPROJECT] and has["poetry.lock"]:
        return Installer(POETRY, (PYPROJECT, "poetry.lock"), package=package)
    if has[PIPFILE]:
        return Installer(PIPENV, tuple(n for n in (PIPFILE, "Pipfile.lock") if has[n]))
    if has[PYPROJECT]:
        table = project.get("project")
        if not isinstance(table, dict):
            raise BadInput(f"{PYPROJECT}: no [project] table: add one (PEP 621) with the app's dependencies, "
                           "or a requirements.txt")
        dynamic = "dependencies" in (table.get("dynamic") or [])
        deps = table.get("dependencies") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise BadInput(f"{PYPROJECT}: project.dependencies: expected a list of requirement strings")
        return Installer(PROJECT, (PYPROJECT,), dependencies=tuple(deps), dynamic=dynamic, package=True)
    return Installer(NONE, ())


def _is_package(project: Mapping[str, object]) -> bool:
    """True if installing the project installs the app itself: it has a build system, unless tool.uv.package = false
    or tool.poetry.package-mode = false (poetry: a [tool.poetry] table alone makes a package too)."""
    tool = project.get("tool") if isinstance(project.get("tool"), dict) else {}
    uv, poetry = tool.get("uv"), tool.get("poetry")
    if isinstance(uv, dict) and isinstance(uv.get("package"), bool):
        return bool(uv["package"])
    if isinstance(poetry, dict) and poetry.get("package-mode") is False:
        return False
    return isinstance(project.get("build-system"), dict)


# -- start command ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartInference:
    command: str
    reason: str  # e.g. "FastAPI app in main.py"


INFERENCE_HINT = ("a Django project (manage.py + <project>/wsgi.py or asgi.py), or a FastAPI/Starlette/Flask app "
                  "object (app = FastAPI()) in main.py or app.py")


def with_inferred_start(config: EnvironmentConfig, inferred: StartInference) -> EnvironmentConfig:
    """`config` whose web service starts with the inferred command; its source says why."""
    web = dataclasses.replace(config.web, start_command=inferred.command)
    sources = {**config.sources, "web.start_command": f"inferred: {inferred.reason}"}
    return dataclasses.replace(config, web=web, sources=sources)


_APP_OBJECT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]*)?=\s*(?P<kind>FastAPI|Flask|Starlette)\s*\(",
                         re.MULTILINE)
_FACTORY = re.compile(r"^def\s+(?P<name>create_app|make_app)\s*\(", re.MULTILINE)
_SETTINGS_MODULE = re.compile(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"](?P<module>[A-Za-z0-9_.]+)['\"]")


def infer_start_command(src: Path) -> StartInference | None:
    """A start command read from the app's code (Django, then a FastAPI/Starlette/Flask app object), or None."""
    django = _django(src)
    if django is not None:
        return django
    for filename in ("main.py", "app.py", "server.py", "wsgi.py", "asgi.py"):
        text = _text(src, filename)
        if text is None:
            continue
        module = filename.removesuffix(".py")
        m = _APP_OBJECT.search(text)
        if m:
            target = f"{module}:{m['name']}"
            if m["kind"] == "Flask":
                if has_dependency(src, "gunicorn"):
                    return StartInference(f"gunicorn {target} --bind 0.0.0.0:$PORT", f"Flask app in {filename}")
                return StartInference(f"flask --app {target} run --host 0.0.0.0 --port $PORT", f"Flask app in {filename}")
            return StartInference(f"uvicorn {target} --host 0.0.0.0 --port $PORT", f"{m['kind']} app in {filename}")
    return None


def _django(src: Path) -> StartInference | None:
    manage = _text(src, "manage.py")
    if manage is None:
        return None
    m = _SETTINGS_MODULE.search(manage)
    package = m["module"].split(".")[0] if m else None
    candidates = [package] if package else sorted(p.parent.name for p in src.glob("*/wsgi.py"))
    for pkg in candidates:
        if pkg is None:
            continue
        if (src / pkg / "asgi.py").is_file() and has_dependency(src, "uvicorn") and not has_dependency(src, "gunicorn"):
            return StartInference(f"uvicorn {pkg}.asgi:application --host 0.0.0.0 --port $PORT",
                                  f"Django project {pkg} (manage.py, {pkg}/asgi.py, uvicorn a dependency)")
        if (src / pkg / "wsgi.py").is_file():
            if has_dependency(src, "gunicorn"):
                return StartInference(f"gunicorn {pkg}.wsgi --bind 0.0.0.0:$PORT",
                                      f"Django project {pkg} (manage.py, {pkg}/wsgi.py, gunicorn a dependency)")
            return StartInference("python manage.py runserver 0.0.0.0:$PORT",
                                  f"Django project {pkg} (manage.py, no gunicorn among the dependencies: "
                                  "the development server; add gunicorn)")
    return None


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def has_dependency(src: Path, name: str) -> bool:
    """True if the app's dependency files name the distribution `name` (requirements, pyproject, uv/poetry lock, Pipfile)."""
    wanted = _normal(name)
    for req in sorted(src.glob("requirements*.txt")):
        for line in (_text(src, req.name) or "").splitlines():
            m = _REQ_NAME.match(line.split("#", 1)[0])
            if m and not line.lstrip().startswith("-") and _normal(m.group(1)) == wanted:
                return True
    project = _toml(src, PYPROJECT)
    table = project.get("project") if isinstance(project.get("project"), dict) else {}
    deps = list(table.get("dependencies") or []) if isinstance(table, dict) else []
    poetry = project.get("tool", {}).get("poetry", {}) if isinstance(project.get("tool"), dict) else {}
    if isinstance(poetry, dict) and isinstance(poetry.get("dependencies"), dict):
        deps += list(poetry["dependencies"])
    for dep in deps:
        m = _REQ_NAME.match(str(dep))
        if m and _normal(m.group(1)) == wanted:
            return True
    for lock in ("uv.lock", "poetry.lock"):
        if re.search(rf'^name = "{re.escape(wanted)}"$', _text(src, lock) or "", re.MULTILINE):
            return True
    pipfile = _toml(src, PIPFILE).get("packages")
    return isinstance(pipfile, dict) and any(_normal(k) == wanted for k in pipfile)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- reading files ---------------------------------------------------------------------------------


def _text(src: Path, name: str) -> str | None:
    path = src / name
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"{name}: cannot read: {exc.strerror}") from None


def _toml(src: Path, name: str) -> dict:
    text = _text(src, name)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{name}: invalid TOML: {exc}") from None


# -- what `config check` / `config show` tell --------------------------------------------------------


@dataclass(frozen=True)
class BuildReport:
    """What a build of `src` would use, each with its source, as `config check` and `config show` print it."""

    python: str
    python_source: str
    installer: Installer
    install: str  # how the dependencies get installed, in words
    install_source: str
    start: StartInference | None  # only when the project files give no start command

    def rows(self) -> list[tuple[str, str, str]]:
        return [("build.python", self.python, self.python_source), ("build.installer", self.install, self.install_source)]


def build_report(src: Path, variables: Mapping[str, str], *, start_command: str | None,
                 build_command: str | None = None) -> BuildReport:
    """The build's reading of the app (BadInput on an unreadable version or pyproject.toml)."""
    request = python_request(src, variables)
    python, source = (request.spec, request.source) if request else (
        "the server's default (BRANCHYARD_PYTHON)", "default: the app names no version")
    start = None if start_command else infer_start_command(src)
    installer = detect_installer(src)
    own = split_build_command(build_command, src)[0] if build_command is not None else []
    if own:  # the build command installs the dependencies itself: the detected installer does not run
        install, install_source = " && ".join(own), "buildCommand"
    else:
        install, install_source = installer.describe(), ", ".join(installer.files) or "detected: no files"
    return BuildReport(python, source, installer, install, install_source, start)
