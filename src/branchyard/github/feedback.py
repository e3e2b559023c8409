"""GitHub feedback driven by audit events: commit statuses, deployments and one PR comment per preview.

The control plane records events (`store.record`); `Feedback` listens to them (Store.listeners), so nothing in
the deploy or webhook code knows GitHub exists. `plan(kind, message, facts)` is the pure mapping from an event to
GitHub requests; `Resolver` finds the facts (repository, commit, URL) in the store; a single background thread
applies the requests in order, retrying GitHub's bad minutes with backoff, and never blocks a deploy. A request
that still fails is logged on one line (never with the token) and recorded as a `github.failed` event.

Events are durable (the audit log) and a cursor file keeps the id of the last one handled, so a control plane
killed with feedback still queued sends it after its restart (events of the last day, at most REPLAY_MAX).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import cost, names
from ..errors import BackendError, BranchyardError
from ..settings import Settings
from ..spec import load_project
from ..store import models as m
from ..store.db import RecordedEvent, Store, snapshot
from .client import GitHubClient, short
from .protection import status_context
from .worker import Worker

log = logging.getLogger("branchyard.github")

HANDLED = frozenset({
    "deploy.queued", "deploy.succeeded", "deploy.failed", "deploy.crashed", "deploy.skipped",
    "preview.destroyed", "preview.refused", "preview.pending_approval", "preview.waiting",
    "deploy.tests_started", "deploy.tests_passed", "deploy.tests_failed",
})  # fmt: skip
TESTS_SUFFIX = "/tests"  # the post-deploy tests' own commit status: branchyard/<env>/tests, branchyard/preview/tests
FAILED_KIND = "github.failed"
REPLAY_MAX = 1000
REPLAY_WINDOW = dt.timedelta(days=1)
_PR = re.compile(r"pr-([1-9][0-9]*)")


# --- the pure part: event + facts → requests ---------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What an event is about, as GitHub needs it."""

    project: str
    repository: str  # owner/name
    environment: str
    url: str | None = None  # the environment's public URL
    sha: str | None = None
    deployment_id: str | None = None  # branchyard's
    production: bool = False
    preview: bool = False
    pr_number: int | None = None
    monthly_cost: float | None = None  # the deployment's projected $/month (issue 17); None: unknown
    allocation: str | None = None  # what it is priced on: "web 1×512 MB/0.5 vCPU · postgres 512 MB/1 GB"


@dataclass(frozen=True)
class CommitStatus:
    repository: str
    sha: str
    state: str  # pending | success | failure | error
    context: str
    description: str
    target_url: str | None = None


@dataclass(frozen=True)
class Deployment:
    repository: str
    sha: str
    environment: str
    deployment_id: str  # branchyard's, kept in the GitHub deployment's payload
    transient: bool
    production: bool
    description: str


@dataclass(frozen=True)
class DeploymentStatus:
    repository: str
    sha: str
    environment: str
    deployment_id: str
    state: str
    description: str
    environment_url: str | None = None


@dataclass(frozen=True)
class PullRequestComment:
    repository: str
    number: int
    marker: str
    body: str


Action = CommitStatus | Deployment | DeploymentStatus | PullRequestComment

STATE_WORDS = {
    "building": "🔨 building",
    "live": "✅ live",
    "failed": "❌ failed",
    "destroyed": "🗑️ destroyed",
    "refused": "⛔ not deployed",
    "pending_approval": "⏸️ waiting for approval",
    "waiting": "⏳ waiting for a free preview slot",
    "unhealthy": "⚠️ live, but its post-deploy tests failed",
}
COSTED = ("building", "live", "failed", "unhealthy")  # states whose comment shows the preview's projected cost
TESTS_WORDS = {"running": "⏳ running", "passed": "✅ passed", "failed": "❌ failed"}


def marker(project: str) -> str:
    """The hidden line that identifies branchyard's preview comment of a project on a pull request."""
    return f"<!-- branchyard:preview:{project} -->"


