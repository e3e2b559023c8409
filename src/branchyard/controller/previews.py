"""Preview environments: the desired set (open pull requests, live branches) kept in SQLite, and the loop
that converges on it — create what is missing, redeploy a new head, destroy what is closed, idle or evicted.

Level-triggered: a webhook (or a push to the `branchyard` remote) only changes a `Preview` row and kicks
the loop; `plan_previews` (pure) compares the rows with the environments and says what to do, so a lost
delivery, a crash or a restart converge on the next pass.

Who gets a preview is decided by the **base branch's** `[environments.pr]` (read at the pull request's
base commit): a pull request cannot change the rules that admit it. The preview itself is built from the
pull request's own head commit and its own `branchyard.toml` / `railway.toml`.

Secrets: a preview of a same-repository pull request (or a branch pushed to the `branchyard` remote) gets a
copy of the variables and secrets set on the template's base environment (e.g. staging) when it is created —
never production's. A fork's preview gets none: a deploy that needs one fails naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import names
from ..access import SYSTEM, Actor
from ..build import release
from ..errors import BranchyardError, Conflict, NameRefused, NotFound
from ..settings import Settings
from ..spec import load_project
from ..spec.model import PR_TEMPLATE, PreviewDecl, ProjectSpec
from ..store import models as m
from ..store.db import Store
from ..triggers import github_webhook as gh
from ..triggers.gitremote import fetch_commit
from .deployer import Deployer
from .projects import remember_spec
from .teardown import Teardown
from .watching import unwatched

log = logging.getLogger("branchyard.previews")

WORKERS = 3  # previews built at once (each builds, provisions a database, migrates and seeds)
DESTROY_WAIT = 600.0  # seconds a destroy waits for a cancelled build to stop


# --- the pure part -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewObs:
    environment: str
    open: bool
    decision: str | None
    head_sha: str
    last_activity: float  # epoch seconds
    env_exists: bool
    latest_sha: str | None  # commit of the environment's newest deployment
    waiting_since: float | None = None  # decision "waiting": when it was refused for capacity (its place in line)


@dataclass(frozen=True)
class Evaluate:
    environment: str  # decide admission (fork, bot, draft, cap) under the base branch's policy, then deploy


@dataclass(frozen=True)
class Deploy:
    environment: str
    sha: str


@dataclass(frozen=True)
class Destroy:
    environment: str
    reason: str
    mark: str | None = None  # the decision to record (expired), None to keep it


PreviewAction = Evaluate | Deploy | Destroy


@dataclass(frozen=True)
class Queued:
    """What deploy_commit did: the deployment it queued, or none (refused, recorded; or `skipped`: the reason
    watchPatterns gave for not deploying a preview that runs already)."""

    deployment_id: str | None
    skipped: str | None = None


def plan_previews(previews: list[PreviewObs], *, expire_after_days: float | None, now: float,
                  busy: frozenset[str] = frozenset(), max_previews: int | None = None) -> list[PreviewAction]:
    """What makes the environments match the desired previews. Environments with an action in flight wait.

    Previews waiting for a slot (maxPreviews reached, evict = "refuse") are evaluated again, first in line first,
    as many as there are free slots: the desired set is every open pull request, capped by maxPreviews."""
    actions: list[PreviewAction] = []
    admit = set(first_in_line(previews, max_previews=max_previews))
    for p in sorted(previews, key=lambda p: p.environment):
        if p.environment in busy:
            continue
        if not p.open:
            if p.env_exists:
                actions.append(Destroy(p.environment, "closed"))
            continue
        if p.decision is None or p.environment in admit:
            actions.append(Evaluate(p.environment))
        elif p.decision == m.PREVIEW_DEPLOY:
            idle_days = (now - p.last_activity) / 86400
            if expire_after_days is not None and idle_days >= expire_after_days:
                actions.append(Destroy(p.environment, f"idle for {idle_days:.1f} days (expireAfterDays = "
                                                      f"{expire_after_days:g})", mark=m.PREVIEW_EXPIRED))
            elif p.latest_sha != p.head_sha:
                actions.append(Deploy(p.environment, p.head_sha))
        elif p.env_exists:  # refused, waiting, pending approval, expired, evicted: no environment
            actions.append(Destroy(p.environment, p.decision.replace("_", " ")))
    return actions


def queue(waiting: list[tuple[str, float | None]]) -> list[str]:
    """Previews waiting for a slot, first in line first: in the order they were refused (unknown: first; ties by
    name)."""
    return [env for env, _ in sorted(waiting, key=lambda w: (w[1] if w[1] is not None else float("-inf"), w[0]))]


def first_in_line(previews: list[PreviewObs], *, max_previews: int | None) -> list[str]:
    """The waiting previews that the free slots admit now (all of them without a cap)."""
    line = queue([(p.environment, p.waiting_since) for p in previews if p.open and p.decision == m.PREVIEW_WAITING])
    if max_previews is None:
        return line
    active = sum(1 for p in previews if p.open and p.decision == m.PREVIEW_DEPLOY)
    return line[:max(0, max_previews - active)]


@dataclass(frozen=True)
class Slot:
    environment: str
    last_activity: float


def make_room(active: list[Slot], *, max_previews: int | None, evict: str, queued: int = 0) -> tuple[bool, str | None]:
    """Whether one more preview fits: (admitted, the preview to evict for it or None).

    `queued`: previews waiting ahead of it for a slot (evict = "refuse"); they get the free slots first."""
    if max_previews is None:
        return True, None
    ahead = queued if evict == "refuse" else 0
    if len(active) + ahead < max_previews:
        return True, None
    if evict == "oldest" and active:
        return True, min(active, key=lambda s: (s.last_activity, s.environment)).environment
    return False, None


def waiting_reason(policy: PreviewDecl) -> str:
    """Why a preview waits (shown by `previews list`)."""
    return (f"waiting for a free slot: maxPreviews = {policy.max_previews} previews already run (evict = \"refuse\"); "
            "deployed automatically, in the order refused, when one is closed, expires or is destroyed")


def policy_from_json(text: str | None) -> PreviewDecl | None:
    if not text:
        return None
    data = json.loads(text)
    return PreviewDecl(**(data | {"patterns": tuple(data["patterns"])}))


# --- the loop ----------------------------------------------------------------------------------------------


class Previews:
    def __init__(self, settings: Settings, store: Store, *, deployer: Deployer, teardown: Teardown,
                 stop: threading.Event) -> None:
        self.settings = settings
        self.store = store
        self.deployer = deployer
        self.teardown = teardown
        self.stop = stop  # the control plane is stopping: nothing waits any longer
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="preview")
        self._busy: set[tuple[str, str]] = set()  # (project, environment) with an action in flight
        self._guard = threading.Lock()
        self._admit = threading.Lock()  # the maxPreviews count and the admission it allows are one step
        self._specs: dict[tuple[str, str], object] = {}  # (project, base sha) → its ProjectSpec
        self._kick = threading.Event()

    # --- intake (fast: SQLite only) ----------------------------------------------------------------

    def want_pull_request(self, project: str, event: gh.PullRequestEvent) -> str:
        """Record what a pull_request delivery says about the desired set; returns a one-line note."""
        env_name = names.pr_environment(event.number)
        intent = gh.pr_intent(event)
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
            if intent.kind == "ignore":
                return intent.reason
            if intent.kind == "close":
                if row is None or not row.open:
                    return f"pull request #{event.number} has no preview; nothing to close"
                row.open, row.last_activity_at = False, m.utcnow()
                row.reason = f"pull request {intent.reason}"
                return f"{env_name} will be destroyed (pull request {intent.reason})"
            if row is None:
                row = m.Preview(project_id=p.id, environment=env_name, kind="pr", number=event.number)
                s.add(row)
            if intent.kind == "draft":
                if not row.open or row.draft:
                    return f"pull request #{event.number} is a draft"
                row.draft, row.decision = True, None
                return f"{env_name}: pull request converted to draft; admission decided again"
            changed = row.head_sha != event.head_sha or not row.open or row.draft != event.draft
            # a new head of a pull request waiting for a slot keeps its place in line (decided at admission)
            keeps_place = row.decision == m.PREVIEW_WAITING and row.open and row.draft == event.draft and (
                event.action not in ("reopened", "ready_for_review"))
            row.branch, row.head_sha, row.base_sha = event.head_ref, event.head_sha, event.base_sha
            row.head_repo, row.fork, row.bot, row.draft = event.head_repo, event.fork, event.bot, event.draft
            row.author, row.open, row.last_activity_at = event.author, True, m.utcnow()
            if (changed or event.action in ("reopened", "ready_for_review")) and not keeps_place:
                row.decision, row.reason = None, None  # decided (again) by the loop
        self.kick()
        return f"{env_name}: {event.action} at {event.head_sha[:12]}"

    def want_branch(self, project: str, branch: str, sha: str | None) -> tuple[str | None, str]:
        """Branch-triggered previews: a pushed branch (sha) or a deleted one (None). (environment, note)."""
        try:
            env_name = names.branch_environment(branch)
        except NameRefused as err:
            if sha is None:
                return None, f"branch {branch} deleted (it had no preview)"
            with self.store.session() as s:
                self.store.record(s, project, "preview.refused", f"branch {branch!r}: {err}")
            return None, f"no preview for branch {branch!r}: {err}"
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
            if sha is None:
                if row is None or not row.open:
                    return None, f"branch {branch} deleted (it had no preview)"
                row.open, row.reason, row.last_activity_at = False, "branch deleted", m.utcnow()
                self.kick()
                return env_name, f"branch {branch} deleted: preview {env_name} will be destroyed"
            clash = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id,
                                                         m.Environment.name == env_name))
            if env_name == PR_TEMPLATE or (clash is not None and not clash.ephemeral) or (
                    row is not None and row.kind != "branch"):
                note = f"no preview for branch {branch!r}: its name {env_name!r} is taken by another environment"
                self.store.record(s, project, "preview.refused", note, environment=env_name)
                return None, note
            if row is None:
                row = m.Preview(project_id=p.id, environment=env_name, kind="branch", branch=branch)
                s.add(row)
            row.head_sha, row.open, row.last_activity_at = sha, True, m.utcnow()
            row.decision, row.reason = m.PREVIEW_DEPLOY, None
        return env_name, ""

    def approve(self, project: str, number: int, *, actor: Actor = SYSTEM) -> dict:
        """`branchyard previews approve NUMBER`: admit a fork's pull request at its current head commit."""
        env_name = names.pr_environment(number)
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
            if row is None or not row.open:
                raise NotFound(f"no open pull request #{number} known for project {project!r}")
            row.approved_sha = row.head_sha
            if row.decision != m.PREVIEW_WAITING:  # one waiting for a slot keeps its place in line
                row.decision = None
            row.last_activity_at = m.utcnow()
            self.store.record(s, project, "preview.approved", f"pull request #{number} approved at {row.head_sha[:12]}",
                              environment=env_name, actor=actor)
            sha = row.head_sha
        self.kick()
        return {"environment": env_name, "approved_sha": sha}

    def list(self, project: str) -> list[dict]:
        with self.store.session() as s:
            p = self.store.project(s, project)
            rows = s.scalars(select(m.Preview).where(m.Preview.project_id == p.id).order_by(m.Preview.id)).all()
            line = queue(list(_waiting_since(s, p.name, rows).items()))
            return [_preview_dict(r) | ({"waiting_position": line.index(r.environment) + 1}
                                        if r.environment in line else {}) for r in rows]

    def infos(self, project: str) -> dict[str, dict]:
        """Every preview of the project by its environment's name (the environments list asks once for all)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            return {r.environment: _preview_dict(r) for r in s.scalars(select(m.Preview).where(m.Preview.project_id == p.id))}

    def info(self, project: str, env_name: str) -> dict | None:
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
            return _preview_dict(row) if row else None

    # --- the loop ----------------------------------------------------------------------------------

    def kick(self) -> None:
        """Reconcile now rather than at the next periodic pass (many kicks make one pass)."""
        self._kick.set()

    def run_forever(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Passes on every kick, and every `interval` seconds in any case (repairs missed events)."""
        while not stop.is_set():
            self._kick.wait(interval)
            self._kick.clear()
            if stop.is_set():
                return
            try:
                self.reconcile()
            except Exception:  # keep the loop alive; the next pass starts from fresh state
                log.exception("preview reconcile failed")

    def shutdown(self) -> None:
        self._kick.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def busy(self, project: str, env_name: str) -> Iterator[None]:
        """Mark a preview as acted on outside the loop (a push queueing its build), so that the loop does not
        plan a second deployment of it meanwhile. An action of the loop already in flight is left to finish."""
        key = (project, env_name)
        with self._guard:
            mine = key not in self._busy
            self._busy.add(key)
        try:
            yield
        finally:
            if mine:
                with self._guard:
                    self._busy.discard(key)

    def reconcile(self) -> None:
        """One pass over every project's previews: plan (pure) and hand the actions to workers."""
        with self.store.session() as s:
            projects = [(p.name, p.id, p.preview_policy) for p in s.scalars(select(m.Project))]
        for project, project_id, policy_json in projects:
            policy = policy_from_json(policy_json)
            obs = self._observe(project_id)
            with self._guard:
                busy = frozenset(e for p, e in self._busy if p == project)
            actions = plan_previews(obs, expire_after_days=policy.expire_after_days if policy else None,
                                    now=time.time(), busy=busy, max_previews=policy.max_previews if policy else None)
            for action in actions:
                self._dispatch(project, action)

    def _observe(self, project_id: int) -> list[PreviewObs]:
        with self.store.session() as s:
            rows = s.scalars(select(m.Preview).where(m.Preview.project_id == project_id)).all()
            envs = {e.name: e for e in s.scalars(select(m.Environment).where(m.Environment.project_id == project_id))}
            since = _waiting_since(s, s.get(m.Project, project_id).name, rows)
            out = []
            for r in rows:
                env = envs.get(r.environment)
                latest = None
                if env is not None:
                    dep = s.scalar(select(m.Deployment).where(m.Deployment.environment_id == env.id)
                                   .order_by(m.Deployment.created_at.desc()))
                    # an unfinished build is the deployer's to resume (deploy_plan); a failed one is not tried again
                    latest = None if dep is None else dep.commit_sha
                if r.unwatched_sha is not None and r.unwatched_sha == r.head_sha:
                    latest = r.head_sha  # watchPatterns skipped this head: nothing to deploy until the next one
                out.append(PreviewObs(environment=r.environment, open=r.open, decision=r.decision, head_sha=r.head_sha,
                                      last_activity=_epoch(r.last_activity_at), env_exists=env is not None,
                                      latest_sha=latest, waiting_since=since.get(r.environment)))
        return out

    def _dispatch(self, project: str, action: PreviewAction) -> None:
        key = (project, action.environment)
        with self._guard:
            if key in self._busy:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                if isinstance(action, Destroy):
                    self._destroy(project, action)
                elif isinstance(action, Evaluate):
                    self._evaluate(project, action.environment)
                else:
                    self._deploy(project, action.environment, action.sha)
            except BranchyardError as err:
                log.warning("preview %s/%s: %s: %s", project, action.environment, type(action).__name__, err)
            except Exception:
                log.exception("preview %s/%s: %s failed", project, action.environment, type(action).__name__)
            finally:
                with self._guard:
                    self._busy.discard(key)
            self.kick()  # the next step (deploy after evaluate; destroy if it closed meanwhile; a freed slot)

        if isinstance(action, Destroy):  # never queued behind builds: a close cancels at once
            threading.Thread(target=run, name=f"preview-destroy-{action.environment}", daemon=True).start()
        else:
            self._pool.submit(run)

    # --- actions -----------------------------------------------------------------------------------

    def _row(self, s: Session, project: str, env_name: str) -> m.Preview:
        p = self.store.project(s, project)
        row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
        if row is None:
            raise NotFound(f"no preview {env_name!r} in project {project!r}")
        return row

    def _decide(self, project: str, env_name: str, decision: str, reason: str, kind: str,
                for_sha: str | None = None) -> None:
        with self.store.session() as s:
            row = self._row(s, project, env_name)
            if for_sha is not None and (row.head_sha != for_sha or row.decision not in _UNDECIDED):
                return  # a newer delivery changed the facts meanwhile: the loop decides again
            row.decision, row.reason = decision, reason
            what = f"pull request #{row.number}" if row.number else f"branch {row.branch}"
            self.store.record(s, project, kind, f"{what}: {reason}", environment=env_name)

    def _evaluate(self, project: str, env_name: str) -> None:
        """Admission under the base branch's policy; admitted previews go on to deploy."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = self._row(s, project, env_name)
            if not row.open or row.decision not in _UNDECIDED:  # undecided, or waiting for a slot
                return
            facts = dict(branch=row.branch or "", fork=row.fork, bot=row.bot, draft=row.draft, head_sha=row.head_sha,
                         approved_sha=row.approved_sha)
            base_sha, repo, upstream, stored = row.base_sha, Path(p.repo_path), p.upstream, p.preview_policy
        policy, persistent = policy_from_json(stored), ()
        if base_sha:
            try:
                spec = self._spec_at(project, repo, upstream, base_sha)
                policy, persistent = spec.preview, [d.branch for d in spec.environments.values() if d.branch]
                remember_spec(self.store, project, spec)
            except BranchyardError as err:
                log.warning("%s/%s: base commit %s unreadable (%s); using the stored policy", project, env_name,
                            base_sha[:12], err)
        verdict = gh.admit(**facts, policy=policy, persistent_branches=persistent)
        sha = facts["head_sha"]
        if verdict.decision == m.PREVIEW_PENDING:
            self._decide(project, env_name, verdict.decision, verdict.reason, "preview.pending_approval", for_sha=sha)
            return
        if verdict.decision != m.PREVIEW_DEPLOY:
            self._decide(project, env_name, verdict.decision, verdict.reason, "preview.refused", for_sha=sha)
            return
        with self._admit:
            with self.store.session() as s:
                p = self.store.project(s, project)
                rows = s.scalars(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.open.is_(True))).all()
                active = [Slot(r.environment, _epoch(r.last_activity_at)) for r in rows if r.decision == m.PREVIEW_DEPLOY]
                row = self._row(s, project, env_name)
                if row.head_sha != sha or row.decision not in _UNDECIDED or not row.open:
                    return  # a newer delivery (a new head, a close) arrived meanwhile: decided again
                line = queue(list(_waiting_since(s, project, rows).items()))
                holds_slot = s.scalar(select(m.Environment.id).where(m.Environment.project_id == p.id,
                                                                     m.Environment.name == env_name)) is not None
                # its environment runs (a new head): it keeps its slot; else those waiting before it go first
                ahead = 0 if holds_slot else line.index(env_name) if env_name in line else len(line)
                ok, victim = make_room(active, max_previews=policy.max_previews, evict=policy.evict, queued=ahead)
                what = f"pull request #{row.number}" if row.number else f"branch {row.branch}"
                if not ok:
                    if row.decision != m.PREVIEW_WAITING:  # it joins the line; one already in it keeps its place
                        row.decision, row.reason = m.PREVIEW_WAITING, waiting_reason(policy)
                        self.store.record(s, project, "preview.waiting", f"{what}: {row.reason}", environment=env_name)
                    return
                if victim is not None:
                    old = self._row(s, project, victim)
                    old.decision, old.reason = m.PREVIEW_EVICTED, f"evicted to make room for {env_name} (maxPreviews)"
                    self.store.record(s, project, "preview.evicted", old.reason, environment=victim)
                if row.decision == m.PREVIEW_WAITING:
                    self.store.record(s, project, "preview.admitted", f"{what}: a preview slot is free (maxPreviews = "
                                      f"{policy.max_previews}); admitted after waiting in line", environment=env_name)
                row.decision, row.reason = m.PREVIEW_DEPLOY, None
        self._deploy(project, env_name, sha)

    def _spec_at(self, project: str, repo: Path, upstream: str | None, sha: str) -> ProjectSpec:
        """The spec of commit `sha` (a commit never changes: kept for the next pull requests on the same base)."""
        key = (project, sha)
        with self._admit:
            if key in self._specs:
                return self._specs[key]
        spec = self._read_spec(repo, upstream, project, sha)
        with self._admit:
            self._specs[key] = spec
            while len(self._specs) > 32:
                self._specs.pop(next(iter(self._specs)))
        return spec

    def _read_spec(self, repo: Path, upstream: str | None, project: str, sha: str) -> ProjectSpec:
        fetch_commit(repo, upstream, sha)
        tmp = names.safe_join(self.settings.releases_dir, project, f".spec-{sha[:40]}-{time.monotonic_ns()}")
        try:
            release.export_commit(repo, sha, tmp)
            return load_project(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _deploy(self, project: str, env_name: str, sha: str) -> None:
        """Fetch the head commit, build the preview from its own config; wait until the deployment ends."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = self._row(s, project, env_name)
            if not row.open or row.decision != m.PREVIEW_DEPLOY or row.head_sha != sha:
                return
            repo, upstream, branch, number = Path(p.repo_path), p.upstream, row.branch, row.number
            fork, policy = row.fork, policy_from_json(p.preview_policy)
        refs = (f"refs/pull/{number}/head",) if number else (f"refs/heads/{branch}",)
        try:
            fetch_commit(repo, upstream, sha, refs=refs)
        except BranchyardError as err:
            self._decide(project, env_name, m.PREVIEW_REFUSED, str(err), "preview.refused")
            return
        queued = self.deploy_commit(project, env_name, sha, branch, fork=fork, policy=policy, repo=repo)
        if queued.deployment_id:
            self._wait(queued.deployment_id)

    def deploy_commit(self, project: str, env_name: str, sha: str, branch: str | None, *, fork: bool,
                      policy: PreviewDecl | None, repo: Path, git_env: dict[str, str] | None = None) -> Queued:
        """Export `sha`, check its spec has a preview template, create the environment (secrets copied when
        allowed) and queue the build — unless the preview runs already and nothing `sha` changed is watched
        (watchPatterns: skipped, the preview stays on its commit). Refused: no deployment, the decision recorded."""
        incoming = names.safe_join(self.settings.releases_dir, project, f".incoming-{sha[:40]}-{time.monotonic_ns()}")
        try:
            release.export_commit(repo, sha, incoming, git_env=git_env)
            spec = load_project(incoming)
            if not spec.is_preview_instance(env_name):
                self._decide(project, env_name, m.PREVIEW_REFUSED, f"commit {sha[:12]}'s branchyard.toml has no "
                             "[environments.pr] template to build a preview from", "preview.refused")
                return Queued(None)
            skipped = unwatched(self.store, project, env_name, repo, sha, spec, git_env=git_env, actor=SYSTEM)
            if skipped is not None:
                with self.store.session() as s:
                    self._row(s, project, env_name).unwatched_sha = sha
                return Queued(None, skipped)
            if not self._create_environment(project, env_name, branch, fork=fork, policy=policy or spec.preview):
                return Queued(None)  # closed while its commit was exported: the close wins, nothing is created
            return Queued(self.deployer.queue_build(project, env_name, sha, branch, "webhook" if branch is None or
                                                    env_name.startswith("pr-") else "push", incoming, spec))
        except BranchyardError as err:
            self._decide(project, env_name, m.PREVIEW_REFUSED, str(err), "preview.refused")
            return Queued(None)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _create_environment(self, project: str, env_name: str, branch: str | None, *, fork: bool,
                            policy: PreviewDecl | None) -> bool:
        """The preview's environment, ephemeral; same-repository previews get the base's non-production variables.
        False, and nothing made, when its pull request or branch was closed meanwhile: the check and the creation
        are one transaction, so a close recorded while the commit was exported (seconds, under load) can no longer
        be followed by an environment the preview loop had already found nothing to tear down for."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.Preview).where(m.Preview.project_id == p.id, m.Preview.environment == env_name))
            if row is not None and not row.open:
                return False
            env = self.store.find_environment(s, p, env_name)
            if env is not None:
                return True
            env = m.Environment(project_id=p.id, name=env_name, branch=branch, ephemeral=True, production=False)
            s.add(env)
            s.flush()
            copied: list[str] = []
            base_name = policy.base if policy else None
            base = None if base_name is None else s.scalar(
                select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == base_name))
            if fork:
                note = "from a fork: no variables or secrets given"
            elif base is None:
                note = "no base environment to copy variables from"
            elif base.production:
                note = f"base {base.name} is production: its variables and secrets are not copied"
            else:
                for var in s.scalars(select(m.Variable).where(m.Variable.environment_id == base.id)):
                    s.add(m.Variable(environment_id=env.id, key=var.key, value=var.value, secret=var.secret))
                    copied.append(var.key)
                note = f"variables copied from {base.name}: {', '.join(sorted(copied)) or 'none'}"
            self.store.record(s, project, "preview.created", f"preview {env_name} created ({note})", environment=env_name)
            return True

    def _wait(self, dep_id: str, timeout: float = 3600) -> None:
        self.deployer.wait(dep_id, timeout=timeout, stop=self.stop)  # a stopping server does not wait

    def _destroy(self, project: str, action: Destroy) -> None:
        """Cancel the environment's builds, then free everything it holds (processes, route, database, files)."""
        env_name = action.environment
        deadline = time.monotonic() + DESTROY_WAIT
        while True:
            running = self.deployer.cancel(project, env_name)
            if not running:
                break
            if time.monotonic() > deadline:
                raise Conflict(f"{env_name}: builds {', '.join(running)} did not stop; destroy retried later")
            time.sleep(0.1)
        try:
            self.teardown.delete_environment(project, env_name)
        except NotFound:
            return
        with self.store.session() as s:
            row = s.scalar(select(m.Preview).join(m.Project).where(m.Project.name == project,
                                                                   m.Preview.environment == env_name))
            if row is not None and action.mark and row.open:
                row.decision, row.reason = action.mark, action.reason
            self.store.record(s, project, "preview.destroyed", f"preview {env_name} destroyed ({action.reason})",
                              environment=env_name)


