"""A small GitHub REST client on httpx: every request branchyard makes to GitHub goes through it.

Requests carry the headers GitHub documents (`Accept: application/vnd.github+json`,
`X-GitHub-Api-Version: 2022-11-28`, `Authorization: Bearer <token>`). httpx errors and 4xx/5xx answers become
branchyard errors with one-line messages that name the method and path, never the token:

- network failures, 5xx, 429 and rate-limit 403s → BackendError (worth retrying);
- 401 and other 403s → Unauthorized; 404 → NotFound; 422 and other 4xx → BadInput.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import BackendError, BadInput, BranchyardError, NotFound, Unauthorized

API_VERSION = "2022-11-28"
DEFAULT_API_URL = "https://api.github.com"
MEDIA_TYPE = "application/vnd.github+json"
DESCRIPTION_MAX = 140  # commit and deployment status descriptions
COMMIT_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA = re.compile(r"[0-9a-f]{40}")
_COMMENTS_PAGES = 30  # at most 3,000 comments are searched for the marker


def short(text: str, limit: int = DESCRIPTION_MAX) -> str:
    """One line of at most `limit` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def split_repository(repository: str) -> tuple[str, str]:
    """"owner/name" → (owner, name); BadInput otherwise."""
    if not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository):
        raise BadInput(f'GitHub repository: expected "owner/name", got {repository!r}')
    owner, name = repository.split("/")
    return owner, name


