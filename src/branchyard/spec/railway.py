"""Railway's config-as-code (railway.toml / railway.json) read as is: [build], [deploy] and
[environments.<name>.build|deploy], turned into layers of web-service settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import values as v
from .context import Entry, FileContext, Layer, dotted
from .model import WebConfig, defaults

_VIRTUALENV = "branchyard builds with a virtualenv"
_ONE_HOST = "branchyard runs on your own machines"
_RESOURCES = "set memory and cpu in branchyard.toml [services.web]"

Parser = Callable[[Any], Any]

BUILD_KEYS: dict[str, tuple[str, Parser]] = {
    "buildCommand": ("build_command", v.command),
    "watchPatterns": ("watch_patterns", v.watch_patterns),
}
DEPLOY_KEYS: dict[str, tuple[str, Parser]] = {
    "startCommand": ("start_command", v.command),
    "preDeployCommand": ("pre_deploy_command", v.commands),
    "healthcheckPath": ("healthcheck_path", v.http_path),
    "healthcheckTimeout": ("healthcheck_timeout", v.positive_seconds),
    "restartPolicyType": ("restart_policy_type", v.restart_policy),
    "restartPolicyMaxRetries": ("restart_policy_max_retries", v.count),
    "numReplicas": ("replicas", v.replicas),
    "overlapSeconds": ("overlap_seconds", v.seconds),
    "deploymentOverlapSeconds": ("overlap_seconds", v.seconds),
    "drainingSeconds": ("draining_seconds", v.seconds),
    "sleepApplication": ("sleep_application", v.boolean),
    "cronSchedule": ("cron_schedule", v.cron),
}
IGNORED_BUILD: dict[str, str] = {
    "builder": _VIRTUALENV,
    "nixpacksPlan": _VIRTUALENV,
    "nixpacksConfigPath": _VIRTUALENV,
    "nixpacksVersion": _VIRTUALENV,
    "railpackVersion": _VIRTUALENV,
    "buildEnvironment": _VIRTUALENV,
    "dockerfilePath": _VIRTUALENV,  # no image is built: the Dockerfile is never read
}
IGNORED_DEPLOY: dict[str, str] = {
    "region": _ONE_HOST,
    "runtime": _ONE_HOST,
    "useLegacyStacker": _ONE_HOST,
    "ipv6EgressEnabled": _ONE_HOST,
    "limitOverride": _RESOURCES,
    "requiredMountPath": "volumes are not supported yet",
}
MULTI_REGION = "multiRegionConfig"
SECTIONS = {"build": (BUILD_KEYS, IGNORED_BUILD), "deploy": (DEPLOY_KEYS, IGNORED_DEPLOY)}
TOP_KEYS = ("$schema", "build", "deploy", "environments")
_WEB_DEFAULTS = defaults(WebConfig)


@dataclass(frozen=True)
class RailwayConfig:
    """The layers of one Railway config file."""

    label: str
    base: Layer = field(default_factory=dict)
    environments: dict[str, Layer] = field(default_factory=dict)


def parse_railway(ctx: FileContext, data: dict[str, Any]) -> RailwayConfig:
    """Turn a parsed railway.toml/json into layers; unknown keys become warnings in ctx.

    An unknown section (a table where only build, deploy and environments belong) is an error in every
    mode: each setting in it would be ignored — a misspelt [deploys] loses the start command, the
    migrations (preDeployCommand) and the health check, and the deploy would still go ahead."""
    for key, value in data.items():
        if key not in TOP_KEYS:
            if isinstance(value, dict):
                raise ctx.unknown_section((), key, TOP_KEYS[1:])
            ctx.unknown((), key, value, TOP_KEYS[1:])
    base = _build_and_deploy(ctx, (), data)
    raw_envs = ctx.table(("environments",), data.get("environments", {}))
    environments = {}
    for name, raw in raw_envs.items():
        table = ctx.table(("environments", name), raw)
        for key, value in table.items():
            if key not in SECTIONS:
                if isinstance(value, dict):
                    raise ctx.unknown_section(("environments", name), key, SECTIONS)
                ctx.unknown(("environments", name), key, value, SECTIONS)
        environments[name] = _build_and_deploy(ctx, ("environments", name), table)
    return RailwayConfig(ctx.label, base, environments)


def _build_and_deploy(ctx: FileContext, prefix: tuple[str, ...], table: dict[str, Any]) -> Layer:
    """One layer from the build and deploy tables found under prefix."""
    layer: Layer = {}
    for section, (keys, ignored) in SECTIONS.items():
        if table.get(section) is not None:
            path = (*prefix, section)
            layer.update(_section(ctx, path, ctx.table(path, table[section]), keys, ignored))
    return layer


def _section(
    ctx: FileContext,
    path: tuple[str, ...],
    table: dict[str, Any],
    keys: dict[str, tuple[str, Parser]],
    ignored: dict[str, str],
) -> Layer:
    """Entries of one [build] or [deploy] table."""
    source = ctx.source(path)
    layer: Layer = {}
    for key, value in table.items():
        if key in keys:
            name, parser = keys[key]
            parsed = _WEB_DEFAULTS[name] if value is None else ctx.parse((*path, key), parser, value)
            layer[f"web.{name}"] = Entry(parsed, source)
        elif key in ignored:
            ctx.ignore((*path, key), value, ignored[key])
        elif key == MULTI_REGION and path[-1] == "deploy":
            total = _multi_region_replicas(ctx, (*path, key), value)
            if total is not None and "numReplicas" not in table:
                layer["web.replicas"] = Entry(total, source)
            if total is not None:  # the replica count is honoured; where they run is not
                used = ("numReplicas beside it is used instead" if "numReplicas" in table
                        else f"their numReplicas add up to {total} replicas")
                ctx.ignored.append(f"{ctx.label}: {dotted((*path, key))}: the regions are ignored ({_ONE_HOST}); {used}")
        else:
            ctx.unknown(path, key, value, _known(keys, ignored, path))
    return layer


def _known(keys: dict[str, Any], ignored: dict[str, str], path: Sequence[str]) -> list[str]:
    extra = [MULTI_REGION] if path[-1] == "deploy" else []
    return [*keys, *ignored, *extra]


def _multi_region_replicas(ctx: FileContext, path: tuple[str, ...], value: Any) -> int | None:
    """Sum of numReplicas over regions (a null region is one Railway removes); None for no regions."""
    if value is None:
        return None
    regions = ctx.table(path, value)
    total = 0
    for region, config in regions.items():
        if config is None:
            continue
        where = (*path, region)
        table = ctx.table(where, config)
        if "numReplicas" not in table:
            raise ctx.fail(where, "expected a table with numReplicas")
        total += ctx.parse((*where, "numReplicas"), v.count, table["numReplicas"])
    if not regions:
        return None
    if total < 1:
        raise ctx.fail(path, "expected numReplicas adding up to at least 1 over all regions")
    return total
