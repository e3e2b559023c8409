"""GitHub webhook payloads shaped as GitHub documents them (the fields branchyard reads, and a few around them),
and a sender that signs them like GitHub does."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import httpx


def _repo(full_name: str, *, fork: bool = False) -> dict:
    owner, name = full_name.split("/")
    return {
        "id": abs(hash(full_name)) % 10**8, "name": name, "full_name": full_name, "private": False, "fork": fork,
        "owner": {"login": owner, "type": "User"},
        "html_url": f"https://github.com/{full_name}", "clone_url": f"https://github.com/{full_name}.git",
        "default_branch": "main",
    }


def pull_request(action: str, number: int, *, head_sha: str, head_ref: str, repository: str,
                 head_repository: str | None = None, base_ref: str = "main", base_sha: str | None = None,
                 draft: bool = False, user: str = "octocat", user_type: str = "User", merged: bool = False) -> dict:
    """A `pull_request` event (action, number, pull_request.head/base, repository, sender)."""
    head_repo = None if head_repository == "" else _repo(head_repository or repository,
                                                         fork=bool(head_repository and head_repository != repository))
    state = "closed" if action == "closed" else "open"
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/{repository}/pulls/{number}",
            "id": 1000 + number, "number": number, "state": state, "locked": False, "title": f"PR {number}",
            "user": {"login": user, "id": 42, "type": user_type},
            "draft": draft, "merged": merged, "merge_commit_sha": None,
            "head": {"label": f"{(head_repository or repository).split('/')[0]}:{head_ref}", "ref": head_ref,
                     "sha": head_sha, "user": {"login": user, "type": user_type}, "repo": head_repo},
            "base": {"label": f"{repository.split('/')[0]}:{base_ref}", "ref": base_ref,
                     "sha": base_sha or "0" * 39 + "1", "repo": _repo(repository)},
        },
        "repository": _repo(repository),
        "sender": {"login": user, "id": 42, "type": user_type},
    }


def push(ref: str, *, after: str, before: str = "0" * 40, repository: str, deleted: bool = False) -> dict:
    """A `push` event (ref, before, after, created, deleted, forced, repository, pusher, commits)."""
    return {
        "ref": ref, "before": before, "after": "0" * 40 if deleted else after,
        "created": before == "0" * 40, "deleted": deleted, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{repository}/compare/{before[:12]}...{after[:12]}",
        "commits": [], "head_commit": None if deleted else {"id": after, "message": "commit"},
        "repository": _repo(repository), "pusher": {"name": "octocat", "email": "octocat@example.invalid"},
        "sender": {"login": "octocat", "type": "User"},
    }


def ping(repository: str) -> dict:
    return {"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository", "events": ["*"]},
            "repository": _repo(repository)}


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(api_url: str, event: str, payload: dict | bytes, *, secret: str | None, delivery: str | None = None,
            content_type: str = "application/json", sign_with: str | None = None,
            client: httpx.Client | None = None) -> httpx.Response:
    """POST a delivery as GitHub does: X-GitHub-Event, X-GitHub-Delivery, X-Hub-Signature-256 (when a secret).

    `client`: send it on this (kept-alive) client rather than a new connection, as a benchmark's timer wants."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "Content-Type": content_type, "User-Agent": "GitHub-Hookshot/test"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(body, sign_with or secret)
    if client is not None:
        return client.post(f"{api_url}/webhooks/github", content=body, headers=headers, timeout=30)
    return httpx.post(f"{api_url}/webhooks/github", content=body, headers=headers, timeout=30, trust_env=False)