class GitHubClient:
    """GitHub's REST API for one token. `transport` replaces the network (tests: httpx.MockTransport or a fake)."""

    def __init__(self, token: str, *, base_url: str = DEFAULT_API_URL, transport: httpx.BaseTransport | None = None,
                 timeout: float = 10.0) -> None:
        if not token:
            raise BadInput("BRANCHYARD_GITHUB_TOKEN is not set: GitHub needs a token (a fine-grained one with "
                           "commit statuses, deployments, pull requests and administration access)")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Accept": MEDIA_TYPE,
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}",
                "User-Agent": "branchyard",
            },
            timeout=timeout,
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )

    def __repr__(self) -> str:  # the token stays out of reprs, tracebacks and logs
        return f"GitHubClient({self.base_url})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commit statuses ------------------------------------------------------------------------------

    def create_status(self, repository: str, sha: str, state: str, *, context: str, target_url: str | None = None,
                      description: str | None = None) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/statuses/{sha}: one commit status (state pending|success|failure|error)."""
        if state not in COMMIT_STATES:
            raise BadInput(f"commit status state: expected one of {', '.join(COMMIT_STATES)}, got {state!r}")
        if not _SHA.fullmatch(sha or ""):
            raise BadInput(f"commit status: expected a full 40-character commit sha, got {sha!r}")
        body: dict[str, Any] = {"state": state, "context": context}
        if target_url:
            body["target_url"] = target_url
        if description is not None:
            body["description"] = short(description)
        return self._call("POST", f"{self._repo(repository)}/statuses/{sha}", body)

    # --- deployments ----------------------------------------------------------------------------------

    def create_deployment(self, repository: str, ref: str, environment: str, *, description: str | None = None,
                          payload: dict[str, Any] | None = None, transient: bool = False,
                          production: bool = False) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/deployments for `ref`, never merging and needing no status checks."""
        body: dict[str, Any] = {
            "ref": ref,
            "environment": environment,
            "auto_merge": False,
            "required_contexts": [],
            "transient_environment": transient,
            "production_environment": production,
            "payload": payload or {},
        }
        if description is not None:
            body["description"] = short(description)
        return self._call("POST", f"{self._repo(repository)}/deployments", body)

    def list_deployments(self, repository: str, *, sha: str | None = None, environment: str | None = None) -> list[dict]:
        """GET /repos/{owner}/{repo}/deployments, filtered by sha and environment (first 100)."""
        params = {"per_page": "100"} | ({"sha": sha} if sha else {}) | ({"environment": environment} if environment else {})
        return self._call("GET", f"{self._repo(repository)}/deployments", params=params)

    def create_deployment_status(self, repository: str, deployment_id: int, state: str, *,
                                 environment_url: str | None = None, log_url: str | None = None,
                                 description: str | None = None, environment: str | None = None) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/deployments/{id}/statuses."""
        if state not in DEPLOYMENT_STATES:
            raise BadInput(f"deployment status state: expected one of {', '.join(DEPLOYMENT_STATES)}, got {state!r}")
        body: dict[str, Any] = {"state": state}
        if environment_url:
            body["environment_url"] = environment_url
        if log_url:
            body["log_url"] = log_url
        if description is not None:
            body["description"] = short(description)
        if environment:
            body["environment"] = environment
        return self._call("POST", f"{self._repo(repository)}/deployments/{int(deployment_id)}/statuses", body)

    # --- pull request comments ------------------------------------------------------------------------

    def list_issue_comments(self, repository: str, number: int) -> list[dict[str, Any]]:
        """GET /repos/{owner}/{repo}/issues/{number}/comments, every page (100 a page)."""
        comments: list[dict[str, Any]] = []
        for page in range(1, _COMMENTS_PAGES + 1):
            batch = self._call("GET", f"{self._repo(repository)}/issues/{_number(number)}/comments",
                               params={"per_page": "100", "page": str(page)})
            comments += batch
            if len(batch) < 100:
                break
        return comments

    def upsert_comment(self, repository: str, number: int, marker: str, body: str) -> tuple[dict[str, Any], bool]:
        """Update in place the pull request's comment holding `marker`, or create it; (comment, created)."""
        if marker not in body:
            body = f"{marker}\n{body}"
        for comment in self.list_issue_comments(repository, number):
            if marker in (comment.get("body") or ""):
                if comment.get("body") == body:
                    return comment, False
                path = f"{self._repo(repository)}/issues/comments/{int(comment['id'])}"
                return self._call("PATCH", path, {"body": body}), False
        return self._call("POST", f"{self._repo(repository)}/issues/{_number(number)}/comments", {"body": body}), True

    # --- pull requests ----------------------------------------------------------------------------------

    def list_pulls(self, repository: str, *, head: str, base: str, state: str = "open") -> list[dict[str, Any]]:
        """GET /repos/{owner}/{repo}/pulls?head=owner:branch&base=…&state=…: the pull requests between two branches of
        the repository itself (first 100; GitHub allows one open pull request per head and base)."""
        owner, _ = split_repository(repository)
        params = {"head": f"{owner}:{_branch(head)}", "base": _branch(base), "state": state, "per_page": "100"}
        return self._call("GET", f"{self._repo(repository)}/pulls", params=params)

    def create_pull(self, repository: str, *, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        """POST /repos/{owner}/{repo}/pulls: a pull request from branch `head` into `base` of the same repository."""
        payload = {"title": title, "head": _branch(head), "base": _branch(base), "body": body,
                   "maintainer_can_modify": False}
        return self._call("POST", f"{self._repo(repository)}/pulls", payload)

    def update_pull(self, repository: str, number: int, *, title: str, body: str) -> dict[str, Any]:
        """PATCH /repos/{owner}/{repo}/pulls/{number}: a new title and body."""
        return self._call("PATCH", f"{self._repo(repository)}/pulls/{_number(number)}", {"title": title, "body": body})

    # --- branch protection ----------------------------------------------------------------------------

    def update_branch_protection(self, repository: str, branch: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /repos/{owner}/{repo}/branches/{branch}/protection with a full protection body."""
        if not branch:
            raise BadInput("branch protection: empty branch name")
        return self._call("PUT", f"{self._repo(repository)}/branches/{quote(branch, safe='')}/protection", body)

    # --- plumbing -------------------------------------------------------------------------------------

    @staticmethod
    def _repo(repository: str) -> str:
        owner, name = split_repository(repository)
        return f"/repos/{owner}/{name}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
              params: dict[str, str] | None = None) -> Any:
        what = f"GitHub API {method} {path}"
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise BackendError(f"{what}: no answer from {self.base_url} in time") from None
        except httpx.HTTPError as err:
            raise BackendError(f"{what}: cannot reach {self.base_url} ({type(err).__name__})") from None
        if response.status_code >= 400:
            raise _error(what, response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{what}: answer {response.status_code} is not JSON") from None


def _number(number: int) -> int:
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise BadInput(f"pull request number: expected a positive integer, got {number!r}")
    return number


def _branch(name: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("-") or any(c in name for c in " :~^?*[\\"):
        raise BadInput(f"pull request: expected a branch name, got {name!r}")
    return name


def _error(what: str, response: httpx.Response) -> BranchyardError:
    """A 4xx/5xx answer as a one-line branchyard error, with GitHub's own message and field errors."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = {}
    message = str(data.get("message") or response.reason_phrase or "error") if isinstance(data, dict) else "error"
    details = []
    for item in (data.get("errors") or []) if isinstance(data, dict) else []:
        if isinstance(item, dict):
            field = item.get("field")
            text = item.get("message") or item.get("code") or ""
            details.append(f"{field}: {text}" if field else str(text))
        else:
            details.append(str(item))
    line = short(f"{what}: {status} {message}" + (f" ({'; '.join(details)})" if details else ""), 400)
    limited = response.headers.get("x-ratelimit-remaining") == "0" or "rate limit" in message.lower()
    if status >= 500 or status == 429 or (status == 403 and limited):
        return BackendError(line)
    if status in (401, 403):
        return Unauthorized(line)
    if status == 404:
        return NotFound(line + " (no such repository or object, or the token cannot see it)")
    return BadInput(line)
