"""Branch protection as code: the spec's branches → the bodies of GitHub's "update branch protection" call.

Pure: `render(spec)` reads nothing but the spec. Defaults are the seed's branch rules:

- the production environment's branch (main): 2 approvals, required status checks, no force push, no deletion;
  its required check is `branchyard/<staging>` — the commit ran successfully in staging first;
- every other persistent environment's branch (develop): 1 approval, required checks; its required check is
  `branchyard/preview` when the project has pull-request previews (the PR's preview deployed);
- a branch named only in `[github.protection.<branch>]`: 1 approval, no required checks.

`[github.protection.<branch>]` overrides any of these per branch; `enabled = false` leaves a branch alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from ..spec.model import PR_TEMPLATE, ProjectSpec, ProtectionDecl

PREVIEW_CONTEXT = "branchyard/preview"


def status_context(environment: str, *, preview: bool) -> str:
    """The commit status context branchyard posts for a deploy: branchyard/<env>, branchyard/preview for previews."""
    return PREVIEW_CONTEXT if preview else f"branchyard/{environment}"


@dataclass(frozen=True)
class BranchRule:
    """The protection of one branch, fully resolved."""

    branch: str
    environment: str | None  # the persistent environment the branch deploys, if any
    required_approvals: int
    required_checks: tuple[str, ...]
    strict: bool = True  # the PR's branch must be up to date with the base before merging
    enforce_admins: bool = False  # the seed: admins may still force-push in an emergency
    dismiss_stale_reviews: bool = True
    require_code_owner_reviews: bool = False
    allow_force_push: bool = False
    allow_deletions: bool = False

    def body(self) -> dict[str, Any]:
        """The JSON body of PUT /repos/{owner}/{repo}/branches/{branch}/protection."""
        checks = {"strict": self.strict, "contexts": list(self.required_checks)} if self.required_checks else None
        return {
            "required_status_checks": checks,
            "enforce_admins": self.enforce_admins,
            "required_pull_request_reviews": {
                "dismiss_stale_reviews": self.dismiss_stale_reviews,
                "require_code_owner_reviews": self.require_code_owner_reviews,
                "required_approving_review_count": self.required_approvals,
            },
            "restrictions": None,
            "allow_force_pushes": self.allow_force_push,
            "allow_deletions": self.allow_deletions,
        }

    def to_dict(self, repository: str | None) -> dict[str, Any]:
        """JSON form for `github protect --json`: the rule and the exact request it becomes."""
        owner_repo = repository or "{owner}/{repo}"
        rule = asdict(self)
        rule["required_checks"] = list(self.required_checks)
        return rule | {
            "request": {
                "method": "PUT",
                "path": f"/repos/{owner_repo}/branches/{quote(self.branch, safe='')}/protection",
                "body": self.body(),
            }
        }


def _staging(spec: ProjectSpec) -> str | None:
    """The environment production's commits come through: "staging" if declared, else the only other one."""
    others = [d for d in spec.environments.values() if d.name != PR_TEMPLATE and not d.production and d.branch]
    named = [d.name for d in others if d.name == "staging"]
    if named:
        return named[0]
    return others[0].name if len(others) == 1 else None


def _defaults(spec: ProjectSpec, branch: str, environment: str | None, production: bool) -> BranchRule:
    if production:
        staging = _staging(spec)
        checks = (status_context(staging, preview=False),) if staging else ()
        return BranchRule(branch, environment, required_approvals=2, required_checks=checks)
    if environment is not None:
        previews = spec.preview is not None and spec.preview.trigger == "pr"
        return BranchRule(branch, environment, required_approvals=1, required_checks=(PREVIEW_CONTEXT,) if previews else ())
    return BranchRule(branch, None, required_approvals=1, required_checks=())


def _override(rule: BranchRule, decl: ProtectionDecl | None) -> BranchRule:
    if decl is None:
        return rule
    changes = {k: v for k, v in asdict(decl).items() if k not in ("branch", "enabled") and v is not None}
    if "required_checks" in changes:
        changes["required_checks"] = tuple(changes["required_checks"])
    return BranchRule(**(asdict(rule) | changes))


def render(spec: ProjectSpec) -> list[BranchRule]:
    """Every branch to protect, production's first, then the other environments', then extra tables."""
    envs = [d for d in spec.environments.values() if d.name != PR_TEMPLATE and d.branch]
    envs.sort(key=lambda d: not d.production)
    rules: list[BranchRule] = []
    seen: set[str] = set()
    for decl in envs:
        seen.add(decl.branch)
        rules.append(_override(_defaults(spec, decl.branch, decl.name, decl.production), spec.github_protection.get(decl.branch)))
    for branch, decl in spec.github_protection.items():
        if branch not in seen:
            rules.append(_override(_defaults(spec, branch, None, False), decl))
    disabled = {b for b, d in spec.github_protection.items() if d.enabled is False}
    return [r for r in rules if r.branch not in disabled]
