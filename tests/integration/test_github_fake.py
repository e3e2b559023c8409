"""The fake GitHub API refuses what GitHub refuses: wrong auth, missing headers, bodies off the documented schema."""

from __future__ import annotations

import httpx
import pytest
from fakes.github_api import FakeGitHub

REPO = "owner/yoto-smart-stream"
SHA = "a" * 40
GOOD = {
    "Authorization": "Bearer fake-github-token",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}
PROTECTION = {
    "required_status_checks": {"strict": True, "contexts": ["branchyard/staging"]},
    "enforce_admins": False,
    "required_pull_request_reviews": {"required_approving_review_count": 2, "dismiss_stale_reviews": True},
    "restrictions": None,
    "allow_force_pushes": False,
    "allow_deletions": False,
}


@pytest.fixture()
def fake():
    with FakeGitHub() as f:
        yield f


def call(fake, method, path, body=None, headers=None, **kw):
    return httpx.request(method, fake.url + path, json=body, headers=GOOD if headers is None else headers, timeout=5,
                         trust_env=False, **kw)


def test_a_documented_commit_status_is_stored_and_answered_like_github(fake):
    r = call(fake, "POST", f"/repos/{REPO}/statuses/{SHA}",
             {"state": "pending", "context": "branchyard/production", "description": "Deploying", "target_url": None})
    assert r.status_code == 201
    assert {k: r.json()[k] for k in ("state", "context", "description")} == {
        "state": "pending", "context": "branchyard/production", "description": "Deploying"}
    assert [s["state"] for s in fake.statuses_for(REPO, SHA)] == ["pending"]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "Authorization"}, 401, "Requires authentication"),
        (GOOD | {"Authorization": "Bearer wrong"}, 401, "Bad credentials"),
        (GOOD | {"Authorization": "Basic fake-github-token"}, 401, "Bad credentials"),
        ({k: v for k, v in GOOD.items() if k != "X-GitHub-Api-Version"}, 400, "Unsupported 'X-GitHub-Api-Version'"),
        (GOOD | {"X-GitHub-Api-Version": "2021-01-01"}, 400, "Unsupported 'X-GitHub-Api-Version'"),
        (GOOD | {"Accept": "application/json"}, 415, "Unsupported 'Accept' header"),
    ],
)
def test_auth_and_version_headers_are_checked(fake, headers, status, message):
    r = call(fake, "POST", f"/repos/{REPO}/statuses/{SHA}", {"state": "success"}, headers=headers)
    assert r.status_code == status
    assert r.json()["message"].startswith(message)
    assert r.json()["documentation_url"].startswith("https://docs.github.com/")
    assert fake.statuses_for(REPO, SHA) == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "state", "missing_field"),
        ({"state": "done"}, "state", "invalid"),
        ({"state": "SUCCESS"}, "state", "invalid"),
        ({"state": "success", "description": "x" * 141}, "description", "invalid"),
        ({"state": "success", "context": 5}, "context", "invalid"),
        ({"state": "success", "target_url": "not a url"}, "target_url", "invalid"),
        ({"state": "success", "colour": "green"}, "colour", "invalid"),
    ],
)
def test_a_commit_status_off_the_schema_is_a_422_validation_failed(fake, body, field, code):
    r = call(fake, "POST", f"/repos/{REPO}/statuses/{SHA}", body)
    assert r.status_code == 422
    data = r.json()
    assert data["message"] == "Validation Failed"
    assert {(e["resource"], e["field"], e["code"]) for e in data["errors"]} == {("Status", field, code)}
    assert fake.statuses_for(REPO, SHA) == []


