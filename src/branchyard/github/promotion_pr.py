"""The promotion pull request on GitHub: when a promotion is planned, open (or update) the pull request from the
source's branch to the target's (`develop → main`) with the plan in its body, as the seed's "Create promotion PR"
step does. Reviewers read the same plan `branchyard promote` printed, where they already review code.

Hung off the `promotion.planned` audit event (Store.listeners), like feedback.py: nothing in the promotion code
knows GitHub exists. Rendering is pure (`render`); one background thread makes the requests, retrying GitHub's
bad minutes; a request that still fails is logged on one line and recorded as `github.failed` — the promotion goes
on regardless. At start, every open promotion is queued once, so one planned just before a crash gets its PR too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import BackendError, BranchyardError
from ..settings import Settings
from ..store import models as m
from ..store.db import RecordedEvent, Store
from .client import GitHubClient, short
from .feedback import FAILED_KIND
from .worker import Worker

log = logging.getLogger("branchyard.github")

HANDLED = frozenset({"promotion.planned"})
OPENED_KIND = "github.promotion_pr"
COMMITS_SHOWN = 50


# --- the pure part: promotion → pull request ----------------------------------------------------------------


@dataclass(frozen=True)
class PullRequest:
    repository: str
    head: str  # the source environment's branch (develop)
    base: str  # the target's (main)
    title: str
    body: str


def _cell(value: Any) -> str:
    """A value inside a Markdown table cell or code span: one line, no pipe or backtick to break out of it."""
    if value is None:
        return "—"
    return " ".join(str(value).split()).replace("|", "\\|").replace("`", "'")


def _text(value: str) -> str:
    """Free text (a commit subject, a gate's detail) shown as text, never as HTML or a mention."""
    return _cell(value).replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u200b")


def title(promotion: dict[str, Any]) -> str:
    """"Promote staging → production (abc1234)"."""
    return f"Promote {promotion['source']} → {promotion['target']} ({promotion['commit'][:7]})"


def render(promotion: dict[str, Any], *, repository: str, head: str, base: str) -> PullRequest:
    """The pull request for a promotion (as Promotions.get returns it): its plan as Markdown (values already masked)."""
    plan = promotion["plan"]
    source, target = promotion["source"], promotion["target"]
    rng = plan["commit_range"]
    commits = rng["commits"]
    lines = [
        f"branchyard plan for promoting **{source} → {target}**: the release running in {source} (deployment "
        f"`{plan['source_deployment_id'][:8]}`, as built, no rebuild) deployed to {target} with {target}'s own "
        "variables and data.",
        "",
        f"- **Promotion**: `{promotion['id'][:8]}` ({promotion['state']}), planned by {_text(promotion['requested_by'])}",
        f"- **Commits**: `{rng['from'][:12] if rng['from'] else 'nothing deployed'}` → `{rng['to'][:12]}` ({len(commits)} "
        f"commit{'s' if len(commits) != 1 else ''})",
        "",
        "### Commits",
        "",
    ]
    lines += [f"- `{c['sha'][:12]}` {_text(c['subject'])}" for c in commits[:COMMITS_SHOWN]] or ["- (none)"]
    if len(commits) > COMMITS_SHOWN:
        lines.append(f"- … and {len(commits) - COMMITS_SHOWN} more")
    lines += ["", f"### Variables of {target} (secrets masked)", ""]
    if plan["variables"]:
        lines += ["| | variable | before | after |", "|---|---|---|---|"]
        lines += [f"| {v['change']} | `{_cell(v['key'])}` | {_cell(v['before'])} | {_cell(v['after'])} |"
                  for v in plan["variables"]]
    else:
        lines.append("No change.")
    lines += ["", "### Services", ""]
    lines += [f"- `{_cell(s['key'])}`: {_cell(s['before'])} → {_cell(s['after'])}" for s in plan["services"]] or ["No change."]
    mig = plan["migrations"]
    lines += ["", "### Migrations", ""]
    if mig.get("will_run"):
        lines += [f"- `{_cell(c)}`" for c in mig["commands"]]
        if mig.get("backup_first"):
            lines.append(f"- {target}'s database is backed up first")
    else:
        lines.append("None (no preDeployCommand).")
    lines += ["", "### Gates", ""]
    lines += [f"- {'✅' if g['passed'] else '❌'} **{g['id']}**: {_text(g['detail'])}" for g in plan["gates"]] or ["None."]
    lines += ["", f"Deploying is `branchyard promote {source} {target}`'s job, not this merge's: {target} then runs the exact "
              f"release {source} runs, and branchyard moves `{base}` in its own repository to the promoted commit (or "
              f"reports why it cannot). Merge this pull request once the promotion has succeeded, so that `{base}` on "
              f"GitHub holds what {target} runs too."]
    return PullRequest(repository, head, base, title(promotion), "\n".join(lines) + "\n")


# --- the worker -----------------------------------------------------------------------------------------------


class PromotionPullRequests:
    """Opens or updates promotion pull requests on one background thread (in order), with bounded retries."""

    def __init__(self, store: Store, client: GitHubClient, *, attempts: int = 4, backoff: float = 0.5,
                 max_backoff: float = 8.0) -> None:
        self.store = store
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._worker: Worker[tuple[str, str]] = Worker(
            "github-promotion-pr", lambda item: self.handle(*item), describe=lambda item: "/".join(item))
        self._stop = self._worker.stopping

    def notify(self, event: RecordedEvent) -> None:
        """Store listener: queue (project, target) (never blocks; a full queue drops it with a log line)."""
        if event.kind in HANDLED and event.environment and not self._stop.is_set():
            self._enqueue(event.project, event.environment)

    def _enqueue(self, project: str, target: str) -> None:
        if not self._worker.put((project, target)):
            log.warning("promotion pull requests: queue full, dropped %s/%s", project, target)

    def start(self) -> None:
        """Queue every open promotion (its pull request may have been missed by a crash), then start the thread."""
        with self.store.session() as s:
            open_ = s.execute(select(m.Promotion.project, m.Promotion.target)
                              .where(m.Promotion.state.in_(m.PROMOTION_OPEN)).distinct()).all()
        for project, target in open_:
            self._enqueue(project, target)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._worker.stop(timeout)
        self.client.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once everything queued has been handled."""
        return self._worker.wait_idle(timeout)

    def resolve(self, project: str, target: str) -> tuple[PullRequest, dict[str, Any]] | None:
        """The pull request the newest promotion into `target` calls for; None without a GitHub repository, a
        promotion, or branches on both sides."""
        with self.store.session() as s:
            p = s.scalar(select(m.Project).where(m.Project.name == project))
            if p is None or not p.github_repository:
                return None
            row = s.scalar(select(m.Promotion).where(m.Promotion.project == project, m.Promotion.target == target)
                           .order_by(m.Promotion.created_at.desc(), m.Promotion.id.desc()).limit(1))
            if row is None:
                return None
            envs = {e.name: e.branch for e in s.scalars(select(m.Environment).where(m.Environment.project_id == p.id))}
            head, base = envs.get(row.source), envs.get(row.target)
            promotion = {"id": row.id, "source": row.source, "target": row.target, "state": row.state,
                         "commit": row.commit_sha, "requested_by": row.requested_by, "plan": json.loads(row.plan_json)}
            repository = p.github_repository
        if not head or not base or head == base:
            return None
        return render(promotion, repository=repository, head=head, base=base), promotion

    def handle(self, project: str, target: str) -> None:
        resolved = self.resolve(project, target)
        if resolved is None:
            return
        pr, promotion = resolved
        for attempt in range(1, self.attempts + 1):
            try:
                number, url, verb = self.upsert(pr)
            except BackendError as err:  # network, 5xx, 429: GitHub's bad minute
                if attempt == self.attempts or self._stop.is_set():
                    self._give_up(project, target, pr, err)
                    return
                self._stop.wait(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
                continue
            except BranchyardError as err:  # 401/403/404/422: retrying will not help
                self._give_up(project, target, pr, err)
                return
            if verb:
                with self.store.session() as s:
                    self.store.record(s, project, OPENED_KIND, f"pull request #{number} {pr.head} → {pr.base} {verb} for "
                                      f"promotion {promotion['id'][:8]}: {url}", environment=target)
            return

    def upsert(self, pr: PullRequest) -> tuple[int, str, str | None]:
        """(number, html_url, "opened" | "updated" | None when already up to date)."""
        found = self.client.list_pulls(pr.repository, head=pr.head, base=pr.base, state="open")
        if found:
            current = found[0]
            if current.get("title") == pr.title and (current.get("body") or "") == pr.body:
                return int(current["number"]), str(current.get("html_url", "")), None
            updated = self.client.update_pull(pr.repository, int(current["number"]), title=pr.title, body=pr.body)
            return int(updated["number"]), str(updated.get("html_url", "")), "updated"
        created = self.client.create_pull(pr.repository, head=pr.head, base=pr.base, title=pr.title, body=pr.body)
        return int(created["number"]), str(created.get("html_url", "")), "opened"

    def _give_up(self, project: str, target: str, pr: PullRequest, err: BranchyardError) -> None:
        log.warning("promotion pull request %s → %s on %s failed: %s", pr.head, pr.base, pr.repository, err)
        try:
            with self.store.session() as s:
                self.store.record(s, project, FAILED_KIND, short(f"promotion pull request {pr.head} → {pr.base}: {err}", 500),
                                  environment=target)
        except Exception:
            log.exception("could not record the promotion pull request failure")


def start(settings: Settings, store: Store) -> PromotionPullRequests | None:
    """Listen to promotion.planned and keep the promotion pull request, when a GitHub token is configured; else None."""
    if not settings.github_token:
        return None
    prs = PromotionPullRequests(store, GitHubClient(settings.github_token, base_url=settings.github_api_url))
    prs.start()
    store.listeners.append(prs.notify)
    return prs