def comment_body(facts: Facts, state: str, detail: str | None = None, tests: str | None = None) -> str:
    """The PR comment: preview environment, state, URL, commit, post-deploy tests (and why, when it failed or was
    refused)."""
    url = facts.url if state in ("building", "live", "failed", "unhealthy") and facts.url else None
    lines = [
        marker(facts.project),
        f"### branchyard preview `{facts.environment}`",
        "",
        "| | |",
        "|---|---|",
        f"| **State** | {STATE_WORDS[state]} |",
        f"| **URL** | {url if url else '—'} |",
    ]
    if facts.sha:
        lines.append(f"| **Commit** | `{facts.sha[:12]}` |")
    if tests:
        lines.append(f"| **Tests** | {TESTS_WORDS[tests]} |")
    if facts.monthly_cost is not None and state in COSTED:
        on = f" ({facts.allocation})" if facts.allocation else ""
        lines.append(f"| **Cost** | {cost.money(facts.monthly_cost)} / month projected{on} |")
    if detail:
        lines += ["", short(detail, 500)]
    return "\n".join(lines) + "\n"


def plan(kind: str, message: str, facts: Facts) -> list[Action]:
    """The GitHub requests one event calls for (`message` already masked); [] for events without feedback."""
    env, repo = facts.environment, facts.repository
    context = status_context(env, preview=facts.preview)
    actions: list[Action] = []
    comment: tuple[str, ...] | None = None
    if kind.startswith("deploy.tests_"):  # post-deploy tests: a status of their own, so branch protection can require it
        state, description, comment = {
            "deploy.tests_started": ("pending", f"Post-deploy tests running in {env}", ("live", None, "running")),
            "deploy.tests_passed": ("success", f"Post-deploy tests passed in {env}", ("live", None, "passed")),
            "deploy.tests_failed": ("failure", f"Post-deploy tests failed in {env}: {message}",
                                    ("unhealthy", f"Post-deploy tests failed: {message}", "failed")),
        }[kind]
        if facts.sha:
            actions.append(CommitStatus(repo, facts.sha, state, context + TESTS_SUFFIX, short(description),
                                        target_url=facts.url))
    elif kind == "deploy.queued":
        if facts.sha:
            actions.append(CommitStatus(repo, facts.sha, "pending", context, short(f"Deploying {facts.sha[:7]} to {env}")))
            if facts.deployment_id:
                actions += [
                    Deployment(repo, facts.sha, env, facts.deployment_id, transient=facts.preview, production=facts.production,
                               description=short(f"branchyard deployment {facts.deployment_id}")),
                    DeploymentStatus(repo, facts.sha, env, facts.deployment_id, "queued", "Queued: building"),
                ]
        comment = ("building", None)
    elif kind == "deploy.succeeded":
        if facts.sha:
            live = f"Live at {facts.url}" if facts.url else f"Live in {env}"
            actions.append(CommitStatus(repo, facts.sha, "success", context, short(live), target_url=facts.url))
            if facts.deployment_id:
                actions.append(DeploymentStatus(repo, facts.sha, env, facts.deployment_id, "success", short(live),
                                                environment_url=facts.url))
        comment = ("live", None)
    elif kind == "deploy.failed":
        if facts.sha:
            actions.append(CommitStatus(repo, facts.sha, "failure", context, short(f"Deploy to {env} failed: {message}")))
            if facts.deployment_id:
                actions.append(DeploymentStatus(repo, facts.sha, env, facts.deployment_id, "failure", short(message)))
        comment = ("failed", f"Deploy failed: {message}")
    elif kind == "deploy.crashed":  # it went live, then stopped for good (restart policy exhausted)
        if facts.sha:
            actions.append(CommitStatus(repo, facts.sha, "error", context, short(f"Crashed in {env}: {message}")))
            if facts.deployment_id:
                actions.append(DeploymentStatus(repo, facts.sha, env, facts.deployment_id, "error", short(message)))
        comment = ("failed", f"Crashed: {message}")
    elif kind == "deploy.skipped":  # a newer deployment of the environment superseded it before it went live
        if facts.sha:
            actions.append(CommitStatus(repo, facts.sha, "error", context, short(f"Not deployed to {env}: {message}")))
            if facts.deployment_id:
                actions.append(DeploymentStatus(repo, facts.sha, env, facts.deployment_id, "inactive", short(message)))
    elif kind == "preview.destroyed":
        comment = ("destroyed", None)
    elif kind == "preview.refused":
        comment = ("refused", message)
    elif kind == "preview.pending_approval":
        comment = ("pending_approval", message)
    elif kind == "preview.waiting":  # maxPreviews reached: deployed when a slot frees (then deploy.queued follows)
        comment = ("waiting", message)
    if comment is not None and facts.pr_number is not None:
        actions.append(PullRequestComment(repo, facts.pr_number, marker(facts.project), comment_body(facts, *comment)))
    return actions


