"""Which environment a pushed branch deploys to, and what to tell the user when none does (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from .. import names
from ..errors import NameRefused
from .model import ProjectSpec

DEFAULT_BRANCHES = ("main", "master", "trunk")  # a repository's default branch: what production usually deploys


def branch_target(branch: str, spec: ProjectSpec, pinned: Mapping[str, str]) -> str | None:
    """The persistent environment a pushed branch deploys to: the one whose branch the user set to it
    (`environment add NAME --branch B`, `pinned`: environment → branch), else the spec's, unless the user moved
    that environment to another branch."""
    for env_name, pinned_branch in sorted(pinned.items()):
        if pinned_branch == branch:
            return env_name
    declared = spec.environment_for_branch(branch)
    return None if declared in pinned else declared


def unmapped_note(branch: str, spec: ProjectSpec, pinned: Mapping[str, str]) -> str:
    """What a push of an unmapped branch prints: stored, and the exact command or spec line that maps it."""
    return f"branch {branch!r} is not mapped to an environment; stored, not deployed. {mapping_hint(branch, spec, pinned)}"


def mapping_hint(branch: str, spec: ProjectSpec, pinned: Mapping[str, str]) -> str:
    """The exact command or spec line that makes `branch` deploy: to production for a default branch (main, master,
    trunk), else to an environment named after it."""
    production = next((d for d in spec.environments.values() if d.production), None)
    if production is not None and branch in DEFAULT_BRANCHES:
        target, deploys = production.name, pinned.get(production.name) or production.branch
    else:
        target, deploys = _environment_for(branch), None
    if target in pinned:  # the user chose its branch: say which, and how to deploy this branch there anyway
        return f"{target} deploys {deploys!r} (set with `environment add`): `git push branchyard {branch}:{deploys}`"
    hint = (f"Map it with `branchyard environment add {target} --branch {branch}`, or in branchyard.toml "
            f"`branch = \"{branch}\"` under [environments.{target}]")
    return hint + (f"; or deploy it as {deploys}: `git push branchyard {branch}:{deploys}`" if deploys else "")


def push_hint(branch: str | None, spec: ProjectSpec, pinned: Mapping[str, str]) -> str:
    """What `init` prints: the push that deploys the repository's current branch, or how to map it."""
    if branch is None:
        deploys = {e: b for e, b in ((d.name, d.branch) for d in spec.environments.values()) if b} | dict(pinned)
        pushes = [f"`git push branchyard {b}` ({e})" for e, b in deploys.items()]
        return "deploy with " + ", ".join(pushes) if pushes else "no environment deploys a branch yet"
    target = branch_target(branch, spec, pinned)
    if target is not None:
        return f"deploy {target} with `git push branchyard {branch}`"
    return f"branch {branch!r} (checked out here) is not mapped to an environment. {mapping_hint(branch, spec, pinned)}"


def _environment_for(branch: str) -> str:
    """The environment name a command for `branch` suggests (its slug), or a placeholder when it has none."""
    try:
        return names.branch_environment(branch)
    except NameRefused:
        return "ENVIRONMENT"
