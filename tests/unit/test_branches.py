"""Which environment a pushed branch deploys to (the user's `environment add --branch` wins over the spec), and the
exact command or spec line printed for a branch that deploys nowhere."""

import pytest

from branchyard.spec.branches import branch_target, mapping_hint, push_hint, unmapped_note
from branchyard.spec.model import EnvironmentDecl, PreviewDecl, ProjectSpec


def spec(**branches: str | None) -> ProjectSpec:
    envs = {name: EnvironmentDecl(name, branch=branch, production=name == "production") for name, branch in branches.items()}
    return ProjectSpec(name="shop", domain=None, strict=False, environments=envs, preview=PreviewDecl())


SEED = spec(production="main", staging="develop")


@pytest.mark.parametrize(
    ("branch", "pinned", "expected"),
    [
        ("main", {}, "production"),
        ("develop", {}, "staging"),
        ("master", {}, None),
        ("master", {"production": "master"}, "production"),  # the user's choice
        ("main", {"production": "master"}, None),  # the user moved production away from the spec's main
        ("release/qa", {"qa": "release/qa"}, "qa"),  # an environment the spec does not declare
        ("develop", {"production": "master"}, "staging"),
    ],
)
def test_branch_target(branch, pinned, expected):
    assert branch_target(branch, SEED, pinned) == expected


@pytest.mark.parametrize(
    ("branch", "pinned", "expected"),
    [
        ("master", {}, "Map it with `branchyard environment add production --branch master`, or in branchyard.toml "
                       "`branch = \"master\"` under [environments.production]; or deploy it as main: "
                       "`git push branchyard master:main`"),
        ("feature/x", {}, "Map it with `branchyard environment add feature-x --branch feature/x`, or in branchyard.toml "
                          "`branch = \"feature/x\"` under [environments.feature-x]"),
        ("main", {"production": "master"}, "production deploys 'master' (set with `environment add`): "
                                           "`git push branchyard main:master`"),
        ("___", {}, "Map it with `branchyard environment add ENVIRONMENT --branch ___`, or in branchyard.toml "
                    "`branch = \"___\"` under [environments.ENVIRONMENT]"),
    ],
)
def test_mapping_hint_names_the_exact_command(branch, pinned, expected):
    assert mapping_hint(branch, SEED, pinned) == expected


def test_unmapped_note_says_stored_then_how_to_map():
    assert unmapped_note("master", SEED, {}).startswith(
        "branch 'master' is not mapped to an environment; stored, not deployed. Map it with `branchyard environment add "
        "production --branch master`")


@pytest.mark.parametrize(
    ("branch", "pinned", "expected"),
    [
        ("main", {}, "deploy production with `git push branchyard main`"),
        ("master", {"production": "master"}, "deploy production with `git push branchyard master`"),
        ("master", {}, "branch 'master' (checked out here) is not mapped to an environment. Map it with `branchyard "
                       "environment add production --branch master`, or in branchyard.toml `branch = \"master\"` under "
                       "[environments.production]; or deploy it as main: `git push branchyard master:main`"),
        (None, {}, "deploy with `git push branchyard main` (production), `git push branchyard develop` (staging)"),
    ],
)
def test_push_hint_for_init(branch, pinned, expected):
    assert push_hint(branch, SEED, pinned) == expected
