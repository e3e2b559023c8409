"""Git follows production on a real bare repository and a real Store: the fast-forward, the divergence reported
once, a push that moved the branch meanwhile never clobbered, and the move made from the promotion.succeeded event."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import GIT_ENV, wait_for
from sqlalchemy import select

from branchyard import branch_follow as bf
from branchyard.controller.git_follow import DIVERGED, MOVED, GitFollow
from branchyard.store import models as m
from branchyard.store.db import Store
from branchyard.triggers import gitrefs

ENV = os.environ | GIT_ENV


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A bare repository (the project's) and a clone that commits and pushes to it."""

    def __init__(self, tmp: Path) -> None:
        self.bare = tmp / "app.git"
        git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        self.work = tmp / "work"
        git(tmp, "clone", "--quiet", str(self.bare), str(self.work))

    def commit(self, branch: str, message: str, *, start: str | None = None) -> str:
        """A commit on `branch` (started at `start` when given), pushed to the bare repository."""
        if start is not None:
            git(self.work, "checkout", "--quiet", "-B", branch, start)
        elif branch in self.branches():
            git(self.work, "checkout", "--quiet", branch)
        elif not self.branches():  # the first commit of the clone
            git(self.work, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
        else:
            git(self.work, "checkout", "--quiet", "-b", branch)
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", "--force", "origin", branch)
        return git(self.work, "rev-parse", "HEAD")

    def branches(self) -> list[str]:
        return git(self.work, "branch", "--format=%(refname:short)").split()

    def head(self, branch: str = "main") -> str | None:
        return gitrefs.branch_head(self.bare, branch)


@pytest.fixture()
def repo(tmp_path):
    return Repo(tmp_path)


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    try:
        yield s
    finally:
        s.close()


def production_runs(store: Store, repo: Repo, sha: str, *, state: str = m.PROMOTION_SUCCESS, trigger: str = "promote") -> str:
    """The project with production (branch main) running `sha`, deployed by a promotion in `state`; the promotion id."""
    with store.session() as s:
        p = s.scalar(select(m.Project).where(m.Project.name == "app"))
        if p is None:
            p = m.Project(name="app", repo_path=str(repo.bare))
            s.add(p)
            s.flush()
            s.add(m.Environment(project_id=p.id, name="production", branch="main", production=True))
            s.flush()
        env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id))
        dep = m.Deployment(project_id=p.id, environment_id=env.id, commit_sha=sha, trigger=trigger, status=m.SUCCESS)
        s.add(dep)
        s.flush()
        env.current_deployment_id = dep.id
        promo = m.Promotion(project="app", source="staging", target="production", source_deployment_id=dep.id,
                            commit_sha=sha, target_deployment_id=dep.id, state=state, requested_by="alice", plan_json="{}")
        s.add(promo)
        s.flush()
        return promo.id


def events(store: Store, kind: str) -> list[m.Event]:
    with store.session() as s:
        return list(s.scalars(select(m.Event).where(m.Event.kind == kind).order_by(m.Event.id)))


def test_relations_read_from_a_real_repository(repo):
    base = repo.commit("main", "base")
    ahead = repo.commit("develop", "on develop", start=base)
    side = repo.commit("hotfix", "on a side branch", start=base)
    assert gitrefs.relation(repo.bare, "main", base) == (bf.CONTAINS, base)
    assert gitrefs.relation(repo.bare, "develop", base) == (bf.CONTAINS, ahead)  # develop holds base and more
    assert gitrefs.relation(repo.bare, "main", ahead) == (bf.BEHIND, base)
    assert gitrefs.relation(repo.bare, "hotfix", ahead) == (bf.DIVERGED, side)
    assert gitrefs.relation(repo.bare, "nope", ahead) == (bf.MISSING, None)
    assert gitrefs.relation(repo.bare, "main", "f" * 40) == (bf.UNKNOWN, base)


