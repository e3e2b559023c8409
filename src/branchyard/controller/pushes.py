"""A ref pushed to a project's remote (git push, or GitHub's `push` delivery) → what should be deployed."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from .. import names
from ..access import SYSTEM, Actor
from ..build import release
from ..settings import Settings
from ..spec import load_project
from ..spec.branches import branch_target, unmapped_note
from ..spec.model import ProjectSpec
from ..store import models as m
from ..store.db import Store
from ..triggers import gitremote
from .deployer import Deployer
from .previews import Previews
from .push_rules import UP_REF_PREFIX, ZERO_SHA, PushRules
from .watching import unwatched


@dataclass(frozen=True)
class PushResult:
    deployment_id: str | None
    note: str | None
    skipped: bool = False  # no deploy: no changed file matches watchPatterns (a deploy.skipped event says so)


class Pushes:
    def __init__(self, settings: Settings, store: Store, *, deployer: Deployer, previews: Previews,
                 rules: PushRules) -> None:
        self.settings = settings
        self.store = store
        self.deployer = deployer
        self.previews = previews
        self.rules = rules

    def receive(self, project: str, ref: str, old: str, new: str, git_env: dict[str, str], *, actor: Actor = SYSTEM,
                push_options: tuple[str, ...] = ()) -> PushResult:
        """A ref was pushed to the project's remote by `actor`: export it and queue a deployment if it maps to one.

        The remote's rules (push_rules.py) come first, and again for the environment the pushed files map the branch
        to, before anything is queued: a refused push changes nothing (the hook then rejects it, so git does not
        move the ref either)."""
        with self.store.session() as s:
            repo = Path(self.store.project(s, project).repo_path)
        git_env = gitremote.checked_quarantine_env(repo, git_env)  # before any git command sees it
        self.rules.check(project, repo, ref, new, git_env, actor=actor, push_options=push_options)
        if new == ZERO_SHA:
            if ref.startswith("refs/heads/"):
                _, note = self.previews.want_branch(project, names.branch_from_ref(ref), None)
                return PushResult(None, note)
            return PushResult(None, f"{ref} deleted")
        if ref.startswith(UP_REF_PREFIX):
            env_name, branch = names.environment_name(ref[len(UP_REF_PREFIX):]), None
        elif ref.startswith("refs/heads/"):
            env_name, branch = None, names.branch_from_ref(ref)
        else:
            return PushResult(None, f"{ref} stored (only branches deploy)")
        incoming = names.safe_join(self.settings.releases_dir, project, f".incoming-{new[:40]}-{time.monotonic_ns()}")
        release.export_commit(repo, new, incoming, git_env=git_env)
        try:
            spec = load_project(incoming)
            if env_name is None:
                assert branch is not None
                pinned = self.pinned_branches(project)
                env_name = branch_target(branch, spec, pinned)
                if env_name is None and spec.preview is not None and spec.preview.trigger == "branch" \
                        and spec.preview_matches(branch):
                    return self._branch_preview(project, repo, branch, new, git_env, spec)
                if env_name is None:
                    return PushResult(None, unmapped_note(branch, spec, pinned))
            self.rules.check_mapped(project, ref, new, env_name, actor=actor)  # what the pushed files map it to
            if branch is not None and (skipped := unwatched(self.store, project, env_name, repo, new, spec, git_env=git_env, actor=actor)):
                return PushResult(None, skipped, skipped=True)  # watchPatterns (`up` always deploys, as `railway up`)
            dep_id = self.deployer.queue_build(project, env_name, new, branch, "up" if branch is None else "push",
                                               incoming, spec, actor=actor)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return PushResult(dep_id, None)

    def pinned_branches(self, project: str) -> dict[str, str]:
        """Environment → branch, for the project's environments whose branch the user set."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            return {e.name: e.branch for e in s.scalars(select(m.Environment).where(
                m.Environment.project_id == p.id, m.Environment.branch_pinned.is_(True))) if e.branch and not e.ephemeral}

    def _branch_preview(self, project: str, repo: Path, branch: str, sha: str, git_env: dict[str, str],
                        spec: ProjectSpec) -> PushResult:
        """trigger = "branch": the pushed branch gets (or updates) its own preview, deployed now so the push streams it."""
        env_name, note = self.previews.want_branch(project, branch, sha)
        if env_name is None:
            return PushResult(None, note)
        with self.previews.busy(project, env_name):  # the preview loop leaves it alone while the push queues it
            queued = self.previews.deploy_commit(project, env_name, sha, branch, fork=False, policy=spec.preview,
                                                 repo=repo, git_env=git_env)
        if queued.skipped is not None:
            return PushResult(None, queued.skipped, skipped=True)
        if queued.deployment_id is None:
            info = self.previews.info(project, env_name) or {}
            return PushResult(None, f"no preview for branch {branch!r}: {info.get('reason')}")
        return PushResult(queued.deployment_id, f"preview {env_name} for branch {branch}")
