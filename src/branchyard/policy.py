"""The policy engine behind `branchyard check` (pure): one rule per DO/DON'T of the architecture guide.

Spec rules read only the project files; live rules read facts the control plane gathers (deployments,
provisioned services, and findings it computes itself so that secret values never leave it). Every finding
has the rule's id, a severity ("error" fails `check`, "warning" does not), a message and a fix hint.

The isolation guard is here too: `isolation_findings` is what refuses a non-production deploy whose
variables equal or point at production's data or credentials.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from . import isolation as enforced
from .spec.model import PR_TEMPLATE, EnvironmentConfig, ProjectSpec

ERROR = "error"
WARNING = "warning"
MIN_SECRET_LENGTH = 6  # shorter production secrets are not matched (too many false hits: "true", "1234")
_REFERENCE = re.compile(r"\$\{\{.*?\}\}")
_CREDENTIAL_KEY = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE|DSN|CREDENTIAL", re.IGNORECASE)
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    scope: str  # "spec" or "live"
    summary: str  # the guide's DO/DON'T it checks
    check: Callable[..., list[tuple[str, str]]]  # → (message, fix) pairs


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    checked: tuple[str, ...]
    skipped: tuple[str, ...]  # live rules not run (no server)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.errors, "findings": [f.to_dict() for f in self.findings],
                "checked": list(self.checked), "skipped": list(self.skipped)}


# --- the isolation guard ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductionFacts:
    """What of production a non-production environment must never reach."""

    credentials: Mapping[str, str] = field(default_factory=dict)  # label → value (secrets, service passwords)
    databases: frozenset[tuple[str, int, str]] = frozenset()  # (host, port, dbname)
    redis: frozenset[tuple[str, int]] = frozenset()  # (host, port)


def _host(host: str | None) -> str:
    host = (host or "").strip("[]").lower()
    return "loopback" if host in _LOOPBACK else host


def postgres_address(value: str) -> tuple[str, int, str] | None:
    """(host, port, dbname) of a postgres:// / postgresql:// URL, else None."""
    if not value.startswith(("postgres://", "postgresql://", "postgresql+")):
        return None
    try:
        url = urlsplit(value)
        port = url.port or 5432
    except ValueError:
        return None
    return _host(url.hostname), port, unquote(url.path.lstrip("/")) or (unquote(url.username or "") or "postgres")


def redis_address(value: str) -> tuple[str, int] | None:
    """(host, port) of a redis:// / rediss:// URL, else None."""
    if not value.startswith(("redis://", "rediss://")):
        return None
    try:
        url = urlsplit(value)
        return _host(url.hostname), url.port or 6379
    except ValueError:
        return None


def production_facts(*, secrets: Mapping[str, str], services: Mapping[str, Mapping[str, str]],
                     values: Mapping[str, str]) -> ProductionFacts:
    """Production's secrets, its services' passwords and the addresses of its databases and Redis servers."""
    credentials = {f"secret {k}": v for k, v in secrets.items()}
    databases: set[tuple[str, int, str]] = set()
    redis: set[tuple[str, int]] = set()
    for name, space in services.items():
        credentials |= {f"{name}.{k}": v for k, v in space.items() if "PASSWORD" in k}
        for v in space.values():
            _collect(v, databases, redis)
    for v in values.values():
        _collect(v, databases, redis)
    if {"PGHOST", "PGDATABASE"} <= set(values):
        databases.add((_host(values["PGHOST"]), int(values.get("PGPORT") or 5432), values["PGDATABASE"]))
    return ProductionFacts(credentials={k: v for k, v in credentials.items() if len(v) >= MIN_SECRET_LENGTH},
                           databases=frozenset(databases), redis=frozenset(redis))


def _collect(value: str, databases: set[tuple[str, int, str]], redis: set[tuple[str, int]]) -> None:
    pg, rd = postgres_address(value), redis_address(value)
    if pg:
        databases.add(pg)
    if rd:
        redis.add(rd)


