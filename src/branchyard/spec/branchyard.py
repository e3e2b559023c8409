"""branchyard.toml: the project, its environments (with the pr template) and per-environment service
settings and variables, turned into declarations and layers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..access import check_user_name
from ..errors import BadInput, NameRefused
from ..names import custom_domain, domain_name, environment_name, is_safe_git_ref, project_name
from . import alerts as al
from . import sleep
from . import values as v
from .context import UNSET, Entry, FileContext, Layer
from .model import (
    PR_TEMPLATE,
    EnvironmentDecl,
    PreviewDecl,
    PromotionSpec,
    ProtectionDecl,
    Rule,
    SanitizeSpec,
    TestsSpec,
)
from .railway import BUILD_KEYS, DEPLOY_KEYS

Parser = Callable[[Any], Any]

TOP_KEYS = ("project", "github", "services", "variables", "environments", "sanitize")
SANITIZE_KEYS = ("truncate", "tables")
PROJECT_KEYS = ("name", "domain", "railway", "strict")
GITHUB_KEYS = ("repository", "protection")
MAX_APPROVALS = 6  # GitHub's limit for required_approving_review_count
PROTECTION_KEYS: dict[str, Parser] = {
    "enabled": v.boolean,
    "required_approvals": lambda x: _approvals(x),
    "required_checks": lambda x: _checks(x),
    "strict": v.boolean,
    "enforce_admins": v.boolean,
    "dismiss_stale_reviews": v.boolean,
    "require_code_owner_reviews": v.boolean,
    "allow_force_push": v.boolean,
    "allow_deletions": v.boolean,
}
PREVIEW_KEYS = ("trigger", "forks", "bots", "drafts", "maxPreviews", "expireAfterDays", "evict")
ENV_KEYS = (
    "branch", "branches", "base", "ephemeral", "production", "protected", "unset_variables", "services", "variables",
    "promotion", "domains", "alerts", "uptime", "tests", "sleepAfter", *PREVIEW_KEYS,
)  # fmt: skip
TESTS_KEYS = ("commands", "timeout")
MAX_TESTS_TIMEOUT = 3600  # seconds: one post-deploy test command at most an hour
PROMOTION_KEYS = ("from", "approvals", "smokeCommand", "smokeTimeout", "requireStaging", "preventSelfReview", "reviewers",
                  "waitTimer")
MAX_WAIT_TIMER = 43200  # minutes (30 days): GitHub Environments' limit for a wait timer
# Keys some other tools use to promote by themselves: named in the error, never honoured.
AUTOMATIC_KEYS = ("auto", "automatic", "autoPromote", "auto_promote")
KINDS = ("web", "postgres", "redis")
_RAILWAY_NAMES = {"numReplicas", "deploymentOverlapSeconds", "dockerfilePath"}
WEB_KEYS: dict[str, tuple[str, Parser]] = {
    **{k: spec for k, spec in {**BUILD_KEYS, **DEPLOY_KEYS}.items() if k not in _RAILWAY_NAMES},
    "replicas": ("replicas", v.replicas),
    "memory": ("memory_mb", v.parse_memory),
    "cpu": ("cpu", v.parse_cpu),
    "seedCommand": ("seed_command", v.command),
    "root": ("root_dir", v.directory),
    "healthcheckInterval": ("healthcheck_interval", v.positive_seconds),
    "healthcheckFailures": ("healthcheck_failures", v.positive_count),
}
POSTGRES_KEYS: dict[str, tuple[str, Parser]] = {
    "name": ("name", v.service_name),
    "memory": ("memory_mb", v.parse_memory),
    "storage": ("storage_mb", v.parse_memory),
    "backups": ("backups", v.backups),
    "ephemeral": ("ephemeral", v.boolean),
    "dedicated": ("dedicated", v.boolean),
    "templateFiles": ("template_files", v.repository_globs),
}
REDIS_KEYS: dict[str, tuple[str, Parser]] = {
    "name": ("name", v.service_name),
    "memory": ("memory_mb", v.parse_memory),
    "persistence": ("persistence", v.boolean),
}
SERVICE_KEYS = {"web": WEB_KEYS, "postgres": POSTGRES_KEYS, "redis": REDIS_KEYS}
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BranchyardConfig:
    """What branchyard.toml declares."""

    name: str
    domain: str | None = None
    railway_path: str | None = None
    strict: bool | None = None
    github_repository: str | None = None
    github_protection: dict[str, ProtectionDecl] = field(default_factory=dict)
    environments: dict[str, EnvironmentDecl] = field(default_factory=dict)
    preview: PreviewDecl | None = None
    base: Layer = field(default_factory=dict)
    layers: dict[str, Layer] = field(default_factory=dict)
    sanitize: SanitizeSpec | None = None


def default_config(name: str) -> BranchyardConfig:
    """The config of a project without branchyard.toml: production deploys main."""
    production = EnvironmentDecl("production", branch="main", production=True, protected=True)
    return BranchyardConfig(name=name, environments={"production": production})


def parse_branchyard(ctx: FileContext, data: dict[str, Any]) -> BranchyardConfig:
    """Validate branchyard.toml and turn it into declarations and layers."""
    for key, value in data.items():
        if key not in TOP_KEYS:
            ctx.unknown((), key, value, TOP_KEYS)
    project = _project(ctx, ctx.table(("project",), data.get("project", {})))
    kinds = _service_kinds(ctx, data)
    base = {**_services(ctx, ("services",), data.get("services", {}), kinds), **_variables(ctx, (), data)}
    raw_envs = ctx.table(("environments",), data.get("environments", {}))
    decls: dict[str, EnvironmentDecl] = {}
    layers: dict[str, Layer] = {}
    preview = None
    for name, raw in raw_envs.items():
        table = ctx.table(("environments", name), raw)
        decls[name] = _declaration(ctx, name, table)
        layers[name] = _environment_layer(ctx, name, table, kinds)
        if name == PR_TEMPLATE:
            preview = _preview(ctx, decls[name], table)
    if not decls:
        decls = default_config(project["name"]).environments
    _check_environments(ctx, decls)
    github, protection = _github(ctx, ctx.table(("github",), data.get("github", {})))
    sanitize = None if "sanitize" not in data else _sanitize(ctx, ctx.table(("sanitize",), data["sanitize"]))
    return BranchyardConfig(
        **project, github_repository=github, github_protection=protection, environments=decls, preview=preview, base=base, layers=layers,
        sanitize=sanitize,
    )  # fmt: skip


def _project(ctx: FileContext, table: dict[str, Any]) -> dict[str, Any]:
    """[project]: name (required), domain, railway, strict."""
    for key, value in table.items():
        if key not in PROJECT_KEYS:
            ctx.unknown(("project",), key, value, PROJECT_KEYS)
    if "name" not in table:
        raise ctx.fail(("project",), 'missing name (add name = "myapp" under [project])')
    name = _named(ctx, ("project", "name"), project_name, table["name"])
    domain = table.get("domain")
    railway = table.get("railway")
    strict = table.get("strict")
    return {
        "name": name,
        "domain": None if domain is None else _named(ctx, ("project", "domain"), domain_name, domain),
        "railway_path": None if railway is None else ctx.parse(("project", "railway"), v.text, railway),
        "strict": None if strict is None else ctx.parse(("project", "strict"), v.boolean, strict),
    }


def _named(ctx: FileContext, path: tuple[str, ...], check: Callable[[str], str], value: Any) -> str:
    """Run a names.py check on a string value, located like any other error."""
    text = ctx.parse(path, v.text, value)
    try:
        return check(text)
    except NameRefused as err:
        raise ctx.fail(path, err.message) from None


def _github(ctx: FileContext, table: dict[str, Any]) -> tuple[str | None, dict[str, ProtectionDecl]]:
    """[github] repository = "owner/name", and [github.protection.<branch>] tables."""
    for key, value in table.items():
        if key not in GITHUB_KEYS:
            ctx.unknown(("github",), key, value, GITHUB_KEYS)
    protection = {}
    for branch, raw in ctx.table(("github", "protection"), table.get("protection", {})).items():
        protection[branch] = _protection(ctx, branch, ctx.table(("github", "protection", branch), raw))
    repository = table.get("repository")
    if repository is None:
        return None, protection
    if not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository):
        raise ctx.fail(("github", "repository"), str(v.expected('"owner/name"', repository)))
    return repository, protection


def _protection(ctx: FileContext, branch: str, table: dict[str, Any]) -> ProtectionDecl:
    """[github.protection.<branch>]: the rules GitHub enforces on one branch (see github/protection.py)."""
    path = ("github", "protection", branch)
    if any(c in branch for c in "*?[]"):
        raise ctx.fail(path, "branch patterns are not supported: name one branch per table")
    if not is_safe_git_ref(branch):
        raise ctx.fail(path, f"{v.show(branch)} is not a valid git branch name")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in PROTECTION_KEYS:
            values[key] = ctx.parse((*path, key), PROTECTION_KEYS[key], value)
        else:
            ctx.unknown(path, key, value, PROTECTION_KEYS)
    return ProtectionDecl(branch=branch, **values)


def _approvals(value: Any) -> int:
    """required_approvals: 0 (none) to 6, GitHub's limit."""
    number = v.count(value)
    if number > MAX_APPROVALS:
        raise v.expected(f"a whole number from 0 to {MAX_APPROVALS} (GitHub's limit)", value)
    return number


