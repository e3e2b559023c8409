"""The `branchyard` remote's rules (git_rules.py): one table, exact verdicts, the messages that say what to do."""

from __future__ import annotations

import dataclasses

import pytest

from branchyard.git_rules import ProductionRun, RefPush, check

OLD, NEW, PROD = "a" * 40, "b" * 40, "c" * 40
PROMOTED = ProductionRun(PROD, "d1234567-dep", "promote", promotion_id="p7654321-promo", source="staging",
                         source_branch="develop")
# A fast-forward push of main (production, protected) by an admin, containing what production runs: accepted.
MAIN = RefPush(ref="refs/heads/main", branch="main", old=OLD, new=NEW, fast_forward=True, environment="production",
               protected=True, production=True, actor="root", role="admin", production_run=PROMOTED)
DEVELOP = RefPush(ref="refs/heads/develop", branch="develop", old=OLD, new=NEW, fast_forward=True,
                  environment="staging", protected=False, production=False, actor="alice", role="member")


def push(base: RefPush, **changes) -> RefPush:
    return dataclasses.replace(base, **changes)


# (case, push, expected rule or None, forbidden)
CASES = [
    ("admin fast-forwards main", MAIN, None, None),
    ("member pushes main", push(MAIN, actor="alice", role="member"), "protected", True),
    ("viewer pushes main", push(MAIN, actor="vic", role="viewer"), "protected", True),
    ("member deletes main", push(MAIN, new=None, actor="alice", role="member"), "protected", True),
    ("member `up`s production", push(MAIN, ref="refs/branchyard/up/production", branch=None, actor="alice",
                                     role="member"), "protected", True),
    ("admin `up`s production with any commit", push(MAIN, ref="refs/branchyard/up/production", branch=None,
                                                    fast_forward=False, contains_production=False), None, None),
    ("member pushes an unprotected production", push(MAIN, protected=False, actor="alice", role="member"), None, None),
    ("member fast-forwards develop", DEVELOP, None, None),
    ("member creates develop", push(DEVELOP, old=None), None, None),
    ("member force-pushes develop", push(DEVELOP, fast_forward=False), "force-push", True),
    ("member force-pushes develop, spec allows", push(DEVELOP, fast_forward=False, allow_force_push=True),
     "force-push", True),
    ("admin force-pushes develop, spec silent", push(DEVELOP, fast_forward=False, role="admin"), "force-push", False),
    ("admin force-pushes develop, spec allows", push(DEVELOP, fast_forward=False, role="admin", allow_force_push=True),
     None, None),
    ("admin force-pushes main, spec allows", push(MAIN, fast_forward=False, allow_force_push=True), None, None),
    ("admin force-pushes main with -o force, spec silent", push(MAIN, fast_forward=False, push_options=("force",)),
     "force-push", False),
    ("member deletes develop", push(DEVELOP, new=None), "deletion", True),
    ("admin deletes develop, spec silent", push(DEVELOP, new=None, role="admin"), "deletion", False),
    ("admin deletes develop, spec allows", push(DEVELOP, new=None, role="admin", allow_deletions=True), None, None),
    ("a preview's branch is free", push(DEVELOP, branch="feature/x", environment=None, fast_forward=False, new=None),
     None, None),
    ("admin drops production's commit", push(MAIN, contains_production=False), "drops-production", False),
    ("admin drops it with -o force", push(MAIN, contains_production=False, push_options=("force",)), None, None),
    ("admin drops it with another option", push(MAIN, contains_production=False, push_options=("ci.skip",)),
     "drops-production", False),
    ("member drops it with -o force (unprotected)", push(MAIN, protected=False, actor="alice", role="member",
                                                       contains_production=False, push_options=("force",)),
     "drops-production", False),
    ("production runs nothing yet", push(MAIN, production_run=None, contains_production=False), None, None),
    ("only production's branch keeps production's commit", push(DEVELOP, production_run=PROMOTED,
                                                              contains_production=False), None, None),
    ("the platform's own actors are not checked", push(MAIN, role=None, actor="github", fast_forward=False,
                                                       contains_production=False), None, None),
]


@pytest.mark.parametrize(("case", "pushed", "rule", "forbidden"), CASES, ids=[c[0] for c in CASES])
def test_the_rules(case, pushed, rule, forbidden) -> None:
    refusal = check(pushed)
    assert (refusal.rule if refusal else None) == rule
    if refusal is not None:
        assert refusal.forbidden is forbidden
        assert "\n" not in refusal.reason


def test_a_members_push_to_a_protected_branch_names_the_permission_and_the_way_there() -> None:
    assert check(push(MAIN, actor="alice", role="member")).reason == (
        "pushing main: permission 'deploy' in protected environment production needs role admin; alice is member: "
        "reach production through `branchyard promote`, or ask an admin")
    assert check(push(MAIN, new=None, actor="alice", role="member")).reason.startswith("deleting main: permission 'deploy'")


def test_a_force_push_says_what_was_dropped_and_what_would_allow_it() -> None:
    assert check(push(DEVELOP, fast_forward=False)).reason == (
        f"non-fast-forward push to develop (staging's branch) is refused: it would drop {OLD[:12]}; pull and merge "
        "(`git pull branchyard develop`), then push again; only an admin may force it, and only with "
        "[github.protection.develop] allow_force_push = true in the branchyard.toml staging runs")
    assert check(push(DEVELOP, fast_forward=False, role="admin")).reason.endswith(
        "then push again; forcing it needs [github.protection.develop] allow_force_push = true in the branchyard.toml "
        "staging runs")


def test_dropping_productions_commit_names_it_and_the_promotion_it_came_from() -> None:
    assert check(push(MAIN, contains_production=False)).reason == (
        f"pushing main: {NEW[:12]} does not contain {PROD[:12]}, which production runs (promotion p7654321 from "
        "staging, deployment d1234567): merge it first (`git pull branchyard develop`) and push again; or override "
        "with `git push -o force branchyard main`")
    by_up = dataclasses.replace(PROMOTED, trigger="up", promotion_id=None, source=None, source_branch=None)
    member = push(MAIN, protected=False, actor="alice", role="member", contains_production=False, production_run=by_up)
    assert check(member).reason.endswith(
        f"(deployment d1234567, by up): merge it first (`git merge {PROD[:12]}`) and push again; an admin may override "
        "with `git push -o force`")
    forced = dataclasses.replace(member, push_options=("force",))
    assert check(forced).reason.endswith("; `-o force` is an admin's; alice is member")