def test_unknown_repository_unknown_sha_and_bad_json(fake):
    assert call(fake, "POST", f"/repos/other/repo/statuses/{SHA}", {"state": "success"}).status_code == 404
    assert call(fake, "POST", f"/repos/{REPO}/statuses/main", {"state": "success"}).status_code == 422
    r = httpx.post(f"{fake.url}/repos/{REPO}/statuses/{SHA}", content=b"{nope", timeout=5, trust_env=False,
                   headers=GOOD | {"Content-Type": "application/json"})
    assert (r.status_code, r.json()["message"]) == (400, "Problems parsing JSON")
    r = httpx.post(f"{fake.url}/repos/{REPO}/statuses/{SHA}", content=b"[]", timeout=5, trust_env=False,
                   headers=GOOD | {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert len(fake.refused()) == 4 and fake.accepted() == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"environment": "production"}, 422, "ref"),
        ({"ref": SHA, "required_contexts": "none"}, 422, "required_contexts"),
        ({"ref": SHA, "required_contexts": [1]}, 422, "required_contexts[0]"),
        ({"ref": SHA, "auto_merge": "false", "required_contexts": []}, 422, "auto_merge"),
        ({"ref": SHA, "required_contexts": []}, 409, None),  # auto_merge defaults to true on GitHub
        ({"ref": SHA, "auto_merge": False}, 409, None),  # required_contexts defaults to every context
    ],
)
def test_deployments_are_validated(fake, body, status, field):
    r = call(fake, "POST", f"/repos/{REPO}/deployments", body)
    assert r.status_code == status
    if field:
        assert [e["field"] for e in r.json()["errors"]] == [field]
    assert fake.deployments == {}


def test_deployment_statuses_need_a_known_deployment_and_a_documented_state(fake):
    r = call(fake, "POST", f"/repos/{REPO}/deployments",
             {"ref": SHA, "environment": "staging", "auto_merge": False, "required_contexts": []})
    assert r.status_code == 201 and r.json()["environment"] == "staging" and r.json()["sha"] == SHA
    dep = r.json()["id"]
    assert call(fake, "POST", f"/repos/{REPO}/deployments/999/statuses", {"state": "success"}).status_code == 404
    bad = call(fake, "POST", f"/repos/{REPO}/deployments/{dep}/statuses", {"state": "live"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "state"
    ok = call(fake, "POST", f"/repos/{REPO}/deployments/{dep}/statuses",
              {"state": "success", "environment_url": "http://yoto-staging.localhost:8080"})
    assert ok.status_code == 201 and ok.json()["environment"] == "staging"
    listed = call(fake, "GET", f"/repos/{REPO}/deployments", params={"sha": SHA, "environment": "staging"})
    assert [d["id"] for d in listed.json()] == [dep]
    assert call(fake, "GET", f"/repos/{REPO}/deployments", params={"environment": "production"}).json() == []


def test_comments_are_listed_in_pages_created_and_edited(fake):
    for i in range(3):
        fake.add_comment(REPO, 7, f"comment {i}")
    first = call(fake, "GET", f"/repos/{REPO}/issues/7/comments", params={"per_page": "2"}).json()
    second = call(fake, "GET", f"/repos/{REPO}/issues/7/comments", params={"per_page": "2", "page": "2"}).json()
    assert [c["body"] for c in first + second] == ["comment 0", "comment 1", "comment 2"]
    assert call(fake, "POST", f"/repos/{REPO}/issues/7/comments", {"text": "hi"}).status_code == 422
    created = call(fake, "POST", f"/repos/{REPO}/issues/7/comments", {"body": "hi"})
    assert created.status_code == 201 and created.json()["user"]["login"] == "branchyard-bot"
    edited = call(fake, "PATCH", f"/repos/{REPO}/issues/comments/{created.json()['id']}", {"body": "edited"})
    assert edited.status_code == 200 and edited.json()["body"] == "edited"
    assert call(fake, "PATCH", f"/repos/{REPO}/issues/comments/1", {"body": "x"}).status_code == 404
    assert call(fake, "GET", f"/repos/{REPO}/issues/0/comments").status_code == 404


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"enforce_admins": ...}, '"enforce_admins" wasn\'t supplied.'),
        ({"restrictions": ...}, '"restrictions" wasn\'t supplied.'),
        ({"required_status_checks": {"contexts": ["ci"]}}, '"required_status_checks.strict" wasn\'t supplied.'),
        ({"required_status_checks": {"strict": "yes", "contexts": []}}, "For 'required_status_checks.strict'"),
        ({"required_status_checks": ["ci"]}, "For 'required_status_checks', [\"ci\"] is not object or null."),
        ({"required_pull_request_reviews": {"required_approving_review_count": 7}}, "greater than the maximum of 6"),
        ({"restrictions": {"users": []}}, '"restrictions.teams" wasn\'t supplied.'),
        ({"allow_force_pushes": "no"}, "For 'allow_force_pushes'"),
    ],
)
def test_branch_protection_off_the_schema_is_an_invalid_request(fake, change, problem):
    body = {k: v for k, v in (PROTECTION | change).items() if v is not ...}
    r = call(fake, "PUT", f"/repos/{REPO}/branches/main/protection", body)
    assert r.status_code == 422
    assert r.json()["message"].startswith("Invalid request.\n\n") and problem in r.json()["message"]
    assert fake.protections == {}