def pr_number(environment: str) -> int | None:
    """17 for pr-17; None for any other environment name."""
    match = _PR.fullmatch(environment or "")
    return int(match.group(1)) if match else None


# --- the facts, from the store -------------------------------------------------------------------------


class Resolver:
    """Looks up what an event is about: the project's GitHub repository (from the deployed commit's
    branchyard.toml), the commit, the environment's URL; masks the message with the environment's secrets."""

    def __init__(self, store: Store, settings: Settings, *, hostname: Callable[[m.Project, m.Environment], str] | None = None,
                 redactor: Callable[[int], Callable[[str], str]] | None = None, release_wait: float = 10.0) -> None:
        self.store = store
        self.settings = settings
        self.hostname = hostname or (lambda p, e: names.hostname(p.name, e.name, p.domain or settings.domain,
                                                                 production=e.production))
        self.redactor = redactor
        self.release_wait = release_wait
        self._repos: dict[str, str | None] = {}  # release dir → its spec's github.repository
        self._last: dict[str, str] = {}  # project → last repository seen (for a preview already torn down)

    def resolve(self, event: RecordedEvent) -> tuple[Facts, str] | None:
        """(facts, masked message), or None when the project has no GitHub repository."""
        with self.store.session() as s:
            project = s.scalar(select(m.Project).where(m.Project.name == event.project))
            if project is None or not event.environment:
                return None
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == project.id,
                                                       m.Environment.name == event.environment))
            dep = s.get(m.Deployment, event.deployment_id) if event.deployment_id else None
            if env is not None:
                host = self.hostname(project, env)
            else:
                host = names.hostname(project.name, event.environment, project.domain or self.settings.domain, production=False)
            others = list(s.scalars(select(m.Deployment.release_dir).where(m.Deployment.project_id == project.id)
                                    .order_by(m.Deployment.created_at.desc()).limit(20)))
            env_id = env.id if env is not None else None
            production = bool(env.production) if env is not None else False
            ephemeral = bool(env.ephemeral) if env is not None else False
            sha = dep.commit_sha if dep is not None else None
            priced = self._priced(s, dep, env)
            own_release = dep.release_dir if dep is not None else None
            in_progress = dep is not None and dep.status in m.IN_PROGRESS
        repository = self._repository(event.project, own_release, in_progress, [d for d in others if d])
        if repository is None:
            return None
        number = pr_number(event.environment)
        message = event.message
        if self.redactor is not None and env_id is not None:
            message = self.redactor(env_id)(message)
        facts = Facts(
            project=event.project, repository=repository, environment=event.environment,
            url=self.settings.public_url(host), sha=sha, deployment_id=event.deployment_id if dep is not None else None,
            production=production, preview=ephemeral or number is not None, pr_number=number,
            monthly_cost=priced[0] if priced else None, allocation=priced[1] if priced else None,
        )  # fmt: skip
        return facts, message

    def _priced(self, s: Session, dep: m.Deployment | None, env: m.Environment | None) -> tuple[float, str] | None:
        """The deployment's projected monthly cost and allocation (its configuration snapshot; the environment's
        current one while the event's is still building), or None when there is no snapshot yet."""
        snapshot = dep.config_json if dep is not None else None
        if not snapshot and env is not None and env.current_deployment_id:
            current = s.get(m.Deployment, env.current_deployment_id)
            snapshot = current.config_json if current is not None else None
        if not snapshot:
            return None
        try:
            services = cost.allocation(json.loads(snapshot), env.replicas_override if env is not None else None,
                                       json.loads(env.services_scale) if env is not None and env.services_scale else None)
        except (ValueError, TypeError, AttributeError):
            return None
        return cost.monthly(services, self.settings.prices).total, cost.summary(services)

    def _repository(self, project: str, own: str | None, in_progress: bool, others: list[str]) -> str | None:
        if own:
            deadline = time.monotonic() + (self.release_wait if in_progress else 0)
            while not Path(own).is_dir() and time.monotonic() < deadline:
                time.sleep(0.05)  # a queued deployment's release directory is moved into place right after the commit
            if Path(own).is_dir():
                return self._remember(project, self._spec_repository(own))
        for release in others:
            if Path(release).is_dir():
                return self._remember(project, self._spec_repository(release))
        return self._last.get(project)

    def _remember(self, project: str, repository: str | None) -> str | None:
        if repository:
            self._last[project] = repository
        return repository

    def _spec_repository(self, release_dir: str) -> str | None:
        if release_dir not in self._repos:
            try:
                self._repos[release_dir] = load_project(Path(release_dir)).github_repository
            except BranchyardError:
                return None  # a spec that does not load fails its deploy; there is nothing to tell GitHub here
        return self._repos[release_dir]


