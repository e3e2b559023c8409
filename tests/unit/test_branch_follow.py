"""Git follows production (pure): what branch_follow.decide does with every relation of the branch to production."""

from __future__ import annotations

import pytest

from branchyard import branch_follow as bf

OLD, NEW, OTHER = "1" * 40, "2" * 40, "3" * 40
PROMO = "p" * 36


def obs(relation: str, *, head: str | None = OLD, promotion_id: str | None = PROMO, reported: bool = False,
        branch: str | None = "main", commit: str | None = NEW) -> bf.Observed:
    return bf.Observed(environment="production", branch=branch, commit=commit, head=head, relation=relation,
                       promotion_id=promotion_id, reported=reported)


CASES = [
    ("behind: fast-forward", obs(bf.BEHIND), bf.MoveBranch("main", OLD, NEW, PROMO)),
    ("missing: created at the commit", obs(bf.MISSING, head=None), bf.MoveBranch("main", None, NEW, PROMO)),
    ("diverged: reported", obs(bf.DIVERGED, head=OTHER), bf.ReportDiverged("main", OTHER, NEW, PROMO)),
    ("diverged, reported already", obs(bf.DIVERGED, head=OTHER, reported=True),
     bf.Nothing(f"main diverged from {NEW[:12]} (already reported)")),
    ("contains", obs(bf.CONTAINS, head=NEW), bf.Nothing(f"main contains {NEW[:12]}")),
    ("commit not in the repository", obs(bf.UNKNOWN), bf.Nothing(f"{NEW[:12]} is not in the project's repository")),
    ("not a promotion", obs(bf.BEHIND, promotion_id=None), bf.Nothing("production does not run a promoted release")),
    ("no branch", obs(bf.BEHIND, branch=None), bf.Nothing("production does not run a promoted release")),
    ("nothing deployed", obs(bf.MISSING, commit=None), bf.Nothing("production does not run a promoted release")),
]


@pytest.mark.parametrize(("observed", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(observed, expected) -> None:
    assert bf.decide(observed) == expected


def test_messages_name_the_branch_both_commits_and_the_promotion() -> None:
    assert bf.moved_message(bf.MoveBranch("main", OLD, NEW, PROMO)) == (
        f"main fast-forwarded {OLD[:12]} → {NEW[:12]} to follow promotion {PROMO[:8]} (pull it before your next commit "
        "on main)")
    assert bf.moved_message(bf.MoveBranch("main", None, NEW, PROMO)).startswith(f"main fast-forwarded (none) → {NEW[:12]}")
    assert bf.diverged_message(bf.ReportDiverged("main", OTHER, NEW, PROMO), "production") == (
        f"production runs {NEW[:12]} (promotion {PROMO[:8]}), which main ({OTHER[:12]}) does not contain, and main has "
        "commits of its own: the next push of main would deploy without the promoted changes; merge "
        f"{NEW[:12]} into main and push it")
