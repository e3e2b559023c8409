"""A pull request's whole life as GitHub sees it: webhook deliveries in, commit statuses and ONE pull-request
comment (updated in place) out — a real control plane, real processes, PostgreSQL and Caddy, the fake GitHub API."""

from __future__ import annotations

import pytest
from conftest import new_home, start_plane, stop_plane, wait_for
from fakes.github_api import FakeGitHub
from test_previews import SECRET, github_project, pr_commit, send
from webhooks import pull_request

pytestmark = pytest.mark.integration

TOKEN = "ghp_fakeTokenForPreviewFeedback0123"


@pytest.fixture(scope="module")
def fake():
    with FakeGitHub(token=TOKEN, repositories=("owner/fbk",)) as f:
        yield f


@pytest.fixture(scope="module")
def plane(venv_cache, fake):
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET,
                                                       "BRANCHYARD_GITHUB_TOKEN": TOKEN,
                                                       "BRANCHYARD_GITHUB_API_URL": fake.url})
    p.api_url = p.json("server", "status")["api_url"]
    try:
        yield p
    finally:
        stop_plane(p)


def test_a_preview_reports_its_url_and_state_in_one_comment_and_its_statuses(plane, fake, tmp_path):
    repo = github_project(plane, tmp_path, "fbk")
    base = plane.git(repo, "rev-parse", "main").stdout.strip()
    v1 = pr_commit(plane, repo, "feature/feedback", "v1")
    pr = pull_request("opened", 11, head_sha=v1, head_ref="feature/feedback", base_sha=base, repository="owner/fbk")
    assert send(plane, "pull_request", pr).status_code == 202

    url = f"http://fbk-pr-11.localhost:{plane.http_port}"
    statuses = wait_for(lambda: (s := fake.statuses_for("owner/fbk", v1)) and s[-1]["state"] == "success" and s,
                        timeout=240, interval=0.3)
    assert [(s["state"], s["context"]) for s in statuses] == [("pending", "branchyard/preview"),
                                                              ("success", "branchyard/preview")]
    assert statuses[-1]["target_url"] == url
    # The comment is edited after the status is sent (building → live): wait for the edit, not the first version.
    (comment,) = wait_for(lambda: (c := fake.comments_on("owner/fbk", 11)) and "live" in c[-1]["body"].lower() and c,
                          timeout=30)
    assert url in comment["body"]

    closed = pull_request("closed", 11, head_sha=v1, head_ref="feature/feedback", merged=True, base_sha=base,
                          repository="owner/fbk")
    assert send(plane, "pull_request", closed).status_code == 202
    (after,) = wait_for(lambda: (c := fake.comments_on("owner/fbk", 11)) and "destroyed" in c[-1]["body"].lower() and c,
                        timeout=90, interval=0.3)
    assert after["id"] == comment["id"]  # the same comment, edited — never a second one
    assert fake.refused() == []
    logs = list(plane.home.rglob("*.log"))
    assert plane.home / "logs" / "server.log" in logs and not [p for p in logs if TOKEN in p.read_text(errors="replace")]
