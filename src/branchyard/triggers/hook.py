"""pre-receive hook: hand each pushed ref to the control plane and stream its deployment back.

Runs inside `git push` (git shows our output as `remote: …`). Standard library only, to start fast.
Exit status 0 accepts the push; non-zero rejects it, as Heroku and Dokku do when a deploy fails.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ZERO = "0" * 40


def _server() -> tuple[str, str]:
    """The control plane's URL, and the token the push is made with: the pusher's own (`BRANCHYARD_TOKEN`: a push
    to a local path inherits the pusher's environment; git over HTTP puts the request's token there), else the
    machine's (server.json: its bootstrap admin). The control plane applies the remote's rules to that user."""
    home = Path(os.environ.get("BRANCHYARD_HOME") or Path.home() / ".branchyard")
    try:
        info = json.loads((home / "server.json").read_text())
        return info["url"], os.environ.get("BRANCHYARD_TOKEN") or info["token"]
    except (OSError, ValueError, KeyError):
        raise SystemExit("branchyard: the control plane is not running (start it with `branchyard server --detach`)")


def push_options(environ: dict[str, str]) -> list[str]:
    """`git push -o …` as git hands them to the hook (GIT_PUSH_OPTION_COUNT, GIT_PUSH_OPTION_<n>)."""
    try:
        count = int(environ.get("GIT_PUSH_OPTION_COUNT") or 0)
    except ValueError:
        return []
    return [environ[f"GIT_PUSH_OPTION_{i}"] for i in range(count) if f"GIT_PUSH_OPTION_{i}" in environ]


def _request(url: str, token: str, method: str = "GET", body: dict | None = None, timeout: float = 60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req, timeout=timeout)


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return json.loads(err.read().decode()).get("detail", str(err))
    except ValueError:
        return str(err)


def _follow(base: str, token: str, deployment_id: str) -> str:
    """Print the deployment's log as it grows; return its final status."""
    with _request(f"{base}/api/deployments/{deployment_id}/log?follow=true", token, timeout=3600) as resp:
        for raw in resp:
            sys.stdout.write(raw.decode(errors="replace"))
            sys.stdout.flush()
    with _request(f"{base}/api/deployments/{deployment_id}", token) as resp:
        return json.loads(resp.read())["status"]


def main(argv: list[str]) -> int:
    project = argv[1]
    base, token = _server()
    git_env = {
        k: os.environ[k]
        for k in ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")
        if k in os.environ
    }
    options = push_options(dict(os.environ))
    failed = False
    for line in sys.stdin:
        try:
            old, new, ref = line.split()
        except ValueError:
            continue
        body = {"ref": ref, "old": old, "new": new, "git_env": git_env, "git_dir": os.path.abspath("."),
                "push_options": options}
        try:
            with _request(f"{base}/api/projects/{project}/push", token, "POST", body) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            print(f"branchyard: {ref}: {_error_text(err)}")
            failed = True
            continue
        except urllib.error.URLError as err:
            print(f"branchyard: cannot reach the control plane at {base}: {err.reason}")
            return 1
        if answer.get("note"):
            print(f"branchyard: {answer['note']}")
        deployment_id = answer.get("deployment_id")
        if not deployment_id:
            continue
        status = _follow(base, token, deployment_id)
        if status != "SUCCESS":
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
