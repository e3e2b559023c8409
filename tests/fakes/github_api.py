"""A local fake of the parts of GitHub's REST API that branchyard calls, on 127.0.0.1 and a free port.

It is built from GitHub's documented REST API (version 2022-11-28): the endpoints below, their request bodies
(required fields, types, enums, lengths), their success codes and response objects, and GitHub's error shapes —
401 `{"message": "Bad credentials"}`, 404 `{"message": "Not Found"}`, 400 `{"message": "Problems parsing JSON"}`,
422 `{"message": "Validation Failed", "errors": [{"resource", "field", "code"}]}` (and `"Invalid request.\\n\\n…"`
for the schema-validated branch protection endpoint). Every request is recorded, accepted or not.

Where it is stricter than GitHub, on purpose, so a client bug cannot hide: a missing `X-GitHub-Api-Version` or
`Accept: application/vnd.github+json` header is refused, and so is a body field GitHub does not document (GitHub
would ignore it silently).

    POST  /repos/{owner}/{repo}/statuses/{sha}
    POST  /repos/{owner}/{repo}/deployments                 GET (?sha, ref, task, environment, per_page, page)
    POST  /repos/{owner}/{repo}/deployments/{id}/statuses    GET
    GET   /repos/{owner}/{repo}/issues/{number}/comments     POST (?per_page ≤ 100, page)
    PATCH /repos/{owner}/{repo}/issues/comments/{id}
    GET   /repos/{owner}/{repo}/pulls (?state, head=owner:branch, base, per_page, page)   POST
    PATCH /repos/{owner}/{repo}/pulls/{number}
    PUT   /repos/{owner}/{repo}/branches/{branch}/protection GET
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
COMMIT_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass
class Received:
    """One request as the fake saw it, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass(frozen=True)
class F:
    """A documented body field: JSON types ("string", "boolean", "integer", "object", "array", "null")."""

    types: tuple[str, ...]
    required: bool = False
    enum: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    items: str | None = None  # the JSON type of an array's items
    schema: dict[str, F] | None = None  # an object's fields


def _s(*types: str, **kw: Any) -> F:
    return F(types=types, **kw)