# --- the worker ------------------------------------------------------------------------------------------


class Feedback:
    """Turns recorded events into GitHub requests on one background thread (in order), with bounded retries."""

    def __init__(self, store: Store, client: GitHubClient, resolver: Resolver, *, attempts: int = 5,
                 backoff: float = 0.5, max_backoff: float = 8.0, max_queue: int = 1000, cursor: Path | None = None) -> None:
        self.store = store
        self.cursor_path = cursor  # JSON {"event_id": N}: the last event handled; None: no replay after a restart
        self._cursor = 0
        self._replayed: set[int] = set()
        self.client = client
        self.resolver = resolver
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._github_ids: dict[str, int] = {}  # branchyard deployment id → GitHub deployment id
        self._worker: Worker[RecordedEvent] = Worker(
            "github-feedback", self.handle, describe=lambda e: e.kind, after=lambda e: self._save_cursor(e.id),
            max_queue=max_queue)
        self._stop = self._worker.stopping

    def notify(self, event: RecordedEvent) -> None:
        """Store listener: queue the event (never blocks; a full queue drops it with a log line)."""
        if event.kind not in HANDLED or self._stop.is_set() or event.id in self._replayed:
            return
        if not self._worker.put(event):
            log.warning("GitHub feedback queue full: dropped %s for %s/%s", event.kind, event.project, event.environment)

    def start(self) -> None:
        """Queue what a previous run left unsent (with a cursor file), then start the thread."""
        if self.cursor_path is not None:
            self._replay()
        self._worker.start()

    def _replay(self) -> None:
        saved = _read_cursor(self.cursor_path)
        with self.store.session() as s:
            if saved is None:  # first start with feedback on: start from now, not from the whole history
                self._save_cursor(s.scalar(select(func.max(m.Event.id))) or 0)
                return
            since = m.utcnow() - REPLAY_WINDOW
            rows = s.scalars(select(m.Event).where(m.Event.id > saved, m.Event.kind.in_(HANDLED), m.Event.at >= since)
                             .order_by(m.Event.id).limit(REPLAY_MAX)).all()
            events = [snapshot(row) for row in rows]
        self._cursor = saved
        if events:
            log.info("GitHub feedback: sending %d event(s) left from before the restart", len(events))
        for event in events:
            self.notify(event)
            self._replayed.add(event.id)

    def _save_cursor(self, event_id: int) -> None:
        self._cursor = max(self._cursor, event_id)
        if self.cursor_path is None:
            return
        tmp = self.cursor_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"event_id": self._cursor}))
            os.replace(tmp, self.cursor_path)
        except OSError as err:
            log.warning("GitHub feedback: cannot write %s: %s", self.cursor_path, err)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued (up to `timeout` seconds), then stop the thread."""
        self._worker.stop(timeout)
        self.client.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued event has been handled."""
        return self._worker.wait_idle(timeout)

    def handle(self, event: RecordedEvent) -> None:
        """Resolve one event, then apply each of its requests (each retried on its own)."""
        resolved = self.resolver.resolve(event)
        if resolved is None:
            return
        facts, message = resolved
        for action in plan(event.kind, message, facts):
            self._with_retries(event, action)

    def _with_retries(self, event: RecordedEvent, action: Action) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self.apply(action)
                return
            except BackendError as err:  # network, 5xx, 429: GitHub's bad minute
                if attempt == self.attempts or self._stop.is_set():
                    self._give_up(event, action, err)
                    return
                self._stop.wait(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
            except BranchyardError as err:  # 401/403/404/422: retrying will not help
                self._give_up(event, action, err)
                return

    def _give_up(self, event: RecordedEvent, action: Action, err: BranchyardError) -> None:
        what = type(action).__name__
        log.warning("GitHub feedback failed (%s for %s %s/%s): %s", what, event.kind, event.project, event.environment, err)
        try:
            with self.store.session() as s:
                self.store.record(s, event.project, FAILED_KIND, short(f"{what} for {event.kind}: {err}", 500),
                                  environment=event.environment, deployment_id=event.deployment_id)
        except Exception:
            log.exception("could not record the GitHub feedback failure")

    def apply(self, action: Action) -> None:
        """One request (or two: a deployment status finds or creates its deployment first)."""
        c = self.client
        if isinstance(action, CommitStatus):
            c.create_status(action.repository, action.sha, action.state, context=action.context,
                            target_url=action.target_url, description=action.description)
        elif isinstance(action, Deployment):  # found first: an event replayed after a restart creates no duplicate
            found = self._find_deployment(action.repository, action.sha, action.environment, action.deployment_id)
            self._github_ids[action.deployment_id] = found or self._create_deployment(action)
        elif isinstance(action, DeploymentStatus):
            github_id = self._github_ids.get(action.deployment_id) or self._find_deployment(
                action.repository, action.sha, action.environment, action.deployment_id)
            if github_id is None:
                github_id = self._create_deployment(Deployment(
                    action.repository, action.sha, action.environment, action.deployment_id, transient=False,
                    production=action.environment == "production", description=f"branchyard deployment {action.deployment_id}",
                ))  # fmt: skip
            self._github_ids[action.deployment_id] = github_id
            c.create_deployment_status(action.repository, github_id, action.state, environment_url=action.environment_url,
                                       description=action.description, environment=action.environment)
        elif isinstance(action, PullRequestComment):
            c.upsert_comment(action.repository, action.number, action.marker, action.body)

    def _create_deployment(self, action: Deployment) -> int:
        created = self.client.create_deployment(
            action.repository, action.sha, action.environment, description=action.description,
            payload={"branchyard_deployment": action.deployment_id}, transient=action.transient, production=action.production,
        )  # fmt: skip
        return int(created["id"])

    def _find_deployment(self, repository: str, sha: str, environment: str, deployment_id: str) -> int | None:
        """The GitHub deployment created for this branchyard deployment (before a restart, say), by its payload."""
        for found in self.client.list_deployments(repository, sha=sha, environment=environment):
            payload = found.get("payload")
            if isinstance(payload, dict) and payload.get("branchyard_deployment") == deployment_id:
                return int(found["id"])
        return None


def _read_cursor(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text())["event_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None


def start(settings: Settings, store: Store, *, hostname: Callable[[m.Project, m.Environment], str],
          redactor: Callable[[int], Callable[[str], str]]) -> Feedback | None:
    """Listen to the store's events and give GitHub feedback, when a token is configured; else None."""
    if not settings.github_token:
        return None
    client = GitHubClient(settings.github_token, base_url=settings.github_api_url)
    resolver = Resolver(store, settings, hostname=hostname, redactor=redactor)
    feedback = Feedback(store, client, resolver, cursor=settings.home / "github-feedback.json")
    feedback.start()  # replays what a killed predecessor left unsent, before new events arrive
    store.listeners.append(feedback.notify)
    log.info("GitHub feedback on (API %s)", settings.github_api_url)
    return feedback
