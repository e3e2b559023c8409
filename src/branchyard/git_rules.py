"""The rules of the `branchyard` git remote (pure): whether one pushed ref update is accepted, and if not, why.

Checked for a user's push (a local path or over HTTP(S)) before anything is exported or queued; GitHub's own
branch protection governs what reaches us through webhooks, so the platform's actors (no role) are not checked.

- **protected** — a push (or deletion) of a protected environment's branch, or an `up` of it, is an admin's:
  a member reaches production through a promotion.
- **force-push** — a non-fast-forward update of a persistent environment's branch (production's main, staging's
  develop, any other persistent environment's; previews' branches are free) is refused unless the pusher is an
  admin and `[github.protection.<branch>] allow_force_push = true` (the seed: no force push). Deleting such a
  branch likewise needs an admin and `allow_deletions = true`.
- **drops-production** — a push to production's branch whose commit does not contain the commit production
  runs (a promotion from staging, an `up`) would deploy production without it; refused naming that commit. An
  admin overrides it with `git push -o force` (a push option: `-o force`, not `--force`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .access import ADMIN

FORCE_OPTION = "force"  # `git push -o force`: an admin's override of the drops-production rule


@dataclass(frozen=True)
class ProductionRun:
    """What production runs now, and where it came from (for the message)."""

    commit: str
    deployment_id: str
    trigger: str  # push | up | promote | rollback | redeploy | webhook …
    promotion_id: str | None = None  # the promotion that deployed it, when it was one
    source: str | None = None  # the promotion's source environment
    source_branch: str | None = None  # the branch that environment deploys

    def described(self) -> str:
        if self.promotion_id:
            return f"promotion {self.promotion_id[:8]} from {self.source}, deployment {self.deployment_id[:8]}"
        return f"deployment {self.deployment_id[:8]}, by {self.trigger}"


@dataclass(frozen=True)
class RefPush:
    """The facts about one pushed ref the rules decide from; the controller gathers them from git and the store."""

    ref: str  # refs/heads/main, refs/branchyard/up/production
    branch: str | None  # main; None for a ref that is not a branch (an `up`)
    old: str | None  # the ref's value before the push (the repository's, not the client's word); None: created
    new: str | None  # None: deleted
    fast_forward: bool  # `new` contains `old` (True for a creation)
    environment: str | None  # the persistent environment the ref deploys; None: a preview's or nobody's
    protected: bool  # that environment is protected
    production: bool  # that environment is production
    actor: str
    role: str | None  # the actor's role; None: the platform itself (github, system)
    allow_force_push: bool = False  # [github.protection.<branch>] of the spec the environment runs
    allow_deletions: bool = False
    push_options: tuple[str, ...] = ()
    production_run: ProductionRun | None = None  # what production runs, when the ref is its branch
    contains_production: bool = True  # `new` contains production_run.commit


@dataclass(frozen=True)
class Refusal:
    rule: str  # protected | force-push | deletion | drops-production
    reason: str  # one line that says what to do
    forbidden: bool  # the pusher's role is what is missing (HTTP 403); else the branch's state (409)


def check(push: RefPush) -> Refusal | None:
    """None when the push is accepted; else the first rule it breaks."""
    if push.role is None or push.environment is None:
        return None
    admin = push.role == ADMIN
    env, branch = push.environment, push.branch
    what = f"deleting {branch}" if push.new is None else (f"pushing {branch}" if branch else f"`up` of {env}")
    if push.protected and not admin:
        return Refusal("protected", f"{what}: permission 'deploy' in protected environment {env} needs role admin; "
                       f"{push.actor} is {push.role}: reach {env} through `branchyard promote`, or ask an admin",
                       forbidden=True)
    if branch is None:  # an `up` names its environment and any commit: it moves no branch
        return None
    owner = f"{env}'s branch"
    if push.new is None:
        if admin and push.allow_deletions:
            return None
        return Refusal("deletion", f"deleting {branch} ({owner}) is refused: only an admin may, and only when the "
                       f"branchyard.toml {env} runs sets [github.protection.{branch}] allow_deletions = true",
                       forbidden=not admin)
    if not push.fast_forward and not (admin and push.allow_force_push):
        setting = f"[github.protection.{branch}] allow_force_push = true in the branchyard.toml {env} runs"
        force = f"forcing it needs {setting}" if admin else f"only an admin may force it, and only with {setting}"
        return Refusal("force-push", f"non-fast-forward push to {branch} ({owner}) is refused: it would drop "
                       f"{(push.old or '')[:12]}; pull and merge (`git pull branchyard {branch}`), then push again; "
                       f"{force}", forbidden=not admin)
    run = push.production_run
    if push.production and run is not None and not push.contains_production:
        forced = FORCE_OPTION in push.push_options
        if admin and forced:
            return None
        merge = f"`git pull branchyard {run.source_branch}`" if run.source_branch else f"`git merge {run.commit[:12]}`"
        if admin:
            override = f"or override with `git push -o force branchyard {branch}`"
        elif forced:
            override = f"`-o force` is an admin's; {push.actor} is {push.role}"
        else:
            override = "an admin may override with `git push -o force`"
        return Refusal("drops-production", f"pushing {branch}: {(push.new or '')[:12]} does not contain "
                       f"{run.commit[:12]}, which {env} runs ({run.described()}): merge it first ({merge}) and push "
                       f"again; {override}", forbidden=False)
    return None