STATUS_BODY = {
    "state": _s("string", required=True, enum=COMMIT_STATES),
    "target_url": _s("string", "null"),
    "description": _s("string", "null", max_length=140),
    "context": _s("string"),
}
DEPLOYMENT_BODY = {
    "ref": _s("string", required=True),
    "task": _s("string"),
    "auto_merge": _s("boolean"),
    "required_contexts": _s("array", items="string"),
    "payload": _s("object", "string"),
    "environment": _s("string"),
    "description": _s("string", "null"),
    "transient_environment": _s("boolean"),
    "production_environment": _s("boolean"),
}
DEPLOYMENT_STATUS_BODY = {
    "state": _s("string", required=True, enum=DEPLOYMENT_STATES),
    "target_url": _s("string"),
    "log_url": _s("string"),
    "description": _s("string", max_length=140),
    "environment": _s("string"),
    "environment_url": _s("string"),
    "auto_inactive": _s("boolean"),
}
COMMENT_BODY = {"body": _s("string", required=True)}
PULL_BODY = {  # POST .../pulls; `title` is required unless `issue` turns an issue into the pull request
    "title": _s("string"),
    "head": _s("string", required=True),
    "head_repo": _s("string"),
    "base": _s("string", required=True),
    "body": _s("string"),
    "maintainer_can_modify": _s("boolean"),
    "draft": _s("boolean"),
    "issue": _s("integer"),
}
PULL_UPDATE_BODY = {
    "title": _s("string"),
    "body": _s("string"),
    "state": _s("string", enum=("open", "closed")),
    "base": _s("string"),
    "maintainer_can_modify": _s("boolean"),
}
PULL_STATES = ("open", "closed", "all")
PROTECTION_BODY = {
    "required_status_checks": _s("object", "null", required=True, schema={
        "strict": _s("boolean", required=True),
        "contexts": _s("array", required=True, items="string"),
        "checks": _s("array", items="object"),
    }),
    "enforce_admins": _s("boolean", "null", required=True),
    "required_pull_request_reviews": _s("object", "null", required=True, schema={
        "dismissal_restrictions": _s("object"),
        "dismiss_stale_reviews": _s("boolean"),
        "require_code_owner_reviews": _s("boolean"),
        "required_approving_review_count": _s("integer", minimum=0, maximum=6),
        "require_last_push_approval": _s("boolean"),
        "bypass_pull_request_allowances": _s("object"),
    }),
    "restrictions": _s("object", "null", required=True, schema={
        "users": _s("array", required=True, items="string"),
        "teams": _s("array", required=True, items="string"),
        "apps": _s("array", items="string"),
    }),
    "required_linear_history": _s("boolean"),
    "allow_force_pushes": _s("boolean", "null"),
    "allow_deletions": _s("boolean"),
    "block_creations": _s("boolean"),
    "required_conversation_resolution": _s("boolean"),
    "lock_branch": _s("boolean"),
    "allow_fork_syncing": _s("boolean"),
}  # fmt: skip


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validate(body: dict[str, Any], schema: dict[str, F], prefix: str = "") -> list[tuple[str, str, str]]:
    """(field, code, message) for every way `body` departs from the documented schema; [] when it fits."""
    problems: list[tuple[str, str, str]] = []
    for name, spec in schema.items():
        if spec.required and name not in body:
            problems.append((prefix + name, "missing_field", f'"{prefix + name}" wasn\'t supplied.'))
    for name, value in body.items():
        path = prefix + name
        spec = schema.get(name)
        if spec is None:
            problems.append((path, "invalid", f'"{path}" is not a documented parameter of this endpoint.'))
            continue
        kind = _type_of(value)
        if kind not in spec.types:
            wanted = " or ".join(spec.types)
            problems.append((path, "invalid", f"For '{path}', {json.dumps(value)} is not {wanted}."))
            continue
        if spec.enum and value not in spec.enum:
            problems.append((path, "invalid", f"For '{path}', {json.dumps(value)} is not one of {', '.join(spec.enum)}."))
        if spec.max_length is not None and kind == "string" and len(value) > spec.max_length:
            problems.append((path, "invalid", f"{path} is too long (maximum is {spec.max_length} characters)"))
        if kind == "integer" and spec.minimum is not None and value < spec.minimum:
            problems.append((path, "invalid", f"For '{path}', {value} is less than the minimum of {spec.minimum}."))
        if kind == "integer" and spec.maximum is not None and value > spec.maximum:
            problems.append((path, "invalid", f"For '{path}', {value} is greater than the maximum of {spec.maximum}."))
        if kind == "array" and spec.items:
            for i, item in enumerate(value):
                if _type_of(item) != spec.items:
                    problems.append((f"{path}[{i}]", "invalid", f"For '{path}[{i}]', {json.dumps(item)} is not a {spec.items}."))
        if kind == "object" and spec.schema is not None:
            problems += validate(value, spec.schema, prefix=f"{path}.")
    return problems


class _Refusal(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("message"))
        self.status = status
        self.payload = payload


