"""The GitHub client against the fake API: documented requests, errors turned into branchyard's own, no token leaks."""

from __future__ import annotations

import socket

import httpx
import pytest
from fakes.github_api import FakeGitHub

from branchyard.errors import BackendError, BadInput, NotFound, Unauthorized
from branchyard.github.client import GitHubClient, short

REPO = "owner/yoto-smart-stream"
SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "fake-github-token"


@pytest.fixture()
def fake():
    with FakeGitHub(token=TOKEN) as f:
        yield f


@pytest.fixture()
def client(fake):
    with GitHubClient(TOKEN, base_url=fake.url) as c:
        yield c


def test_requests_carry_the_documented_headers():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 1})

    with GitHubClient("s3cret-token", base_url="https://ghe.example.invalid/api/v3/", transport=httpx.MockTransport(handler)) as c:
        c.create_status(REPO, SHA, "success", context="branchyard/production")
        assert repr(c) == "GitHubClient(https://ghe.example.invalid/api/v3)"
    (request,) = seen
    assert str(request.url) == f"https://ghe.example.invalid/api/v3/repos/{REPO}/statuses/{SHA}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.headers["authorization"] == "Bearer s3cret-token"


def test_commit_statuses_deployments_and_deployment_statuses(client, fake):
    client.create_status(REPO, SHA, "pending", context="branchyard/staging", description="Deploying " + "x" * 200)
    client.create_status(REPO, SHA, "success", context="branchyard/staging", target_url="http://yoto-staging.localhost:8080")
    states = [(s["state"], s["context"], s["target_url"]) for s in fake.statuses_for(REPO, SHA)]
    assert states == [("pending", "branchyard/staging", None),
                      ("success", "branchyard/staging", "http://yoto-staging.localhost:8080")]
    assert len(fake.statuses_for(REPO, SHA)[0]["description"]) == 140  # shortened, not refused

    dep = client.create_deployment(REPO, SHA, "staging", payload={"branchyard_deployment": "d1"}, description="d1")
    assert fake.deployments[dep["id"]]["payload"] == {"branchyard_deployment": "d1"}
    body = fake.accepted("POST")[-1].body
    assert body["auto_merge"] is False and body["required_contexts"] == [] and body["environment"] == "staging"
    client.create_deployment_status(REPO, dep["id"], "success", environment_url="http://yoto-staging.localhost:8080")
    assert [s["state"] for s in fake.deployment_statuses[dep["id"]]] == ["success"]
    assert [d["id"] for d in client.list_deployments(REPO, sha=SHA, environment="staging")] == [dep["id"]]
    assert fake.refused() == []


def test_one_comment_is_found_by_its_marker_and_updated_in_place(client, fake):
    for i in range(120):  # more than one page of other people's comments
        fake.add_comment(REPO, 12, f"review comment {i}")
    marker = "<!-- branchyard:preview:yoto -->"
    first, created = client.upsert_comment(REPO, 12, marker, "state: building")
    assert created and first["body"] == f"{marker}\nstate: building"
    again, created = client.upsert_comment(REPO, 12, marker, f"{marker}\nstate: live")
    assert not created and again["id"] == first["id"] and again["body"] == f"{marker}\nstate: live"
    ours = [c for c in fake.comments_on(REPO, 12) if marker in c["body"]]
    assert [c["body"] for c in ours] == [f"{marker}\nstate: live"]
    assert len(fake.comments_on(REPO, 12)) == 121
    patches = fake.accepted("PATCH")
    assert len(patches) == 1
    same, _ = client.upsert_comment(REPO, 12, marker, f"{marker}\nstate: live")  # unchanged: no PATCH
    assert len(fake.accepted("PATCH")) == 1 and same["id"] == first["id"]


def test_branch_protection_put(client, fake):
    body = {"required_status_checks": None, "enforce_admins": True, "required_pull_request_reviews": None,
            "restrictions": None}
    client.update_branch_protection(REPO, "release/2.0", body)
    assert fake.protections[(REPO, "release/2.0")] == body


def test_errors_become_branchyard_errors_with_one_line_messages(fake):
    with GitHubClient("wrong-token", base_url=fake.url) as c:
        with pytest.raises(Unauthorized) as err:
            c.create_status(REPO, SHA, "success", context="x")
    assert str(err.value) == f"GitHub API POST /repos/{REPO}/statuses/{SHA}: 401 Bad credentials"
    with GitHubClient(TOKEN, base_url=fake.url) as c:
        with pytest.raises(NotFound) as err:
            c.create_status("someone/else", SHA, "success", context="x")
        assert "404 Not Found (no such repository" in str(err.value)
        with pytest.raises(BadInput) as err:
            c.update_branch_protection(REPO, "main", {"enforce_admins": True})
        assert "\n" not in str(err.value)
        assert str(err.value).startswith(f"GitHub API PUT /repos/{REPO}/branches/main/protection: 422 Invalid request. ")
        fake.fail_next(1, 502)
        with pytest.raises(BackendError) as err:
            c.create_status(REPO, SHA, "success", context="x")
        assert str(err.value) == f"GitHub API POST /repos/{REPO}/statuses/{SHA}: 502 Server Error"
        fake.fail_next(1, 429)
        with pytest.raises(BackendError):
            c.create_status(REPO, SHA, "success", context="x")


def test_the_client_refuses_bad_arguments_before_any_request(client, fake):
    with pytest.raises(BadInput, match="expected one of error, failure, pending, success, got 'done'"):
        client.create_status(REPO, SHA, "done", context="x")
    with pytest.raises(BadInput, match="full 40-character commit sha"):
        client.create_status(REPO, "main", "success", context="x")
    with pytest.raises(BadInput, match='expected "owner/name", got \'nope\''):
        client.create_status("nope", SHA, "success", context="x")
    with pytest.raises(BadInput, match="positive integer"):
        client.upsert_comment(REPO, 0, "m", "b")
    with pytest.raises(BadInput, match="BRANCHYARD_GITHUB_TOKEN is not set"):
        GitHubClient("")
    assert fake.received == []


def test_an_unreachable_api_is_a_backend_error_without_the_token():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with GitHubClient("s3cret-token-value", base_url=f"http://127.0.0.1:{port}", timeout=2) as c:
        with pytest.raises(BackendError) as err:
            c.create_status(REPO, SHA, "success", context="x")
    assert str(err.value) == f"GitHub API POST /repos/{REPO}/statuses/{SHA}: cannot reach http://127.0.0.1:{port} (ConnectError)"
    assert "s3cret" not in str(err.value) and err.value.__cause__ is None


def test_short_keeps_descriptions_within_github_limits():
    assert short("a\nb  c") == "a b c"
    assert len(short("x" * 500)) == 140 and short("x" * 500).endswith("…")
    assert short("fits") == "fits"
