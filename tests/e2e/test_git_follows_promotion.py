"""Git follows promotion, on a real control plane driven by the CLI: after `promote staging production` succeeds,
the project's own repository has `main` at the promoted commit (`git ls-remote`); when `main` has diverged, the
promotion still deploys, says so once, and `check` reports it. With [github] repository and a token, planning the
promotion opens the `develop → main` pull request on the (fake) GitHub API with the plan in its body."""

from __future__ import annotations

import json

import pytest
from conftest import new_home, start_plane, stop_plane, wait_for
from fakes.github_api import FakeGitHub

pytestmark = pytest.mark.integration

REPO = "owner/yoto-smart-stream"  # examples/yoto-smart-stream/branchyard.toml [github] repository
TOKEN = "ghp_fakeTokenForBranchyardTests4567"


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


def without_approvals(repo):
    """Promotion from staging with no approvals and no smoke command: the approval rules are not what this tests."""
    toml = repo / "branchyard.toml"
    body = toml.read_text()
    start = body.index("[environments.production.promotion]")
    end = body.index("\n\n", start)
    toml.write_text(body[:start] + '[environments.production.promotion]\nfrom = "staging"' + body[end:])


def events(plane, repo, kind):
    return [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == kind]


def ls_remote_main(plane, repo) -> str:
    bare = plane.git(repo, "remote", "get-url", "branchyard").stdout.strip()
    return plane.git(repo, "ls-remote", bare, "refs/heads/main").stdout.split()[0]


def test_main_follows_the_promotion_and_a_divergence_is_reported(plane, fake, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="follow")
    without_approvals(repo)
    first = plane.commit(repo, "promotion without approvals")
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    (repo / "CHANGELOG").write_text("v2\n")
    v2 = plane.commit(repo, "v2 on develop")
    plane.git(repo, "push", "branchyard", "develop")
    assert ls_remote_main(plane, repo) == first

    done = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, timeout=600)
    assert "SUCCESS" in done.stdout + done.stderr
    assert f"git: main fast-forwarded {first[:12]} → {v2[:12]}" in done.stdout  # `promote` itself says so
    [moved] = wait_for(lambda: events(plane, repo, "git.branch_moved"), timeout=60)
    assert moved["actor"] == "system"
    assert moved["message"].startswith(f"main fast-forwarded {first[:12]} → {v2[:12]} to follow promotion")
    assert ls_remote_main(plane, repo) == v2

    # The pull request was opened when the promotion was planned, develop → main, with the plan in its body.
    [pr] = wait_for(lambda: fake.pulls_in(REPO), timeout=30)
    assert (pr["head"]["ref"], pr["base"]["ref"], pr["title"]) == ("develop", "main", f"Promote staging → production ({v2[:7]})")
    assert f"`{v2[:12]}` v2 on develop" in pr["body"] and "planned by" in pr["body"]

    # A hotfix pushed to main (which production deploys), and develop moves on without it: main has diverged.
    plane.git(repo, "fetch", "--quiet", "branchyard")
    plane.git(repo, "checkout", "--quiet", "-B", "main", "branchyard/main")
    (repo / "HOTFIX").write_text("fixed on main\n")
    hotfix = plane.commit(repo, "hotfix on main")
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "develop")
    (repo / "CHANGELOG").write_text("v3\n")
    v3 = plane.commit(repo, "v3 on develop")
    plane.git(repo, "push", "branchyard", "develop")

    again = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, timeout=600)
    assert plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == v3  # deployed anyway
    assert f"git: production runs {v3[:12]}" in again.stderr + again.stdout and "does not contain" in again.stderr + again.stdout
    [diverged] = wait_for(lambda: events(plane, repo, "git.branch_diverged"), timeout=60)
    assert f"production runs {v3[:12]}" in diverged["message"] and f"which main ({hotfix[:12]}) does not contain" in diverged["message"]
    assert ls_remote_main(plane, repo) == hotfix  # never rewritten
    assert len(events(plane, repo, "git.branch_moved")) == 1

    report = json.loads(plane.run("check", "--json", cwd=repo, check=False).stdout)
    [finding] = [f for f in report["findings"] if f["rule"] == "production-branch-follows"]
    assert finding["severity"] == "warning" and f"merge {v3[:12]} into main" in finding["fix"]

    [pr] = fake.pulls_in(REPO)  # the same pull request, updated by the second plan
    assert pr["title"] == f"Promote staging → production ({v3[:7]})"