def _error(status: int, message: str, **extra: Any) -> _Refusal:
    return _Refusal(status, {"message": message, **extra, "documentation_url": DOCS, "status": str(status)})


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeGitHub:
    """The fake API. `start()` returns its base URL; state is kept in plain dicts for tests to inspect."""

    token: str = "fake-github-token"
    repositories: tuple[str, ...] = ("owner/yoto-smart-stream",)
    login: str = "branchyard-bot"
    received: list[Received] = field(default_factory=list)
    statuses: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (repo, sha) → statuses, oldest first
    deployments: dict[int, dict] = field(default_factory=dict)
    deployment_statuses: dict[int, list[dict]] = field(default_factory=dict)
    comments: dict[int, dict] = field(default_factory=dict)
    protections: dict[tuple[str, str], dict] = field(default_factory=dict)  # (repo, branch) → the PUT body
    pulls: dict[tuple[str, int], dict] = field(default_factory=dict)  # (repo, number) → pull request

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._ids = iter(range(1001, 10**9))
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-github", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test helpers ---------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 502) -> None:
        """Answer the next `count` requests with `status` (GitHub having a bad minute)."""
        with self.lock:
            self._failures += [status] * count

    def add_comment(self, repository: str, number: int, body: str, login: str = "someone") -> dict:
        """A comment written by someone else, as if it were already on the pull request."""
        with self.lock:
            return self._new_comment(repository, number, body, login)

    def comments_on(self, repository: str, number: int) -> list[dict]:
        with self.lock:
            return [c for c in self.comments.values() if c["_repo"] == repository and c["_number"] == number]

    def statuses_for(self, repository: str, sha: str) -> list[dict]:
        with self.lock:
            return list(self.statuses.get((repository, sha), []))

    def accepted(self, method: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status < 400 and (method is None or r.method == method)]

    def refused(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status >= 400]

    # --- request handling -----------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        record = Received(h.command, parts.path, query, headers, None)
        try:
            status, payload = self._dispatch(h.command, parts.path, query, headers, raw, record)
        except _Refusal as refusal:
            status, payload = refusal.status, refusal.payload
        except Exception as err:  # a bug in the fake must show, not hang the client
            status, payload = 500, {"message": f"fake GitHub crashed: {type(err).__name__}: {err}"}
        record.status = status
        with self.lock:
            self.received.append(record)
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-GitHub-Api-Version-Selected", API_VERSION)
        h.end_headers()
        h.wfile.write(data)

    def _dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes,
                  record: Received) -> tuple[int, Any]:
        with self.lock:
            if self._failures:
                status = self._failures.pop(0)
                raise _error(status, "Server Error" if status >= 500 else "injected failure")
        self._check_headers(headers)
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            if "application/json" not in headers.get("content-type", ""):
                raise _error(415, "Unsupported Media Type: send the body as application/json")
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise _error(400, "Problems parsing JSON") from None
            if not isinstance(body, dict):
                raise _error(400, "Problems parsing JSON")
            record.body = body
        segments = [unquote(s) for s in path.strip("/").split("/")]
        if len(segments) < 3 or segments[0] != "repos":
            raise _error(404, "Not Found")
        repo = f"{segments[1]}/{segments[2]}"
        if repo not in self.repositories:
            raise _error(404, "Not Found")
        rest = segments[3:]
        with self.lock:
            return self._route(method, repo, rest, query, body)

    def _check_headers(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization")
        if not auth:
            raise _error(401, "Requires authentication")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or given != self.token:
            raise _error(401, "Bad credentials")
        version = headers.get("x-github-api-version")
        if version != API_VERSION:
            raise _error(400, f"Unsupported 'X-GitHub-Api-Version' header: {version!r}; this fake speaks {API_VERSION}")
        if "application/vnd.github+json" not in headers.get("accept", ""):
            raise _error(415, "Unsupported 'Accept' header: send application/vnd.github+json")

    def _route(self, method: str, repo: str, rest: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        match (method, rest):
            case ("POST", ["statuses", sha]):
                return self._create_status(repo, sha, body)
            case ("POST", ["deployments"]):
                return self._create_deployment(repo, body)
            case ("GET", ["deployments"]):
                return 200, self._list_deployments(repo, query)
            case ("POST", ["deployments", dep_id, "statuses"]):
                return self._create_deployment_status(repo, dep_id, body)
            case ("GET", ["deployments", dep_id, "statuses"]):
                return 200, [_public(s) for s in reversed(self.deployment_statuses.get(self._deployment(repo, dep_id)["id"], []))]
            case ("GET", ["issues", number, "comments"]):
                return 200, self._list_comments(repo, self._issue(number), query)
            case ("POST", ["issues", number, "comments"]):
                self._validate(body, COMMENT_BODY, "IssueComment")
                return 201, _public(self._new_comment(repo, self._issue(number), body["body"], self.login))
            case ("PATCH", ["issues", "comments", comment_id]):
                return self._update_comment(repo, comment_id, body)
            case ("GET", ["pulls"]):
                return 200, self._list_pulls(repo, query)
            case ("POST", ["pulls"]):
                return self._create_pull(repo, body)
            case ("PATCH", ["pulls", number]):
                return self._update_pull(repo, self._issue(number), body)
            case ("PUT", ["branches", branch, "protection"]):
                return self._protect(repo, branch, body)
            case ("GET", ["branches", branch, "protection"]):
                if (repo, branch) not in self.protections:
                    raise _error(404, "Branch not protected")
                return 200, self._protection_object(repo, branch, self.protections[(repo, branch)])
        raise _error(404, "Not Found")

    @staticmethod
    def _validate(body: dict[str, Any], schema: dict[str, F], resource: str) -> None:
        problems = validate(body, schema)
        if problems:
            errors = [{"resource": resource, "field": f, "code": code, "message": msg} for f, code, msg in problems]
            raise _error(422, "Validation Failed", errors=errors)

    def _user(self) -> dict[str, Any]:
        return {"login": self.login, "id": 1, "type": "Bot"}

    def _create_status(self, repo: str, sha: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not _SHA.fullmatch(sha):
            raise _error(422, "No commit found for SHA: " + sha)
        self._validate(body, STATUS_BODY, "Status")
        target = body.get("target_url")
        if target is not None and not re.match(r"https?://", target):
            errors = [{"resource": "Status", "field": "target_url", "code": "invalid", "message": "target_url is not a URL"}]
            raise _error(422, "Validation Failed", errors=errors)
        sid = next(self._ids)
        now = _now()
        status = {
            "url": f"https://api.github.com/repos/{repo}/statuses/{sha}", "id": sid, "node_id": f"SC_{sid}",
            "state": body["state"], "description": body.get("description"), "target_url": target,
            "context": body.get("context", "default"), "created_at": now, "updated_at": now, "creator": self._user(),
            "avatar_url": None,
        }  # fmt: skip
        self.statuses.setdefault((repo, sha), []).append(status)
        return 201, status

    def _create_deployment(self, repo: str, body: dict[str, Any]) -> tuple[int, Any]:
        self._validate(body, DEPLOYMENT_BODY, "Deployment")
        if body.get("auto_merge", True):
            # GitHub would try to merge the default branch into the ref first (and answer 202): branchyard never wants it.
            raise _error(409, "Conflict merging the default branch into the ref (auto_merge is on)")
        if body.get("required_contexts") is None:
            raise _error(409, "Conflict: Commit status checks failed for the ref (required_contexts defaults to all)")
        did = next(self._ids)
        now = _now()
        environment = body.get("environment", "production")
        deployment = {
            "url": f"https://api.github.com/repos/{repo}/deployments/{did}", "id": did, "node_id": f"DE_{did}",
            "sha": body["ref"] if _SHA.fullmatch(body["ref"]) else "0" * 40, "ref": body["ref"],
            "task": body.get("task", "deploy"), "payload": body.get("payload", {}),
            "original_environment": environment, "environment": environment, "description": body.get("description"),
            "creator": self._user(), "created_at": now, "updated_at": now,
            "statuses_url": f"https://api.github.com/repos/{repo}/deployments/{did}/statuses",
            "repository_url": f"https://api.github.com/repos/{repo}",
            "transient_environment": body.get("transient_environment", False),
            "production_environment": body.get("production_environment", environment == "production"),
            "_repo": repo,
        }  # fmt: skip
        self.deployments[did] = deployment
        return 201, _public(deployment)

    def _list_deployments(self, repo: str, query: dict[str, str]) -> list[dict]:
        found = [d for d in self.deployments.values() if d["_repo"] == repo]
        for key in ("sha", "ref", "task", "environment"):
            if key in query:
                found = [d for d in found if d[key] == query[key]]
        found.sort(key=lambda d: d["id"], reverse=True)  # newest first
        return [_public(d) for d in _page(found, query)]

    def _deployment(self, repo: str, dep_id: str) -> dict:
        deployment = self.deployments.get(int(dep_id)) if dep_id.isdigit() else None
        if deployment is None or deployment["_repo"] != repo:
            raise _error(404, "Not Found")
        return deployment

    def _create_deployment_status(self, repo: str, dep_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        deployment = self._deployment(repo, dep_id)
        self._validate(body, DEPLOYMENT_STATUS_BODY, "DeploymentStatus")
        sid = next(self._ids)
        now = _now()
        log_url = body.get("log_url", body.get("target_url", ""))
        status = {
            "url": f"{deployment['url']}/statuses/{sid}", "id": sid, "node_id": f"DES_{sid}", "state": body["state"],
            "creator": self._user(), "description": body.get("description", ""),
            "environment": body.get("environment", deployment["environment"]), "target_url": log_url,
            "log_url": log_url, "environment_url": body.get("environment_url", ""), "created_at": now, "updated_at": now,
            "deployment_url": deployment["url"], "repository_url": deployment["repository_url"],
        }  # fmt: skip
        self.deployment_statuses.setdefault(deployment["id"], []).append(status)
        return 201, status

    @staticmethod
    def _issue(number: str) -> int:
        if not number.isdigit() or int(number) < 1:
            raise _error(404, "Not Found")
        return int(number)

    def _new_comment(self, repo: str, number: int, body: str, login: str) -> dict:
        cid = next(self._ids)
        now = _now()
        comment = {
            "id": cid, "node_id": f"IC_{cid}", "url": f"https://api.github.com/repos/{repo}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}", "body": body,
            "user": {"login": login, "id": 2 if login != self.login else 1, "type": "User"}, "created_at": now,
            "updated_at": now, "issue_url": f"https://api.github.com/repos/{repo}/issues/{number}",
            "author_association": "NONE", "_repo": repo, "_number": number,
        }  # fmt: skip
        self.comments[cid] = comment
        return comment

    def _list_comments(self, repo: str, number: int, query: dict[str, str]) -> list[dict]:
        found = sorted((c for c in self.comments.values() if c["_repo"] == repo and c["_number"] == number),
                       key=lambda c: c["id"])  # oldest first, as GitHub lists them
        return [_public(c) for c in _page(found, query)]

    def _update_comment(self, repo: str, comment_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        comment = self.comments.get(int(comment_id)) if comment_id.isdigit() else None
        if comment is None or comment["_repo"] != repo:
            raise _error(404, "Not Found")
        self._validate(body, COMMENT_BODY, "IssueComment")
        comment["body"], comment["updated_at"] = body["body"], _now()
        return 200, _public(comment)

    def pulls_in(self, repository: str) -> list[dict]:
        """The repository's pull requests, by number."""
        with self.lock:
            return [_public(pr) for (r, _), pr in sorted(self.pulls.items()) if r == repository]

    def _list_pulls(self, repo: str, query: dict[str, str]) -> list[dict]:
        state = query.get("state", "open")
        if state not in PULL_STATES:
            raise _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "state", "code": "invalid"}])
        head = query.get("head")
        if head is not None and ":" not in head:  # GitHub documents user:ref-name (it would match nothing otherwise)
            raise _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        found = [pr for (r, _), pr in sorted(self.pulls.items(), reverse=True) if r == repo  # newest first
                 and (state == "all" or pr["state"] == state) and (head is None or pr["head"]["label"] == head)
                 and ("base" not in query or pr["base"]["ref"] == query["base"])]
        return [_public(pr) for pr in _page(found, query)]

    def _create_pull(self, repo: str, body: dict[str, Any]) -> tuple[int, Any]:
        self._validate(body, PULL_BODY, "PullRequest")
        if "title" not in body and "issue" not in body:
            raise _error(422, "Validation Failed", errors=[{"resource": "PullRequest", "field": "title", "code": "missing_field"}])
        owner = repo.split("/")[0]
        head, base = body["head"].split(":")[-1], body["base"]
        if head == base:
            raise _error(422, "Validation Failed", errors=[
                {"resource": "PullRequest", "code": "custom", "message": f"No commits between {base} and {head}"}])
        label = f"{owner}:{head}"
        if any(r == repo and pr["state"] == "open" and pr["head"]["label"] == label and pr["base"]["ref"] == base
               for (r, _), pr in self.pulls.items()):
            raise _error(422, "Validation Failed", errors=[
                {"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for {label}."}])
        number = max([n for (r, n) in self.pulls if r == repo] + [c["_number"] for c in self.comments.values()
                                                                   if c["_repo"] == repo] + [0]) + 1
        pid, now = next(self._ids), _now()
        side = lambda ref: {"label": f"{owner}:{ref}", "ref": ref, "sha": "0" * 40, "user": self._user()}  # noqa: E731
        pr = {
            "url": f"https://api.github.com/repos/{repo}/pulls/{number}", "id": pid, "node_id": f"PR_{pid}",
            "html_url": f"https://github.com/{repo}/pull/{number}", "number": number, "state": "open", "locked": False,
            "title": body.get("title", ""), "user": self._user(), "body": body.get("body"), "created_at": now,
            "updated_at": now, "closed_at": None, "merged_at": None, "draft": body.get("draft", False),
            "head": side(head), "base": side(base), "maintainer_can_modify": body.get("maintainer_can_modify", False),
        }  # fmt: skip
        self.pulls[(repo, number)] = pr
        return 201, _public(pr)

    def _update_pull(self, repo: str, number: int, body: dict[str, Any]) -> tuple[int, Any]:
        pr = self.pulls.get((repo, number))
        if pr is None:
            raise _error(404, "Not Found")
        self._validate(body, PULL_UPDATE_BODY, "PullRequest")
        for key in ("title", "body", "state", "maintainer_can_modify"):
            if key in body:
                pr[key] = body[key]
        if "base" in body:
            pr["base"] = pr["base"] | {"ref": body["base"], "label": f"{repo.split('/')[0]}:{body['base']}"}
        pr["updated_at"] = _now()
        pr["closed_at"] = _now() if pr["state"] == "closed" else None
        return 200, _public(pr)

    def _protect(self, repo: str, branch: str, body: dict[str, Any]) -> tuple[int, Any]:
        problems = validate(body, PROTECTION_BODY)
        checks = body.get("required_status_checks")
        if isinstance(checks, dict) and "contexts" not in checks and "checks" in checks:
            problems = [p for p in problems if p[0] != "required_status_checks.contexts"]
        if problems:
            raise _error(422, "Invalid request.\n\n" + "\n".join(msg for _, _, msg in problems))
        self.protections[(repo, branch)] = body
        return 200, self._protection_object(repo, branch, body)

    @staticmethod
    def _protection_object(repo: str, branch: str, body: dict[str, Any]) -> dict[str, Any]:
        """The "protected branch" object GitHub answers with."""
        url = f"https://api.github.com/repos/{repo}/branches/{branch}/protection"
        out: dict[str, Any] = {"url": url}
        checks = body.get("required_status_checks")
        if checks is not None:
            out["required_status_checks"] = {
                "url": f"{url}/required_status_checks", "strict": checks["strict"], "contexts": checks.get("contexts", []),
                "contexts_url": f"{url}/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in checks.get("contexts", [])],
            }  # fmt: skip
        reviews = body.get("required_pull_request_reviews")
        if reviews is not None:
            out["required_pull_request_reviews"] = {
                "url": f"{url}/required_pull_request_reviews",
                "dismiss_stale_reviews": reviews.get("dismiss_stale_reviews", False),
                "require_code_owner_reviews": reviews.get("require_code_owner_reviews", False),
                "required_approving_review_count": reviews.get("required_approving_review_count", 0),
                "require_last_push_approval": reviews.get("require_last_push_approval", False),
            }
        out["enforce_admins"] = {"url": f"{url}/enforce_admins", "enabled": bool(body.get("enforce_admins"))}
        for key in ("required_linear_history", "allow_force_pushes", "allow_deletions", "block_creations",
                    "required_conversation_resolution", "lock_branch", "allow_fork_syncing"):
            out[key] = {"enabled": bool(body.get(key))}
        return out


def _page(items: list[dict], query: dict[str, str]) -> list[dict]:
    """GitHub's pagination: per_page (default 30, at most 100) and page (from 1)."""
    try:
        per_page = int(query.get("per_page", "30"))
        page = int(query.get("page", "1"))
    except ValueError:
        raise _error(422, "Validation Failed", errors=[{"resource": "Search", "field": "per_page", "code": "invalid"}]) from None
    per_page = max(1, min(per_page, 100))
    start = (max(page, 1) - 1) * per_page
    return items[start:start + per_page]


def _public(obj: dict) -> dict:
    """Without the fake's own bookkeeping keys."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}
