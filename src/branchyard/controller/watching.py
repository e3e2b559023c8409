"""Does a pushed commit deploy to an environment, under its watchPatterns? The I/O around watch_patterns.decide
(pure): the environment's deployed commit from the store, the files changed since it from git; a skip is recorded
as a `deploy.skipped` event. Used by pushes (branches, `git push`) and previews (pull requests, branch previews)."""

from __future__ import annotations

from pathlib import Path

from .. import watch_patterns
from ..access import Actor
from ..errors import BranchyardError
from ..spec.model import ProjectSpec
from ..store.db import Store
from ..triggers import gitremote


def unwatched(store: Store, project: str, env_name: str, repo: Path, new: str, spec: ProjectSpec, *,
              git_env: dict[str, str] | None, actor: Actor) -> str | None:
    """Why `new` does not deploy to `env_name` (the pushed commit's own watchPatterns, as its deploy would read them),
    recorded as `deploy.skipped`; None when it deploys. Changed files: since the environment's deployed commit."""
    try:
        patterns = spec.environment(env_name).web.watch_patterns
    except BranchyardError:
        return None  # the deploy reports it
    if not patterns:
        return None
    with store.session() as s:
        env = store.find_environment(s, store.project(s, project), env_name)
        current = store.current_deployment(s, env) if env is not None else None
        base = current.commit_sha if current is not None else None
    changed = gitremote.changed_files(repo, base, new, git_env=git_env or {}) if base else None
    decision = watch_patterns.decide(patterns, changed, base=base)
    if decision.deploy:
        return None
    with store.session() as s:
        store.record(s, project, "deploy.skipped", f"push of {new[:12]}: {decision.reason}", environment=env_name,
                     actor=actor)
    return decision.reason
