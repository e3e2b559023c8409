"""One release as one archive (the slug model): built once by the control plane, unpacked by every pod that runs it.

The archive holds the exported commit at its root, the virtualenv the app runs with under `.venv/` and, when that
is a layer, the shared virtualenv it sees through `_branchyard_dependencies.pth` under `.deps/`. A pod unpacks it
into `app_dir` with `tarfile.extractall(app_dir, filter="data")` and runs `.venv/bin/python` as a non-root user.

A virtualenv names its own directories: console scripts' `#!` lines, `.pth` files, an editable install's pointer to
the release, pyvenv.cfg. Every text file naming a build directory is rewritten to where the pod unpacks it (app_layer's
byte-wise replacement); a binary file naming one cannot be rewritten exactly, so the release is refused rather than
shipped importing from paths of the control plane's machine. Links become relative (the data filter refuses absolute
ones and any leaving the tree), which is also why the interpreter links (`bin/python3.11` → the interpreter) cannot be
in the archive: `Packed.interpreter_links` lists them for the unpacker to make, pointed at the runtime image's python.

Same inputs, same bytes: members sorted, one mtime, owner root, modes reduced to 0o755/0o644, a gzip header without
name or time; so a rebuild of a commit is recognisably the same release (its sha256).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from branchyard.build import app_layer
from branchyard.errors import BuildFailed

_SKIP_DIRS = {".git", "__pycache__"}  # pods compile on import; a cache would name the build paths
_OWN_FILES = ".branchyard-"  # the release and layer markers: control-plane bookkeeping that names its paths
_PYTHON_LINK = re.compile(r"python[0-9.]*")
_PYTHON_VERSION = re.compile(r"python(\d+\.\d+)")
_COMPRESS_LEVEL = 6
_INTERPRETER = ""  # the linkname given to a virtualenv's interpreter link: made by the unpacker, not packed


class CannotPack(BuildFailed):
    """The release cannot be packed so that it runs exactly where it is unpacked (the message names the file)."""


@dataclass(frozen=True)
class Packed:
    path: Path
    sha256: str  # hex, of the archive's bytes
    size: int  # bytes
    files: int  # members that are files or symlinks
    rewritten: int  # of those, how many named a build directory and were relocated
    interpreter_links: tuple[tuple[str, str], ...] = ()  # (member under app_dir, target) to make once unpacked


@dataclass(frozen=True)
class _Tree:
    root: Path
    prefix: str  # its place in the archive: "" (the source), ".venv", ".deps"


def pack(dest: Path, *, src: Path, venv: Path, dependencies: Path | None, app_dir: str = "/app",
         runtime_python: str = "/usr/local/bin/python3.11", mtime: int = 0) -> Packed:
    """Write the release (`src` and its virtualenvs, relocated to `app_dir`) to the .tar.gz `dest`, atomically.

    CannotPack, and nothing written, when a copy could not run exactly there: a binary file naming a build directory,
    a symlink leaving the release, a virtualenv of another Python version than `runtime_python`."""
    if not (posixpath.isabs(app_dir) and posixpath.isabs(runtime_python)):
        raise CannotPack(f"pack: app_dir {app_dir!r} and runtime_python {runtime_python!r} must be absolute paths")
    app_dir = app_dir.rstrip("/") or "/"
    trees = [_Tree(Path(src), ""), _Tree(Path(venv), ".venv")]
    if dependencies is not None and Path(dependencies).resolve() != Path(venv).resolve():
        trees.append(_Tree(Path(dependencies), ".deps"))
    for tree in trees[1:]:
        _check_version(tree, runtime_python)
    pairs = app_layer.replacements([(str(t.root), posixpath.join(app_dir, t.prefix) if t.prefix else app_dir)
                                    for t in trees])
    members = sorted(m for tree in trees for m in _members(tree, taken={t.prefix for t in trees[1:]}))
    dest = Path(dest)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise BuildFailed(f"pack: cannot write in {dest.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    links: list[tuple[str, str]] = []
    files = rewritten = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_COMPRESS_LEVEL) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, path, tree in members:
                    info = tarfile.TarInfo(name)
                    info.mtime = mtime
                    data, changed = _fill(info, path, tree, trees, pairs, runtime_python)
                    if info.issym() and info.linkname == _INTERPRETER:
                        links.append((name, runtime_python))
                        continue
                    tar.addfile(info, data)
                    files += not info.isdir()
                    rewritten += changed
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildFailed(f"pack: {exc.filename or dest}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Packed(dest, digest, size, files, rewritten, tuple(links))


def _check_version(tree: _Tree, runtime_python: str) -> None:
    """A virtualenv's site-packages is per minor version: a 3.12 one on a 3.11 image would import nothing."""
    wanted = _PYTHON_VERSION.fullmatch(posixpath.basename(runtime_python))
    built = sorted(p.name for p in (tree.root / "lib").glob("python*"))
    if wanted and built and built != [f"python{wanted[1]}"]:
        raise CannotPack(f"pack: {tree.root} is a virtualenv of {', '.join(built)}, the runtime is {runtime_python}")


