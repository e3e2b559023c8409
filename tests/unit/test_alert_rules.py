"""[environments.<env>.alerts]: defaults by tier, rules over them, webhooks, durations, and one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard.errors import SpecError
from branchyard.spec import load_project
from branchyard.spec.alerts import AlertRule, AlertsSpec, Webhook, duration, is_slack, mask

HEAD = """
[project]
name = "app"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"

[environments.pr]
branches = ["*"]
"""


def load(tmp_path: Path, extra: str = "") -> object:
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(HEAD) + textwrap.dedent(extra))
    return load_project(tmp_path)


def error(tmp_path: Path, extra: str) -> str:
    with pytest.raises(SpecError) as err:
        load(tmp_path, extra)
    return str(err.value)


def names(spec: AlertsSpec) -> list[tuple[str, float | None, float | None, float, str]]:
    return [(r.name, r.above, r.below, r.for_s, r.origin) for r in spec.rules]


def test_defaults_by_tier(tmp_path: Path) -> None:
    spec = load(tmp_path)
    assert names(spec.environment("production").alerts) == [
        ("http_5xx_rate", 0.05, None, 300.0, "default"),
        ("http_latency_p95_ms", 1000.0, None, 300.0, "default"),
        ("down", None, None, 60.0, "default"),
        ("memory_percent_of_limit", 90.0, None, 300.0, "default"),
        ("postgres_storage_percent", 90.0, None, 300.0, "default"),
    ]
    assert names(spec.environment("staging").alerts) == [
        ("down", None, None, 60.0, "default"), ("http_5xx_rate", 0.05, None, 300.0, "default")]
    assert spec.environment("pr-3").alerts.rules == ()
    assert [spec.environment(e).alerts.tier for e in ("production", "staging", "pr-3")] == ["production", "staging", "preview"]
    assert [spec.environment(e).uptime for e in ("production", "staging", "pr-3")] == [True, False, False]


def test_a_project_without_branchyard_toml_gets_productions_defaults(tmp_path: Path) -> None:
    production = load_project(tmp_path).environment("production")
    assert production.alerts.tier == "production" and len(production.alerts.rules) == 5 and production.uptime


@pytest.mark.parametrize(
    ("table", "env", "expected"),
    [
        # a default changed: only what is set
        ('http_5xx_rate = { for = "10m" }', "production", ("http_5xx_rate", 0.05, None, 600.0, "default+spec")),
        ("http_5xx_rate = { above = 0.2 }", "staging", ("http_5xx_rate", 0.2, None, 300.0, "default+spec")),
        # a new rule, fractional durations, below
        ('http_requests_per_second = { below = 1, for = "1.5s" }', "staging",
         ("http_requests_per_second", None, 1.0, 1.5, "spec")),
        ('down = { for = "2s" }', "pr", ("down", None, None, 2.0, "spec")),
        ("down = { for = 0.5 }", "pr", ("down", None, None, 0.5, "spec")),
        ('replica_cpu_percent = { above = 90, for = "250ms" }', "pr", ("replica_cpu_percent", 90.0, None, 0.25, "spec")),
    ],
)
def test_a_rule_over_the_tiers_default(tmp_path: Path, table: str, env: str, expected: tuple) -> None:
    spec = load(tmp_path, f"\n[environments.{env}.alerts]\n{table}\n")
    target = "pr-1" if env == "pr" else env
    rules = {r.name: r for r in spec.environment(target).alerts.rules}
    rule = rules[expected[0]]
    assert (rule.name, rule.above, rule.below, rule.for_s, rule.origin) == expected


def test_turning_rules_and_defaults_off(tmp_path: Path) -> None:
    spec = load(tmp_path, """
        [environments.production.alerts]
        memory_percent_of_limit = { enabled = false }
        down = { enabled = false }

        [environments.staging.alerts]
        defaults = false
        http_5xx_rate = { above = 0.5, for = "1m" }
    """)
    assert [r.name for r in spec.environment("production").alerts.rules] == [
        "http_5xx_rate", "http_latency_p95_ms", "postgres_storage_percent"]
    assert names(spec.environment("staging").alerts) == [("http_5xx_rate", 0.5, None, 60.0, "spec")]
    off = load(tmp_path, '\n[environments.production.alerts]\nenabled = false\nwebhooks = ["https://x.example/h"]\n')
    assert off.environment("production").alerts.rules == ()


def test_webhooks_literal_reference_and_slack(tmp_path: Path) -> None:
    spec = load(tmp_path, """
        [environments.production.alerts]
        webhooks = ["${{SLACK_URL}}", { url = "https://ops.example.com/hook?token=abc", slack = false }, "http://127.0.0.1:9/x"]
    """)
    hooks = spec.environment("production").alerts.webhooks
    assert hooks == (Webhook("${{SLACK_URL}}"), Webhook("https://ops.example.com/hook?token=abc", slack=False),
                     Webhook("http://127.0.0.1:9/x"))
    assert [h.reference for h in hooks] == ["SLACK_URL", None, None]
    assert [mask(h.target) for h in hooks] == ["${{SLACK_URL}}", "https://ops.example.com/***", "http://127.0.0.1:9/***"]
    assert is_slack(Webhook("x"), "https://hooks.slack.com/services/T/B/C")
    assert not is_slack(Webhook("x", slack=False), "https://hooks.slack.com/services/T/B/C")
    assert is_slack(Webhook("x", slack=True), "https://chat.example.com/hook")
    assert not is_slack(Webhook("x"), "https://chat.example.com/hook")


def test_the_snapshot_round_trips(tmp_path: Path) -> None:
    alerts = load(tmp_path, '\n[environments.production.alerts]\nwebhooks = ["${{A}}"]\n').environment("production").alerts
    assert AlertsSpec.from_dict(alerts.to_dict()) == alerts
    assert AlertsSpec.from_dict(None) is None
    assert AlertRule.from_dict({"name": "down"}) == AlertRule("down")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300.0), ("30s", 30.0), ("1.5s", 1.5), ("2s", 2.0), ("1h", 3600.0), ("250ms", 0.25), (" 2 m ", 120.0),
     (90, 90.0), (0.5, 0.5), ("1d", 86400.0), ("3", 3.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert duration(value) == seconds


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('http_5xx_rate = { above = "high" }',
         'branchyard.toml: environments.production.alerts.http_5xx_rate.above: expected a number, got "high"'),
        ('http_5xx_rate = { for = "5 minutes" }',
         'branchyard.toml: environments.production.alerts.http_5xx_rate.for: expected a duration like "30s", "5m" or '
         '"1h", got "5 minutes"'),
        ("errors = { above = 1 }", "branchyard.toml: environments.production.alerts.errors: unknown alert rule 'errors'"),
        ('http_requests_per_second = { for = "1m" }',
         "branchyard.toml: environments.production.alerts.http_requests_per_second: needs a threshold"),
        ("down = { above = 1 }",
         "branchyard.toml: environments.production.alerts.down.above: down takes no threshold"),
        ("http_5xx_rate = { above = 1, below = 0 }",
         "branchyard.toml: environments.production.alerts.http_5xx_rate.below: give above or below, not both"),
        ("http_5xx_rate = { above = 1, when = 3 }",
         "branchyard.toml: environments.production.alerts.http_5xx_rate.when: unknown key"),
        ("http_5xx_rate = 0.05", "branchyard.toml: environments.production.alerts.http_5xx_rate: expected a table"),
        ('webhooks = ["hooks.slack.com/services/SECRET"]',
         "branchyard.toml: environments.production.alerts.webhooks: expected an http(s) URL or a reference"),
        ('webhooks = "https://x.example/h"', "branchyard.toml: environments.production.alerts.webhooks: expected a list"),
    ],
)
def test_errors_name_file_field_and_value_in_one_line(tmp_path: Path, extra: str, message: str) -> None:
    text = error(tmp_path, f"\n[environments.production.alerts]\n{extra}\n")
    assert text.startswith(message), text
    assert "\n" not in text
    assert "SECRET" not in text  # a webhook URL is never echoed
