"""Merging layers into the effective config of one environment (pure: no file access).

Least → most specific: defaults < railway [build]/[deploy] < branchyard [services.*] and [variables]
< (for each base environment, outermost first) railway [environments.B] < branchyard [environments.B]
< (preview instances) railway [environments.pr] < branchyard [environments.pr]
< railway [environments.E] < branchyard [environments.E].
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from .alerts import default_alerts, tier_of
from .context import UNSET, Entry, Layer
from .model import (
    PR_TEMPLATE,
    EnvironmentConfig,
    EnvironmentDecl,
    PostgresConfig,
    ProcessConfig,
    ProjectSpec,
    RedisConfig,
    WebConfig,
    defaults,
)

DEFAULT = "default"


def resolve(spec: ProjectSpec, name: str) -> EnvironmentConfig:
    """Effective config of environment `name`; NotFound when it is neither declared nor a preview instance."""
    decl = _declaration(spec, name)
    merged = _merge(_layers(spec, name))
    web, web_sources = _web(spec, merged)
    postgres, pg_sources = _service(merged, "postgres", PostgresConfig, {"ephemeral": decl.ephemeral})
    redis, redis_sources = _service(merged, "redis", RedisConfig, {})
    variables = {k.removeprefix("variables."): e for k, e in merged.items() if k.startswith("variables.")}
    sources = {**web_sources, **pg_sources, **redis_sources}
    procfile, label = spec.layers.procfile_services.get(web.root_dir, ({}, "Procfile"))
    sources.update({f"processes.{name}.command": f"{label} {name}:" for name in procfile})
    sources.update({f"variables.{k}": e.source for k, e in variables.items()})
    return EnvironmentConfig(
        name=name,
        production=decl.production,
        ephemeral=decl.ephemeral,
        branch=decl.branch,
        base=decl.base,
        web=web,
        postgres=postgres,
        redis=redis,
        variables={k: e.value for k, e in variables.items()},
        sources=sources,
        alerts=decl.alerts or default_alerts(tier_of(production=decl.production, ephemeral=decl.ephemeral)),
        uptime=decl.production if decl.uptime is None else decl.uptime,
        sleep_after=decl.sleep_after,
        processes={name: ProcessConfig(command) for name, command in procfile.items()},
    )


def _declaration(spec: ProjectSpec, name: str) -> EnvironmentDecl:
    """The declaration of `name`; a preview instance gets the template's, without branch patterns."""
    if name in spec.environments:
        return spec.environments[name]
    if spec.is_preview_instance(name):
        template = spec.environments[PR_TEMPLATE]
        return EnvironmentDecl(name=name, base=template.base, ephemeral=template.ephemeral, alerts=template.alerts,
                               uptime=template.uptime, sleep_after=template.sleep_after)
    declared = ", ".join(spec.declared_names())
    raise NotFound(f"unknown environment {name!r} (declared: {declared})")


def _layers(spec: ProjectSpec, name: str) -> list[Layer]:
    """The layers of environment `name`, least specific first."""
    common = [spec.layers.railway_base, spec.layers.base]
    if name in spec.environments:
        return common + _chain(spec, name)
    return common + _chain(spec, PR_TEMPLATE) + [spec.layers.railway_environments.get(name, {})]


def _chain(spec: ProjectSpec, name: str) -> list[Layer]:
    """Layers of a declared environment: its base's chain first, then its own railway and branchyard layers."""
    base = spec.environments[name].base
    head = _chain(spec, base) if base else []
    own = [spec.layers.railway_environments.get(name, {}), spec.layers.environments.get(name, {})]
    return head + own


def _merge(layers: list[Layer]) -> dict[str, Entry]:
    """Later layers win; an UNSET entry removes the key."""
    merged: dict[str, Entry] = {}
    for layer in layers:
        for key, entry in layer.items():
            if entry.value is UNSET:
                merged.pop(key, None)
            else:
                merged[key] = entry
    return merged


def _fields(
    merged: dict[str, Entry], prefix: str, cls: type, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Field values and sources of one config dataclass, defaults filling the gaps."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field_name, default in {**defaults(cls), **overrides}.items():
        entry = merged.get(f"{prefix}.{field_name}", Entry(default, DEFAULT))
        values[field_name] = entry.value
        sources[f"{prefix}.{field_name}"] = entry.source
    return values, sources


def _web(spec: ProjectSpec, merged: dict[str, Entry]) -> tuple[WebConfig, dict[str, str]]:
    """The web service; without a start command anywhere, the web: line of the Procfile in its root dir."""
    values, sources = _fields(merged, "web", WebConfig, {})
    procfile = spec.layers.procfiles.get(values["root_dir"])
    if values["start_command"] is None and procfile is not None:
        values["start_command"], sources["web.start_command"] = procfile
    release = spec.layers.procfile_releases.get(values["root_dir"])
    if sources["web.pre_deploy_command"] == DEFAULT and release is not None:  # any preDeployCommand set wins
        values["pre_deploy_command"], sources["web.pre_deploy_command"] = (release[0],), f"{release[1]} release:"
    return WebConfig(**values), sources


def _service(
    merged: dict[str, Entry], kind: str, cls: type, overrides: dict[str, Any]
) -> tuple[Any, dict[str, str]]:
    """A postgres/redis config, or None when no layer switches it on (or the winning one says enabled = false)."""
    enabled = merged.get(f"{kind}.enabled")
    if enabled is None or not enabled.value:
        return None, {}
    values, sources = _fields(merged, kind, cls, overrides)
    return cls(**values), sources