def isolation_findings(env_name: str, values: Mapping[str, str], facts: ProductionFacts) -> list[str]:
    """One message per variable of `env_name` that reaches production: equal to (or containing) one of its
    credentials, or pointing at its database or Redis. Messages name variables, never values."""
    found = []
    for key in sorted(values):
        value = values[key]
        hit = next((label for label, secret in facts.credentials.items() if secret and secret in value), None)
        if hit is not None:
            what = "equals" if values[key] == facts.credentials[hit] else "contains"
            found.append(f"{env_name}: {key} {what} production's credential ({hit})")
            continue
        pg, rd = postgres_address(value), redis_address(value)
        if pg and pg in facts.databases:
            found.append(f"{env_name}: {key} points at production's database {pg[2]} on {pg[0]}:{pg[1]}")
        elif rd and rd in facts.redis:
            found.append(f"{env_name}: {key} points at production's Redis on {rd[0]}:{rd[1]}")
    if {"PGHOST", "PGDATABASE"} <= set(values):
        address = (_host(values["PGHOST"]), int(values.get("PGPORT") or 5432), values["PGDATABASE"])
        if address in facts.databases:
            found.append(f"{env_name}: PGHOST/PGPORT/PGDATABASE point at production's database {address[2]}")
    return found


# --- spec rules ------------------------------------------------------------------------------------------


def _configs(spec: ProjectSpec) -> dict[str, EnvironmentConfig]:
    """Effective config of every declared environment (the pr template as "pr")."""
    return {name: spec.environment(name) for name in spec.environments}


def _production(spec: ProjectSpec) -> str:
    return next(n for n, d in spec.environments.items() if d.production)


def _persistent_non_prod(spec: ProjectSpec) -> list[str]:
    return [n for n, d in spec.environments.items() if not d.production and n != PR_TEMPLATE]


def _label(name: str) -> str:
    return "pr-*" if name == PR_TEMPLATE else name


