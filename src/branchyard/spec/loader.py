"""Loading a project's files (branchyard.toml, railway.toml/json, Procfile) into a ProjectSpec, plus the
helpers behind `config check` and `config show`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import NameRefused, SpecError
from ..names import NAME_MAX, project_name, safe_join, slug
from .branchyard import BranchyardConfig, default_config, parse_branchyard
from .context import FileContext, Layer, suggestion
from .model import PR_TEMPLATE, EnvironmentConfig, Layers, ProjectSpec
from .procfile import not_run, parse_procfile, services
from .railway import RailwayConfig, parse_railway
from .textfile import decode, parse_json, parse_toml

BRANCHYARD_FILE = "branchyard.toml"
RAILWAY_FILES = ("railway.toml", "railway.json")
PROCFILE = "Procfile"
NO_START_COMMAND = "no start command: set deploy.startCommand in railway.toml or a web: line in Procfile"
_PR_INSTANCE = re.compile(r"pr-\d+")
_REFERENCE = re.compile(r"\$\{\{\s*([A-Za-z][A-Za-z0-9_-]*)\.([A-Za-z0-9_]+)\s*\}\}")


def load_project(root: Path, *, strict: bool | None = None) -> ProjectSpec:
    """Read and validate a project's files; raise SpecError (in strict mode, also for unknown keys)."""
    spec = _load(Path(root), strict)
    if spec.strict and spec.warnings:
        raise SpecError(spec.warnings[0])
    return spec


def check(root: Path, strict: bool | None = None, *, infers_start: Callable[[str], bool] | None = None) -> list[str]:
    """Every problem `config check` reports, one line each; empty when the project is fine.

    infers_start(root_dir): True when the build can infer a start command for that source root (build/detect.py),
    so that having none in the project files is no problem."""
    try:
        spec = _load(Path(root), strict)
    except SpecError as err:
        return [err.message]
    problems = list(spec.warnings) if spec.strict else []
    services = _service_names(spec)
    for name in spec.environments:
        label = f"{name}-*" if name == PR_TEMPLATE else name
        config = spec.environment(name)
        inferred = infers_start is not None and not config.web.start_command and infers_start(config.web.root_dir)
        problems += [f"{label}: {p}" for p in environment_problems(config, services, inferred_start=inferred)]
    return problems


def environment_problems(config: EnvironmentConfig, service_names: Iterable[str] = ("Postgres", "Redis"), *,
                         inferred_start: bool = False) -> list[str]:
    """Problems of one effective config: no start command (unless the build infers one), references to services it
    does not have."""
    problems = [] if config.web.start_command or inferred_start else [NO_START_COMMAND]
    present = {s.name for s in (config.postgres, config.redis) if s is not None}
    missing = set(service_names) - present
    for variable, value in config.variables.items():
        for match in _REFERENCE.finditer(value):
            if match.group(1) in missing:
                problems.append(
                    f"variables.{variable} refers to {match.group(0)}, "
                    f"but this environment has no {match.group(1)} service"
                )
    return problems


def explain(config: EnvironmentConfig) -> list[tuple[str, Any, str]]:
    """(key, value, source) rows of an effective config, for a human table."""
    rows: list[tuple[str, Any, str]] = []
    for section in ("web", "postgres", "redis"):
        part = getattr(config, section)
        if part is None:
            continue
        for field in dataclasses.fields(part):
            key = f"{section}.{field.name}"
            rows.append((key, getattr(part, field.name), config.sources[key]))
    for name, process in config.processes.items():  # the Procfile's services (issue 17)
        key = f"processes.{name}.command"
        rows.append((key, process.command, config.sources.get(key, "Procfile")))
    for name, value in config.variables.items():
        rows.append((f"variables.{name}", value, config.sources[f"variables.{name}"]))
    return rows


def _load(root: Path, strict: bool | None) -> ProjectSpec:
    """Read every file and assemble the spec, keeping unknown-key warnings (never raising for them)."""
    if not root.is_dir():
        raise SpecError(f"{root}: no such directory")
    files: list[str] = []
    contexts: list[FileContext] = []
    project = _read_branchyard(root, files, contexts)
    railway = _read_railway(root, project.railway_path, files, contexts)
    procfiles = _read_procfiles(root, _root_dirs(project, railway), files)
    layers = Layers(
        railway_base=railway.base if railway else {},
        railway_environments=railway.environments if railway else {},
        base=project.base,
        environments=project.layers,
        procfiles={d: (p["web"], label) for d, (p, label) in procfiles.items() if "web" in p},
        procfile_releases={d: (p["release"], label) for d, (p, label) in procfiles.items() if "release" in p},
        procfile_services={d: (services(p), label) for d, (p, label) in procfiles.items() if services(p)},
    )
    warnings = [w for ctx in contexts for w in ctx.warnings]
    if railway:
        warnings += _undeclared(railway, project)
    return ProjectSpec(
        name=project.name,
        domain=project.domain,
        strict=bool(project.strict) if strict is None else strict,
        environments=project.environments,
        preview=project.preview,
        warnings=tuple(warnings),
        ignored=tuple(i for ctx in contexts for i in ctx.ignored),
        notices=tuple(n for p, label in procfiles.values() if (n := not_run(label, p))),
        files=tuple(files),
        github_repository=project.github_repository,
        github_protection=project.github_protection,
        sanitize=project.sanitize,
        layers=layers,
    )


