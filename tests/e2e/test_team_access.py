"""A team on one control plane, through the real CLI and a real server: users, tokens, roles, protected
environments, the actor of every event, and secrets a viewer never sees."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.integration


def refused(done, *fragments: str) -> str:
    """A refusal: non-zero exit, one line on stderr holding `fragments`."""
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def api(plane, token: str, method: str, path: str, **kw) -> httpx.Response:
    url = plane.json("server", "status")["api_url"]
    return httpx.request(method, url + path, headers={"authorization": f"Bearer {token}"}, timeout=30, trust_env=False,
                         **kw)


def test_users_tokens_and_whoami(plane, tmp_path):
    assert plane.json("whoami") == {"name": "admin", "role": "admin", "id": 1}  # the machine's operator, no step
    alice = plane.add_user("alice", "member")
    assert alice.json("whoami")["name"] == "alice" and alice.json("whoami")["role"] == "member"
    assert {(u["name"], u["role"]) for u in plane.json("users", "list")} >= {("admin", "admin"), ("alice", "member")}

    made = alice.json("tokens", "create", "--name", "laptop", "--expires", "7")
    laptop = alice.as_user(made["token"])
    assert laptop.run("whoami").stdout.strip() == "alice (member)"
    listed = {t["id"]: t for t in alice.json("tokens", "list")}
    assert listed[made["id"]]["state"] == "active" and listed[made["id"]]["expires_at"]
    assert made["token"] not in alice.run("tokens", "list").stdout  # never shown again
    assert "revoked" in alice.run("tokens", "revoke", made["id"]).stdout
    refused(laptop.run("whoami", check=False), f"token {made['id']} was revoked")

    # bad input: one line, non-zero, nothing changed
    before = plane.json("users", "list")
    refused(plane.run("users", "add", "alice", "--role", "viewer", check=False), "a user named 'alice' exists already")
    refused(plane.run("users", "add", "bob", "--role", "owner", check=False), "--role 'owner'")
    refused(plane.run("users", "remove", "nobody", check=False), "no user named 'nobody'")
    refused(plane.run("users", "remove", "admin", check=False), "admin is the last admin")
    refused(alice.run("users", "add", "mallory", "--role", "admin", check=False), "permission 'admin' needs role admin",
            "alice is member")
    assert plane.json("users", "list") == before

    plane.run("users", "remove", "alice")
    refused(alice.run("whoami", check=False), "belongs to a removed user")


def test_roles_and_protected_environments(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="roles")
    member = plane.add_user("mia", "member")
    viewer = plane.add_user("vic", "viewer")

    # a member changes staging, not production (protected by default); a viewer changes nothing
    member.run("variables", "set", "--skip-deploys", "-e", "staging", "FEATURE=on", cwd=repo)
    line = refused(member.run("variables", "set", "--skip-deploys", "-e", "production", "FEATURE=on", cwd=repo,
                              check=False), "permission 'configure' in protected environment production needs role admin")
    assert "mia is member" in line
    refused(viewer.run("variables", "set", "--skip-deploys", "-e", "staging", "FEATURE=off", cwd=repo, check=False),
            "permission 'configure' needs role member", "vic is viewer")
    refused(member.run("run", "-e", "production", "--", "true", cwd=repo, check=False), "permission 'shell'")
    refused(viewer.run("backup", "-e", "staging", cwd=repo, check=False), "permission 'backup'")
    plane.run("variables", "set", "--skip-deploys", "-e", "production", "FEATURE=on", cwd=repo)  # the admin may

    assert plane.json("variables", "list", "-e", "staging", cwd=repo)["variables"]["FEATURE"] == "on"
    events = plane.json("events", "-p", "roles")
    mine = [e for e in events if e["kind"] == "variables.set" and e["environment"] == "staging"]
    assert mine and mine[0]["actor"] == "mia" and mine[0]["actor_id"] == member.json("whoami")["id"]
    admin_set = [e for e in events if e["kind"] == "variables.set" and e["environment"] == "production"]
    assert admin_set and admin_set[0]["actor"] == "admin"
    assert not [e for e in events if e["kind"] == "variables.set" and e["actor"] == "vic"]  # the refusal changed nothing

    # the push API (the hook's door) takes no environment of the caller's choosing for git
    forged = api(plane, member.env["BRANCHYARD_TOKEN"], "POST", "/api/projects/roles/push",
                 json={"ref": "refs/heads/develop", "old": "0" * 40, "new": "f" * 40, "git_env": {"LD_PRELOAD": "/x.so"}})
    assert forged.status_code == 400 and "LD_PRELOAD is not one of git's quarantine variables" in forged.json()["detail"]

    # `approve --as` is gone, with a clear line
    refused(plane.run("approve", "0123456789", "--as", "dana", check=False), "--as is gone")


def test_a_viewer_never_sees_a_secret(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="secrets")  # sets YOTO_CLIENT_SECRET=<env>-client-secret-value
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")  # staging runs, with its secrets and its database password
    viewer = plane.add_user("quinn", "viewer")
    token = viewer.env["BRANCHYARD_TOKEN"]
    secret = "staging-client-secret-value"
    revealed = api(plane, _machine_token(plane), "POST", "/api/projects/secrets/environments/staging/variables/reveal")
    password = revealed.json()["variables"]["DATABASE_URL"].split(":")[2].split("@")[0]  # postgresql://u:PASSWORD@h…
    assert len(password) >= 16

    outputs = [
        viewer.run("status", "-e", "staging", cwd=repo).stdout,
        viewer.run("status", "-e", "staging", "--json", cwd=repo).stdout,
        viewer.run("variables", "list", "-e", "staging", cwd=repo).stdout,
        viewer.run("variables", "list", "-e", "staging", "--json", cwd=repo).stdout,
        viewer.run("logs", "-e", "staging", cwd=repo).stdout,
        viewer.run("logs", "-e", "staging", "--build", cwd=repo).stdout,
        viewer.run("events", "-p", "secrets", "--json").stdout,
        viewer.run("deployments", "-e", "staging", "--json", cwd=repo).stdout,
    ]
    for method, path in [("GET", "/api/projects/secrets/environments/staging"),
                         ("GET", "/api/projects/secrets/environments/staging/variables"),
                         ("GET", "/api/projects/secrets/environments/staging/deployments"),
                         ("GET", "/api/projects/secrets/environments/staging/logs"),
                         ("GET", "/api/projects/secrets/policy"),
                         ("GET", "/api/events?project=secrets")]:
        answer = api(plane, token, method, path)
        assert answer.status_code == 200, (path, answer.text)
        outputs.append(answer.text)
    deployment = json.loads(outputs[7])[0]["id"]  # `deployments --json`, newest first
    outputs.append(api(plane, token, "GET", f"/api/deployments/{deployment}/log").text)
    for text in outputs:
        assert secret not in text and password not in text
    assert any("YOTO_CLIENT_SECRET" in text for text in outputs)  # the key is shown, masked

    # and the doors to the values are shut for a viewer
    for path in ("variables/reveal", "run", "connection/postgres"):
        answer = api(plane, token, "POST", f"/api/projects/secrets/environments/staging/{path}")
        assert answer.status_code == 403 and "permission 'shell'" in answer.json()["detail"]
        assert secret not in answer.text and password not in answer.text


def _machine_token(plane) -> str:
    return json.loads((plane.home / "server.json").read_text())["token"]
