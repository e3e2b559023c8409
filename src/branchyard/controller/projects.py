"""Projects: the bare repository the `branchyard` remote points at, its upstream, GitHub settings."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import names
from ..access import SYSTEM, Actor, Permission, require
from ..errors import BadInput, BranchyardError
from ..secrets import SecretBox
from ..settings import Settings
from ..spec.model import ProjectSpec
from ..store import models as m
from ..store.db import Store
from ..triggers.gitremote import create_bare_repo

log = logging.getLogger("branchyard.projects")


@dataclass(frozen=True)
class Declared:
    """A persistent environment as the project's files declare it (sent by `init`)."""

    name: str
    branch: str | None = None
    production: bool = False
    protected: bool | None = None  # None: as production


class Projects:
    def __init__(self, settings: Settings, store: Store, box: SecretBox) -> None:
        self.settings = settings
        self.store = store
        self.box = box  # webhook secrets are encrypted at rest

    def create(self, name: str, upstream: str | None, github_repository: str | None = None,
               environments: Sequence[Declared] = (), *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """`branchyard init`: the project, its bare repository, and the persistent environments its files declare
        (so `status`, `variables` and `add --plugin` work before the first push). Existing ones are left as they are.

        Creating a project, or changing its upstream or GitHub repository, is an admin's; a member may `init` an
        existing project (linking a checkout, declaring environments it lacks)."""
        name = names.project_name(name)
        repo = names.safe_join(self.settings.repos_dir, f"{name}.git")
        declared = [(names.environment_name(d.name), d) for d in environments]  # NameRefused before anything changes
        with self.store.session() as s:
            existing = s.scalar(select(m.Project).where(m.Project.name == name))
            if existing is None:
                require(actor, Permission.ADMIN, what=f"init: creating project {name}")
                create_bare_repo(repo, project=name, home=self.settings.home)
                s.add(m.Project(name=name, repo_path=str(repo), upstream=upstream, github_repository=github_repository))
                self.store.record(s, name, "project.created", f"project {name} created", actor=actor)
            else:
                if (upstream and upstream != existing.upstream) or (
                        github_repository and github_repository != existing.github_repository):
                    require(actor, Permission.ADMIN, what=f"init: changing project {name}'s repository")
                create_bare_repo(Path(existing.repo_path), project=name, home=self.settings.home)
                if upstream:
                    existing.upstream = upstream
                if github_repository:
                    existing.github_repository = github_repository
            s.flush()
            p = self.store.project(s, name)
            for env_name, d in declared:
                if self.store.find_environment(s, p, env_name) is None:
                    protected = d.production if d.protected is None else d.protected
                    s.add(m.Environment(project_id=p.id, name=env_name, branch=d.branch, production=d.production,
                                        protected=protected))
                    self.store.record(s, name, "environment.created",
                                      f"environment {env_name} created (declared by the project files)", environment=env_name,
                                      actor=actor)
        return self.info(name)

    def repair_repositories(self) -> None:
        """At start: every project's bare repository gets this version's config and hook (a repository made by an
        older branchyard lacks `receive.advertisePushOptions`, and its hook may name another interpreter)."""
        with self.store.session() as s:
            repos = [(p.name, Path(p.repo_path)) for p in s.scalars(select(m.Project))]
        for name, repo in repos:
            if (repo / "HEAD").exists():  # a repository gone from disk is not re-created empty behind the user's back
                try:
                    create_bare_repo(repo, project=name, home=self.settings.home)
                except BranchyardError as err:
                    log.warning("project %s: %s", name, err)

    def info(self, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            p = self.store.project(s, name)
            return {"name": p.name, "repo_path": p.repo_path, "upstream": shown_upstream(p.upstream),
                    "github_repository": p.github_repository, "webhook_secret_set": p.webhook_secret is not None}

    def list(self) -> list[dict[str, Any]]:
        with self.store.session() as s:
            return [
                {"name": p.name, "repo_path": p.repo_path, "upstream": shown_upstream(p.upstream)}
                for p in s.scalars(select(m.Project).order_by(m.Project.name))
            ]

    def configure_github(self, project: str, *, webhook_secret: str | None, repository: str | None,
                         actor: Actor = SYSTEM) -> dict[str, Any]:
        """`branchyard github configure`: the project's own webhook secret (encrypted) and GitHub repository."""
        if repository is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository):
            raise BadInput(f"github configure: --repository: expected \"owner/name\", got {repository!r}")
        if webhook_secret is not None and len(webhook_secret) < 8:
            raise BadInput("github configure: --webhook-secret: use at least 8 characters")
        with self.store.session() as s:
            p = self.store.project(s, project)
            changed = []
            if webhook_secret is not None:
                p.webhook_secret = self.box.encrypt(webhook_secret)
                changed.append("webhook secret")
            if repository is not None:
                p.github_repository = repository
                changed.append(f"repository {repository}")
            self.store.record(s, project, "github.configured", f"github: {', '.join(changed) or 'nothing'} set",
                              actor=actor)
        return self.info(project)


def remember_spec(store: Store, project: str, spec: ProjectSpec) -> None:
    """What a persistent branch's config says about GitHub and previews, kept for webhooks and the janitor."""
    with store.session() as s:
        p = store.project(s, project)
        if spec.github_repository:
            p.github_repository = spec.github_repository
        p.preview_policy = json.dumps(asdict(spec.preview)) if spec.preview is not None else None


def shown_upstream(upstream: str | None) -> str | None:
    """The upstream URL as API answers show it: without the credentials it may carry (https://***@host/...)."""
    return names.scrub_credentials(upstream) if upstream else upstream
