"""The frozen project spec: declared environments and, per environment, the effective merged config."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..errors import NameRefused
from ..names import environment_name
from .alerts import AlertsSpec
from .context import Layer

PR_TEMPLATE = "pr"
_PR_INSTANCE = re.compile(r"pr-[1-9][0-9]{0,36}")


@dataclass(frozen=True)
class WebConfig:
    """The web service of one environment (Railway's build + deploy settings plus resources)."""

    start_command: str | None = None
    build_command: str | None = None
    pre_deploy_command: tuple[str, ...] = ()
    seed_command: str | None = None
    healthcheck_path: str | None = None
    healthcheck_timeout: int = 300
    # Liveness of RUNNING replicas (branchyard keys): probed every interval seconds; after `failures` in a row the
    # replica leaves the route and is restarted under the restart policy.
    healthcheck_interval: int = 5
    healthcheck_failures: int = 3
    restart_policy_type: str = "ON_FAILURE"
    restart_policy_max_retries: int = 10
    replicas: int = 1
    overlap_seconds: int = 0
    draining_seconds: int = 0
    memory_mb: int | None = None
    cpu: float | None = None
    sleep_application: bool = False
    cron_schedule: str | None = None
    watch_patterns: tuple[str, ...] = ()
    dockerfile_path: str | None = None
    root_dir: str = "."


@dataclass(frozen=True)
class ProcessConfig:
    """A Procfile process type other than `web` and `release` (worker, clock …): a service of the environment that
    runs `replicas` copies of `command` with web's limits and restart policy, without a route or HTTP health check."""

    command: str
    replicas: int = 1


@dataclass(frozen=True)
class PostgresConfig:
    """A PostgreSQL database of one environment; `name` is its namespace in ${{Postgres.X}} references."""

    name: str = "Postgres"
    memory_mb: int | None = None
    storage_mb: int | None = None
    backups: str | None = None  # "daily" or None
    ephemeral: bool = False
    dedicated: bool = False
    # Files (globs under the service root) that decide what preDeployCommand and seedCommand make of a new
    # database: a new database whose key matches a template is cloned from it, and neither command runs.
    template_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class RedisConfig:
    """A Redis of one environment; `name` is its namespace in ${{Redis.X}} references."""

    name: str = "Redis"
    memory_mb: int | None = None
    persistence: bool = False


SANITIZE_RULES = ("keep", "mask_email", "fake_name", "hash", "null", "fixed")


@dataclass(frozen=True)
class Rule:
    """What a refresh does to one column: `kind` is one of SANITIZE_RULES; `value` is the literal of "fixed"."""

    kind: str
    value: str | None = None


@dataclass(frozen=True)
class SanitizeSpec:
    """[sanitize]: tables emptied on a refresh, and per-column rules for the tables that hold personal data."""

    truncate: tuple[str, ...] = ()
    tables: dict[str, dict[str, Rule]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtectionDecl:
    """[github.protection.<branch>] as written: None means "not set here" (the seed's default applies)."""

    branch: str
    enabled: bool | None = None
    required_approvals: int | None = None
    required_checks: tuple[str, ...] | None = None
    strict: bool | None = None
    enforce_admins: bool | None = None
    dismiss_stale_reviews: bool | None = None
    require_code_owner_reviews: bool | None = None
    allow_force_push: bool | None = None
    allow_deletions: bool | None = None


def defaults(cls: type) -> dict[str, Any]:
    """Field name → default value of one of the config dataclasses."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class PromotionSpec:
    """[environments.<env>.promotion]: the gates a promotion INTO this environment must pass (never automatic)."""

    source: str | None = None  # `from`: the only environment promotions come from (None: any but production)
    approvals: int = 0  # distinct authenticated users needed (`branchyard approve ID`)
    smoke_command: str | None = None  # run against the source before, and against this environment after
    smoke_timeout: int = 120  # seconds; a command still running then is killed and the gate fails
    require_source: bool = False  # `requireStaging`: a commit must have succeeded in `source` first (git pushes too)
    prevent_self_review: bool = False  # `preventSelfReview` (default: true for production): the promoter's approval
    #                                    does not count
    reviewers: tuple[str, ...] = ()  # `reviewers`: the only users whose approvals count (empty: any member or admin)
    wait_timer: float = 0.0  # `waitTimer`: minutes between the last approval (or the confirmation) and the start


@dataclass(frozen=True)
class TestsSpec:
    """[environments.<env>.tests]: the commands run against the environment's URL after every successful deploy
    (`BRANCHYARD_TARGET_URL`, `--environment NAME`, as a promotion's smokeCommand), in order, each killed after
    `timeout` seconds. The pr template's apply to every preview."""

    __test__ = False  # not a pytest class

    commands: tuple[str, ...] = ()
    timeout: int = 300


@dataclass(frozen=True)
class EnvironmentDecl:
    """An environment as declared in branchyard.toml (the "pr" entry is the preview template)."""

    name: str
    branch: str | None = None
    branches: tuple[str, ...] = ()  # branch patterns, pr template only
    base: str | None = None
    ephemeral: bool = False
    production: bool = False
    promotion: PromotionSpec | None = None
    protected: bool = False  # `protected` (default: true for production): only admins change, deploy or shell into it
    domains: tuple[str, ...] = ()  # custom domains (lowercase, checked by names.custom_domain); never inherited via base
    alerts: AlertsSpec | None = None  # [environments.<env>.alerts] over the tier's defaults (None: the defaults)
    uptime: bool | None = None  # `uptime`: the public URL probed through the router (None: production only)
    tests: TestsSpec | None = None  # [environments.<env>.tests]: post-deploy tests (None: none declared)
    sleep_after: int | None = None  # `sleepAfter` in seconds (0: never; None: not set, spec/sleep.py decides)


@dataclass(frozen=True)
class PreviewDecl:
    """The [environments.pr] template: which branches get previews, their base, and how they are named."""

    patterns: tuple[str, ...] = ("*",)
    base: str | None = None
    trigger: str = "pr"  # "pr": one environment per pull request (pr-<n>); "branch": one per branch
    forks: str = "approve"  # pull requests from forks: "approve" (wait for `previews approve`), "never", "always"
    bots: bool = False  # pull requests opened by bots (Dependabot, Renovate, any user.type "Bot")
    drafts: bool = False  # draft pull requests
    max_previews: int | None = None  # at most this many previews at once
    expire_after_days: float | None = None  # destroy a preview idle this long
    evict: str = "refuse"  # at max_previews: "refuse" the newest or evict the "oldest" idle one


@dataclass(frozen=True)
class EnvironmentConfig:
    """Everything resolved for ONE environment; `sources` names the layer each value came from."""

    name: str
    production: bool
    ephemeral: bool
    branch: str | None
    base: str | None
    web: WebConfig
    postgres: PostgresConfig | None
    redis: RedisConfig | None
    variables: dict[str, str]
    sources: dict[str, str]
    alerts: AlertsSpec = field(default_factory=AlertsSpec)
    uptime: bool = False
    sleep_after: int | None = None  # `sleepAfter` as declared (0: never; None: not set): spec/sleep.py's `effective`
    processes: dict[str, ProcessConfig] = field(default_factory=dict)  # Procfile types besides web/release

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for `config show --json`."""
        return {
            "environment": self.name,
            "production": self.production,
            "ephemeral": self.ephemeral,
            "branch": self.branch,
            "base": self.base,
            "web": _plain(self.web),
            "postgres": _plain(self.postgres) if self.postgres else None,
            "redis": _plain(self.redis) if self.redis else None,
            "variables": dict(self.variables),
            "sources": dict(self.sources),
            "alerts": self.alerts.to_dict(),  # webhooks as written (references or URLs): printers mask them
            "uptime": self.uptime,
            "sleep_after": self.sleep_after,
            "processes": {name: _plain(p) for name, p in self.processes.items()},
        }


def _plain(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict with tuples turned into lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


@dataclass(frozen=True)
class Layers:
    """The parsed layers the effective config of an environment is merged from (see merge.py)."""

    railway_base: Layer = field(default_factory=dict)
    railway_environments: dict[str, Layer] = field(default_factory=dict)
    base: Layer = field(default_factory=dict)  # branchyard.toml [services.*] and [variables]
    environments: dict[str, Layer] = field(default_factory=dict)  # branchyard.toml [environments.X...]
    procfiles: dict[str, tuple[str, str]] = field(default_factory=dict)  # root dir → (web command, label)
    procfile_releases: dict[str, tuple[str, str]] = field(default_factory=dict)  # root dir → (release command, label)
    procfile_services: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)  # root dir → ({worker: command}, label)


@dataclass(frozen=True)
class ProjectSpec:
    """A project as its files declare it."""

    name: str
    domain: str | None
    strict: bool
    environments: dict[str, EnvironmentDecl]
    preview: PreviewDecl | None
    warnings: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()  # declared but not done yet (a Procfile's worker:); warnings, never errors
    files: tuple[str, ...] = ()
    github_repository: str | None = None
    github_protection: dict[str, ProtectionDecl] = field(default_factory=dict)  # branch → [github.protection.<branch>]
    sanitize: SanitizeSpec | None = None
    layers: Layers = field(default_factory=Layers, repr=False, compare=False)

    def environment(self, name: str) -> EnvironmentConfig:
        """Effective config of a declared environment or a preview instance (pr-123); NotFound otherwise."""
        from .merge import resolve

        return resolve(self, name)

    def is_preview_instance(self, name: str) -> bool:
        """True when `name` is an instance of the pr template rather than a declared environment."""
        if self.preview is None or name in self.environments:
            return False
        if _PR_INSTANCE.fullmatch(name):
            return True
        try:
            return self.preview.trigger == "branch" and environment_name(name) == name
        except NameRefused:
            return False

    def tests_for(self, name: str) -> TestsSpec | None:
        """The post-deploy tests of an environment: its own [environments.<name>.tests], a preview's from the pr
        template; None when none are declared."""
        decl = self.environments.get(name)
        if decl is None and self.is_preview_instance(name):
            decl = self.environments.get(PR_TEMPLATE)
        return decl.tests if decl is not None and decl.tests is not None and decl.tests.commands else None

    def environment_for_branch(self, branch: str) -> str | None:
        """The persistent environment a branch deploys to (exact match, e.g. main → production)."""
        for decl in self.environments.values():
            if decl.name != PR_TEMPLATE and decl.branch == branch:
                return decl.name
        return None

    def preview_matches(self, branch: str) -> bool:
        """True when the pr template's patterns match the branch and no persistent environment owns it."""
        if self.preview is None or self.environment_for_branch(branch) is not None:
            return False
        return any(fnmatchcase(branch, pattern) for pattern in self.preview.patterns)

    def declared_names(self) -> list[str]:
        """Declared environment names for messages, the template shown as pr-*."""
        return [f"{n}-*" if n == PR_TEMPLATE else n for n in self.environments]
