"""GitHub deliveries → the desired state: verify, de-duplicate, record, and let the loops do the work.

The request thread only touches SQLite (the answer comes in milliseconds); fetching, building and
destroying happen in the background. Code is always fetched from the project's configured upstream
(else its own bare repository), never from a URL in the payload.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import names
from ..access import GITHUB
from ..errors import BadInput, BranchyardError, NotFound, Unauthorized
from ..secrets import SecretBox
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from ..triggers import github_webhook as gh
from .previews import Previews, policy_from_json
from .pushes import Pushes

log = logging.getLogger("branchyard.webhooks")

KEEP_DELIVERIES_DAYS = 30  # replay protection window


class Webhooks:
    def __init__(self, settings: Settings, store: Store, *, box: SecretBox, pushes: Pushes, previews: Previews) -> None:
        self.settings = settings
        self.store = store
        self.box = box  # projects' own webhook secrets are encrypted at rest
        self.pushes = pushes
        self.previews = previews

    def _secrets(self) -> dict[str, list[str]]:
        """Secret → the projects it verifies ("*" for the server-wide one: projects without their own)."""
        found: dict[str, list[str]] = {}
        if self.settings.github_webhook_secret:
            found.setdefault(self.settings.github_webhook_secret, []).append("*")
        with self.store.session() as s:
            for p in s.scalars(select(m.Project).where(m.Project.webhook_secret.is_not(None))):
                found.setdefault(self.box.decrypt(p.webhook_secret), []).append(p.name)
        return found

    def receive(self, *, event: str | None, delivery: str | None, signature: str | None, content_type: str | None,
                body: bytes) -> tuple[int, dict]:
        """One delivery → (HTTP status, JSON answer). Raises a BranchyardError for a 4xx."""
        gh.check_size(len(body))
        gh.check_content_type(content_type)
        secrets = self._secrets()
        matched = gh.verify_signature(body, signature, secrets)
        data = gh.parse_body(body)
        if not event:
            raise BadInput("missing X-GitHub-Event header")
        if event == "ping":
            return 200, {"ok": True, "event": "ping", "zen": data.get("zen")}
        repository = gh.repository_of(data)
        with self.store.session() as s:
            project = s.scalar(select(m.Project).where(func.lower(m.Project.github_repository) == repository.lower())
                               .order_by(m.Project.id))
            if project is None:
                raise NotFound(f"no project is configured for GitHub repository {repository!r} "
                               "([github] repository in branchyard.toml, or `branchyard github configure --repository`)")
            name, own = project.name, project.webhook_secret is not None
        allowed = secrets.get(matched, [])
        if (own and name not in allowed) or (not own and "*" not in allowed):
            raise Unauthorized(f"X-Hub-Signature-256 is not made with project {name}'s webhook secret")
        if not delivery:
            raise BadInput("missing X-GitHub-Delivery header")
        if event == "pull_request":
            parsed = gh.parse_pull_request(data)
        elif event == "push":
            parsed = gh.parse_push(data)
        else:
            log.info("delivery %s: %s event acknowledged and ignored", delivery, event)
            return 200, {"ok": True, "ignored": f"{event} events are not acted on"}
        try:
            with self.store.session() as s:
                s.add(m.WebhookDelivery(id=delivery[:64], event=event, project=name,
                                        state="pending" if event == "push" else "done",
                                        payload=json.dumps(asdict(parsed)) if event == "push" else None))
        except IntegrityError:
            log.info("delivery %s replayed: ignored", delivery)
            return 200, {"ok": True, "duplicate": True, "delivery": delivery}
        if event == "pull_request":
            note = self.previews.want_pull_request(name, parsed)
        else:
            note = f"push of {parsed.ref} at {parsed.after[:12]} queued"
            threading.Thread(target=self._push, args=(delivery[:64],), name=f"webhook-push-{delivery[:8]}",
                             daemon=True).start()
        log.info("delivery %s (%s) for %s: %s", delivery, event, name, note)
        return 202, {"ok": True, "project": name, "event": event, "note": note}

    def prune(self, now: dt.datetime, keep_days: int = KEEP_DELIVERIES_DAYS) -> int:  # `now`: naive UTC
        """Forget deliveries acted on more than `keep_days` ago (GitHub redelivers for far less); how many."""
        import datetime as dt

        from sqlalchemy import delete

        with self.store.session() as s:
            done = s.execute(delete(m.WebhookDelivery).where(m.WebhookDelivery.state == "done",
                                                             m.WebhookDelivery.received_at < now - dt.timedelta(days=keep_days)))
            return done.rowcount or 0

    def resume(self) -> None:
        """After a restart: act on push deliveries that were accepted but not yet acted on."""
        with self.store.session() as s:
            pending = list(s.scalars(select(m.WebhookDelivery.id).where(m.WebhookDelivery.state == "pending")))
        for delivery in pending:
            threading.Thread(target=self._push, args=(delivery,), name=f"webhook-push-{delivery[:8]}", daemon=True).start()

    def _push(self, delivery: str) -> None:
        """A push delivery: deploy the branch's persistent environment, or its preview in branch-trigger mode."""
        with self.store.session() as s:
            row = s.get(m.WebhookDelivery, delivery)
            if row is None or row.state != "pending":
                return
            project, event = row.project, gh.PushEvent(**json.loads(row.payload))
        kind = None  # the audit event of a push that deploys nothing (a deploy has its own deploy.queued)
        try:
            acted, note = self._apply_push(project, event)
            kind = None if acted else "push.ignored"
        except BranchyardError as err:
            note, kind = f"refused: {err}", "push.refused"
            log.warning("delivery %s: %s", delivery, err)
        except Exception as err:  # its text may quote a command line holding the upstream URL
            note, kind = f"internal error: {type(err).__name__}: {names.scrub_credentials(str(err))}", "push.refused"
            log.exception("delivery %s failed", delivery)
        with self.store.session() as s:
            row = s.get(m.WebhookDelivery, delivery)
            row.state, row.note, row.payload = "done", note, None
            if kind is not None:
                self.store.record(s, project, kind, names.scrub_credentials(
                    f"push of {event.ref} at {event.after[:12]}: {note}"), actor=GITHUB)
        log.info("delivery %s: %s", delivery, note)

    def _apply_push(self, project: str, event: gh.PushEvent) -> tuple[bool, str]:
        """(whether it deployed, destroyed or skipped something — recorded its own event —, what was done)."""
        from .. import names

        branch = event.branch
        if branch is None:
            return False, f"{event.ref} is not a branch"
        names.branch_from_ref(event.ref)  # NameRefused on an unsafe branch name
        with self.store.session() as s:
            p = self.store.project(s, project)
            repo, upstream, policy = Path(p.repo_path), p.upstream, policy_from_json(p.preview_policy)
        if event.deleted:
            if policy is not None and policy.trigger == "branch":
                env_name, note = self.previews.want_branch(project, branch, None)
                return env_name is not None, note  # a preview to destroy: preview.destroyed follows
            return False, f"branch {branch} deleted"
        from ..triggers.gitremote import fetch_commit

        fetch_commit(repo, upstream, event.after, refs=(event.ref,))
        # the same path as a push to the `branchyard` remote: mapped branch → its environment, else a branch preview
        result = self.pushes.receive(project, event.ref, event.before, event.after, {}, actor=GITHUB)
        if result.deployment_id is None:  # skipped by watchPatterns: its own deploy.skipped event, no push.ignored
            return result.skipped, result.note or ""
        return True, f"deployment {result.deployment_id}" + (f" ({result.note})" if result.note else "")