def _read(root: Path, relative: str) -> str:
    """Text of a project file."""
    try:
        return decode(relative, safe_join(root, relative).read_bytes())
    except NameRefused as err:
        raise SpecError(f"{relative}: {err.message}") from None
    except OSError as err:
        raise SpecError(f"{relative}: cannot read: {err.strerror}") from None


def _read_branchyard(root: Path, files: list[str], contexts: list[FileContext]) -> BranchyardConfig:
    """branchyard.toml, or the defaults when the project has none."""
    if not (root / BRANCHYARD_FILE).is_file():
        return default_config(_default_name(root))
    text = _read(root, BRANCHYARD_FILE)
    ctx = FileContext(BRANCHYARD_FILE, text, "toml")
    files.append(BRANCHYARD_FILE)
    contexts.append(ctx)
    return parse_branchyard(ctx, parse_toml(BRANCHYARD_FILE, text))


def _default_name(root: Path) -> str:
    """Project name from the directory name, for projects without branchyard.toml."""
    try:
        return project_name(slug(root.resolve().name, what="directory name", max_length=NAME_MAX))
    except NameRefused:
        raise SpecError(f'no {BRANCHYARD_FILE} in {root}: add one with [project] name = "..."') from None


def _read_railway(
    root: Path, explicit: str | None, files: list[str], contexts: list[FileContext]
) -> RailwayConfig | None:
    """The Railway config file, if there is one."""
    relative = _railway_location(root, explicit, contexts)
    if relative is None:
        return None
    text = _read(root, relative)
    syntax = "json" if relative.endswith(".json") else "toml"
    data = parse_json(relative, text) if syntax == "json" else parse_toml(relative, text)
    ctx = FileContext(relative, text, syntax)
    files.append(relative)
    contexts.append(ctx)
    return parse_railway(ctx, data)


def _railway_location(root: Path, explicit: str | None, contexts: list[FileContext]) -> str | None:
    """Path of the Railway config relative to root: [project] railway, else railway.toml or railway.json."""
    if explicit is not None:
        return _explicit_railway(root, explicit, contexts[0].fail)
    found = [name for name in RAILWAY_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise SpecError(
            'railway.toml and railway.json both exist: keep one, or pick one with [project] railway = "..." '
            f"in {BRANCHYARD_FILE}"
        )
    return found[0] if found else None


def _explicit_railway(root: Path, explicit: str, fail: Callable[[tuple[str, ...], str], SpecError]) -> str:
    """Check [project] railway = "backend/railway.toml" (a leading / means the repository root)."""
    path = ("project", "railway")
    relative = str(PurePosixPath(explicit.strip().lstrip("/") or "."))
    if not relative.endswith((".toml", ".json")):
        raise fail(path, f"expected a .toml or .json file, got {explicit!r}")
    try:
        found = safe_join(root, relative).is_file()
    except NameRefused as err:
        raise fail(path, err.message) from None
    if not found:
        raise fail(path, f"no file {relative!r} in the project")
    return relative


def _root_dirs(project: BranchyardConfig, railway: RailwayConfig | None) -> set[str]:
    """Every source root any layer may select, "." included."""
    layers: list[Layer] = [project.base, *project.layers.values()]
    if railway:
        layers += [railway.base, *railway.environments.values()]
    return {"."} | {layer["web.root_dir"].value for layer in layers if "web.root_dir" in layer}


def _read_procfiles(root: Path, root_dirs: set[str], files: list[str]) -> dict[str, tuple[dict[str, str], str]]:
    """root dir → (process type → command, label) for each root dir holding a Procfile."""
    found: dict[str, tuple[dict[str, str], str]] = {}
    for root_dir in sorted(root_dirs):
        label = PROCFILE if root_dir == "." else f"{root_dir}/{PROCFILE}"
        try:
            exists = safe_join(root, label).is_file()
        except NameRefused as err:
            raise SpecError(f"{label}: {err.message}") from None
        if not exists:
            continue
        files.append(label)
        found[root_dir] = (parse_procfile(_read(root, label)), label)
    return found


def procfile_web(text: str) -> str | None:
    """The command of the first `web:` line of a Procfile."""
    return parse_procfile(text).get("web")


def _undeclared(railway: RailwayConfig, project: BranchyardConfig) -> list[str]:
    """Warnings for railway [environments.X] tables that match no environment of the project."""
    known = list(project.environments)
    warnings = []
    for name in railway.environments:
        if name in known or (project.preview is not None and _PR_INSTANCE.fullmatch(name)):
            continue
        hint = suggestion(name, known)
        warnings.append(f"{railway.label}: environments.{name}: unknown environment{hint}")
    return warnings


def _service_names(spec: ProjectSpec) -> set[str]:
    """Names of the postgres/redis services anywhere in the project (their defaults included)."""
    names = {"Postgres", "Redis"}
    layers = [spec.layers.base, *spec.layers.environments.values()]
    for layer in layers:
        names |= {layer[k].value for k in ("postgres.name", "redis.name") if k in layer}
    return names
