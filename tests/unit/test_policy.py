"""The policy engine (pure): every rule with a spec (or live facts) that trips it and one that passes,
and the isolation guard's matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard import policy
from branchyard.spec import load_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"

RAILWAY = """
[deploy]
startCommand = "python app.py"
healthcheckPath = "/health"
"""

GOOD = """
[project]
name = "app"

[github]
repository = "owner/app"

[services.web]
replicas = 1
memory = "256 MB"

[services.postgres]
[services.redis]

[variables]
DATABASE_URL = "${{Postgres.DATABASE_URL}}"
REDIS_URL = "${{Redis.REDIS_URL}}"
API_TOKEN = "${{ secrets.API_TOKEN }}"

[environments.production]
branch = "main"

[environments.production.services.web]
replicas = 2
memory = "1 GB"

[environments.production.promotion]
from = "staging"
approvals = 2
requireStaging = true

[environments.staging]
branch = "develop"

[environments.pr]
base = "staging"
"""


def spec_of(tmp_path: Path, toml: str, railway: str = RAILWAY):
    (tmp_path / "branchyard.toml").write_text(toml)
    (tmp_path / "railway.toml").write_text(railway)
    return load_project(tmp_path)


def rule(rule_id: str) -> policy.Rule:
    return next(r for r in policy.RULES if r.id == rule_id)


def messages(spec, live, rule_id):
    return [f.message for f in policy.evaluate(spec, live, [rule(rule_id)]).findings]


def test_every_rule_has_an_id_severity_and_summary() -> None:
    ids = [r.id for r in policy.RULES]
    assert len(ids) == len(set(ids)) == 23  # the README's table
    assert all(r.severity in (policy.ERROR, policy.WARNING) and r.scope in ("spec", "live") and r.summary
               for r in policy.RULES)


def test_the_good_spec_passes_every_spec_rule(tmp_path) -> None:
    report = policy.evaluate(spec_of(tmp_path, GOOD), None)
    assert report.findings == ()
    assert report.skipped == tuple(r.id for r in policy.RULES if r.scope == "live")


def test_the_example_passes_but_warns_that_production_does_not_require_staging() -> None:
    report = policy.evaluate(load_project(EXAMPLE), None)
    assert [(f.rule, f.severity) for f in report.findings] == [("staging-before-production", "warning")]


SPEC_CASES = [
    ("separate-environments",
     lambda t: '[project]\nname = "app"\n[github]\nrepository = "o/a"\n',
     ["only production is declared: changes reach customers untested"]),
    ("auto-deploy-staging", lambda t: t.replace('[environments.staging]\nbranch = "develop"', "[environments.staging]"),
     ["staging has no branch: nothing deploys it automatically"]),
    ("pr-environments", lambda t: t.replace('[environments.pr]\nbase = "staging"\n', ""),
     ["no [environments.pr]: pull requests get no preview environment"]),
    ("manual-promotion", lambda t: t.replace('from = "staging"\napprovals = 2\nrequireStaging = true\n', ""),
     ["production declares no promotion source: `promote` into it is gated only by source health"]),
    ("promotion-approvals", lambda t: t.replace("approvals = 2", "approvals = 0"),
     ["promotions into production need no approval"]),
    ("branch-protection", lambda t: t.replace('[github]\nrepository = "owner/app"\n', ""),
     ["no [github] repository: branch protection for main and develop cannot be applied"]),
    ("ephemeral-previews", lambda t: t.replace('base = "staging"\n', 'base = "staging"\nephemeral = false\n'),
     ["previews are not ephemeral: they keep running (and their databases) after the pull request closes"]),
    ("no-shared-databases",
     lambda t: t.replace('DATABASE_URL = "${{Postgres.DATABASE_URL}}"', 'DATABASE_URL = "postgresql://u:p@db:5432/app"'),
     ["staging and production use the same database or Redis (DATABASE_URL)",
      "pr-* and production use the same database or Redis (DATABASE_URL)"]),
    ("no-production-credentials",
     lambda t: t.replace('API_TOKEN = "${{ secrets.API_TOKEN }}"', 'API_TOKEN = "tok-123456"'),
     ["staging: API_TOKEN is production's value, written in the project files",
      "pr-*: API_TOKEN is production's value, written in the project files"]),
    ("staging-before-production", lambda t: t.replace("requireStaging = true\n", ""),
     ["a commit can reach production without having run in staging (git push to its branch)"]),
    ("right-sized-non-prod",
     lambda t: t.replace('[environments.staging]\nbranch = "develop"',
                         '[environments.staging]\nbranch = "develop"\n[environments.staging.services.web]\nreplicas = 3'),
     ["staging: web.replicas = 3 is more than production's 2", "pr-*: web.replicas = 3 is more than production's 2"]),
    ("reference-variables",
     lambda t: t.replace('[environments.pr]\nbase = "staging"',
                         '[environments.pr]\nbase = "staging"\n[environments.pr.variables]\nREDIS_URL = "redis://cache:6379"'),
     ["pr-*: REDIS_URL is a literal connection URL"]),
]


@pytest.mark.parametrize(("rule_id", "mutate", "expected"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_spec_rule_trips_and_passes(tmp_path, rule_id, mutate, expected) -> None:
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    assert messages(spec_of(good, GOOD), None, rule_id) == []
    assert messages(spec_of(bad, mutate(GOOD)), None, rule_id) == expected


def test_health_checks_rule(tmp_path) -> None:
    assert messages(spec_of(tmp_path, GOOD), None, "health-checks") == []
    bad = spec_of(tmp_path, GOOD, railway='[deploy]\nstartCommand = "python app.py"\n')
    found = policy.evaluate(bad, None, [rule("health-checks")]).findings
    assert [f.message.split(" ")[0] for f in found] == ["production", "staging", "pr-*"]
    assert found[0].severity == "error" and found[0].fix == (
        "give the app a path that answers 200 only when it can serve (e.g. /health, checking its database), then set "
        "deploy.healthcheckPath to it in railway.toml")


LIVE_OK: dict = {"environments": [], "services": [], "isolation": [], "same_secrets": [], "production_commit": None,
                 "production_branch": None}

LIVE_CASES = [
    ("isolation", {"isolation": ["staging: DATABASE_URL points at production's database by_app_production on loopback:5432"]},
     ["staging: DATABASE_URL points at production's database by_app_production on loopback:5432"]),
    ("no-shared-data-services",
     {"services": [{"environment": "production", "kind": "database", "location": "loopback:5432:by_app_production"},
                   {"environment": "staging", "kind": "database", "location": "loopback:5432:by_app_production"}]},
     ["staging and production share database loopback:5432:by_app_production"]),
    ("distinct-secrets", {"same_secrets": [{"key": "API_TOKEN", "environments": ["pr-1", "staging"]}]},
     ["secret API_TOKEN has the same value in every environment that sets it (pr-1, staging)"]),
    ("failed-deploys",
     {"environments": [{"name": "staging", "latest_status": "FAILED", "latest_id": "abcdef123456", "latest_error": "boom"}]},
     ["staging: the latest deployment abcdef12 is FAILED (boom)"]),
    ("previews-after-merge",
     {"environments": [{"name": "pr-7", "ephemeral": True, "merged": True, "branch": "feature/x", "state": "ACTIVE"}]},
     ["pr-7 is still running, but its branch feature/x is merged"]),
    ("previews-after-merge",
     {"environments": [{"name": "pr-8", "ephemeral": True, "merged": True, "branch": None, "state": "ACTIVE"}]},
     ["pr-8 is still running, but its pull request is closed"]),
    ("production-ran-in-staging",
     {"production_commit": {"environment": "production", "commit": "a" * 40, "source": "staging", "ran_in_source": False}},
     [f"production runs {'a' * 12}, which never ran successfully in staging"]),
    ("production-branch-follows",
     {"production_branch": {"environment": "production", "branch": "main", "commit": "a" * 40, "head": "b" * 40,
                            "relation": "diverged"}},
     [f"production runs {'a' * 12}, which its branch main ({'b' * 12}) does not contain: main has commits of its own, "
      f"and its next push would deploy without {'a' * 12}"]),
    ("cost-over-production",  # issue 17: projected $/month from what each environment runs
     {"costs": [{"environment": "production", "production": True, "monthly": 86.5},
                {"environment": "staging", "production": False, "monthly": 86.5},  # as much is not more
                {"environment": "pr-3", "production": False, "monthly": 90.0},
                {"environment": "pr-4", "production": False, "monthly": None}]},  # not deployed: nothing to say
     ["pr-3 is projected at $90.00/month, more than production's $86.50/month"]),
    ("isolation-enforced",
     {"enforcement": {"limits": False, "network": True, "limits_why_not": "not root: cgroups need root",
                      "network_why_not": None}},
     ["resource limits (memory, cpu) are not enforced on this machine: not root: cgroups need root; one environment "
      "can starve the others"]),
    ("isolation-enforced",
     {"enforcement": {"limits": True, "network": False, "limits_why_not": None, "network_why_not": "not root"}},
     ["environments are not network-isolated on this machine: not root"]),
    ("database-storage",
     {"database_storage": [{"environment": "staging", "size_bytes": 900 << 20, "storage_mb": 1024, "percent": 87.9,
                            "warning": "the database uses 87.9% of its 1 GB storage (900.0 MB); PostgreSQL has no "
                                       "hard per-database quota: it keeps growing past it"},
                           {"environment": "production", "size_bytes": 1 << 20, "storage_mb": 1024, "percent": 0.1,
                            "warning": None}]},
     ["staging: the database uses 87.9% of its 1 GB storage (900.0 MB); PostgreSQL has no hard per-database quota: "
      "it keeps growing past it"]),
]


@pytest.mark.parametrize("relation", ["contains", "behind", "missing", "unknown"])
def test_a_production_branch_that_has_not_diverged_is_not_reported(tmp_path, relation) -> None:
    """Behind is the control plane's to fix (git follows promotion), so only a divergence is the user's."""
    row = {"environment": "production", "branch": "main", "commit": "a" * 40, "head": "b" * 40, "relation": relation}
    assert messages(spec_of(tmp_path, GOOD), LIVE_OK | {"production_branch": row}, "production-branch-follows") == []


def test_the_divergence_finding_says_how_to_merge(tmp_path) -> None:
    row = {"environment": "production", "branch": "main", "commit": "a" * 40, "head": "b" * 40, "relation": "diverged"}
    report = policy.evaluate(spec_of(tmp_path, GOOD), LIVE_OK | {"production_branch": row}, [rule("production-branch-follows")])
    assert [(f.severity, f.fix) for f in report.findings] == [
        ("warning", f"merge {'a' * 12} into main (`git fetch branchyard && git checkout main && git merge {'a' * 12}`), "
                    "then `git push branchyard main`")]


@pytest.mark.parametrize(("rule_id", "facts", "expected"), LIVE_CASES, ids=[c[0] for c in LIVE_CASES])
def test_live_rule_trips_and_passes(tmp_path, rule_id, facts, expected) -> None:
    spec = spec_of(tmp_path, GOOD)
    assert messages(spec, LIVE_OK, rule_id) == []
    assert messages(spec, LIVE_OK | facts, rule_id) == expected
    assert policy.evaluate(spec, None, [rule(rule_id)]).skipped == (rule_id,)


def test_errors_sort_first_and_fail_the_report(tmp_path) -> None:
    spec = spec_of(tmp_path, GOOD.replace("approvals = 2", "approvals = 0"))
    report = policy.evaluate(spec, LIVE_OK | {"isolation": ["staging: X equals production's credential (secret X)"]})
    assert [(f.rule, f.severity) for f in report.findings] == [("isolation", "error"), ("promotion-approvals", "warning")]
    assert report.to_dict()["ok"] is False and report.skipped == ()


# --- the isolation guard ---------------------------------------------------------------------------------

PROD_SERVICES = {
    "Postgres": {"DATABASE_URL": "postgresql://by_app_production:pr0d-pass-word@127.0.0.1:5433/by_app_production",
                 "PGPASSWORD": "pr0d-pass-word", "PGHOST": "127.0.0.1", "PGPORT": "5433",
                 "PGDATABASE": "by_app_production"},
    "Redis": {"REDIS_URL": "redis://:r3dis-pass-word@127.0.0.1:6390", "REDISPASSWORD": "r3dis-pass-word"},
}
FACTS = policy.production_facts(secrets={"API_TOKEN": "prod-token-value", "PIN": "1234"}, services=PROD_SERVICES,
                                values={"EXTERNAL_DB": "postgres://ro@analytics.internal/warehouse"})


@pytest.mark.parametrize(("values", "expected"), [
    ({"DATABASE_URL": "postgresql://by_app_staging:s@127.0.0.1:5433/by_app_staging"}, []),
    ({"DATABASE_URL": "postgresql://other:x@localhost:5433/by_app_production"},
     ["staging: DATABASE_URL points at production's database by_app_production on loopback:5433"]),
    ({"DATABASE_URL": "postgresql://by_app_production:pr0d-pass-word@127.0.0.1:5433/by_app_production"},
     ["staging: DATABASE_URL contains production's credential (Postgres.PGPASSWORD)"]),
    ({"REDIS_URL": "redis://:other@localhost:6390/2"}, ["staging: REDIS_URL points at production's Redis on loopback:6390"]),
    ({"REDIS_URL": "redis://:other@127.0.0.1:6391"}, []),
    ({"TOKEN": "prod-token-value"}, ["staging: TOKEN equals production's credential (secret API_TOKEN)"]),
    ({"PIN": "1234"}, []),  # too short to tell apart from chance
    ({"WAREHOUSE": "postgresql://me@analytics.internal:5432/warehouse"},
     ["staging: WAREHOUSE points at production's database warehouse on analytics.internal:5432"]),
    ({"PGHOST": "localhost", "PGPORT": "5433", "PGDATABASE": "by_app_production"},
     ["staging: PGHOST/PGPORT/PGDATABASE point at production's database by_app_production"]),
])
def test_isolation_findings(values, expected) -> None:
    assert policy.isolation_findings("staging", values, FACTS) == expected
    for message in policy.isolation_findings("staging", values, FACTS):
        assert "pass-word" not in message and "token-value" not in message


def test_same_secrets_needs_one_value_everywhere() -> None:
    rows = policy.same_secrets({"production": {"K": "value-one"}, "staging": {"K": "value-one", "L": "x-long-value"},
                                "pr-1": {"K": "value-one", "L": "y-long-value"}})
    assert rows == [{"key": "K", "environments": ["pr-1", "production", "staging"]}]


def _check_cli(cwd: Path, home: Path):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | {"BRANCHYARD_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "branchyard.cli.main", "check", "--json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout), done.stderr


def test_check_without_a_server_runs_the_spec_rules_and_says_what_it_skipped(tmp_path) -> None:
    code, report, _ = _check_cli(EXAMPLE, tmp_path / "home")
    assert code == 0 and report["ok"] is True
    assert report["skipped"] == [r.id for r in policy.RULES if r.scope == "live"]
    assert report["skipped_reason"] == "the control plane is not running"
    app = tmp_path / "app"
    app.mkdir()
    spec_of(app, GOOD, railway='[deploy]\nstartCommand = "python app.py"\n')
    code, report, err = _check_cli(app, tmp_path / "home")
    assert code == 1 and report["ok"] is False
    assert {f["rule"] for f in report["findings"]} == {"health-checks"}
    assert "error: check: 3 policy errors (health-checks)" in err


def test_no_cost_finding_while_production_runs_nothing(tmp_path) -> None:
    costs = [{"environment": "production", "production": True, "monthly": None},
             {"environment": "staging", "production": False, "monthly": 28.25}]
    assert messages(spec_of(tmp_path, GOOD), LIVE_OK | {"costs": costs}, "cost-over-production") == []
