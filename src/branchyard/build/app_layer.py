"""The app's own layer, reused across releases when only the code changed.

An editable install of the app (`uv pip install --no-deps -e .`) writes into a release's layer only metadata and
pointers: a `.pth` line or a finder module naming the release's directory (which one depends on the build backend),
console scripts naming the layer's own python, and the virtualenv's files naming the layer. None of it depends on
what the code says — only on the packaging files and on which files exist. So when those are unchanged, the layer
of an earlier release is copied and the two directories it names (its release's, its own) are replaced by the new
ones, as conda relocates a package's prefix: milliseconds, where running the build backend again takes a second or
more (setuptools: ~1.3 s for a one-file app).

Reuse is refused, and the app installed as before, when the install is not editable (the code itself is copied),
when the metadata may be computed from the code or the repository (`dynamic` in `[project]`, a `setup.py`, a
`setup.cfg`, build hooks), when the layer would not be exactly relocatable (a file naming an old path is binary),
or when nothing fits. `reuse_key` is pure; `find_source` and `relocate` touch only the layers' directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = ".branchyard-layer.json"  # in a layer: its key and the directories it names (written once it is complete)
PACKAGING_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")
_SKIP_DIRS = {".git", "__pycache__"}


class CannotRelocate(Exception):
    """The source layer cannot be copied exactly (gone meanwhile, a binary file names an old path, …)."""


@dataclass(frozen=True)
class Reuse:
    key: str | None  # None: this build's layer may not be reused (nor reuse another)
    reason: str  # why not, or what the key covers


def reuse_key(src: Path, *, projects: Sequence[str], base: str, steps: Sequence[str], tools: str) -> Reuse:
    """The key under which the layer of an editable install of `projects` (directories relative to `src`, "."
    the app itself) may be reused: the dependencies' virtualenv `base`, the install `steps`, the `tools` that run
    them (uv's identity), the packaging files' bytes and the list of the app's files (names, not contents)."""
    digest = hashlib.sha256()
    for part in (base, tools, *steps):
        digest.update(part.encode() + b"\0")
    for rel in projects:
        project = (src / rel).resolve()
        if not project.is_relative_to(src.resolve()) or not project.is_dir():
            return Reuse(None, f"{rel}: not a directory of the app")
        why = _computed_metadata(project)
        if why:
            return Reuse(None, f"{_shown(rel, why)}: the metadata may be computed, so the app is installed every build")
        for name in PACKAGING_FILES:
            path = project / name
            digest.update(f"{rel}/{name}\0".encode())
            if path.is_file():
                digest.update(path.read_bytes() + b"\0")
    for rel in _file_list(src):
        digest.update(rel.encode() + b"\0")
    return Reuse(digest.hexdigest(), "packaging files and file list")


def find_source(layers_root: Path, key: str, *, exclude: Path) -> tuple[Path, dict[str, str]] | None:
    """The most recent complete layer under `layers_root` made with `key` (not `exclude`), and its marker."""
    best: tuple[float, Path, dict[str, str]] | None = None
    try:
        candidates = [p for p in Path(layers_root).iterdir() if p.is_dir() and p != exclude]
    except OSError:
        return None
    for layer in candidates:
        try:
            marker = json.loads((layer / MARKER).read_text())
            mtime = (layer / MARKER).stat().st_mtime
        except (OSError, ValueError):
            continue
        if isinstance(marker, dict) and marker.get("key") == key and (best is None or mtime > best[0]):
            best = (mtime, layer, marker)
    return None if best is None else (best[1], best[2])


def relocate(source: Path, marker: dict[str, str], dest: Path, dest_src: Path) -> int:
    """Make `dest` a copy of the layer `source`, with the directories it names (its release's `marker["src"]`, its
    own `marker["layer"]`) replaced by `dest_src` and `dest`; the number of files rewritten. Caches (`__pycache__`)
    are left behind. CannotRelocate (and `dest` untouched) when the copy could not be exact."""
    pairs = replacements([(marker["layer"], str(dest)), (marker["src"], str(dest_src))])
    tmp = dest.with_name(f".{dest.name}.relocating")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", MARKER))
        rewritten = 0
        for path in _walk(tmp):
            if path.is_symlink():
                target = os.readlink(path)
                new = replace_all(target.encode(), pairs).decode()
                if new != target:
                    path.unlink()
                    path.symlink_to(new)
                    rewritten += 1
                continue
            data = path.read_bytes()
            if not any(old in data for old, _ in pairs):
                continue
            if b"\0" in data:
                raise CannotRelocate(f"{path.relative_to(tmp)} is binary and names {marker['src']} or {marker['layer']}")
            path.write_bytes(replace_all(data, pairs))
            rewritten += 1
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CannotRelocate(f"copying {source.name}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rewritten


def write_marker(layer: Path, *, key: str, src: Path) -> None:
    """Record that `layer` (complete) was made under `key` from the release directory `src`."""
    tmp = layer / f"{MARKER}.tmp"
    tmp.write_text(json.dumps({"key": key, "src": str(src), "layer": str(layer)}) + "\n")
    os.replace(tmp, layer / MARKER)


# -- internals -------------------------------------------------------------------------------------


def _computed_metadata(project: Path) -> str | None:
    """Why the project's metadata may depend on its code or repository, or None when pyproject.toml states it all."""
    for name in ("setup.py", "setup.cfg"):
        if (project / name).is_file():
            return f"has a {name}"
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "has no pyproject.toml"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "pyproject.toml cannot be read"
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    hatch_build = ((tool.get("hatch") or {}).get("build") or {}) if isinstance(tool.get("hatch"), dict) else {}
    if isinstance(hatch_build, dict) and (hatch_build.get("hooks") or any(
            isinstance(t, dict) and t.get("hooks") for t in (hatch_build.get("targets") or {}).values())):
        return "pyproject.toml: hatch build hooks"
    if isinstance(tool.get("hatch"), dict) and ((tool["hatch"].get("metadata") or {}).get("hooks")):
        return "pyproject.toml: hatch metadata hooks"
    project_table = data.get("project")
    if isinstance(project_table, dict):
        if project_table.get("dynamic"):
            return f"pyproject.toml: [project] dynamic = {project_table['dynamic']!r}"
        return None
    poetry = tool.get("poetry")
    if isinstance(poetry, dict):
        if poetry.get("build"):
            return "pyproject.toml: [tool.poetry] build script"
        return None
    return "pyproject.toml has no [project] table"


def _shown(rel: str, why: str) -> str:
    return why if rel in (".", "") else f"{rel}: {why}"


def _file_list(src: Path) -> list[str]:
    """The app's files, relative to src (the build's own `.branchyard-*` files and caches left out)."""
    found: list[str] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        rel_root = os.path.relpath(root, src)
        for name in sorted(files):
            if name.startswith(".branchyard-"):
                continue
            found.append(name if rel_root == "." else f"{rel_root}/{name}")
    return found


def _walk(root: Path) -> list[Path]:
    paths: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            if name in files or path.is_symlink():
                paths.append(path)
    return paths


def replacements(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Each old → new directory, as given, resolved (symlinks) and as in a file:// URL."""
    out: dict[bytes, bytes] = {}
    for old, new in pairs:
        for form_old, form_new in ((old, new), (os.path.realpath(old), os.path.realpath(new))):
            out.setdefault(form_old.encode(), form_new.encode())
            out.setdefault(urllib.parse.quote(form_old).encode(), urllib.parse.quote(form_new).encode())
    return list(out.items())


def replace_all(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """Every old directory replaced in one pass (longest first, so that one containing another wins)."""
    table = dict(pairs)
    pattern = re.compile(b"|".join(re.escape(old) for old in sorted(table, key=len, reverse=True)))
    return pattern.sub(lambda m: table[m.group(0)], data)
