"""GitHub webhooks: verify a delivery, parse the events branchyard acts on, decide what they mean (pure).

Nothing here does I/O: the API route reads the request, the controller (controller/previews.py) applies
the decisions. Payload shapes are GitHub's documented ones (`pull_request`, `push`, `ping` events).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, BranchyardError, Unauthorized

if TYPE_CHECKING:
    from ..spec.model import PreviewDecl

MAX_BODY = 5 * 1024 * 1024  # bytes; GitHub caps payloads at 25 MB, but the events we act on are a few kB
SIGNATURE_PREFIX = "sha256="
BOT_LOGINS = frozenset({"dependabot[bot]", "renovate[bot]", "dependabot-preview[bot]", "github-actions[bot]"})
PR_OPEN_ACTIONS = frozenset({"opened", "reopened", "ready_for_review"})
PR_UPDATE_ACTIONS = frozenset({"synchronize"})
PR_CLOSE_ACTIONS = frozenset({"closed"})
PR_DRAFT_ACTIONS = frozenset({"converted_to_draft"})
ZERO_SHA = "0" * 40


class PayloadTooLarge(BranchyardError):
    """The body is over the size limit."""

    exit_code = 2
    http_status = 413


class UnsupportedMediaType(BranchyardError):
    """Only `application/json` deliveries are accepted."""

    exit_code = 2
    http_status = 415


# --- verification ----------------------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 header GitHub sends for `body`: sha256=<hex HMAC-SHA256 with the secret>."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> str:
    """The secret that signed `body` (constant-time compare against each); Unauthorized when none did."""
    if not header:
        raise Unauthorized("missing X-Hub-Signature-256 header: configure the webhook with a secret")
    if not header.startswith(SIGNATURE_PREFIX):
        raise Unauthorized("X-Hub-Signature-256: expected sha256=<hex digest>")
    candidates = [s for s in secrets if s]
    if not candidates:
        raise Unauthorized("no webhook secret configured: set BRANCHYARD_GITHUB_WEBHOOK_SECRET or run "
                           "`branchyard github configure --webhook-secret S`")
    matched = None
    for secret in candidates:  # every candidate is compared: timing does not tell which one matched
        if hmac.compare_digest(sign(body, secret).encode(), header.encode()):
            matched = secret
    if matched is None:
        raise Unauthorized("X-Hub-Signature-256 does not match the body: wrong webhook secret or altered payload")
    return matched


def check_content_type(content_type: str | None) -> None:
    """GitHub's "Content type: application/json" setting; the form-encoded one is refused."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(f"Content-Type {content_type or '(none)'!r} is not accepted: set the webhook's "
                                   "content type to application/json")


def check_size(length: int) -> None:
    if length > MAX_BODY:
        raise PayloadTooLarge(f"payload of {length} bytes is over the limit of {MAX_BODY} bytes")


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a delivery; BadInput with the parser's position otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput("payload is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise BadInput(f"payload is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict):
        raise BadInput("payload: expected a JSON object")
    return data


# --- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PullRequestEvent:
    action: str
    number: int
    repository: str  # the base repository, "owner/name"
    head_sha: str
    head_ref: str
    head_repo: str | None  # None when the fork was deleted
    base_ref: str
    base_sha: str | None
    draft: bool
    author: str
    author_type: str
    merged: bool

    @property
    def fork(self) -> bool:
        """Head and base are different repositories (or the head repository is gone)."""
        return self.head_repo is None or self.head_repo.lower() != self.repository.lower()

    @property
    def bot(self) -> bool:
        return self.author_type == "Bot" or self.author.lower() in BOT_LOGINS


