"""The `branchyard` remote's rules, applied: the facts of one pushed ref from git and the store, the verdict of
git_rules.py (pure), a `push.refused` event and a one-line error when it refuses.

Every fact comes from what the control plane already holds, never from the pushed commit: the pusher writes that
commit's branchyard.toml, so it cannot say which environment its branch deploys, whether that environment is
protected, or that force pushes are allowed. Those come from the environments' rows (their branch and
`protected`, as deployed) and from the branchyard.toml of the release each environment runs now; a change to
them takes a deploy that passes these rules first. Likewise the ref's old value is read from the repository,
not taken from the request. The one thing the pushed files do decide, the environment an unknown branch maps to,
is checked again once known (`check_mapped`): deploying there needs the permission as any push would.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import git_rules, names
from ..access import Actor
from ..build import release
from ..errors import BranchyardError, Conflict, Forbidden
from ..spec import load_project
from ..spec.model import ProtectionDecl
from ..store import models as m
from ..store.db import Store
from ..triggers import gitremote

ZERO_SHA = "0" * 40  # git's name for "no commit": a ref created (old) or deleted (new)
UP_REF_PREFIX = "refs/branchyard/up/"  # `branchyard up -e ENV` pushes HEAD here


class PushRules:
    def __init__(self, store: Store) -> None:
        self.store = store

    def check(self, project: str, repo: Path, ref: str, new: str, git_env: dict[str, str], *, actor: Actor,
              push_options: tuple[str, ...] = ()) -> None:
        """Forbidden (the pusher's role) or Conflict (the branch's state) with one line, unless the push may go on."""
        if not actor.is_user:  # GitHub's deliveries: GitHub's branch protection governs them
            return
        facts = self.facts(project, repo, ref, new, git_env, actor=actor, push_options=push_options)
        if facts is not None:
            self._refuse(project, facts, git_rules.check(facts), actor)

    def check_mapped(self, project: str, ref: str, new: str, env_name: str, *, actor: Actor) -> None:
        """The environment the pushed commit's own files map the ref to (`check` knows the one the control plane
        runs): a commit that declares `branch = "x"` for production must not make a member's push of x deploy
        production. Forbidden unless the pusher may deploy there; an environment that does not exist yet is not
        protected (nothing runs there to protect)."""
        if not actor.is_user:
            return
        with self.store.session() as s:
            env = self.store.find_environment(s, self.store.project(s, project), env_name)
            protected = bool(env is not None and env.protected)
        branch = names.branch_from_ref(ref) if ref.startswith("refs/heads/") else None
        facts = git_rules.RefPush(ref=ref, branch=branch, old=None, new=new, fast_forward=True, environment=env_name,
                                  protected=protected, production=False, actor=actor.name, role=actor.role)
        self._refuse(project, facts, git_rules.check(facts), actor)

    def _refuse(self, project: str, facts: git_rules.RefPush, refusal: git_rules.Refusal | None, actor: Actor) -> None:
        if refusal is None:
            return
        with self.store.session() as s:
            self.store.record(s, project, "push.refused", f"{facts.ref}: {refusal.reason}", environment=facts.environment,
                              actor=actor)
        raise (Forbidden if refusal.forbidden else Conflict)(refusal.reason)

    def facts(self, project: str, repo: Path, ref: str, new: str, git_env: dict[str, str], *, actor: Actor,
              push_options: tuple[str, ...] = ()) -> git_rules.RefPush | None:
        """What the rules decide from; None for a ref no environment can be deployed from (a tag, a note)."""
        if ref.startswith(UP_REF_PREFIX):
            branch, env_name = None, names.environment_name(ref[len(UP_REF_PREFIX):])
        elif ref.startswith("refs/heads/"):
            branch, env_name = names.branch_from_ref(ref), None
        else:
            return None
        pushed = None if new == ZERO_SHA else new
        old = gitremote.ref_value(repo, ref) if branch is not None else None
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name) if env_name else _deployed_by(s, p, branch or "")
            if env is None or env.ephemeral:  # a preview's branch, or one no environment deploys yet: free
                return _free(ref, branch, old, pushed, actor, push_options)
            current = self.store.current_deployment(s, env)
            protection = _protection(current, branch) if branch else ProtectionDecl(branch="")
            run = _production_run(s, p, current) if env.production and pushed and branch else None
            env_name, protected, production = env.name, env.protected, env.production
        fast_forward = old is None or pushed is None or gitremote.contains(repo, pushed, old, git_env=git_env)
        contains = run is None or pushed is None or run.commit == pushed or gitremote.contains(
            repo, pushed, run.commit, git_env=git_env)
        return git_rules.RefPush(
            ref=ref, branch=branch, old=old, new=pushed, fast_forward=fast_forward, environment=env_name,
            protected=protected, production=production, actor=actor.name, role=actor.role,
            allow_force_push=bool(protection.allow_force_push), allow_deletions=bool(protection.allow_deletions),
            push_options=push_options, production_run=run, contains_production=contains)


def _free(ref: str, branch: str | None, old: str | None, new: str | None, actor: Actor,
          push_options: tuple[str, ...]) -> git_rules.RefPush:
    return git_rules.RefPush(ref=ref, branch=branch, old=old, new=new, fast_forward=True, environment=None,
                             protected=False, production=False, actor=actor.name, role=actor.role,
                             push_options=push_options)


def _deployed_by(s: Session, p: m.Project, branch: str) -> m.Environment | None:
    """The persistent environment that deploys `branch` as the control plane knows it: the one the user pinned to
    it (`environment add --branch`) first, else the one whose recorded branch it is."""
    rows = s.scalars(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.branch == branch,
                                                 m.Environment.ephemeral.is_(False))).all()
    return min(rows, key=lambda e: (not e.branch_pinned, e.name), default=None)


def _protection(current: m.Deployment | None, branch: str) -> ProtectionDecl:
    """[github.protection.<branch>] of the branchyard.toml the environment runs (nothing set: the seed's no)."""
    release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
    if release_dir is not None and release.release_complete(release_dir):
        try:
            return load_project(release_dir).github_protection.get(branch) or ProtectionDecl(branch=branch)
        except BranchyardError:
            pass
    return ProtectionDecl(branch=branch)


def _production_run(s: Session, p: m.Project, current: m.Deployment | None) -> git_rules.ProductionRun | None:
    """What production runs and where it came from (the promotion that deployed it, and its source's branch)."""
    if current is None:
        return None
    promotion = s.scalar(select(m.Promotion).where(m.Promotion.project == p.name,
                                                   m.Promotion.target_deployment_id == current.id))
    source = Store.find_environment(s, p, promotion.source) if promotion is not None else None
    return git_rules.ProductionRun(
        commit=current.commit_sha, deployment_id=current.id, trigger=current.trigger,
        promotion_id=promotion.id if promotion is not None else None,
        source=promotion.source if promotion is not None else None,
        source_branch=source.branch if source is not None else None)
