"""[environments.<env>.alerts] in branchyard.toml: alert rules and where their notifications go (issue 16). Pure.

    [environments.production.alerts]
    webhooks = ["${{SLACK_WEBHOOK_URL}}", { url = "https://ops.example.com/hook", slack = false }]
    http_5xx_rate = { above = 0.05, for = "5m" }
    http_latency_p95_ms = { above = 800, for = "10m", resolve_for = "1m" }
    down = { for = "1m" }
    memory_percent_of_limit = { enabled = false }

Without the table an environment gets its tier's defaults (`DEFAULTS`): production — 5xx rate, p95 latency, down,
memory near its allocation, PostgreSQL storage; staging (persistent, not production) — down and 5xx rate; previews —
none. A rule named like a default changes only what it sets (`http_5xx_rate = { for = "10m" }` keeps 0.05);
`defaults = false` drops the tier's defaults, `enabled = false` on the table turns every rule off.

A rule compares one series of `monitoring.py` (its latest value, `MetricSource.current`) with `above` or `below`;
`down` is computed by the control plane (the uptime probe failing, or no running replica). It FIRES once its
condition held for `for`, and RESOLVES once the condition stopped holding for `resolve_for` (default 0: at the
first evaluation where it does not hold; a few seconds or a minute keeps a flapping series from firing again and
again). Durations: "30s", "5m", "1h", "1.5s" or a number of seconds.

Webhook URLs are often secrets (Slack's are): name a variable of the environment instead (`${{NAME}}`, e.g. set
with `variables set --secret`), resolved only when a notification is sent; URLs are never printed (`mask`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import monitoring
from . import values as v

DOWN = "down"  # the one rule that is not a series: computed by the control plane
TIER_PRODUCTION, TIER_STAGING, TIER_PREVIEW = "production", "staging", "preview"
SERIES = tuple(sorted({value for name, value in vars(monitoring).items() if name.isupper() and isinstance(value, str)}))
RULE_NAMES = (DOWN, *SERIES)
RULE_KEYS = ("above", "below", "for", "resolve_for", "enabled")
TABLE_KEYS = ("webhooks", "defaults", "enabled")
WEBHOOK_KEYS = ("url", "slack")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_REFERENCE = re.compile(r"\$\{\{\s*(?:shared\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_URL = re.compile(r"https?://[^\s/$.?#][^\s]*", re.IGNORECASE)


@dataclass(frozen=True)
class AlertRule:
    """One effective rule: `name` is a series of monitoring.py or "down"; exactly one of above/below, except down."""

    name: str
    above: float | None = None
    below: float | None = None
    for_s: float = 0.0
    resolve_for_s: float = 0.0
    origin: str = "spec"  # "default" (the tier's), "default+spec" (a default the file changed), "spec"

    @property
    def threshold(self) -> float | None:
        return self.above if self.above is not None else self.below

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "above": self.above, "below": self.below, "for_s": self.for_s,
                "resolve_for_s": self.resolve_for_s, "origin": self.origin}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AlertRule:
        return cls(name=str(raw["name"]), above=raw.get("above"), below=raw.get("below"),
                   for_s=float(raw.get("for_s", 0.0)), resolve_for_s=float(raw.get("resolve_for_s", 0.0)),
                   origin=str(raw.get("origin", "spec")))


@dataclass(frozen=True)
class Webhook:
    """Where notifications go: a URL or a `${{NAME}}` reference to a variable of the environment, as written."""

    target: str
    slack: bool | None = None  # None: Slack's payload when the URL's host is hooks.slack.com

    @property
    def reference(self) -> str | None:
        """The variable a `${{NAME}}` target names (None: a literal URL)."""
        match = _REFERENCE.fullmatch(self.target.strip())
        return match.group(1) if match else None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "slack": self.slack}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Webhook:
        return cls(target=str(raw["target"]), slack=raw.get("slack"))


@dataclass(frozen=True)
class AlertsSpec:
    """An environment's effective alert rules (enabled ones only) and webhooks."""

    rules: tuple[AlertRule, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    tier: str = TIER_PREVIEW

    def to_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "rules": [r.to_dict() for r in self.rules], "webhooks": [w.to_dict() for w in self.webhooks]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> AlertsSpec | None:
        """None when a snapshot has no alerts (written before alerts existed: the caller applies the tier's defaults)."""
        if not raw:
            return None
        return cls(rules=tuple(AlertRule.from_dict(r) for r in raw.get("rules", [])),
                   webhooks=tuple(Webhook.from_dict(w) for w in raw.get("webhooks", [])), tier=str(raw.get("tier", "")))


_5XX = AlertRule(monitoring.HTTP_5XX_RATE, above=0.05, for_s=300.0, origin="default")
_DOWN = AlertRule(DOWN, for_s=60.0, origin="default")
DEFAULTS: dict[str, tuple[AlertRule, ...]] = {
    TIER_PRODUCTION: (
        _5XX,
        AlertRule(monitoring.HTTP_LATENCY_P95_MS, above=1000.0, for_s=300.0, origin="default"),
        _DOWN,
        AlertRule(monitoring.MEMORY_PERCENT_OF_LIMIT, above=90.0, for_s=300.0, origin="default"),
        AlertRule(monitoring.POSTGRES_STORAGE_PERCENT, above=90.0, for_s=300.0, origin="default"),
    ),
    TIER_STAGING: (_DOWN, _5XX),
    TIER_PREVIEW: (),
}


def tier_of(*, production: bool, ephemeral: bool) -> str:
    """production; previews (and any ephemeral environment); staging: every other persistent environment."""
    if production:
        return TIER_PRODUCTION
    return TIER_PREVIEW if ephemeral else TIER_STAGING


def default_alerts(tier: str) -> AlertsSpec:
    return AlertsSpec(rules=DEFAULTS[tier], tier=tier)


def duration(value: Any) -> float:
    """"5m", "30s", "1.5s", "1h", "250ms" or a number of seconds (fractions allowed) → seconds, ≥ 0."""
    if isinstance(value, bool):
        raise v.expected('a duration like "30s", "5m" or "1h"', value)
    if isinstance(value, (int, float)):
        if value < 0 or value != value:
            raise v.expected('a duration like "30s", "5m" or "1h"', value)
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise v.expected('a duration like "30s", "5m" or "1h"', value)
    return float(match.group(1)) * _UNIT[(match.group(2) or "s").lower()]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise v.expected("a number", value)
    return float(value)


def webhook(value: Any) -> Webhook:
    """"https://…", "${{NAME}}" or { url = …, slack = true|false }."""
    slack: bool | None = None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in WEBHOOK_KEYS]
        if unknown:
            raise v.InvalidValue(f"unknown key {unknown[0]!r} in a webhook (known: {', '.join(WEBHOOK_KEYS)})")
        if "slack" in value:
            slack = v.boolean(value["slack"])
        value = value.get("url")
    if not isinstance(value, str) or not (_URL.fullmatch(value.strip()) or _REFERENCE.fullmatch(value.strip())):
        # never show the value: a webhook URL is often a secret
        raise v.InvalidValue('expected an http(s) URL or a reference to a variable like "${{SLACK_WEBHOOK_URL}}"')
    return Webhook(target=value.strip(), slack=slack)