def _checks(value: Any) -> tuple[str, ...]:
    """required_checks: status check contexts, e.g. ["tests", "lint", "branchyard/staging"]; duplicates dropped."""
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() and len(c) <= 255 for c in value):
        raise v.expected("a list of status check names (non-empty strings)", value)
    return tuple(dict.fromkeys(c.strip() for c in value))


def _service_tables(ctx: FileContext, data: dict[str, Any]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every service table in the file with its path: [services.X] and [environments.E.services.X]."""
    found = []
    places = [(("services",), data.get("services", {}))]
    for env, raw in ctx.table(("environments",), data.get("environments", {})).items():
        if isinstance(raw, dict) and "services" in raw:
            places.append((("environments", env, "services"), raw["services"]))
    for path, services in places:
        for key, table in ctx.table(path, services).items():
            found.append(((*path, key), ctx.table((*path, key), table)))
    return found


def _service_kinds(ctx: FileContext, data: dict[str, Any]) -> dict[str, str]:
    """Service table name → kind (web/postgres/redis), from `type` or from the table name."""
    kinds: dict[str, str] = {}
    tables = _service_tables(ctx, data)
    typed = [(p, t) for p, t in tables if "type" in t] + [(p, t) for p, t in tables if "type" not in t]
    for path, table in typed:
        key = path[-1]
        if "type" in table:
            kind = ctx.parse((*path, "type"), lambda x: v.choice(x, KINDS, upper=False), table["type"])
        else:
            kind = kinds.get(key, key if key in KINDS else "")
        if not kind:
            raise ctx.fail(path, 'unknown service: name the table web, postgres or redis, or set type = "..."')
        if kinds.setdefault(key, kind) != kind:
            raise ctx.fail((*path, "type"), f"service {key!r} is a {kinds[key]} service elsewhere in this file")
    _one_of_each(ctx, kinds)
    return kinds


def _one_of_each(ctx: FileContext, kinds: dict[str, str]) -> None:
    """Refuse two services of the same kind (one web, one postgres, one redis per project)."""
    seen: dict[str, str] = {}
    for key, kind in kinds.items():
        if kind in seen:
            raise ctx.fail(("services", key), f"only one {kind} service is supported (also declared: {seen[kind]})")
        seen[kind] = key


def _services(ctx: FileContext, path: tuple[str, ...], raw: Any, kinds: dict[str, str]) -> Layer:
    """Entries of every service table under path."""
    layer: Layer = {}
    for key, table in ctx.table(path, raw).items():
        layer.update(_service(ctx, (*path, key), kinds[key], table))
    return layer


def _service(ctx: FileContext, path: tuple[str, ...], kind: str, table: dict[str, Any]) -> Layer:
    """Entries of one service table; a postgres/redis table switches the service on unless enabled = false."""
    source = ctx.source(path)
    keys = SERVICE_KEYS[kind]
    layer: Layer = {}
    if kind != "web":
        enabled = ctx.parse((*path, "enabled"), v.boolean, table.get("enabled", True))
        layer[f"{kind}.enabled"] = Entry(enabled, source)
    for key, value in table.items():
        if key in keys:
            name, parser = keys[key]
            layer[f"{kind}.{name}"] = Entry(ctx.parse((*path, key), parser, value), source)
        elif key != "type" and not (key == "enabled" and kind != "web"):
            ctx.unknown(path, key, value, [*keys, "type"] + ([] if kind == "web" else ["enabled"]))
    return layer


def _variables(ctx: FileContext, prefix: tuple[str, ...], table: dict[str, Any]) -> Layer:
    """Entries of a [variables] table (values kept raw: ${{...}} references are resolved later)."""
    path = (*prefix, "variables")
    source = ctx.source(path)
    layer: Layer = {}
    for name, value in ctx.table(path, table.get("variables", {})).items():
        ctx.parse((*path, name), v.variable_name, name)
        layer[f"variables.{name}"] = Entry(ctx.parse((*path, name), v.variable_value, value), source)
    return layer


def _unset_variables(ctx: FileContext, prefix: tuple[str, ...], table: dict[str, Any]) -> Layer:
    """unset_variables = [...]: remove variables inherited from lower layers (e.g. the base environment)."""
    path = (*prefix, "unset_variables")
    names = ctx.parse(path, v.patterns, table.get("unset_variables"))
    for name in names:
        ctx.parse(path, v.variable_name, name)
    return {f"variables.{name}": Entry(UNSET, ctx.source(path)) for name in names}


def _environment_layer(ctx: FileContext, name: str, table: dict[str, Any], kinds: dict[str, str]) -> Layer:
    """Everything [environments.<name>] sets: services, unset_variables, then variables."""
    prefix = ("environments", name)
    layer = _services(ctx, (*prefix, "services"), table.get("services", {}), kinds)
    layer.update(_unset_variables(ctx, prefix, table))
    layer.update(_variables(ctx, prefix, table))
    return layer


def _declaration(ctx: FileContext, name: str, table: dict[str, Any]) -> EnvironmentDecl:
    """[environments.<name>]: branch, base, ephemeral, production (branches and trigger for the pr template)."""
    path = ("environments", name)
    _named(ctx, path, environment_name, name)
    if re.fullmatch(r"pr-\d+", name):
        raise ctx.fail(path, "names like pr-<number> are kept for preview environments")
    for key, value in table.items():
        if key not in ENV_KEYS:
            ctx.unknown(path, key, value, ENV_KEYS)
    is_template = name == PR_TEMPLATE
    _only_where_allowed(ctx, path, table, is_template)
    base = table.get("base")
    production = ctx.parse((*path, "production"), v.boolean, table.get("production", name == "production"))
    if is_template and "protected" in table:
        raise ctx.fail((*path, "protected"), "previews are never protected (they are made and destroyed by pull requests)")
    ephemeral = ctx.parse((*path, "ephemeral"), v.boolean, table.get("ephemeral", is_template))
    return EnvironmentDecl(
        name=name,
        branch=_branch(ctx, (*path, "branch"), table.get("branch")),
        branches=ctx.parse((*path, "branches"), v.patterns, table.get("branches")),
        base=None if base is None else ctx.parse((*path, "base"), v.text, base),
        ephemeral=ephemeral,
        production=production,
        protected=ctx.parse((*path, "protected"), v.boolean, table.get("protected", production)),
        promotion=None if "promotion" not in table else _promotion(ctx, name, table["promotion"], production=production),
        domains=_domains(ctx, name, table),
        alerts=_alerts(ctx, name, table, al.tier_of(production=production, ephemeral=ephemeral)),
        uptime=None if "uptime" not in table else ctx.parse((*path, "uptime"), v.boolean, table["uptime"]),
        tests=None if "tests" not in table else _tests(ctx, name, table["tests"]),
        sleep_after=None if "sleepAfter" not in table else ctx.parse((*path, "sleepAfter"), sleep.sleep_after,
                                                                     table["sleepAfter"]),
    )


def _alerts(ctx: FileContext, name: str, table: dict[str, Any], tier: str) -> al.AlertsSpec | None:
    """[environments.<name>.alerts]: rules over the tier's defaults, and webhooks (spec/alerts.py); absent: the
    tier's defaults (previews: none)."""
    if "alerts" not in table:
        return None
    path = ("environments", name, "alerts")
    raw = ctx.table(path, table["alerts"])
    defaults = {r.name: r for r in al.DEFAULTS[tier]}
    if not ctx.parse((*path, "defaults"), v.boolean, raw.get("defaults", True)):
        defaults = {}
    raw_hooks = raw.get("webhooks", [])
    if not isinstance(raw_hooks, list):
        raise ctx.fail((*path, "webhooks"), 'expected a list, e.g. ["${{SLACK_WEBHOOK_URL}}"]')
    hooks = tuple(ctx.parse((*path, "webhooks"), al.webhook, hook) for hook in raw_hooks)
    rules: dict[str, al.AlertRule | None] = dict(defaults)
    for key, value in raw.items():
        if key in al.TABLE_KEYS:
            continue
        try:
            rules[key] = al.rule(key, value, defaults.get(key))
        except al.RuleError as err:
            raise ctx.fail((*path, key) if err.key is None else (*path, key, err.key), err.message) from None
    if not ctx.parse((*path, "enabled"), v.boolean, raw.get("enabled", True)):
        rules = {}
    return al.AlertsSpec(rules=tuple(r for r in rules.values() if r is not None), webhooks=hooks, tier=tier)


def _tests(ctx: FileContext, name: str, raw: Any) -> TestsSpec:
    """[environments.<name>.tests]: commands (a string or a list, run in order against the environment's URL after
    every successful deploy) and timeout (seconds per command, 1 to 3600, default 300)."""
    path = ("environments", name, "tests")
    table = ctx.table(path, raw)
    for key, value in table.items():
        if key not in TESTS_KEYS:
            ctx.unknown(path, key, value, TESTS_KEYS)
    if "commands" not in table:
        raise ctx.fail((*path, "commands"), 'is required, e.g. commands = ["pytest tests/smoke"]')
    commands = ctx.parse((*path, "commands"), _test_commands, table["commands"])
    return TestsSpec(commands=commands, timeout=ctx.parse((*path, "timeout"), _tests_timeout, table.get("timeout", 300)))


def _test_commands(value: Any) -> tuple[str, ...]:
    """One command or a non-empty list of non-empty commands."""
    if isinstance(value, list) and any(not isinstance(item, str) or not item.strip() for item in value):
        raise v.expected('a command or a list of commands, e.g. ["pytest tests/smoke"]', value)
    try:
        commands = v.commands(value)
    except v.InvalidValue:
        raise v.expected('a command or a list of commands, e.g. ["pytest tests/smoke"]', value) from None
    if not commands:
        raise v.expected('at least one command, e.g. ["pytest tests/smoke"]', value)
    return commands


def _tests_timeout(value: Any) -> int:
    """1 to 3600 seconds for each command."""
    seconds = v.positive_seconds(value)
    if seconds > MAX_TESTS_TIMEOUT:
        raise v.expected(f"integer seconds from 1 to {MAX_TESTS_TIMEOUT}", value)
    return seconds


def _domains(ctx: FileContext, name: str, table: dict[str, Any]) -> tuple[str, ...]:
    """domains = ["www.example.com", ...]: the environment's custom domains (not the pr template's: previews get
    generated hosts only). Each is checked here; who else holds it is checked when the environment deploys."""
    if "domains" not in table:
        return ()
    path = ("environments", name, "domains")
    if name == PR_TEMPLATE:
        raise ctx.fail(path, "previews get generated hosts only: a custom domain belongs to one persistent environment")
    raw = table["domains"]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ctx.fail(path, str(v.expected('a list of host names, e.g. ["www.example.com"]', raw)))
    hosts: list[str] = []
    for item in raw:
        host = _named(ctx, path, custom_domain, item)
        if host in hosts:
            raise ctx.fail(path, f"{host} is listed twice")
        hosts.append(host)
    return tuple(hosts)


def _promotion(ctx: FileContext, name: str, raw: Any, *, production: bool) -> PromotionSpec:
    """[environments.<name>.promotion]: from, approvals, smokeCommand, smokeTimeout, requireStaging, preventSelfReview,
    reviewers, waitTimer (never automatic)."""
    path = ("environments", name, "promotion")
    if name == PR_TEMPLATE:
        raise ctx.fail(path, "previews are not promoted into (they deploy their pull request's branch)")
    table = ctx.table(path, raw)
    for key, value in table.items():
        if key in AUTOMATIC_KEYS:
            if value is False or (isinstance(value, str) and value.strip().lower() == "false"):
                continue  # saying "not automatic" is harmless
            raise ctx.fail((*path, key), "promotion is never automatic: remove this key and promote with "
                           "`branchyard promote SOURCE TARGET` (typed confirmation, gates, approvals)")
        if key not in PROMOTION_KEYS:
            ctx.unknown(path, key, value, PROMOTION_KEYS)
    source = table.get("from")
    if source is not None:
        source = _named(ctx, (*path, "from"), environment_name, source)
    smoke = ctx.parse((*path, "smokeCommand"), v.command, table.get("smokeCommand"))
    require = ctx.parse((*path, "requireStaging"), v.boolean, table.get("requireStaging", False))
    if require and source is None:
        raise ctx.fail((*path, "requireStaging"), 'needs from = "<environment>" (the environment a commit must pass first)')
    return PromotionSpec(
        source=source,
        approvals=ctx.parse((*path, "approvals"), lambda x: v.count(x, minimum=0), table.get("approvals", 0)),
        smoke_command=smoke,
        smoke_timeout=ctx.parse((*path, "smokeTimeout"), _smoke_timeout, table.get("smokeTimeout", 120)),
        require_source=require,
        prevent_self_review=ctx.parse((*path, "preventSelfReview"), v.boolean, table.get("preventSelfReview", production)),
        reviewers=ctx.parse((*path, "reviewers"), _reviewers, table.get("reviewers", [])),
        wait_timer=ctx.parse((*path, "waitTimer"), _wait_timer, table.get("waitTimer", 0)),
    )


def _reviewers(value: Any) -> tuple[str, ...]:
    """reviewers = ["alice", "bob"]: user names (as `branchyard users add` takes them), each once."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise v.expected('a list of user names, e.g. ["alice", "bob"]', value)
    names: list[str] = []
    for item in value:
        try:
            name = check_user_name(item)
        except BadInput as err:
            raise v.InvalidValue(str(err)) from None
        if name in names:
            raise v.InvalidValue(f"{name!r} is listed twice")
        names.append(name)
    return tuple(names)


def _wait_timer(value: Any) -> float:
    """waitTimer: minutes, 0 to 43200 (GitHub's limit); fractions allowed (0.5 = 30 seconds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT_TIMER:
        raise v.expected(f"a number of minutes from 0 to {MAX_WAIT_TIMER}", value)
    return float(value)


def _only_where_allowed(ctx: FileContext, path: tuple[str, ...], table: dict[str, Any], is_template: bool) -> None:
    """branches/trigger belong to the pr template, branch to persistent environments."""
    if is_template and "branch" in table:
        raise ctx.fail((*path, "branch"), 'the pr template takes branches = ["pattern", ...], not branch')
    if not is_template and "branches" in table:
        raise ctx.fail((*path, "branches"), 'only the pr template takes branch patterns (use branch = "...")')
    for key in PREVIEW_KEYS:
        if not is_template and key in table:
            raise ctx.fail((*path, key), f"only the pr template takes {'a trigger' if key == 'trigger' else key}")


def _branch(ctx: FileContext, path: tuple[str, ...], value: Any) -> str | None:
    """A branch name that git would accept."""
    if value is None:
        return None
    branch = ctx.parse(path, v.text, value)
    if not is_safe_git_ref(branch):
        raise ctx.fail(path, f"{v.show(value)} is not a valid git branch name")
    return branch


def _preview(ctx: FileContext, decl: EnvironmentDecl, table: dict[str, Any]) -> PreviewDecl:
    """The preview settings of the pr template: how previews are triggered and who gets one."""
    path = ("environments", PR_TEMPLATE)

    def one_of(key: str, choices: tuple[str, ...], default: str) -> str:
        return ctx.parse((*path, key), lambda x: v.choice(x, choices, upper=False), table.get(key, default))

    max_previews = table.get("maxPreviews")
    expire = table.get("expireAfterDays")
    return PreviewDecl(
        patterns=decl.branches or ("*",),
        base=decl.base,
        trigger=one_of("trigger", ("pr", "branch"), "pr"),
        forks=one_of("forks", ("approve", "never", "always"), "approve"),
        bots=ctx.parse((*path, "bots"), v.boolean, table.get("bots", False)),
        drafts=ctx.parse((*path, "drafts"), v.boolean, table.get("drafts", False)),
        max_previews=None if max_previews is None else ctx.parse((*path, "maxPreviews"), v.replicas, max_previews),
        expire_after_days=None if expire is None else ctx.parse((*path, "expireAfterDays"), v.positive_days, expire),
        evict=one_of("evict", ("refuse", "oldest"), "refuse"),
    )


def _check_environments(ctx: FileContext, decls: dict[str, EnvironmentDecl]) -> None:
    """Exactly one production, existing acyclic bases, one environment per branch."""
    production = [d.name for d in decls.values() if d.production]
    if len(production) != 1:
        found = f" (found: {', '.join(production)})" if production else ""
        hint = 'name one "production" or set production = true'
        raise ctx.fail(("environments",), f"expected exactly one production environment{found}: {hint}")
    for decl in decls.values():
        _check_flags(ctx, decl)
        _check_base(ctx, decl, decls)
        _check_promotion(ctx, decl, decls)
    _check_branches(ctx, decls)
    _check_domains(ctx, decls)


def _check_domains(ctx: FileContext, decls: dict[str, EnvironmentDecl]) -> None:
    """A domain belongs to at most one environment of the file."""
    owners: dict[str, str] = {}
    for decl in decls.values():
        for host in decl.domains:
            if host in owners:
                raise ctx.fail(("environments", decl.name, "domains"),
                               f"{host} is already a domain of environment {owners[host]!r}")
            owners[host] = decl.name


def _smoke_timeout(value: Any) -> int:
    """1 to 600 seconds: a promotion's gates run while its command waits."""
    seconds = v.positive_seconds(value)
    if seconds > 600:
        raise v.expected("integer seconds from 1 to 600", value)
    return seconds


def _check_promotion(ctx: FileContext, decl: EnvironmentDecl, decls: dict[str, EnvironmentDecl]) -> None:
    """`from` names another declared persistent environment, never production."""
    if decl.promotion is None or decl.promotion.source is None:
        return
    path = ("environments", decl.name, "promotion", "from")
    source = decl.promotion.source
    if source == decl.name:
        raise ctx.fail(path, f"an environment cannot be promoted from itself ({source!r})")
    if source == PR_TEMPLATE or source not in decls:
        known = ", ".join(n for n in decls if n != PR_TEMPLATE and n != decl.name)
        raise ctx.fail(path, f"no environment {source!r} to promote from (declared: {known or 'none'})")
    if decls[source].production:
        raise ctx.fail(path, f"{source!r} is production: nothing is promoted out of production")


def _check_flags(ctx: FileContext, decl: EnvironmentDecl) -> None:
    path = ("environments", decl.name)
    if decl.production and decl.name == PR_TEMPLATE:
        raise ctx.fail((*path, "production"), "the pr template cannot be production")
    if decl.production and decl.ephemeral:
        raise ctx.fail((*path, "ephemeral"), "the production environment cannot be ephemeral")


def _check_base(ctx: FileContext, decl: EnvironmentDecl, decls: dict[str, EnvironmentDecl]) -> None:
    """The base must be a declared persistent environment and bases must not loop."""
    path = ("environments", decl.name, "base")
    chain = [decl.name]
    current = decl
    while current.base is not None:
        if current.base == PR_TEMPLATE or current.base not in decls:
            known = ", ".join(n for n in decls if n != PR_TEMPLATE)
            where = ("environments", current.name, "base")
            raise ctx.fail(where, f"no environment {current.base!r} to use as a base (declared: {known})")
        chain.append(current.base)
        if current.base in chain[:-1]:
            raise ctx.fail(path, f"base environments form a cycle: {' -> '.join(chain)}")
        current = decls[current.base]


def _check_branches(ctx: FileContext, decls: dict[str, EnvironmentDecl]) -> None:
    """A branch deploys at most one persistent environment."""
    owners: dict[str, str] = {}
    for decl in decls.values():
        if decl.branch is None:
            continue
        if decl.branch in owners:
            path = ("environments", decl.name, "branch")
            raise ctx.fail(path, f"branch {decl.branch!r} already deploys environment {owners[decl.branch]!r}")
        owners[decl.branch] = decl.name


def _sanitize(ctx: FileContext, table: dict[str, Any]) -> SanitizeSpec:
    """[sanitize]: truncate = [tables], and [sanitize.tables.<table>] <column> = "<rule>"."""
    for key, value in table.items():
        if key not in SANITIZE_KEYS:
            ctx.unknown(("sanitize",), key, value, SANITIZE_KEYS)
    truncate = ctx.parse(("sanitize", "truncate"), v.identifiers, table.get("truncate", []))
    tables: dict[str, dict[str, Rule]] = {}
    for name, raw in ctx.table(("sanitize", "tables"), table.get("tables", {})).items():
        path = ("sanitize", "tables", name)
        ctx.parse(path, v.sql_identifier, name)
        if name in truncate:
            raise ctx.fail(path, f"table {name} is also in sanitize.truncate (a truncated table needs no rules)")
        rules: dict[str, Rule] = {}
        for column, rule in ctx.table(path, raw).items():
            ctx.parse((*path, column), lambda x: v.sql_identifier(x, "column name"), column)
            rules[column] = Rule(*ctx.parse((*path, column), v.sanitize_rule, rule))
        tables[name] = rules
    return SanitizeSpec(truncate=truncate, tables=tables)