def rule_separate(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    if _persistent_non_prod(spec):
        return []
    return [(f"only {_production(spec)} is declared: changes reach customers untested",
             'declare [environments.staging] branch = "develop" in branchyard.toml')]


def rule_auto_deploy_staging(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    return [(f"{n} has no branch: nothing deploys it automatically",
             f'set environments.{n}.branch = "develop" (a push to it deploys {n})')
            for n in _persistent_non_prod(spec) if not spec.environments[n].branch]


def rule_pr_previews(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    if spec.preview is not None:
        return []
    return [("no [environments.pr]: pull requests get no preview environment",
             'add [environments.pr] with base = "staging" and ephemeral = true')]


def rule_manual_promotion(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    prod = _production(spec)
    promo = spec.environments[prod].promotion
    if promo is not None and promo.source is not None:
        return []
    return [(f"{prod} declares no promotion source: `promote` into it is gated only by source health",
             f'add [environments.{prod}.promotion] from = "staging" (promotion is always manual)')]


def rule_approvals(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    prod = _production(spec)
    promo = spec.environments[prod].promotion
    if promo is not None and promo.approvals >= 1:
        return []
    return [(f"promotions into {prod} need no approval",
             f"set environments.{prod}.promotion.approvals = 2 (the guide: 2 reviewers for main)")]


def rule_branch_protection(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    if spec.github_repository:
        return []
    return [("no [github] repository: branch protection for main and develop cannot be applied",
             'add [github] repository = "owner/name", then run `branchyard github protect --apply`')]


# Worded for an app that may have no such path yet: naming one that does not exist would fail every deploy.
HEALTH_FIX = ("give the app a path that answers 200 only when it can serve (e.g. /health, checking its database), "
              "then set deploy.healthcheckPath to it in railway.toml")


def rule_health_checks(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    return [(f"{_label(n)} has no health check path: a deploy is switched to as soon as / answers below 500",
             HEALTH_FIX)
            for n, cfg in _configs(spec).items() if not cfg.web.healthcheck_path]


def rule_ephemeral_previews(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    if spec.preview is None or spec.environments[PR_TEMPLATE].ephemeral:
        return []
    return [("previews are not ephemeral: they keep running (and their databases) after the pull request closes",
             "remove ephemeral = false from [environments.pr]")]


def _literal_urls(cfg: EnvironmentConfig) -> dict[str, tuple]:
    """Variables holding a literal database/Redis URL (no reference) → their address."""
    out: dict[str, tuple] = {}
    for key, value in cfg.variables.items():
        if _REFERENCE.search(value):
            continue
        address = postgres_address(value) or redis_address(value)
        if address:
            out[key] = address
    return out


def rule_shared_databases(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    configs = {n: c for n, c in _configs(spec).items()}
    owners: dict[tuple, str] = {}
    found = []
    for name, cfg in configs.items():
        for key, address in _literal_urls(cfg).items():
            other = owners.setdefault(address, name)
            if other != name:
                found.append((f"{_label(name)} and {_label(other)} use the same database or Redis ({key})",
                              "give each environment its own: DATABASE_URL = \"${{Postgres.DATABASE_URL}}\""))
    return found


def rule_production_credentials(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    prod = spec.environment(_production(spec))
    found = []
    for name, cfg in _configs(spec).items():
        if cfg.production:
            continue
        for key, value in cfg.variables.items():
            if _CREDENTIAL_KEY.search(key) and not _REFERENCE.search(value) and value and prod.variables.get(key) == value:
                found.append((f"{_label(name)}: {key} is production's value, written in the project files",
                              f"use a per-environment secret: {key} = \"${{{{ secrets.{key} }}}}\" and "
                              f"`branchyard variables set --secret {key}=... -e {_label(name)}`"))
    return found


def rule_staging_first(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    prod = _production(spec)
    promo = spec.environments[prod].promotion
    if promo is not None and promo.require_source:
        return []
    return [(f"a commit can reach {prod} without having run in staging (git push to its branch)",
             f"set environments.{prod}.promotion.requireStaging = true")]


_SIZES = (("web", "replicas"), ("web", "memory_mb"), ("web", "cpu"), ("postgres", "memory_mb"),
          ("postgres", "storage_mb"), ("redis", "memory_mb"))


def rule_right_sized(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    prod = spec.environment(_production(spec))
    found = []
    for name, cfg in _configs(spec).items():
        if cfg.production:
            continue
        for section, key in _SIZES:
            mine, theirs = getattr(getattr(cfg, section), key, None) if getattr(cfg, section) else None, (
                getattr(getattr(prod, section), key, None) if getattr(prod, section) else None)
            if mine is not None and theirs is not None and mine > theirs:
                found.append((f"{_label(name)}: {section}.{key} = {mine} is more than production's {theirs}",
                              f"lower it under [environments.{name}.services.{section}]"))
    return found


def rule_reference_variables(spec: ProjectSpec, live: Any = None) -> list[tuple[str, str]]:
    found = []
    for name, cfg in _configs(spec).items():
        for key in _literal_urls(cfg):
            found.append((f"{_label(name)}: {key} is a literal connection URL",
                          "use a reference variable (${{Postgres.DATABASE_URL}}, ${{Redis.REDIS_URL}}): each "
                          "environment resolves it to its own service"))
    return found


# --- live rules (facts from the control plane) -------------------------------------------------------------


def rule_isolation(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(message, "point it at the environment's own service (${{Postgres.DATABASE_URL}}) and give it its own "
             "secrets with `branchyard variables set --secret`") for message in live.get("isolation", [])]


def rule_live_shared_data(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    owners: dict[str, str] = {}
    found = []
    for row in live.get("services", []):
        other = owners.setdefault(row["location"], row["environment"])
        if other != row["environment"]:
            found.append((f"{row['environment']} and {other} share {row['kind']} {row['location']}",
                          "`branchyard environment delete` one and redeploy it: each environment gets its own"))
    return found


def rule_distinct_secrets(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(f"secret {row['key']} has the same value in every environment that sets it "
             f"({', '.join(row['environments'])})",
             f"set a different {row['key']} per environment with `branchyard variables set --secret`")
            for row in live.get("same_secrets", [])]


def rule_failed_deploys(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    for env in live.get("environments", []):
        latest = env.get("latest_status")
        if latest in ("FAILED", "CRASHED"):
            found.append((f"{env['name']}: the latest deployment {env.get('latest_id', '')[:8]} is {latest}"
                          + (f" ({env['latest_error']})" if env.get("latest_error") else ""),
                          f"read `branchyard logs -e {env['name']} --build`, fix and push, or `branchyard rollback`"))
    return found


def rule_previews_after_merge(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(f"{env['name']} is still running, but "
             + (f"its branch {env['branch']} is merged" if env.get("branch") else "its pull request is closed"),
             f"`branchyard environment delete {env['name']} --yes`")
            for env in live.get("environments", []) if env.get("ephemeral") and env.get("merged")
            and env.get("state") != "SLEEPING"]


def rule_live_staging_first(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    row = live.get("production_commit")
    if not row or row.get("ran_in_source", True):
        return []
    return [(f"{row['environment']} runs {row['commit'][:12]}, which never ran successfully in {row['source']}",
             f"deploy it to {row['source']} first; promote with `branchyard promote {row['source']} "
             f"{row['environment']}`")]


def rule_production_branch(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Production's branch must contain what production runs, or its next push deploys without it. Only a
    divergence is reported: a branch merely behind is fast-forwarded by the control plane (controller/git_follow.py)."""
    row = live.get("production_branch")
    if not row or row.get("relation") != "diverged":
        return []
    env, branch, commit = row["environment"], row["branch"], row["commit"][:12]
    return [(f"{env} runs {commit}, which its branch {branch} ({(row.get('head') or '')[:12]}) does not contain: "
             f"{branch} has commits of its own, and its next push would deploy without {commit}",
             f"merge {commit} into {branch} (`git fetch branchyard && git checkout {branch} && git merge {commit}`), "
             f"then `git push branchyard {branch}`")]


def rule_cost_over_production(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The seed's right-sizing rule in dollars: no non-production environment should cost more than production
    (each environment's projected monthly cost, from what it runs; issue 17)."""
    rows = live.get("costs") or []
    prod = next((r for r in rows if r.get("production") and r.get("monthly") is not None), None)
    if prod is None:
        return []
    return [(f"{r['environment']} is projected at ${r['monthly']:,.2f}/month, more than {prod['environment']}'s "
             f"${prod['monthly']:,.2f}/month",
             f"right-size it (memory, cpu, replicas, storage under [environments.{r['environment']}.services]), "
             f"or sleep or delete it when unused; `branchyard cost -e {r['environment']}` has the breakdown")
            for r in rows if not r.get("production") and r.get("monthly") is not None
            and round(r["monthly"], 2) > round(prod["monthly"], 2)]
def rule_enforced_isolation(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What this machine does not enforce (resource limits, network isolation): said in `check`, never silent."""
    return enforced.findings(live.get("enforcement"))


def rule_database_storage(spec: ProjectSpec, live: Mapping[str, Any]) -> list[tuple[str, str]]:
    return enforced.storage_findings(live.get("database_storage", []))


RULES: tuple[Rule, ...] = (
    Rule("separate-environments", WARNING, "spec", "DO use separate environments for dev/staging/prod", rule_separate),
    Rule("auto-deploy-staging", WARNING, "spec", "DO auto-deploy staging", rule_auto_deploy_staging),
    Rule("pr-environments", WARNING, "spec", "DO auto-deploy PR environments / DON'T skip them", rule_pr_previews),
    Rule("manual-promotion", WARNING, "spec", "DO manually promote staging → production", rule_manual_promotion),
    Rule("promotion-approvals", WARNING, "spec", "production requires approvals", rule_approvals),
    Rule("branch-protection", WARNING, "spec", "DO use branch protection on main and develop", rule_branch_protection),
    Rule("health-checks", ERROR, "spec", "DON'T skip health checks", rule_health_checks),
    Rule("ephemeral-previews", ERROR, "spec", "DO destroy PR environments after merge", rule_ephemeral_previews),
    Rule("no-shared-databases", ERROR, "spec", "DON'T share databases between environments", rule_shared_databases),
    Rule("no-production-credentials", ERROR, "spec", "DON'T use production credentials in dev/staging",
         rule_production_credentials),
    Rule("staging-before-production", WARNING, "spec", "DON'T deploy directly to production without staging",
         rule_staging_first),
    Rule("right-sized-non-prod", WARNING, "spec", "DON'T over-provision resources for non-prod", rule_right_sized),
    Rule("reference-variables", WARNING, "spec", "DO use reference variables for service URLs",
         rule_reference_variables),
    Rule("isolation", ERROR, "live", "DON'T let dev/staging reach production's data or credentials", rule_isolation),
    Rule("no-shared-data-services", ERROR, "live", "DON'T share databases between environments",
         rule_live_shared_data),
    Rule("distinct-secrets", WARNING, "live", "DON'T use the same secrets across all environments",
         rule_distinct_secrets),
    Rule("failed-deploys", WARNING, "live", "DON'T ignore failed deployments", rule_failed_deploys),
    Rule("previews-after-merge", WARNING, "live", "DON'T leave PR environments running after merge",
         rule_previews_after_merge),
    Rule("production-ran-in-staging", WARNING, "live", "DON'T deploy directly to production without staging",
         rule_live_staging_first),
    # A warning, not an error: production itself is sound (it runs a verified promotion), the repair is a merge
    # only a person can make, and an error would fail every `check` in CI, for unrelated changes, until then.
    Rule("production-branch-follows", WARNING, "live", "DO keep main what production runs (git follows promotion)",
         rule_production_branch),
    Rule("cost-over-production", WARNING, "live", "DON'T over-provision resources for non-prod (cost)",
         rule_cost_over_production),
    Rule("isolation-enforced", WARNING, "live", "each environment has independent CPU and RAM (and network)",
         rule_enforced_isolation),
    Rule("database-storage", WARNING, "live", "DON'T let a database outgrow its storage", rule_database_storage),
)


def evaluate(spec: ProjectSpec, live: Mapping[str, Any] | None, rules: Iterable[Rule] = RULES) -> Report:
    """Run every spec rule, and the live rules when `live` facts are given (else list them as skipped)."""
    findings: list[Finding] = []
    checked, skipped = [], []
    for rule in rules:
        if rule.scope == "live" and live is None:
            skipped.append(rule.id)
            continue
        checked.append(rule.id)
        for message, fix in rule.check(spec, live):
            findings.append(Finding(rule.id, rule.severity, message, fix))
    findings.sort(key=lambda f: (f.severity != ERROR, f.rule))
    return Report(findings=tuple(findings), checked=tuple(checked), skipped=tuple(skipped))


def same_secrets(per_env: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """Secret keys set in two or more environments with one identical value in all of them (values not returned)."""
    keys: dict[str, list[str]] = {}
    for env, secrets in per_env.items():
        for key in secrets:
            keys.setdefault(key, []).append(env)
    rows = []
    for key, envs in sorted(keys.items()):
        values = {per_env[e][key] for e in envs}
        if len(envs) >= 2 and len(values) == 1 and len(next(iter(values))) >= MIN_SECRET_LENGTH:
            rows.append({"key": key, "environments": sorted(envs)})
    return rows
