"""Git follows production: after a promotion succeeds, production's branch in the project's own repository moves to
the promoted commit (a fast-forward), or the divergence is recorded once. The decision is branch_follow.decide (pure).

Level-triggered: `converge` observes the current state (production's deployment, its promotion, the branch head)
and acts on it, so it may run any number of times. It runs right after `promotion.succeeded` (a store listener)
and in the reconciler's housekeeping, so a control plane killed between the success and the move converges after
its restart. Nothing in the promotion code knows this exists.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy import select

from .. import branch_follow as bf
from ..access import SYSTEM
from ..errors import BranchyardError
from ..store import models as m
from ..store.db import RecordedEvent, Store
from ..triggers import gitrefs

log = logging.getLogger("branchyard.git_follow")

MOVED = "git.branch_moved"
DIVERGED = "git.branch_diverged"


class GitFollow:
    """Moves production's branch after promotions; `notify` is a Store listener, `converge_all` the housekeeping."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The listener's thread and housekeeping may converge one project at once: without this, both could see
        # an unreported divergence and record it twice (a move is safe anyway: update-ref checks the old value).
        self._lock = threading.Lock()

    def notify(self, event: RecordedEvent) -> None:
        """Store listener: on promotion.succeeded, converge that project on a thread of its own (returns at once)."""
        if event.kind == "promotion.succeeded":
            threading.Thread(target=self._converge_quietly, args=(event.project,), name="git-follow", daemon=True).start()

    def converge_all(self) -> None:
        """Every project once (housekeeping, and at start: a move a crash cut off is made now)."""
        try:
            with self.store.session() as s:
                projects = list(s.scalars(select(m.Project.name).order_by(m.Project.name)))
        except Exception:  # at start it runs on a thread of its own: a store closing under it is logged, not raised
            log.exception("git follow: cannot list the projects")
            return
        for project in projects:
            self._converge_quietly(project)

    def _converge_quietly(self, project: str) -> None:
        try:
            self.converge(project)
        except BranchyardError as err:
            log.warning("git follow %s: %s", project, err)
        except Exception:  # a listener's thread and housekeeping must outlive a bug here
            log.exception("git follow %s crashed", project)

    def converge(self, project: str) -> bf.Action:
        """Observe, decide, apply for one project; returns what was decided."""
        with self._lock:
            seen = self.observe(project)
            if seen is None:
                return bf.Nothing("no production environment")
            obs, repo, deployment_id = seen
            action = bf.decide(obs)
            self.apply(project, obs, repo, deployment_id, action)
            return action

    def observe(self, project: str) -> tuple[bf.Observed, Path, str | None] | None:
        """(what decide reads, the bare repository, production's current deployment id); None without production."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.production.is_(True))
                           .order_by(m.Environment.id))
            if env is None:
                return None
            current = self.store.current_deployment(s, env)
            promotion_id = reported = None
            if current is not None and current.trigger == "promote":
                # Only once its verification passed: a promotion still VERIFYING may yet be rolled back.
                promotion_id = s.scalar(select(m.Promotion.id).where(m.Promotion.target_deployment_id == current.id,
                                                                    m.Promotion.state == m.PROMOTION_SUCCESS))
                reported = s.scalar(select(m.Event.id).where(
                    m.Event.project == project, m.Event.kind == DIVERGED, m.Event.deployment_id == current.id).limit(1))
            repo, branch, env_name = Path(p.repo_path), env.branch, env.name
            commit, deployment_id = (current.commit_sha, current.id) if current is not None else (None, None)
        relation, head = bf.UNKNOWN, None
        if promotion_id is not None and branch and commit:  # git is asked only when there may be something to do
            relation, head = gitrefs.relation(repo, branch, commit)
        obs = bf.Observed(environment=env_name, branch=branch, commit=commit, head=head, relation=relation,
                          promotion_id=promotion_id, reported=reported is not None)
        return obs, repo, deployment_id

    def apply(self, project: str, obs: bf.Observed, repo: Path, deployment_id: str | None, action: bf.Action) -> None:
        """Carry out one decision. A move that finds the branch moved meanwhile changes nothing (the push wins);
        the next pass decides again from the branch as it is then."""
        if isinstance(action, bf.MoveBranch):
            reason = f"branchyard: {obs.environment} follows promotion {action.promotion_id[:8]}"
            if not gitrefs.move_branch(repo, action.branch, action.new, action.old, reason=reason):
                log.info("git follow %s: %s moved while being fast-forwarded; left as it is", project, action.branch)
                return
            with self.store.session() as s:
                self.store.record(s, project, MOVED, bf.moved_message(action), environment=obs.environment,
                                  deployment_id=deployment_id, actor=SYSTEM)
        elif isinstance(action, bf.ReportDiverged):
            with self.store.session() as s:
                self.store.record(s, project, DIVERGED, bf.diverged_message(action, obs.environment),
                                  environment=obs.environment, deployment_id=deployment_id, actor=SYSTEM)
