"""Branch protection as code: [github.protection.<branch>] → the bodies of GitHub's branch protection call."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard.errors import SpecError
from branchyard.github.protection import BranchRule, render, status_context
from branchyard.spec import load_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"

SEED = """
[project]
name = "app"

[github]
repository = "owner/app"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"

[environments.pr]
branches = ["feature/*"]
base = "staging"
"""


def spec_of(tmp_path: Path, text: str):
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(text).lstrip("\n"))
    return load_project(tmp_path)


def rules(tmp_path: Path, extra: str = "", base: str = SEED) -> list[BranchRule]:
    return render(spec_of(tmp_path, base + textwrap.dedent(extra)))


def test_the_seed_rules_for_main_and_develop(tmp_path):
    assert rules(tmp_path) == [
        BranchRule("main", "production", required_approvals=2, required_checks=("branchyard/staging",)),
        BranchRule("develop", "staging", required_approvals=1, required_checks=("branchyard/preview",)),
    ]


def test_the_example_app_renders_the_seed_rules():
    main, develop = render(load_project(EXAMPLE))
    assert main.body() == {
        "required_status_checks": {"strict": True, "contexts": ["branchyard/staging"]},
        "enforce_admins": False,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": True, "require_code_owner_reviews": False, "required_approving_review_count": 2,
        },
        "restrictions": None,
        "allow_force_pushes": False,
        "allow_deletions": False,
    }  # fmt: skip
    assert develop.body()["required_pull_request_reviews"]["required_approving_review_count"] == 1
    assert develop.body()["required_status_checks"] == {"strict": True, "contexts": ["branchyard/preview"]}
    assert main.to_dict("owner/yoto-smart-stream")["request"]["path"] == "/repos/owner/yoto-smart-stream/branches/main/protection"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[github.protection.main]\nrequired_approvals = 3\nrequired_checks = ["tests", "lint", "tests"]\n',
         BranchRule("main", "production", required_approvals=3, required_checks=("tests", "lint"))),
        ("[github.protection.main]\nrequired_checks = []\n",
         BranchRule("main", "production", required_approvals=2, required_checks=())),
        ("[github.protection.main]\nallow_force_push = true\nenforce_admins = true\nstrict = false\n",
         BranchRule("main", "production", required_approvals=2, required_checks=("branchyard/staging",),
                    allow_force_push=True, enforce_admins=True, strict=False)),
        ("[github.protection.main]\ndismiss_stale_reviews = false\nrequire_code_owner_reviews = true\nallow_deletions = true\n",
         BranchRule("main", "production", required_approvals=2, required_checks=("branchyard/staging",),
                    dismiss_stale_reviews=False, require_code_owner_reviews=True, allow_deletions=True)),
    ],
)
def test_overrides_replace_the_defaults_key_by_key(tmp_path, extra, expected):
    assert rules(tmp_path, extra)[0] == expected


def test_disabled_and_extra_branches(tmp_path):
    found = rules(tmp_path, "[github.protection.develop]\nenabled = false\n[github.protection.release]\nrequired_approvals = 0\n")
    assert found == [
        BranchRule("main", "production", required_approvals=2, required_checks=("branchyard/staging",)),
        BranchRule("release", None, required_approvals=0, required_checks=()),
    ]


def test_no_checks_means_no_required_status_checks_object(tmp_path):
    rule = rules(tmp_path, "[github.protection.main]\nrequired_checks = []\n")[0]
    assert rule.body()["required_status_checks"] is None


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        # Only production: nothing to require of main but reviews.
        ('[project]\nname = "a"\n', [BranchRule("main", "production", 2, ())]),
        # One other environment, not called staging: it is the one main's commits come through.
        ('[project]\nname = "a"\n[environments.production]\nbranch = "main"\n[environments.qa]\nbranch = "qa"\n',
         [BranchRule("main", "production", 2, ("branchyard/qa",)), BranchRule("qa", "qa", 1, ())]),
        # Previews per branch post no PR status: develop requires none by default.
        ('[project]\nname = "a"\n[environments.production]\nbranch = "main"\n[environments.staging]\nbranch = "develop"\n'
         '[environments.pr]\ntrigger = "branch"\n',
         [BranchRule("main", "production", 2, ("branchyard/staging",)), BranchRule("develop", "staging", 1, ())]),
    ],
)
def test_defaults_follow_the_declared_environments(tmp_path, base, expected):
    assert rules(tmp_path, base=base) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[github.protection.main]\nrequired_approvals = 7\n",
         "branchyard.toml: github.protection.main.required_approvals: expected a whole number from 0 to 6 (GitHub's limit), "
         "got 7 (line 17)"),
        ("[github.protection.main]\nrequired_approvals = -1\n",
         "branchyard.toml: github.protection.main.required_approvals: expected a whole number of at least 0, got -1 (line 17)"),
        ('[github.protection.main]\nrequired_checks = "tests"\n',
         'branchyard.toml: github.protection.main.required_checks: expected a list of status check names (non-empty strings), '
         'got "tests" (line 17)'),
        ('[github.protection.main]\nrequired_checks = ["tests", ""]\n',
         'branchyard.toml: github.protection.main.required_checks: expected a list of status check names (non-empty strings), '
         'got ["tests", ""] (line 17)'),
        ('[github.protection.main]\nallow_force_push = "sometimes"\n',
         'branchyard.toml: github.protection.main.allow_force_push: expected true or false, got "sometimes" (line 17)'),
        ('[github.protection."release/*"]\nrequired_approvals = 1\n',
         "branchyard.toml: github.protection.release/*: branch patterns are not supported: name one branch per table (line 16)"),
        ('[github.protection."-x"]\nrequired_approvals = 1\n',
         'branchyard.toml: github.protection.-x: "-x" is not a valid git branch name (line 16)'),
    ],
)
def test_bad_values_are_path_scoped_errors(tmp_path, extra, message):
    with pytest.raises(SpecError) as err:
        rules(tmp_path, extra)
    assert str(err.value) == message


def test_protection_must_be_a_table(tmp_path):
    base = SEED.replace('[github]\nrepository = "owner/app"\n', '[github]\nrepository = "owner/app"\nprotection = 3\n')
    with pytest.raises(SpecError) as err:
        rules(tmp_path, base=base)
    assert str(err.value) == "branchyard.toml: github.protection: expected a table, got 3 (line 6)"


def test_unknown_keys_are_warnings_with_a_suggestion(tmp_path):
    spec = spec_of(tmp_path, SEED + "[github.protection.main]\nrequired_aprovals = 3\n")
    assert spec.warnings == (
        'branchyard.toml: github.protection.main.required_aprovals: unknown key (did you mean "required_approvals"?)',
    )


def test_status_context():
    assert status_context("staging", preview=False) == "branchyard/staging"
    assert status_context("pr-12", preview=True) == "branchyard/preview"