def mask(target: str) -> str:
    """A webhook as it may be printed: a reference as written, a URL as its scheme and host only."""
    if _REFERENCE.fullmatch(target.strip()):
        return target.strip()
    match = re.match(r"(https?://[^/?#@]*@)?(https?://)?([^/?#]+)", target, re.IGNORECASE)
    host = match.group(3).rsplit("@", 1)[-1] if match else "?"
    scheme = target.split("://", 1)[0].lower() if "://" in target else "https"
    return f"{scheme}://{host}/***"


def is_slack(hook: Webhook, url: str) -> bool:
    """Slack's payload when asked for, or (unset) when the URL is Slack's incoming webhook."""
    if hook.slack is not None:
        return hook.slack
    return bool(re.match(r"https://hooks\.slack\.com/", url, re.IGNORECASE))


class RuleError(v.InvalidValue):
    """A rule that cannot be; `key` is where (None: the rule's table)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def rule(name: str, value: Any, default: AlertRule | None) -> AlertRule | None:
    """One rule table over its default (if the tier has one); None when `enabled = false`."""
    if name not in RULE_NAMES:
        raise RuleError(f"unknown alert rule {name!r} (a series of monitoring: {', '.join(RULE_NAMES)})")
    if not isinstance(value, dict):
        raise RuleError(f'expected a table like {{ above = 0.05, for = "5m" }}, got {v.show(value)}')
    for key in value:
        if key not in RULE_KEYS:
            raise RuleError(f"unknown key (known: {', '.join(RULE_KEYS)})", key)
    parsed: dict[str, Any] = {}
    for key, parser in (("above", _number), ("below", _number), ("for", duration), ("resolve_for", duration),
                        ("enabled", v.boolean)):
        if key in value:
            try:
                parsed[key] = parser(value[key])
            except v.InvalidValue as err:
                raise RuleError(err.message, key) from None
    if not parsed.get("enabled", True):
        return None
    if name == DOWN and ("above" in parsed or "below" in parsed):
        raise RuleError("down takes no threshold (only for, resolve_for, enabled)", "above" if "above" in parsed else "below")
    if "above" in parsed and "below" in parsed:
        raise RuleError("give above or below, not both", "below")
    base = default or AlertRule(name)
    above, below = base.above, base.below
    if "above" in parsed or "below" in parsed:
        above, below = parsed.get("above"), parsed.get("below")
    if name != DOWN and above is None and below is None:
        raise RuleError(f'needs a threshold: above = N or below = N (e.g. {name} = {{ above = 0.05, for = "5m" }})')
    return AlertRule(name, above=above, below=below, for_s=parsed.get("for", base.for_s),
                     resolve_for_s=parsed.get("resolve_for", base.resolve_for_s),
                     origin="default+spec" if default is not None else "spec")
