"""GitHub webhooks and preview environments on real processes, PostgreSQL and Caddy.

The upstream a project fetches from is a local bare repository standing in for GitHub; deliveries are
signed in the test with the plane's webhook secret, as GitHub signs them.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import httpx
import pytest
from conftest import wait_for, webhook_plane
from leaks import leaks, listening_ports
from webhooks import deliver, ping, pull_request, signature

pytestmark = pytest.mark.integration

SECRET = "test-webhook-secret-1234"


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:
        yield p


def github_project(plane, tmp_path, project: str, *, toml_edit=None):
    """The example app as project `project`, matched to GitHub repository owner/<project>, with an upstream."""
    repo = plane.app_repo(tmp_path, "app", project=project)
    toml = repo / "branchyard.toml"
    text = toml.read_text().replace('repository = "owner/yoto-smart-stream"', f'repository = "owner/{project}"')
    toml.write_text(toml_edit(text) if toml_edit else text)
    plane.commit(repo, "github repository")
    upstream = tmp_path / "upstream.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(upstream)], check=True, env=plane.env)
    plane.git(repo, "remote", "add", "upstream", str(upstream))
    plane.run("init", "--repo", str(upstream), cwd=repo)
    return repo


def pr_commit(plane, repo, branch: str, text: str, *, new: bool = True) -> str:
    plane.git(repo, "checkout", "--quiet", *(["-b", branch] if new else [branch]))
    (repo / "VERSION").write_text(text + "\n")
    sha = plane.commit(repo, text)
    plane.git(repo, "push", "--quiet", "--force", "upstream", branch)
    plane.git(repo, "checkout", "--quiet", "main")
    return sha


def send(plane, event, payload, **kw):
    return deliver(plane.api_url, event, payload, secret=kw.pop("secret", SECRET), **kw)


def env_names(plane, repo) -> list[str]:
    return [e["name"] for e in plane.json("environment", "list", cwd=repo)]


def test_deliveries_are_verified_bounded_and_deduplicated(plane, tmp_path):
    repo = github_project(plane, tmp_path, "hooks")
    main = plane.git(repo, "rev-parse", "main").stdout.strip()
    body = pull_request("closed", 99, head_sha=main, head_ref="feature/x", repository="owner/hooks")

    unsigned = send(plane, "pull_request", body, secret=None)
    assert unsigned.status_code == 401 and "missing X-Hub-Signature-256" in unsigned.json()["detail"]
    forged = send(plane, "pull_request", body, sign_with="not-the-secret")
    assert forged.status_code == 401 and "does not match the body" in forged.json()["detail"]
    raw = json.dumps(body).encode()
    altered = httpx.post(f"{plane.api_url}/webhooks/github", content=raw.replace(b'"closed"', b'"reopened"'),
                         headers={"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
                                  "Content-Type": "application/json", "X-Hub-Signature-256": signature(raw, SECRET)},
                         trust_env=False)
    assert altered.status_code == 401  # the body was changed after signing

    form = send(plane, "pull_request", body, content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    bad = send(plane, "pull_request", b'{"action": "opened", ')
    assert bad.status_code == 400 and bad.json()["detail"].startswith("payload is not valid JSON: ")
    big = send(plane, "pull_request", b" " * (5 * 1024 * 1024 + 1))
    assert big.status_code == 413 and "over the limit" in big.json()["detail"]
    unknown = send(plane, "pull_request", pull_request("opened", 1, head_sha=main, head_ref="feature/x",
                                                       repository="someone/else"))
    assert unknown.status_code == 404 and "someone/else" in unknown.json()["detail"]
    assert send(plane, "ping", ping("owner/hooks")).status_code == 200
    issues = send(plane, "issues", {"action": "opened", "repository": {"full_name": "owner/hooks"}})
    assert issues.status_code == 200 and issues.json()["ignored"] == "issues events are not acted on"
    missing = send(plane, "pull_request", {"action": "opened", "number": 3, "repository": {"full_name": "owner/hooks"}})
    assert missing.status_code == 400 and missing.json()["detail"] == "payload: missing field pull_request.head.sha"

    # closing a pull request that has no preview changes nothing
    delivery = str(uuid.uuid4())
    first = send(plane, "pull_request", body, delivery=delivery)
    assert first.status_code == 202 and "nothing to close" in first.json()["note"]
    again = send(plane, "pull_request", body, delivery=delivery)
    assert again.status_code == 200 and again.json()["duplicate"] is True

    # a project's own secret replaces the server-wide one for it
    plane.run("github", "configure", "--webhook-secret", "project-secret-5678", cwd=repo)
    assert send(plane, "pull_request", body).status_code == 401
    assert send(plane, "pull_request", body, secret="project-secret-5678").status_code == 202

    # replays are remembered across a restart of the control plane
    plane.run("server", "stop")
    plane.run("server", "--detach")
    plane.api_url = plane.json("server", "status")["api_url"]
    replay = send(plane, "pull_request", body, delivery=delivery, secret="project-secret-5678")
    # the answer is the decision: a replay is recognised before anything is recorded or queued
    assert replay.status_code == 200 and replay.json() == {"ok": True, "duplicate": True, "delivery": delivery}
    assert env_names(plane, repo) == ["production", "staging"]


def test_pull_request_lifecycle_open_sync_close_frees_everything(plane, tmp_path):
    repo = github_project(plane, tmp_path, "life")
    base = plane.git(repo, "rev-parse", "main").stdout.strip()
    v1 = pr_commit(plane, repo, "feature/mqtt", "v1")
    opened = send(plane, "pull_request", pull_request("opened", 7, head_sha=v1, head_ref="feature/mqtt",
                                                      base_sha=base, repository="owner/life"))
    assert opened.status_code == 202
    host = "life-pr-7.localhost"

    def serving(sha):
        try:
            r = plane.get(host)
            return r.status_code == 200 and r.json().get("commit") == sha
        except Exception:
            return False

    wait_for(lambda: serving(v1), timeout=180, interval=0.3)
    status = plane.json("status", "-e", "pr-7", cwd=repo)
    assert status["url"].startswith("http://life-pr-7.localhost")
    assert status["current_deployment"]["commit"] == v1 and len(status["replicas"]) == 1
    listed = plane.json("environment", "list", "--ephemeral", cwd=repo)
    assert [e["name"] for e in listed] == ["pr-7"]
    assert listed[0]["preview"]["number"] == 7 and listed[0]["preview"]["decision"] == "deploy"
    variables = plane.json("variables", "list", "-e", "pr-7", cwd=repo)["variables"]
    assert variables["ENVIRONMENT"] == "preview" and "REDIS_URL" not in variables  # the pr template, no Redis
    assert "by_life_pr_7" in variables["DATABASE_URL"]
    assert "staging-client-id" not in json.dumps(variables)  # masked in every output
    copied = plane.run("run", "-e", "pr-7", "--", "sh", "-c", "echo $YOTO_CLIENT_ID", cwd=repo).stdout.strip()
    assert copied == "staging-client-id"  # a same-repository PR gets staging's secrets, never production's
    kinds = [e["kind"] for e in plane.json("events", "-e", "pr-7", cwd=repo)]
    assert "preview.created" in kinds and "deploy.succeeded" in kinds

    v2 = pr_commit(plane, repo, "feature/mqtt", "v2", new=False)
    sync = send(plane, "pull_request", pull_request("synchronize", 7, head_sha=v2, head_ref="feature/mqtt",
                                                    base_sha=base, repository="owner/life"))
    assert sync.status_code == 202
    wait_for(lambda: serving(v2), timeout=180, interval=0.3)

    status = plane.json("status", "-e", "pr-7", cwd=repo)
    pids = {r["pid"] for r in status["replicas"]}
    ports = {r["port"] for r in status["replicas"]}
    deployments = {d["id"] for d in plane.json("deployments", "-e", "pr-7", cwd=repo)}
    assert ports <= listening_ports()
    closed = send(plane, "pull_request", pull_request("closed", 7, head_sha=v2, head_ref="feature/mqtt", merged=True,
                                                      base_sha=base, repository="owner/life"))
    assert closed.status_code == 202
    wait_for(lambda: "pr-7" not in env_names(plane, repo), timeout=60, interval=0.3)
    assert leaks(plane.home, plane.http_port, "life", ["pr-7"], ports=ports, pids=pids, deployments=deployments) == []
    assert plane.get(host).status_code == 404
    kinds = [e["kind"] for e in plane.json("events", "-e", "pr-7", cwd=repo)]
    assert "preview.destroyed" in kinds