@dataclass(frozen=True)
class PushEvent:
    repository: str
    ref: str
    before: str
    after: str
    deleted: bool

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def _get(data: Any, path: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    """data[a][b]… by a dotted path, checked for type; BadInput naming the field when missing or wrong."""
    value = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            if optional:
                return None
            raise BadInput(f"payload: missing field {path}")
        value = value[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind is int or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BadInput(f"payload: field {path}: expected {name}, got {json.dumps(value)[:40]}")
    return value


def repository_of(data: dict[str, Any]) -> str:
    """repository.full_name: which project the delivery is for."""
    return _get(data, "repository.full_name", str)


def _sha(data: dict[str, Any], path: str, *, optional: bool = False) -> str | None:
    value = _get(data, path, str, optional=optional)
    if value is None:
        return None
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value):
        raise BadInput(f"payload: field {path}: expected a 40-digit commit sha, got {value[:50]!r}")
    return value


def parse_pull_request(data: dict[str, Any]) -> PullRequestEvent:
    number = _get(data, "number", int)
    if number <= 0:
        raise BadInput(f"payload: field number: expected a positive pull request number, got {number}")
    head_repo = _get(data, "pull_request.head.repo", dict, optional=True)
    return PullRequestEvent(
        action=_get(data, "action", str),
        number=number,
        repository=repository_of(data),
        head_sha=_sha(data, "pull_request.head.sha"),
        head_ref=_get(data, "pull_request.head.ref", str),
        head_repo=None if head_repo is None else _get(head_repo, "full_name", str),
        base_ref=_get(data, "pull_request.base.ref", str),
        base_sha=_sha(data, "pull_request.base.sha", optional=True),
        draft=bool(_get(data, "pull_request.draft", bool, optional=True)),
        author=_get(data, "pull_request.user.login", str, optional=True) or "",
        author_type=_get(data, "pull_request.user.type", str, optional=True) or "User",
        merged=bool(_get(data, "pull_request.merged", bool, optional=True)),
    )


def parse_push(data: dict[str, Any]) -> PushEvent:
    after = _sha(data, "after")
    return PushEvent(
        repository=repository_of(data),
        ref=_get(data, "ref", str),
        before=_sha(data, "before"),
        after=after,
        deleted=bool(_get(data, "deleted", bool, optional=True)) or after == ZERO_SHA,
    )


# --- decisions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intent:
    """What a delivery asks for: `open` (create/update the preview), `close`, `draft`, or `ignore` (with why)."""

    kind: str
    reason: str = ""


def pr_intent(event: PullRequestEvent) -> Intent:
    """opened/reopened/ready_for_review → open; synchronize → open (a new head); closed → close."""
    if event.action in PR_OPEN_ACTIONS or event.action in PR_UPDATE_ACTIONS:
        return Intent("open")
    if event.action in PR_CLOSE_ACTIONS:
        return Intent("close", "merged" if event.merged else "closed")
    if event.action in PR_DRAFT_ACTIONS:
        return Intent("draft")
    return Intent("ignore", f"pull_request action {event.action!r} changes nothing here")


@dataclass(frozen=True)
class Admission:
    decision: str  # deploy | pending_approval | refused
    reason: str = ""


def admit(*, branch: str, fork: bool, bot: bool, draft: bool, head_sha: str, approved_sha: str | None,
          policy: PreviewDecl | None, persistent_branches: Iterable[str] = ()) -> Admission:
    """Whether a pull request gets a preview under the base branch's policy (`[environments.pr]`).

    `policy` None: the base branch declares no preview template. Fork approval is for one commit: a new
    push to the fork waits for approval again."""
    if policy is None:
        return Admission("refused", "the base branch's branchyard.toml has no [environments.pr] template")
    if policy.trigger != "pr":
        return Admission("refused", 'previews are per branch here (trigger = "branch"), not per pull request')
    if branch in set(persistent_branches):
        return Admission("refused", f"branch {branch!r} deploys a persistent environment")
    if not any(fnmatchcase(branch, pattern) for pattern in policy.patterns):
        return Admission("refused", f"branch {branch!r} matches none of {', '.join(policy.patterns)}")
    if bot and not policy.bots:
        return Admission("refused", "pull requests opened by bots get no preview (set bots = true to allow)")
    if draft and not policy.drafts:
        return Admission("refused", "draft pull request (set drafts = true, or mark it ready for review)")
    if fork:
        if policy.forks == "never":
            return Admission("refused", 'pull requests from forks get no preview (forks = "never")')
        if policy.forks == "approve" and approved_sha != head_sha:
            return Admission("pending_approval", f"from a fork: waiting for `branchyard previews approve` of "
                                                 f"{head_sha[:12]}")
    return Admission("deploy")
