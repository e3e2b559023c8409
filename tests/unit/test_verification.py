"""Post-deploy tests, the pure parts: `[environments.<env>.tests]` parsed (exact values, one-line errors naming
file/field/value), the tier's decision, what a restart does with an unfinished result, the verdict of several
commands, and what GitHub is told."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard import verification as vf
from branchyard.errors import SpecError
from branchyard.github.feedback import CommitStatus, Facts, PullRequestComment, plan
from branchyard.spec import load_project
from branchyard.spec.model import TestsSpec

ENVS = """
[project]
name = "app"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
{staging}

[environments.pr]
branches = ["feature/*"]
{pr}
"""


def spec_of(tmp_path: Path, staging: str = "", pr: str = ""):
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(ENVS).format(staging=staging, pr=pr))
    return load_project(tmp_path)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[environments.staging.tests]\ncommands = ["pytest tests/smoke"]', TestsSpec(("pytest tests/smoke",), 300)),
        ('[environments.staging.tests]\ncommands = "make e2e"\ntimeout = 900', TestsSpec(("make e2e",), 900)),
        ('[environments.staging.tests]\ncommands = ["a", " b "]\ntimeout = 1', TestsSpec(("a", "b"), 1)),
        ('[environments.staging.tests]\ncommands = ["a"]\ntimeout = 3600', TestsSpec(("a",), 3600)),
        ("", None),
    ],
)
def test_tests_table_parses_to_exact_values(tmp_path, table, expected):
    spec = spec_of(tmp_path, staging=table)
    assert spec.environments["staging"].tests == expected
    assert spec.tests_for("staging") == expected
    assert spec.tests_for("production") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[environments.staging.tests]\ntimeout = 30",
         'branchyard.toml: environments.staging.tests.commands: is required, e.g. commands = ["pytest tests/smoke"]'),
        ('[environments.staging.tests]\ncommands = []',
         'branchyard.toml: environments.staging.tests.commands: expected at least one command, e.g. '
         '["pytest tests/smoke"], got []'),
        ('[environments.staging.tests]\ncommands = ["ok", ""]',
         'branchyard.toml: environments.staging.tests.commands: expected a command or a list of commands, e.g. '
         '["pytest tests/smoke"], got ["ok", ""]'),
        ("[environments.staging.tests]\ncommands = 3",
         'branchyard.toml: environments.staging.tests.commands: expected a command or a list of commands, e.g. '
         '["pytest tests/smoke"], got 3'),
        ('[environments.staging.tests]\ncommands = "x"\ntimeout = 3601',
         "branchyard.toml: environments.staging.tests.timeout: expected integer seconds from 1 to 3600, got 3601"),
        ('[environments.staging.tests]\ncommands = "x"\ntimeout = 0',
         "branchyard.toml: environments.staging.tests.timeout: expected"),
        ('[environments.staging]\ntests = "pytest"',
         "branchyard.toml: environments.staging.tests: expected a table"),
    ],
)
def test_a_bad_tests_table_is_one_line_naming_file_field_value(tmp_path, table, message):
    staging = table.replace("[environments.staging]\n", "") if table.startswith("[environments.staging]\n") else table
    with pytest.raises(SpecError) as err:
        spec_of(tmp_path, staging=staging)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_an_unknown_key_is_a_warning_with_a_suggestion(tmp_path):
    spec = spec_of(tmp_path, staging='[environments.staging.tests]\ncommands = "x"\ntimeot = 5')
    assert any("environments.staging.tests.timeot: unknown key" in w and "timeout" in w for w in spec.warnings)


def test_previews_take_the_pr_templates_tests(tmp_path):
    spec = spec_of(tmp_path, pr='[environments.pr.tests]\ncommands = "./smoke.sh"\ntimeout = 60')
    assert spec.tests_for("pr-12") == TestsSpec(("./smoke.sh",), 60)
    assert spec.tests_for("staging") is None


@pytest.mark.parametrize(
    ("production", "passed", "is_rollback", "still_current", "action"),
    [
        (True, True, False, True, vf.KEEP),
        (True, False, False, True, vf.ROLLBACK),
        (True, False, True, True, vf.MARK_UNHEALTHY),  # a rollback that fails its checks is not rolled back again
        (True, False, False, False, vf.MARK_UNHEALTHY),  # a newer deployment took over: nothing to undo
        (False, True, False, True, vf.KEEP),
        (False, False, False, True, vf.MARK_UNHEALTHY),  # staging and previews: keep serving, marked
        (False, False, True, True, vf.MARK_UNHEALTHY),
        (False, False, False, False, vf.MARK_UNHEALTHY),
    ],
)
def test_the_tier_decides(production, passed, is_rollback, still_current, action):
    assert vf.decide(production=production, passed=passed, is_rollback=is_rollback, still_current=still_current) == action


@pytest.mark.parametrize(
    ("status", "declared", "serving", "todo"),
    [
        (vf.RUNNING, True, True, vf.RUNNING),  # a crash while they ran: run them again
        (vf.RUNNING, False, True, vf.SKIPPED),  # the release declares none (cannot happen unless its files changed)
        (vf.RUNNING, True, False, vf.SKIPPED),  # replaced meanwhile: never lost, never run against the wrong deployment
        (None, True, True, vf.RUNNING),  # the switch committed, the verifier had not started
        (None, False, True, vf.SKIPPED),
        (None, True, False, vf.SKIPPED),
        (vf.PASSED, True, True, None),
        (vf.FAILED, True, True, None),
        (vf.SKIPPED, True, True, None),
    ],
)
def test_a_restart_resolves_what_it_finds(status, declared, serving, todo):
    assert vf.on_restart(status, declared=declared, serving=serving) == todo


@pytest.mark.parametrize(
    ("results", "verdict"),
    [
        ([], vf.Verdict(True, "no test command")),
        ([vf.CommandResult("a", True, "`a` passed in 0.1s: ok")], vf.Verdict(True, "`a` passed in 0.1s: ok")),
        ([vf.CommandResult("a", True, "a ok"), vf.CommandResult("b", True, "b ok")],
         vf.Verdict(True, "2 commands passed; last: b ok")),
        ([vf.CommandResult("a", True, "a ok"), vf.CommandResult("b", False, "`b` exited with code 3:\nboom")],
         vf.Verdict(False, "`b` exited with code 3: boom")),
        ([vf.CommandResult("a", False, "x" * 400)], vf.Verdict(False, "x" * 297 + "...")),
    ],
)
def test_the_verdict_of_the_commands(results, verdict):
    assert vf.verdict(results) == verdict


@pytest.mark.parametrize(("status", "shown"), [(vf.FAILED, "UNHEALTHY"), (vf.PASSED, ""), (vf.RUNNING, ""), (None, "")])
def test_label(status, shown):
    assert vf.label(status) == shown


FACTS = Facts(project="p", repository="o/r", environment="staging", url="http://p-staging.localhost", sha="a" * 40,
              deployment_id="d1")
PREVIEW = Facts(project="p", repository="o/r", environment="pr-7", url="http://p-pr-7.localhost", sha="b" * 40,
                deployment_id="d2", preview=True, pr_number=7)


@pytest.mark.parametrize(
    ("kind", "facts", "state", "context", "description"),
    [
        ("deploy.tests_started", FACTS, "pending", "branchyard/staging/tests", "Post-deploy tests running in staging"),
        ("deploy.tests_passed", FACTS, "success", "branchyard/staging/tests", "Post-deploy tests passed in staging"),
        ("deploy.tests_failed", FACTS, "failure", "branchyard/staging/tests",
         "Post-deploy tests failed in staging: exit 1"),
        ("deploy.tests_failed", PREVIEW, "failure", "branchyard/preview/tests",
         "Post-deploy tests failed in pr-7: exit 1"),
    ],
)
def test_github_gets_a_commit_status_of_its_own(kind, facts, state, context, description):
    actions = plan(kind, "exit 1", facts)
    statuses = [a for a in actions if isinstance(a, CommitStatus)]
    assert statuses == [CommitStatus("o/r", facts.sha, state, context, description, target_url=facts.url)]


def test_the_preview_comment_shows_the_tests():
    (comment,) = [a for a in plan("deploy.tests_failed", "`./smoke` exited with code 1: no", PREVIEW)
                  if isinstance(a, PullRequestComment)]
    assert "| **Tests** | ❌ failed |" in comment.body
    assert "Post-deploy tests failed: `./smoke` exited with code 1: no" in comment.body
    assert "http://p-pr-7.localhost" in comment.body
    (passed,) = [a for a in plan("deploy.tests_passed", "ok", PREVIEW) if isinstance(a, PullRequestComment)]
    assert "| **Tests** | ✅ passed |" in passed.body and "✅ live" in passed.body


@pytest.mark.parametrize(
    ("status", "production", "is_rollback", "still_current", "reported", "owed"),
    [
        (vf.FAILED, True, False, True, False, True),  # the crash came between the record and the rollback
        (vf.FAILED, True, False, True, True, False),  # rolled back (or said why it could not): once only
        (vf.FAILED, True, True, True, False, False),
        (vf.FAILED, True, False, False, False, False),
        (vf.FAILED, False, False, True, False, False),
        (vf.PASSED, True, False, True, False, False),
        (vf.RUNNING, True, False, True, False, False),
    ],
)
def test_a_rollback_a_crash_cut_off_is_owed(status, production, is_rollback, still_current, reported, owed):
    assert vf.rollback_owed(status, production=production, is_rollback=is_rollback, still_current=still_current,
                            reported=reported) is owed
