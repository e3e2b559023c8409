"""GitHub feedback end to end at the feedback level: a real Store, synthetic audit events, the fake GitHub API."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import wait_for
from fakes.github_api import FakeGitHub
from sqlalchemy import select

from branchyard.github.client import GitHubClient
from branchyard.github.feedback import Feedback, Resolver, marker
from branchyard.secrets import MASK, Redactor
from branchyard.settings import load
from branchyard.store import models as m
from branchyard.store.db import Store

REPO = "owner/yoto-smart-stream"
TOKEN = "fake-github-token-123"
SHA1 = "1" * 40
SHA2 = "2" * 40


@pytest.fixture()
def fake():
    with FakeGitHub(token=TOKEN) as f:
        yield f


@pytest.fixture()
def world(tmp_path):
    settings = load({"BRANCHYARD_HOME": str(tmp_path / "home"), "BRANCHYARD_HTTP_PORT": "8080"})
    store = Store(settings.state_db)
    try:
        yield settings, store
    finally:
        store.close()


def release(tmp_path, name: str, repository: str | None = REPO):
    path = tmp_path / "releases" / name
    path.mkdir(parents=True)
    github = f'[github]\nrepository = "{repository}"\n' if repository else ""
    (path / "branchyard.toml").write_text(f'[project]\nname = "yoto"\n{github}[environments.production]\nbranch = "main"\n'
                                          '[environments.pr]\nbranches = ["feature/*"]\n')
    return str(path)


def deployment(store, tmp_path, env_name: str, sha: str, *, repository: str | None = REPO, production: bool = False) -> str:
    """A project/environment/deployment as the controller would have recorded them; returns the deployment id."""
    with store.session() as s:
        project = s.scalar(select(m.Project).where(m.Project.name == "yoto"))
        if project is None:
            project = m.Project(name="yoto", repo_path="/nonexistent")
            s.add(project)
            s.flush()
        env = s.scalar(select(m.Environment).where(m.Environment.project_id == project.id, m.Environment.name == env_name))
        if env is None:
            env = m.Environment(project_id=project.id, name=env_name, production=production,
                                ephemeral=env_name.startswith("pr-"))
            s.add(env)
            s.flush()
        dep = m.Deployment(project_id=project.id, environment_id=env.id, commit_sha=sha, trigger="push", status=m.BUILDING)
        s.add(dep)
        s.flush()
        dep.release_dir = release(tmp_path, dep.id, repository)
        return dep.id


def record(store, kind: str, message: str, env: str, dep_id: str | None = None) -> None:
    with store.session() as s:
        store.record(s, "yoto", kind, message, environment=env, deployment_id=dep_id)


def feedback_for(settings, store, fake, *, token: str = TOKEN, redactor=None, **kw) -> Feedback:
    client = GitHubClient(token, base_url=fake.url)
    fb = Feedback(store, client, Resolver(store, settings, redactor=redactor), backoff=0.01, **kw)
    store.listeners.append(fb.notify)
    fb.start()
    return fb


def test_listeners_get_events_after_commit_and_never_on_rollback(world):
    _, store = world
    seen = []
    store.listeners.append(lambda e: seen.append((e.kind, e.message, e.environment)))
    store.listeners.append(lambda e: 1 / 0)  # a broken listener is logged, not raised into the caller
    with store.session() as s:
        store.record(s, "p", "deploy.queued", "one", environment="staging")
        assert seen == []  # not before the commit
    assert seen == [("deploy.queued", "one", "staging")]
    with pytest.raises(RuntimeError):
        with store.session() as s:
            store.record(s, "p", "deploy.failed", "rolled back", environment="staging")
            raise RuntimeError("boom")
    assert seen == [("deploy.queued", "one", "staging")]
    with store.session() as s:
        assert [e.kind for e in s.scalars(select(m.Event))] == ["deploy.queued"]


def test_a_production_deploy_gets_pending_then_success_and_a_github_deployment(world, fake, tmp_path):
    settings, store = world
    fb = feedback_for(settings, store, fake)
    try:
        dep = deployment(store, tmp_path, "production", SHA1, production=True)
        record(store, "deploy.queued", "push of 111111111111 (main)", "production", dep)
        record(store, "deploy.succeeded", "111111111111 is live", "production", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    statuses = fake.statuses_for(REPO, SHA1)
    assert [(s["state"], s["context"], s["target_url"]) for s in statuses] == [
        ("pending", "branchyard/production", None),
        ("success", "branchyard/production", "http://yoto.localhost:8080"),
    ]
    (github_dep,) = fake.deployments.values()
    assert (github_dep["environment"], github_dep["sha"], github_dep["payload"]) == ("production", SHA1, {"branchyard_deployment": dep})
    assert github_dep["production_environment"] is True and github_dep["transient_environment"] is False
    states = [(s["state"], s["environment_url"]) for s in fake.deployment_statuses[github_dep["id"]]]
    assert states == [("queued", ""), ("success", "http://yoto.localhost:8080")]
    assert fake.refused() == []


def test_one_pr_comment_follows_the_preview_through_its_life(world, fake, tmp_path):
    settings, store = world
    fake.add_comment(REPO, 12, "LGTM", login="reviewer")
    fb = feedback_for(settings, store, fake)
    try:
        first = deployment(store, tmp_path, "pr-12", SHA1)
        record(store, "deploy.queued", "webhook of 111111111111", "pr-12", first)
        assert fb.wait_idle(10)
        ours = [c for c in fake.comments_on(REPO, 12) if marker("yoto") in c["body"]]
        assert len(ours) == 1 and "🔨 building" in ours[0]["body"] and "http://yoto-pr-12.localhost:8080" in ours[0]["body"]

        record(store, "deploy.failed", "preDeployCommand exited 1", "pr-12", first)
        second = deployment(store, tmp_path, "pr-12", SHA2)
        record(store, "deploy.queued", "synchronize", "pr-12", second)
        record(store, "deploy.succeeded", "live", "pr-12", second)
        assert fb.wait_idle(10)
        ours = [c for c in fake.comments_on(REPO, 12) if marker("yoto") in c["body"]]
        assert len(ours) == 1 and "✅ live" in ours[0]["body"] and f"`{SHA2[:12]}`" in ours[0]["body"]

        with store.session() as s:  # teardown removes the environment (and its releases) before the event
            s.delete(s.scalar(select(m.Environment).where(m.Environment.name == "pr-12")))
        record(store, "preview.destroyed", "pull request #12 closed", "pr-12")
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    comments = fake.comments_on(REPO, 12)
    assert [c["user"]["login"] for c in comments] == ["reviewer", "branchyard-bot"]
    assert comments[0]["body"] == "LGTM"
    assert "🗑️ destroyed" in comments[1]["body"] and "| **URL** | — |" in comments[1]["body"]
    assert len([r for r in fake.accepted("POST") if r.path.endswith("/issues/12/comments")]) == 1  # then PATCHed
    assert [s["state"] for s in fake.statuses_for(REPO, SHA1)] == ["pending", "failure"]
    assert {s["context"] for s in fake.statuses_for(REPO, SHA2)} == {"branchyard/preview"}
    assert len(fake.deployments) == 2 and all(d["transient_environment"] for d in fake.deployments.values())


def test_github_having_a_bad_minute_is_retried_with_backoff(world, fake, tmp_path):
    settings, store = world
    fb = feedback_for(settings, store, fake)
    try:
        dep = deployment(store, tmp_path, "staging", SHA1)
        fake.fail_next(3, 502)
        record(store, "deploy.succeeded", "live", "staging", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    assert [s["state"] for s in fake.statuses_for(REPO, SHA1)] == ["success"]
    assert [r.status for r in fake.refused()] == [502, 502, 502]


def test_retries_are_bounded_and_failures_are_recorded_without_the_token(world, fake, tmp_path, caplog):
    settings, store = world
    caplog.set_level(logging.INFO)
    fb = feedback_for(settings, store, fake, attempts=3)
    try:
        dep = deployment(store, tmp_path, "staging", SHA1)
        fake.fail_next(100, 503)
        record(store, "deploy.failed", "health check failed", "staging", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    assert fake.statuses_for(REPO, SHA1) == []
    with store.session() as s:
        failed = [e.message for e in s.scalars(select(m.Event).where(m.Event.kind == "github.failed"))]
    assert failed[0] == f"CommitStatus for deploy.failed: GitHub API POST /repos/{REPO}/statuses/{SHA1}: 503 Server Error"
    assert len([r for r in fake.refused() if "/statuses/" in r.path]) == 3  # three attempts, then it gave up
    assert TOKEN not in caplog.text and any("GitHub feedback failed" in r.message for r in caplog.records)


def test_a_refused_token_is_not_retried(world, fake, tmp_path, caplog):
    settings, store = world
    fb = feedback_for(settings, store, fake, token="revoked-token-456")
    try:
        dep = deployment(store, tmp_path, "staging", SHA1)
        record(store, "deploy.succeeded", "live", "staging", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    assert [r.status for r in fake.refused()] == [401, 401]  # the commit status and the deployment, once each
    with store.session() as s:
        messages = [e.message for e in s.scalars(select(m.Event).where(m.Event.kind == "github.failed"))]
    assert len(messages) == 2 and all("401 Bad credentials" in msg for msg in messages)
    assert "revoked-token-456" not in caplog.text + "".join(messages)


def test_after_a_restart_the_github_deployment_is_found_by_its_payload(world, fake, tmp_path):
    settings, store = world
    dep = deployment(store, tmp_path, "staging", SHA1)
    fb = feedback_for(settings, store, fake)
    record(store, "deploy.queued", "push", "staging", dep)
    assert fb.wait_idle(10)
    fb.stop()
    store.listeners.clear()
    fb = feedback_for(settings, store, fake)  # a new control plane: nothing in memory
    try:
        record(store, "deploy.succeeded", "live", "staging", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    (github_dep,) = fake.deployments.values()
    assert [s["state"] for s in fake.deployment_statuses[github_dep["id"]]] == ["queued", "success"]


def test_feedback_left_unsent_by_a_killed_control_plane_is_sent_after_the_restart(world, fake, tmp_path):
    settings, store = world
    cursor = tmp_path / "github-feedback.json"
    dep = deployment(store, tmp_path, "staging", SHA1)
    record(store, "deploy.succeeded", "before feedback was ever on", "staging", dep)  # history: never replayed
    fb = feedback_for(settings, store, fake, cursor=cursor)
    record(store, "deploy.queued", "push", "staging", dep)
    assert fb.wait_idle(10)
    fb.stop()  # then the control plane is killed: two events are committed that nobody sends
    store.listeners.clear()
    record(store, "deploy.succeeded", "live", "staging", dep)
    record(store, "variables.set", "not for GitHub", "staging")
    assert [s["state"] for s in fake.statuses_for(REPO, SHA1)] == ["pending"]

    fb = Feedback(store, GitHubClient(TOKEN, base_url=fake.url), Resolver(store, settings), cursor=cursor)
    fb.start()
    store.listeners.append(fb.notify)
    try:
        assert fb.wait_idle(10)
        record(store, "deploy.failed", "a later deploy failed", "staging", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    assert [s["state"] for s in fake.statuses_for(REPO, SHA1)] == ["pending", "success", "failure"]
    (github_dep,) = fake.deployments.values()  # the replay found it; no second deployment
    assert [s["state"] for s in fake.deployment_statuses[github_dep["id"]]] == ["queued", "success", "failure"]
    with store.session() as s:
        last = s.scalar(select(m.Event.id).order_by(m.Event.id.desc()))
    assert json.loads(cursor.read_text()) == {"event_id": last}


def test_reasons_are_masked_with_the_environments_secrets(world, fake, tmp_path):
    settings, store = world
    fb = feedback_for(settings, store, fake, redactor=lambda env_id: Redactor(["hunter2-database-password"]))
    try:
        dep = deployment(store, tmp_path, "pr-4", SHA1)
        record(store, "deploy.failed", "migrate: could not connect with password hunter2-database-password", "pr-4", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    (status,) = fake.statuses_for(REPO, SHA1)
    assert status["description"] == f"Deploy to pr-4 failed: migrate: could not connect with password {MASK}"
    (comment,) = fake.comments_on(REPO, 4)
    assert "hunter2" not in comment["body"] and MASK in comment["body"]
    assert fake.received and all("hunter2" not in str(r.body) for r in fake.received)


def test_a_project_without_a_github_repository_sends_nothing(world, fake, tmp_path):
    settings, store = world
    fb = feedback_for(settings, store, fake)
    try:
        dep = deployment(store, tmp_path, "production", SHA1, repository=None, production=True)
        record(store, "deploy.queued", "push", "production", dep)
        record(store, "deploy.succeeded", "live", "production", dep)
        record(store, "environment.created", "x", "production")
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    assert fake.received == []


def test_a_full_queue_drops_events_instead_of_blocking(world, fake, tmp_path):
    settings, store = world
    fb = Feedback(store, GitHubClient(TOKEN, base_url=fake.url), Resolver(store, settings), max_queue=1)
    store.listeners.append(fb.notify)  # not started: nothing drains the queue
    dep = deployment(store, tmp_path, "staging", SHA1)
    for _ in range(5):
        record(store, "deploy.queued", "push", "staging", dep)  # returns at once, every time
    fb.start()
    try:
        wait_for(lambda: fb.wait_idle(0.1), timeout=10)
    finally:
        fb.stop()
    assert [s["state"] for s in fake.statuses_for(REPO, SHA1)] == ["pending"]


def test_the_pr_comment_shows_the_previews_projected_cost(world, fake, tmp_path):
    """Issue 17: the preview's projected $/month from its deployment's snapshot (the example's pr template:
    web 512 MB / 0.5 vCPU, postgres 512 MB / 1 GB: $5 + $10 + $5 + $0.15 at Railway's default rates)."""
    settings, store = world
    fb = feedback_for(settings, store, fake)
    try:
        dep = deployment(store, tmp_path, "pr-21", SHA1)
        with store.session() as s:
            s.get(m.Deployment, dep).config_json = json.dumps({
                "web": {"replicas": 1, "memory_mb": 512, "cpu": 0.5},
                "postgres": {"memory_mb": 512, "storage_mb": 1024}, "redis": None})
        record(store, "deploy.queued", "webhook of 111111111111", "pr-21", dep)
        record(store, "deploy.succeeded", "live", "pr-21", dep)
        assert fb.wait_idle(10)
    finally:
        fb.stop()
    (ours,) = [c for c in fake.comments_on(REPO, 21) if marker("yoto") in c["body"]]
    assert "✅ live" in ours["body"]
    assert "| **Cost** | $20.15 / month projected (web 1×512 MB/0.5 vCPU · postgres 512 MB/1 GB) |" in ours["body"]