def _members(tree: _Tree, *, taken: set[str]) -> list[tuple[str, Path, _Tree]]:
    """(archive name, path, tree) for everything under tree.root but caches, .git and branchyard's own markers."""
    found = [(tree.prefix, tree.root, tree)] if tree.prefix else []
    for dirpath, dirs, files in os.walk(tree.root, onerror=_unreadable):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        rel = os.path.relpath(dirpath, tree.root)
        for name in dirs + files:
            if name.startswith(_OWN_FILES):
                continue
            if not tree.prefix and rel == "." and name in taken:
                raise CannotPack(f"pack: {tree.root / name}: the release has its own {name}, where its virtualenv goes")
            found.append((posixpath.normpath(posixpath.join(tree.prefix, rel, name)), Path(dirpath, name), tree))
    return found


def _unreadable(exc: OSError) -> None:
    """os.walk skips what it cannot list; an archive missing part of the release must not be written instead."""
    raise BuildFailed(f"pack: cannot read {exc.filename}: {exc.strerror}")


def _fill(info: tarfile.TarInfo, path: Path, tree: _Tree, trees: list[_Tree], pairs: list[tuple[bytes, bytes]],
          runtime_python: str) -> tuple[object, bool]:
    """Set `info` from `path`; the member's data and whether it was relocated."""
    st = path.stat() if info.name == tree.prefix else path.lstat()  # a virtualenv given as a symlink is its directory
    if stat.S_ISDIR(st.st_mode):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return None, False
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = _link_target(info.name, path, target, tree, trees, runtime_python)
        return None, info.linkname not in (_INTERPRETER, target)
    if not stat.S_ISREG(st.st_mode):
        raise CannotPack(f"pack: {path}: not a regular file, directory or symlink")
    data = path.read_bytes()
    changed = any(old in data for old, _ in pairs)
    if changed and b"\0" in data:
        raise CannotPack(f"pack: {path} is binary and names a build directory, so it cannot be relocated exactly")
    if tree.prefix and info.name == f"{tree.prefix}/pyvenv.cfg":
        data, changed = _pyvenv_cfg(data.decode(), runtime_python).encode(), True
    if changed:
        data = app_layer.replace_all(data, pairs)
    info.mode, info.size = (0o755 if st.st_mode & stat.S_IXUSR else 0o644), len(data)
    return io.BytesIO(data), changed


def _link_target(name: str, path: Path, target: str, tree: _Tree, trees: list[_Tree], runtime_python: str) -> str:
    """The link's target in the archive, relative; _INTERPRETER for a virtualenv's link to the build interpreter."""
    if not posixpath.isabs(target):
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(posixpath.relpath(name, tree.prefix or ".")), target))
        if inside != ".." and not inside.startswith("../"):
            return target  # stays in its own tree: means the same once unpacked
        target = posixpath.normpath(posixpath.join(str(path.parent), target))
    for root, prefix in sorted(((r, t.prefix) for t in trees for r in {str(t.root), os.path.realpath(t.root)}),
                               key=lambda rp: len(rp[0]), reverse=True):
        if target == root or target.startswith(root + "/"):
            member = posixpath.join(prefix, posixpath.relpath(target, root)) if prefix else posixpath.relpath(target, root)
            return posixpath.relpath(posixpath.normpath(member), posixpath.dirname(name) or ".")
    if tree.prefix and posixpath.dirname(name) == f"{tree.prefix}/bin" and _PYTHON_LINK.fullmatch(path.name):
        return _INTERPRETER
    raise CannotPack(f"pack: {path} is a symlink to {target}, outside the release")


def _pyvenv_cfg(text: str, runtime_python: str) -> str:
    """pyvenv.cfg naming the runtime image's interpreter: `home` is where Python looks for its standard library."""
    home = posixpath.dirname(runtime_python)
    values = {"home": home, "executable": runtime_python, "base-executable": runtime_python,
              "base-prefix": posixpath.dirname(home), "base-exec-prefix": posixpath.dirname(home)}
    lines = []
    for line in text.splitlines():
        key = line.partition("=")[0].strip().lower()
        if key == "command":  # the build's own command line: meaningless on the pod
            continue
        lines.append(f"{key} = {values[key]}" if key in values else line)
    return "\n".join(lines) + "\n"




# --- where a release's archive is kept -----------------------------------------------------------------------------

_DIGEST = re.compile(r"[0-9a-f]{64}")


def archive_path(release_dir: str | Path) -> Path:
    """Where the archive of the release built into `release_dir` lives: next to the directory, its name plus `.tar.gz`
    (`…/releases/abc123` → `…/releases/abc123.tar.gz`), shared by every deployment of that release."""
    directory = Path(release_dir)
    return directory.parent / f"{directory.name}.tar.gz"


def remove(release_dir: str | Path) -> None:
    """Delete a release's archive and its digest (its release directory is being deleted)."""
    packed = archive_path(release_dir)
    for path in (packed, packed.with_name(packed.name + ".sha256")):
        path.unlink(missing_ok=True)


def record_sha256(archive: Path, sha256: str) -> None:
    """Mark the archive complete: its digest beside it (`<archive>.sha256`), written once the archive is in place."""
    archive.with_name(archive.name + ".sha256").write_text(sha256 + "\n")


def recorded_sha256(archive: Path) -> str | None:
    """The digest recorded beside a complete archive; None when there is none (never packed, or cut off mid-pack).
    Read, never computed: hashing a large archive on every fetch is what the sidecar saves."""
    try:
        text = archive.with_name(archive.name + ".sha256").read_text().strip()
    except OSError:
        return None
    return text if _DIGEST.fullmatch(text) else None