def test_branch_protection_is_stored_and_read_back(fake):
    r = call(fake, "PUT", f"/repos/{REPO}/branches/release%2F1/protection", PROTECTION)
    assert r.status_code == 200
    assert r.json()["required_pull_request_reviews"]["required_approving_review_count"] == 2
    assert r.json()["allow_force_pushes"] == {"enabled": False}
    assert fake.protections[(REPO, "release/1")] == PROTECTION
    assert call(fake, "GET", f"/repos/{REPO}/branches/release%2F1/protection").status_code == 200
    assert call(fake, "GET", f"/repos/{REPO}/branches/develop/protection").status_code == 404


def test_pull_requests_are_created_listed_by_owner_and_branch_and_refused_twice(fake):
    body = {"title": "Promote", "head": "develop", "base": "main", "body": "plan", "maintainer_can_modify": False}
    r = call(fake, "POST", f"/repos/{REPO}/pulls", body)
    assert r.status_code == 201 and (r.json()["number"], r.json()["head"]["label"]) == (1, "owner:develop")
    again = call(fake, "POST", f"/repos/{REPO}/pulls", body)  # GitHub keeps one open pull request per head and base
    assert again.status_code == 422 and again.json()["errors"][0]["message"] == "A pull request already exists for owner:develop."
    same = call(fake, "POST", f"/repos/{REPO}/pulls", body | {"head": "main"})
    assert same.status_code == 422 and same.json()["errors"][0]["message"] == "No commits between main and main"
    assert call(fake, "POST", f"/repos/{REPO}/pulls", {"head": "x", "base": "main"}).status_code == 422  # no title
    assert call(fake, "POST", f"/repos/{REPO}/pulls", body | {"labels": ["x"]}).status_code == 422  # undocumented

    listed = call(fake, "GET", f"/repos/{REPO}/pulls", params={"head": "owner:develop", "base": "main", "state": "open"})
    assert [p["number"] for p in listed.json()] == [1]
    assert call(fake, "GET", f"/repos/{REPO}/pulls", params={"head": "other:develop"}).json() == []
    assert call(fake, "GET", f"/repos/{REPO}/pulls", params={"head": "develop"}).status_code == 422  # owner:branch only

    patched = call(fake, "PATCH", f"/repos/{REPO}/pulls/1", {"title": "Promote again", "body": "plan 2"})
    assert patched.status_code == 200 and (patched.json()["title"], patched.json()["body"]) == ("Promote again", "plan 2")
    assert call(fake, "PATCH", f"/repos/{REPO}/pulls/1", {"head": "x"}).status_code == 422  # head cannot change
    assert call(fake, "PATCH", f"/repos/{REPO}/pulls/9", {"title": "x"}).status_code == 404