def test_main_is_fast_forwarded_to_the_promoted_commit_once(repo, store):
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    pid = production_runs(store, repo, promoted)
    follow = GitFollow(store)

    assert follow.converge("app") == bf.MoveBranch("main", base, promoted, pid)
    assert repo.head() == promoted
    [moved] = events(store, MOVED)
    assert (moved.actor, moved.environment) == ("system", "production")
    assert moved.message.startswith(f"main fast-forwarded {base[:12]} → {promoted[:12]} to follow promotion {pid[:8]}")
    assert follow.converge("app") == bf.Nothing(f"main contains {promoted[:12]}")  # level-triggered: nothing more
    assert len(events(store, MOVED)) == 1


def test_a_promotion_not_yet_verified_or_a_plain_deploy_moves_nothing(repo, store):
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    production_runs(store, repo, promoted, state=m.PROMOTION_VERIFYING)  # its smoke tests may still roll it back
    assert GitFollow(store).converge("app") == bf.Nothing("production does not run a promoted release")
    production_runs(store, repo, promoted, trigger="push", state=m.PROMOTION_FAILED)
    assert GitFollow(store).converge("app") == bf.Nothing("production does not run a promoted release")
    assert repo.head() == base and events(store, MOVED) == []


def test_a_diverged_main_is_reported_once_and_left_alone(repo, store):
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    hotfix = repo.commit("main", "hotfix on main")
    pid = production_runs(store, repo, promoted)
    follow = GitFollow(store)

    assert follow.converge("app") == bf.ReportDiverged("main", hotfix, promoted, pid)
    assert follow.converge("app") == bf.Nothing(f"main diverged from {promoted[:12]} (already reported)")
    follow.converge_all()
    [reported] = events(store, DIVERGED)
    assert f"production runs {promoted[:12]} (promotion {pid[:8]}), which main ({hotfix[:12]}) does not contain" in reported.message
    assert repo.head() == hotfix and events(store, MOVED) == []


def test_a_push_that_moved_main_meanwhile_is_not_clobbered(repo, store):
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    production_runs(store, repo, promoted)
    follow = GitFollow(store)
    obs, bare, dep_id = follow.observe("app")
    action = bf.decide(obs)
    assert action == bf.MoveBranch("main", base, promoted, obs.promotion_id)

    pushed = repo.commit("main", "pushed while the move was being decided", start=promoted)  # a descendant, even
    follow.apply("app", obs, bare, dep_id, action)  # decided on the old head: update-ref refuses it
    assert repo.head() == pushed and events(store, MOVED) == []
    assert follow.converge("app") == bf.Nothing(f"main contains {promoted[:12]}")  # the next pass sees the push


def test_a_missing_branch_is_created_at_the_promoted_commit(repo, store):
    base = repo.commit("develop", "only develop was ever pushed")
    pid = production_runs(store, repo, base)
    assert GitFollow(store).converge("app") == bf.MoveBranch("main", None, base, pid)
    assert repo.head() == base


def test_promotion_succeeded_moves_main_from_the_listener(repo, store):
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    production_runs(store, repo, promoted)
    follow = GitFollow(store)
    store.listeners.append(follow.notify)
    with store.session() as s:
        store.record(s, "app", "promotion.succeeded", "promotion … staging → production SUCCESS", environment="production")
    wait_for(lambda: events(store, MOVED), timeout=30)
    assert repo.head() == promoted


def test_a_success_whose_move_a_crash_cut_off_is_followed_by_the_next_start(repo, store):
    """promotion.succeeded went to no listener (the control plane died): start's converge_all makes the move."""
    base = repo.commit("main", "base")
    promoted = repo.commit("develop", "v2", start=base)
    production_runs(store, repo, promoted)
    with store.session() as s:
        store.record(s, "app", "promotion.succeeded", "promotion … SUCCESS", environment="production")
    assert repo.head() == base  # no listener heard it
    GitFollow(store).converge_all()
    assert repo.head() == promoted and len(events(store, MOVED)) == 1
