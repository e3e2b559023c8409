"""Database templates: a new database cloned from one already migrated and seeded, instead of running the hooks.

A preview's new database is normally created empty, then `preDeployCommand` migrates it and `seedCommand`
seeds it: two more Python starts, each longer than the app's own. When `templateFiles` names the files
that decide what those commands do (the migrations, the seed script), the first database made with a
given *key* is kept as a template right after its hooks ran, and every later new database with the same
key is a copy of it (CREATE DATABASE … TEMPLATE) on which neither command runs. A copy takes as long as
the app's start on a small machine, so one spare copy per template is made ahead, in the background: a
new database is the spare renamed and handed to its role, and the next spare is copied meanwhile.

The key is a digest of everything the hooks' result depends on that branchyard can see: the files the
patterns match (paths and contents), both commands, the dependencies (the virtualenv's content hash), the
variables' definitions (values of plain ones, names of secrets; secret values never enter it) and the
database server. Change any of it and the next preview builds (and keeps) a fresh template.

Pure: `template_key` reads files and returns a digest; the data plane does the PostgreSQL side.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import BadInput

KEPT_PER_PROJECT = 3  # templates kept per project; the least recently used beyond that are dropped


def matching_files(root: Path, globs: Iterable[str]) -> list[str]:
    """Paths (relative, POSIX, sorted) of the files under `root` that the globs match; a directory matches
    everything under it. BadInput naming the first glob that matches no file: a key that silently misses
    the migrations would clone a stale schema."""
    root = Path(root)
    found: set[str] = set()
    for glob in globs:
        hits = set()
        for path in root.glob(glob):
            if path.is_dir():
                hits.update(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                hits.add(path)
        hits = {p for p in hits if "__pycache__" not in p.parts and not p.is_symlink()}
        if not hits:
            raise BadInput(f"postgres.templateFiles: {glob!r} matches no file in the release; fix the pattern "
                           "(a template keyed without the files that shape the database could be stale)")
        found.update(p.relative_to(root).as_posix() for p in hits)
    return sorted(found)


def template_key(root: Path, globs: Iterable[str], *, pre_deploy: Iterable[str], seed: str | None,
                 dependencies: str, variables: Mapping[str, str], secret_names: Iterable[str], server: str) -> str:
    """The hex digest naming what a new database looks like after the hooks ran (see the module docstring)."""
    digest = hashlib.sha256()

    def part(label: str, value: object) -> None:
        data = json.dumps(value, sort_keys=True).encode()
        digest.update(f"{label}:{len(data)}:".encode() + data)

    part("version", 1)
    for rel in matching_files(root, globs):
        part("file", [rel, hashlib.sha256((Path(root) / rel).read_bytes()).hexdigest()])
    part("preDeployCommand", list(pre_deploy))
    part("seedCommand", seed)
    part("dependencies", dependencies)
    part("variables", dict(variables))
    part("secrets", sorted(secret_names))
    part("server", server)
    return digest.hexdigest()


def spare_database(template: str) -> str:
    """The spare copy of `template` kept ready (`bysp_…`): a new database is that copy renamed, no waiting for a copy."""
    return "bysp_" + template.removeprefix("bytpl_")


def template_database(project: str, key: str) -> str:
    """`bytpl_<key16>_<project>`: never a name `database_name` gives an environment (those start `by_`); the
    key comes first so that truncating a long project name never makes two templates' names equal."""
    return f"bytpl_{key[:16]}_{project}".replace("-", "_")[:63]
