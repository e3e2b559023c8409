"""Git follows production (pure): what to do with production's branch once a promotion put a commit live.

After `promote staging production`, production runs develop's commit while `main` (production's branch in the
project's own repository) still points at the old one; the next `git push branchyard main` would then deploy a tree
without the promoted changes. So the branch follows: fast-forwarded when it can be (as GitHub's merge of the
promotion pull request would), reported once when it cannot (someone pushed to `main` what develop lacks).

`decide` takes what was observed and returns one action; controller/git_follow.py observes and applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

# How production's branch head relates to the commit production runs.
CONTAINS = "contains"  # the head is the commit, or a descendant of it: nothing to do
BEHIND = "behind"  # the head is a strict ancestor of the commit: a fast-forward reaches it
DIVERGED = "diverged"  # neither contains the other: only a merge (by a person) reconciles them
MISSING = "missing"  # the branch does not exist yet: creating it at the commit is a fast-forward from nothing
UNKNOWN = "unknown"  # the commit is not in the repository (or git failed): nothing can be said
RELATIONS = (CONTAINS, BEHIND, DIVERGED, MISSING, UNKNOWN)


@dataclass(frozen=True)
class Observed:
    """Production of one project, as git_follow observed it."""

    environment: str
    branch: str | None  # production's branch (None: it deploys no branch)
    commit: str | None  # the commit production runs (None: nothing deployed)
    head: str | None  # the branch's head in the project's repository (None: no such branch)
    relation: str  # one of RELATIONS
    promotion_id: str | None  # the SUCCESS promotion whose deployment production runs (None: not a promotion)
    reported: bool = False  # a git.branch_diverged event was already recorded for production's current deployment


@dataclass(frozen=True)
class Nothing:
    reason: str


@dataclass(frozen=True)
class MoveBranch:
    """`git update-ref refs/heads/<branch> <new> <old>`: atomic against a push that moved it meanwhile."""

    branch: str
    old: str | None  # None: the branch is created
    new: str
    promotion_id: str


@dataclass(frozen=True)
class ReportDiverged:
    branch: str
    head: str
    commit: str
    promotion_id: str


Action = Nothing | MoveBranch | ReportDiverged


def decide(obs: Observed) -> Action:
    """Move the branch when production runs a promoted commit the branch can fast-forward to; report a divergence
    once per production deployment; otherwise nothing (a push to the branch deploys it: there is nothing to follow)."""
    if obs.promotion_id is None or obs.commit is None or obs.branch is None:
        return Nothing("production does not run a promoted release")
    if obs.relation == CONTAINS:
        return Nothing(f"{obs.branch} contains {obs.commit[:12]}")
    if obs.relation in (BEHIND, MISSING):
        return MoveBranch(obs.branch, obs.head if obs.relation == BEHIND else None, obs.commit, obs.promotion_id)
    if obs.relation == DIVERGED and obs.head is not None:
        if obs.reported:
            return Nothing(f"{obs.branch} diverged from {obs.commit[:12]} (already reported)")
        return ReportDiverged(obs.branch, obs.head, obs.commit, obs.promotion_id)
    return Nothing(f"{obs.commit[:12]} is not in the project's repository")


def moved_message(action: MoveBranch) -> str:
    """The git.branch_moved event's message."""
    old = action.old[:12] if action.old else "(none)"
    return (f"{action.branch} fast-forwarded {old} → {action.new[:12]} to follow promotion {action.promotion_id[:8]} "
            f"(pull it before your next commit on {action.branch})")


def diverged_message(action: ReportDiverged, environment: str) -> str:
    """The git.branch_diverged event's message: what production runs, what the branch lacks, what to do."""
    return (f"{environment} runs {action.commit[:12]} (promotion {action.promotion_id[:8]}), which {action.branch} "
            f"({action.head[:12]}) does not contain, and {action.branch} has commits of its own: the next push of "
            f"{action.branch} would deploy without the promoted changes; merge {action.commit[:12]} into "
            f"{action.branch} and push it")