_UNDECIDED = (None, m.PREVIEW_WAITING)  # decisions the loop (re)evaluates


def _waiting_since(s: Session, project: str, rows: list[m.Preview]) -> dict[str, float | None]:
    """Environment → when each waiting preview joined the line (its latest "preview.waiting" event)."""
    waiting = [r.environment for r in rows if r.open and r.decision == m.PREVIEW_WAITING]
    if not waiting:
        return {}
    from sqlalchemy import func

    found = dict(s.execute(select(m.Event.environment, func.max(m.Event.at)).where(
        m.Event.project == project, m.Event.kind == "preview.waiting", m.Event.environment.in_(waiting))
        .group_by(m.Event.environment)).all())
    return {env: _epoch(found[env]) if found.get(env) else None for env in waiting}


def _epoch(when: dt.datetime) -> float:  # naive UTC
    import datetime as dt

    return when.replace(tzinfo=dt.timezone.utc).timestamp()


def _preview_dict(r: m.Preview) -> dict:
    return {
        "environment": r.environment, "kind": r.kind, "number": r.number, "branch": r.branch, "head_sha": r.head_sha,
        "head_repo": r.head_repo, "fork": r.fork, "bot": r.bot, "draft": r.draft, "author": r.author, "open": r.open,
        "decision": r.decision, "reason": r.reason, "approved_sha": r.approved_sha,
        "last_activity_at": r.last_activity_at.isoformat() + "Z",
    }


