"""GitHub feedback from a real control plane: `git push branchyard main` → commit statuses and a deployment
on the (fake) GitHub API, for the pushed commit, with the environment's URL; the token never reaches a log."""

from __future__ import annotations

import pytest
from conftest import new_home, start_plane, stop_plane, wait_for
from fakes.github_api import FakeGitHub

pytestmark = pytest.mark.integration

REPO = "owner/yoto-smart-stream"  # examples/yoto-smart-stream/branchyard.toml [github] repository
TOKEN = "ghp_fakeTokenForBranchyardTests0123"


@pytest.fixture(scope="module")
def fake():
    with FakeGitHub(token=TOKEN) as f:
        yield f


@pytest.fixture(scope="module")
def plane(venv_cache, fake):
    p = start_plane(new_home(), venv_cache,
                    extra_env={"BRANCHYARD_GITHUB_TOKEN": TOKEN, "BRANCHYARD_GITHUB_API_URL": fake.url})
    try:
        yield p
    finally:
        stop_plane(p)


def test_a_push_to_main_reports_pending_then_success_for_the_pushed_commit(plane, fake, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="ghfb")
    sha = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")
    url = f"http://ghfb.localhost:{plane.http_port}"
    statuses = wait_for(lambda: (s := fake.statuses_for(REPO, sha)) and s[-1]["state"] == "success" and s, timeout=30)
    assert [(s["state"], s["context"]) for s in statuses] == [("pending", "branchyard/production"),
                                                              ("success", "branchyard/production")]
    assert statuses[-1]["target_url"] == url
    assert statuses[-1]["description"] == f"Live at {url}"
    deployments = [d for d in fake.deployments.values() if d["sha"] == sha]
    assert [(d["environment"], d["production_environment"], d["transient_environment"]) for d in deployments] == [
        ("production", True, False)]
    (request,) = [r.body for r in fake.accepted("POST") if r.path.endswith("/deployments") and r.body["ref"] == sha]
    assert (request["auto_merge"], request["required_contexts"]) == (False, [])
    dep_id = plane.json("deployments", "-e", "production", cwd=repo)[0]["id"]
    assert deployments[0]["payload"] == {"branchyard_deployment": dep_id}
    wait_for(lambda: [s["state"] for s in fake.deployment_statuses.get(deployments[0]["id"], [])] == ["queued", "success"],
             timeout=30)
    assert fake.deployment_statuses[deployments[0]["id"]][-1]["environment_url"] == url
    assert fake.refused() == []

    # A deploy that fails reports failure with the reason; the previous deployment keeps serving.
    (repo / "railway.toml").write_text((repo / "railway.toml").read_text().replace(
        'preDeployCommand = "python manage.py migrate"', 'preDeployCommand = "python -c \'raise SystemExit(3)\'"'))
    bad = plane.commit(repo, "broken migration")
    assert plane.git(repo, "push", "branchyard", "main", check=False).returncode != 0
    failed = wait_for(lambda: (s := fake.statuses_for(REPO, bad)) and s[-1]["state"] == "failure" and s, timeout=30)
    assert [s["state"] for s in failed] == ["pending", "failure"]
    assert failed[-1]["description"].startswith("Deploy to production failed: ")
    assert failed[-1]["target_url"] is None
    assert plane.get("ghfb.localhost").json()["commit"] == sha

    log = (plane.home / "logs" / "server.log").read_text()
    assert "GitHub feedback on" in log
    assert TOKEN not in log
    logs = list(plane.home.rglob("*.log"))
    assert len(logs) > 1 and not [p for p in logs if TOKEN in p.read_text(errors="replace")]  # server's and deploys'
