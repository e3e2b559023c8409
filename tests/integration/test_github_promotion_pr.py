"""The promotion pull request against the fake GitHub API: opened when a promotion is planned, updated in place when
it is planned again, and a GitHub that keeps failing recorded as github.failed without touching the promotion."""

from __future__ import annotations

import json

import pytest
from fakes.github_api import FakeGitHub
from sqlalchemy import select

from branchyard.github.client import GitHubClient
from branchyard.github.promotion_pr import OPENED_KIND, PromotionPullRequests
from branchyard.store import models as m
from branchyard.store.db import Store

REPO = "owner/yoto-smart-stream"
TOKEN = "fake-github-token-123"
V1, V2 = "a1" * 20, "b2" * 20


@pytest.fixture()
def fake():
    with FakeGitHub(token=TOKEN) as f:
        yield f


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def prs(store, fake):
    worker = PromotionPullRequests(store, GitHubClient(TOKEN, base_url=fake.url), backoff=0.01)
    worker.start()
    store.listeners.append(worker.notify)
    try:
        yield worker
    finally:
        worker.stop()


def plan(commit: str, subjects: list[str]) -> dict:
    return {
        "source": "staging", "target": "production", "source_deployment_id": "d" * 36,
        "commit_range": {"from": "0" * 40, "to": commit,
                         "commits": [{"sha": f"{i}" * 40, "subject": s} for i, s in enumerate(subjects, 1)]},
        "variables": [{"key": "API_TOKEN", "change": "changed", "before": "****** (secret)", "after": "****** (secret, differs)"},
                      {"key": "LOG_LEVEL", "change": "changed", "before": "warning", "after": "info"}],
        "services": [{"key": "web.replicas", "before": 2, "after": 3}],
        "migrations": {"will_run": True, "commands": ["python manage.py migrate"], "backup_first": True},
        "gates": [{"id": "source-healthy", "passed": True, "detail": "1/1 replicas healthy"},
                  {"id": "approvals", "passed": False, "detail": "0 of 2 approvals"}],
        "approvals_required": 2,
    }  # fmt: skip


def project(store: Store, repository: str | None = REPO) -> None:
    with store.session() as s:
        p = m.Project(name="yoto", repo_path="/nonexistent", github_repository=repository)
        s.add(p)
        s.flush()
        s.add_all([m.Environment(project_id=p.id, name="production", branch="main", production=True),
                   m.Environment(project_id=p.id, name="staging", branch="develop")])


def planned(store: Store, commit: str, subjects: list[str], promotion_id: str | None = None) -> str:
    """A promotion planned (or re-planned) as Promotions.create records it; its id."""
    with store.session() as s:
        row = s.get(m.Promotion, promotion_id) if promotion_id else None
        if row is None:
            row = m.Promotion(project="yoto", source="staging", target="production", source_deployment_id="d" * 36,
                              commit_sha=commit, requested_by="alice", plan_json="{}")
            s.add(row)
        row.commit_sha, row.plan_json = commit, json.dumps(plan(commit, subjects))
        s.flush()
        store.record(s, "yoto", "promotion.planned", f"promotion {row.id[:8]} staging → production planned",
                     environment="production", actor="alice")
        return row.id


def events(store: Store, kind: str) -> list[str]:
    with store.session() as s:
        return [e.message for e in s.scalars(select(m.Event).where(m.Event.kind == kind).order_by(m.Event.id))]


def test_planned_opens_the_pull_request_and_a_re_plan_updates_it(store, fake, prs):
    project(store)
    pid = planned(store, V1, ["add streams | fast", "fix <b>"])
    assert prs.wait_idle(30)
    [pr] = fake.pulls_in(REPO)
    assert (pr["head"]["ref"], pr["base"]["ref"], pr["state"]) == ("develop", "main", "open")
    assert pr["title"] == f"Promote staging → production ({V1[:7]})"
    body = pr["body"]
    assert f"`{'1' * 12}` add streams \\| fast" in body and "fix &lt;b&gt;" in body
    assert "| changed | `API_TOKEN` | ****** (secret) | ****** (secret, differs) |" in body
    assert "| changed | `LOG_LEVEL` | warning | info |" in body
    assert "- `python manage.py migrate`" in body and "production's database is backed up first" in body
    assert "- ✅ **source-healthy**: 1/1 replicas healthy" in body and "- ❌ **approvals**: 0 of 2 approvals" in body
    assert f"`{pid[:8]}` (PLANNED), planned by alice" in body
    assert events(store, OPENED_KIND) == [f"pull request #1 develop → main opened for promotion {pid[:8]}: "
                                          f"https://github.com/{REPO}/pull/1"]

    planned(store, V2, ["add streams | fast", "fix <b>", "v3"], promotion_id=pid)
    assert prs.wait_idle(30)
    [pr] = fake.pulls_in(REPO)  # the same pull request, not a second one
    assert pr["number"] == 1 and pr["title"] == f"Promote staging → production ({V2[:7]})" and "v3" in pr["body"]
    assert [r.method for r in fake.accepted() if "/pulls" in r.path] == ["GET", "POST", "GET", "PATCH"]
    assert events(store, OPENED_KIND)[-1].startswith("pull request #1 develop → main updated")

    planned(store, V2, ["add streams | fast", "fix <b>", "v3"], promotion_id=pid)  # nothing changed: nothing sent
    assert prs.wait_idle(30)
    assert [r.method for r in fake.accepted() if "/pulls" in r.path][-1] == "GET"
    assert len(events(store, OPENED_KIND)) == 2


def test_a_project_without_a_github_repository_gets_no_pull_request(store, fake, prs):
    project(store, repository=None)
    planned(store, V1, ["v1"])
    assert prs.wait_idle(30)
    assert fake.received == [] and events(store, "github.failed") == []


def test_github_failing_is_recorded_and_nothing_else_happens(store, fake, prs):
    project(store)
    fake.fail_next(10, status=502)
    planned(store, V1, ["v1"])
    assert prs.wait_idle(30)
    assert fake.pulls_in(REPO) == [] and len(fake.refused()) == prs.attempts
    [failed] = events(store, "github.failed")
    assert failed.startswith("promotion pull request develop → main: GitHub API GET /repos/owner/yoto-smart-stream/pulls: 502")


def test_an_open_promotion_gets_its_pull_request_at_start(store, fake):
    """Planned just before a crash (the event went to no listener): the restart's start() opens the pull request."""
    project(store)
    planned(store, V1, ["v1"])
    worker = PromotionPullRequests(store, GitHubClient(TOKEN, base_url=fake.url), backoff=0.01)
    worker.start()
    try:
        assert worker.wait_idle(30)
    finally:
        worker.stop()
    assert [pr["title"] for pr in fake.pulls_in(REPO)] == [f"Promote staging → production ({V1[:7]})"]
