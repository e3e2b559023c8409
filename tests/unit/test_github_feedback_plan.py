"""Event → GitHub requests: the pure mapping behind GitHub feedback."""

from __future__ import annotations

import pytest

from branchyard.github.feedback import (
    CommitStatus,
    Deployment,
    DeploymentStatus,
    Facts,
    PullRequestComment,
    comment_body,
    marker,
    plan,
    pr_number,
)

REPO = "owner/yoto-smart-stream"
SHA = "0123456789abcdef0123456789abcdef01234567"
PROD = Facts("yoto", REPO, "production", url="http://yoto.localhost:8080", sha=SHA, deployment_id="d-1", production=True)
PR = Facts("yoto", REPO, "pr-12", url="http://yoto-pr-12.localhost:8080", sha=SHA, deployment_id="d-2", preview=True,
           pr_number=12)


def test_a_queued_production_deploy_is_a_pending_status_and_a_github_deployment():
    assert plan("deploy.queued", "push of 0123456789ab (main)", PROD) == [
        CommitStatus(REPO, SHA, "pending", "branchyard/production", "Deploying 0123456 to production"),
        Deployment(REPO, SHA, "production", "d-1", transient=False, production=True, description="branchyard deployment d-1"),
        DeploymentStatus(REPO, SHA, "production", "d-1", "queued", "Queued: building"),
    ]


def test_a_successful_deploy_links_the_environment_url():
    assert plan("deploy.succeeded", "0123456789ab is live", PROD) == [
        CommitStatus(REPO, SHA, "success", "branchyard/production", "Live at http://yoto.localhost:8080",
                     target_url="http://yoto.localhost:8080"),
        DeploymentStatus(REPO, SHA, "production", "d-1", "success", "Live at http://yoto.localhost:8080",
                         environment_url="http://yoto.localhost:8080"),
    ]


def test_a_failed_deploy_gives_the_reason_within_140_characters():
    reason = "health check failed: GET /health answered 500 " + "x" * 200
    status, deployment = plan("deploy.failed", reason, PROD)
    assert status.state == "failure" and status.target_url is None
    assert status.description.startswith("Deploy to production failed: health check failed: GET /health answered 500")
    assert len(status.description) == 140 and status.description.endswith("…")
    assert (deployment.state, len(deployment.description)) == ("failure", 140)


def test_previews_use_one_stable_context_and_a_transient_deployment_and_get_a_comment():
    status, deployment, _, comment = plan("deploy.queued", "webhook of 0123456789ab", PR)
    assert status.context == "branchyard/preview"
    assert deployment.transient is True and deployment.production is False and deployment.environment == "pr-12"
    assert comment == PullRequestComment(REPO, 12, marker("yoto"), comment_body(PR, "building"))


@pytest.mark.parametrize(
    ("kind", "message", "state", "url_shown", "detail"),
    [
        ("deploy.queued", "q", "🔨 building", True, None),
        ("deploy.succeeded", "live", "✅ live", True, None),
        ("deploy.failed", "preDeployCommand exited 1", "❌ failed", True, "Deploy failed: preDeployCommand exited 1"),
        ("preview.destroyed", "pull request closed", "🗑️ destroyed", False, None),
        ("preview.refused", "draft pull request", "⛔ not deployed", False, "draft pull request"),
        ("preview.waiting", "waiting for a free slot: maxPreviews = 5", "⏳ waiting for a free preview slot", False,
         "waiting for a free slot: maxPreviews = 5"),
        ("preview.pending_approval", "fork PR: run `branchyard previews approve 12`", "⏸️ waiting for approval", False,
         "fork PR: run `branchyard previews approve 12`"),
    ],
)
def test_the_pr_comment_follows_the_preview(kind, message, state, url_shown, detail):
    comment = plan(kind, message, PR)[-1]
    assert isinstance(comment, PullRequestComment) and comment.number == 12
    lines = comment.body.splitlines()
    assert lines[0] == "<!-- branchyard:preview:yoto -->"
    assert lines[1] == "### branchyard preview `pr-12`"
    assert f"| **State** | {state} |" in lines
    assert ("| **URL** | http://yoto-pr-12.localhost:8080 |" in lines) is url_shown
    assert "| **Commit** | `0123456789ab` |" in lines
    assert (lines[-1] == detail) if detail else lines[-1].startswith("| **Commit**")


def test_preview_lifecycle_events_without_a_commit_only_update_the_comment():
    facts = Facts("yoto", REPO, "pr-3", url="http://yoto-pr-3.localhost:8080", preview=True, pr_number=3)
    assert [type(a) for a in plan("deploy.queued", "x", facts)] == [PullRequestComment]
    assert [type(a) for a in plan("preview.destroyed", "closed", facts)] == [PullRequestComment]


def test_a_crash_after_going_live_is_an_error_and_a_superseded_deploy_is_not_left_pending():
    crashed = plan("deploy.crashed", "web.0 exited with code 1 (restart policy ON_FAILURE: 10 retries used)", PROD)
    assert [(type(a).__name__, a.state) for a in crashed] == [("CommitStatus", "error"), ("DeploymentStatus", "error")]
    assert crashed[0].description == "Crashed in production: web.0 exited with code 1 (restart policy ON_FAILURE: 10 retries used)"
    skipped = plan("deploy.skipped", "superseded by newer deployment d-9", PROD)
    assert skipped == [
        CommitStatus(REPO, SHA, "error", "branchyard/production", "Not deployed to production: superseded by newer deployment d-9"),
        DeploymentStatus(REPO, SHA, "production", "d-1", "inactive", "superseded by newer deployment d-9"),
    ]
    assert "| **State** | ❌ failed |" in plan("deploy.crashed", "exited", PR)[-1].body
    assert not any(isinstance(a, PullRequestComment) for a in plan("deploy.skipped", "superseded", PR))


@pytest.mark.parametrize("kind", ["preview.destroyed", "preview.refused", "environment.created", "replica.exited",
                                  "variables.set", "github.failed"])
def test_events_without_feedback_plan_nothing_outside_previews(kind):
    assert plan(kind, "m", PROD) == []


def test_a_deploy_without_a_deployment_id_still_gets_its_commit_status():
    facts = Facts("yoto", REPO, "staging", url="http://yoto-staging.localhost:8080", sha=SHA)
    assert plan("deploy.succeeded", "live", facts) == [
        CommitStatus(REPO, SHA, "success", "branchyard/staging", "Live at http://yoto-staging.localhost:8080",
                     target_url="http://yoto-staging.localhost:8080"),
    ]


@pytest.mark.parametrize(("name", "number"), [("pr-1", 1), ("pr-123", 123), ("pr-0", None), ("pr-01", None),
                                              ("staging", None), ("feature-x", None), ("", None)])
def test_pr_number(name, number):
    assert pr_number(name) == number


def test_the_pr_comment_shows_the_projected_cost_while_the_preview_runs_or_builds():
    facts = Facts("yoto", REPO, "pr-5", url="http://yoto-pr-5.localhost:8080", sha=SHA, preview=True, pr_number=5,
                  monthly_cost=20.149999, allocation="web 1×512 MB/0.5 vCPU")
    live = plan("deploy.succeeded", "live", facts)[-1].body
    assert "| **Cost** | $20.15 / month projected (web 1×512 MB/0.5 vCPU) |" in live
    assert "Cost" not in plan("preview.destroyed", "closed", facts)[-1].body  # gone: it costs nothing any more
    assert "Cost" not in plan("deploy.succeeded", "live", PR)[-1].body  # unknown: no row rather than a guess
