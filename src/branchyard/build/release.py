"""Immutable releases (a commit exported from git) and a virtualenv cached by dependency hash.

A release directory is complete once `.branchyard-release.json` exists in it; that marker is written
last, atomically. Virtualenvs live in `<cache>/venvs/<hash>` where the hash covers the interpreter,
the install steps and the dependency files: a code-only push reuses the venv and skips the install.
A build that installs the app itself does so into a layer of the release (`<cache>/layers/<deployment>`):
a virtualenv that sees the shared one through a .pth file, so the shared one is never changed by a release.
When the app is installed editable and its packaging files and file list are those of an earlier release, that
release's layer is copied and relocated instead of running the build backend again (app_layer.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import posixpath
import queue
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from branchyard import failpoints
from branchyard.backends.local.processes import kill_group
from branchyard.build import app_layer, detect, installers, interpreters, requirements, tools
from branchyard.build.steps import IMPLICIT_INSTALL, requirement_files, split_build_command, split_top_level
from branchyard.errors import BackendError, BuildFailed

if TYPE_CHECKING:
    from branchyard.backends.local.tasks import TaskRecords

__all__ = [
    "DEPENDENCY_FILES",
    "RELEASE_MARKER",
    "VENV_MARKER",
    "BuildResult",
    "build",
    "dependency_hash",
    "export_commit",
    "mark_release_complete",
    "python_identity",
    "read_release_meta",
    "release_complete",
    "remove_incomplete_releases",
    "release_layers",
    "remove_unused_layers",
    "remove_unused_virtualenvs",
    "shared_virtualenvs",
    "split_build_command",
]

RELEASE_MARKER = ".branchyard-release.json"
VENV_MARKER = ".complete"
DEPENDENCY_FILES = (
    "requirements.txt",
    "requirements-*.txt",
    "requirements_*.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "poetry.lock",
    "Pipfile",
    "Pipfile.lock",
    "uv.lock",
    "constraints.txt",
)
_GIT_TIMEOUT = 600.0
_LINGER = 2.0  # seconds a finished step's leftovers may keep its output open
_REV = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# The control plane's own settings and interpreter overrides do not leak into user builds.
_ENV_DROP_PREFIXES = ("BRANCHYARD_",)
_PIP_INSTALL = re.compile(r"\bpip[0-9.]*\s+install\b")
_ENV_DROP = {"PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "PYTHONSTARTUP", "PIP_USER"}


# -- releases --------------------------------------------------------------------------------------


def export_commit(git_dir: Path, sha: str, dest: Path, *, git_env: dict[str, str] | None = None) -> None:
    """Extract commit `sha` of the repository `git_dir` into `dest`, atomically; no-op if dest is complete.

    git_env is merged into the environment of git (e.g. a pre-receive hook's quarantine variables).
    A dest that exists without the release marker (an earlier attempt that failed) is replaced.
    """
    dest = Path(dest)
    if release_complete(dest):
        return
    env = {**os.environ, **(git_env or {})}
    full = _resolve_commit(Path(git_dir), sha, env)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.export-", dir=dest.parent))
    except OSError as exc:
        raise BuildFailed(f"export: cannot create {dest.parent}: {exc.strerror}") from None
    try:
        _archive_into(Path(git_dir), full, tmp, env)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def mark_release_complete(dest: Path, meta: Mapping[str, object]) -> None:
    """Write the release marker (JSON of `meta`) atomically: the last step of making a release."""
    _write_atomic(Path(dest) / RELEASE_MARKER, json.dumps(dict(meta), indent=2, sort_keys=True, default=str) + "\n")


def release_complete(dest: Path) -> bool:
    """True if `dest` is a finished release (its marker exists)."""
    return (Path(dest) / RELEASE_MARKER).is_file()


def read_release_meta(dest: Path) -> dict[str, object] | None:
    """The metadata written by mark_release_complete; None if the release is not complete."""
    try:
        meta = json.loads((Path(dest) / RELEASE_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read release marker in {dest}: {exc}") from None
    return meta if isinstance(meta, dict) else None


def release_layers(layers_root: Path) -> list[Path]:
    """The release layers there are (`<layers_root>/<deployment>`)."""
    root = Path(layers_root)
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def remove_unused_layers(layers: Collection[Path], *, in_use: Collection[Path], building: Collection[str]) -> list[Path]:
    """Delete those of `layers` (listed before `in_use` and `building` were read, so that a layer made meanwhile is
    not among them) that no release uses any more: named by no kept release's marker (`in_use`: its `venv`, a
    promoted copy's included) and not being built (`building`: ids of deployments in progress, whose marker is not
    written yet). The layers deleted."""
    used = {Path(p).resolve() for p in in_use}
    removed = []
    for layer in layers:
        owner = layer.name.removeprefix(".").removesuffix(".relocating")  # app_layer.relocate's copy in progress
        if owner in building or layer.resolve() in used or not layer.is_dir():
            continue
        shutil.rmtree(layer, ignore_errors=True)
        removed.append(layer)
    return removed


def shared_virtualenvs(venvs_root: Path) -> list[Path]:
    """The shared virtualenvs there are (`<venvs_root>/<dependency hash>`)."""
    root = Path(venvs_root)
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def remove_unused_virtualenvs(venvs: Collection[Path], *, in_use: Collection[Path],
                              still_idle: Callable[[], bool]) -> list[Path]:
    """Delete those of `venvs` that no kept release names (`in_use`: a marker's `dependencies` and `venv`), each
    under its build lock, taken without waiting (one a build holds is left alone), and only while `still_idle()`
    says, under that lock, that no build started since `in_use` was read (a build's release marker, naming its
    virtualenv, is written last; a build that takes the lock after us finds no virtualenv and makes it again).
    The virtualenvs deleted. The lock files stay: deleting one could let two builds of the same virtualenv lock
    different files."""
    used = {Path(p).resolve() for p in in_use}
    removed = []
    for venv in venvs:
        if venv.resolve() in used or not venv.is_dir():
            continue
        try:
            fd = os.open(venv.parent / f"{venv.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            if not still_idle():
                break
            shutil.rmtree(venv, ignore_errors=True)
            removed.append(venv)
        finally:
            os.close(fd)
    return removed


def remove_incomplete_releases(root: Path, *, keep: Collection[Path] = ()) -> list[Path]:
    """Delete root's immediate subdirectories that lack the release marker (start-up cleanup), except `keep`
    (the exported sources of deployments that will be resumed)."""
    root = Path(root)
    removed: list[Path] = []
    try:
        children = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BackendError(f"cannot list {root}: {exc.strerror}") from None
    for child in children:
        if child.is_symlink() or not child.is_dir() or release_complete(child) or child in keep:
            continue
        try:
            shutil.rmtree(child)
        except OSError as exc:
            raise BackendError(f"cannot remove incomplete release {child}: {exc.strerror}") from None
        removed.append(child)
    return removed


# -- dependencies ----------------------------------------------------------------------------------


def dependency_hash(src: Path, *, python: str, install_steps: Sequence[str]) -> str:
    """sha256 over the interpreter identity, the install steps and the dependency files' bytes."""
    src = Path(src)
    files: dict[str, Path] = {}
    for pattern in DEPENDENCY_FILES:
        for path in src.glob(pattern):
            if path.is_file():
                files[path.name] = path
    root = src.resolve()
    for step in install_steps:
        for path in requirement_files(step, src):
            files[path.relative_to(root).as_posix()] = path
    digest = hashlib.sha256()
    for part in ("branchyard-venv-1", python, "\n".join(install_steps)):
        _feed(digest, part.encode())
    for name in sorted(files):
        _feed(digest, name.encode())
        try:
            _feed(digest, files[name].read_bytes())
        except OSError as exc:
            raise BuildFailed(f"cannot read {name}: {exc.strerror}") from None
    return digest.hexdigest()


_IDENTITIES: dict[tuple, str] = {}


def python_identity(python: str) -> str:
    """A string naming the interpreter exactly (version, build, base prefix): part of the venv hash.

    Asked once per interpreter file: the answer is kept while the file (resolved through PATH and
    symlinks) keeps its inode, size and modification time, so an upgraded interpreter is asked again."""
    found = shutil.which(python)
    try:
        st = os.stat(os.path.realpath(found)) if found else None
    except OSError:
        st = None
    key = (python, os.path.realpath(found), st.st_ino, st.st_size, st.st_mtime_ns) if st else None
    if key is not None and key in _IDENTITIES:
        return _IDENTITIES[key]
    identity = _ask_identity(python)
    if key is not None:
        _IDENTITIES[key] = identity
    return identity


def _ask_identity(python: str) -> str:
    code = "import sys; print(sys.version.replace(chr(10), ' ')); print(sys.base_prefix)"
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=60, check=True, stdin=subprocess.DEVNULL
        ).stdout
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.strip()[-300:]
        raise BuildFailed(f"python: `{python}` exited with code {exc.returncode}: {detail}") from None
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"python: `{python}` did not answer within 60s") from None
    except OSError as exc:
        raise BuildFailed(f"python: cannot run `{python}`: {exc.strerror}") from None
    return out.strip()


@dataclass(frozen=True)
class BuildResult:
    venv: Path  # what the app runs with: the release's own layer when it has one, else the shared virtualenv
    cached: bool  # the shared virtualenv (the dependencies) was reused
    seconds: float
    dependencies: Path | None = None  # the shared virtualenv
    installer: str = ""
    layered: bool = False  # the app was installed into a layer of its own


def build(
    src: Path,
    build_command: str | None,
    *,
    cache_dir: Path,
    python: str,
    log: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    tasks: TaskRecords | None = None,
    index_url: str | None = None,
    layer_dir: Path | None = None,
) -> BuildResult:
    """Build the release in `src`: the dependencies into a shared virtualenv cached by dependency hash + interpreter,
    the app itself (when it is installed) into a layer of its own, then the build command's other steps, every time.

    env: extra variables for the build steps (e.g. the environment's variables). timeout: seconds for the whole
    build; None waits forever. Output is passed to `log` line by line as it arrives. tasks: where each step's
    process group is recorded while it runs (killed by the next start if the control plane dies). index_url: the
    operator's package index (it wins over `-i` lines in the app's requirements files). layer_dir: where the
    release's own layer goes (default: under cache_dir/layers).
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    src = Path(src)
    installer = detect.detect_installer(src)
    # The requirements files the install reads: the operator's index replaces their -i lines before anything reads them.
    req_files = _requirement_files(src, build_command)
    if index_url:
        requirements.override_index_lines(src, req_files, index_url, log)
    # uv comes with branchyard (its app step needs it too); poetry and pipenv are installed only when needed, below.
    uv = interpreters.uv_binary()
    steps = installers.plan(src, build_command, installer, python=python, uv=uv,
                            tool=_tool(detect.UV, cache_dir, src=src, log=log, deadline=deadline, tasks=tasks)
                            if installer.kind == detect.UV else None)
    log(f"installer: {steps.installer} ({steps.source})")
    for note in steps.notes:
        log(f"note: {note}")
    identity = python_identity(python)
    digest = dependency_hash(src, python=identity, install_steps=[*steps.cache_key, *([index_url] if index_url else [])])
    venvs = Path(cache_dir) / "venvs"
    venv = venvs / digest
    try:
        venvs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildFailed(f"cannot create {venvs}: {exc.strerror}") from None
    run = functools.partial(_run_step, src=src, log=log, deadline=deadline, tasks=tasks, req_files=req_files)
    extra = {"UV_CACHE_DIR": str(Path(cache_dir) / "uv"), "POETRY_CACHE_DIR": str(Path(cache_dir) / "poetry"),
             "PIPENV_CACHE_DIR": str(Path(cache_dir) / "pipenv"), **(env or {})}
    if index_url:
        extra |= {"PIP_INDEX_URL": index_url, "UV_DEFAULT_INDEX": index_url}
    waiting = functools.partial(log, f"waiting for another build of virtualenv {digest[:12]}")
    with _flock(venvs / f"{digest}.lock", deadline=deadline, on_wait=waiting):
        cached = (venv / VENV_MARKER).is_file()
        if cached:
            log(f"using cached virtualenv {digest[:12]} (dependencies unchanged, install steps skipped)")
        else:
            try:
                if venv.exists():
                    log(f"removing incomplete virtualenv {digest[:12]}")
                    shutil.rmtree(venv)
                log(f"creating virtualenv {digest[:12]} with Python {identity.split()[0]}")
                step_env = _build_env(venv, extra)
                argv = [python, "-m", "venv", str(venv)]
                _run(argv, f"{python} -m venv", cwd=src, env=step_env, log=log, deadline=deadline, tasks=tasks)
                if steps.installer in (detect.POETRY, detect.PIPENV):  # the same steps, with the tool's own executable
                    tool = _tool(steps.installer, cache_dir, src=src, log=log, deadline=deadline, tasks=tasks)
                    steps = installers.plan(src, build_command, installer, tool=tool, python=python, uv=uv)
                if steps.installer == detect.PIPENV:
                    # pipenv counts PIP_INDEX_URL into Pipfile.lock's hash (--deploy would refuse the lock): the
                    # operator's index replaces pypi.org as pipenv's mirror instead.
                    step_env.pop("PIP_INDEX_URL", None)
                    if index_url:
                        step_env["PIPENV_PYPI_MIRROR"] = index_url
                for step in steps.dependencies:
                    run(step, env=step_env)
                _write_atomic(venv / VENV_MARKER, json.dumps({"python": identity, "install_steps": steps.cache_key}) + "\n")
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
    runtime = venv
    other_installs = _installs_into_venv([s.command for s in steps.other])
    layered = bool(steps.app) or other_installs
    app_steps: Sequence[installers.Step] = steps.app
    reuse = None
    if layered:
        # The app's own install goes into a layer of this release: the shared virtualenv stays as the cache made it.
        layer = Path(layer_dir) if layer_dir else Path(cache_dir) / "layers" / hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:32]
        if steps.editable and not other_installs:
            reuse = app_layer.reuse_key(src, projects=steps.editable, base=digest, tools=_identity_of(uv),
                                        steps=[s.label for s in steps.app])
        if reuse is not None and reuse.key is not None and _reuse_layer(layer, reuse.key, src, log):
            app_steps = ()
        else:
            if reuse is not None and reuse.key is None:
                log(f"note: {reuse.reason}")
            log(f"installing the app into a layer of its own ({layer.name[:12]}) over virtualenv {digest[:12]}")
            _make_layer(python, venv, layer, src=src, log=log, deadline=deadline, tasks=tasks)
        runtime = layer
    step_env = _build_env(runtime, extra)
    for step in app_steps:
        run(step, env=step_env)
    if app_steps and reuse is not None and reuse.key is not None:
        app_layer.write_marker(runtime, key=reuse.key, src=src.resolve())
    for step in steps.other:
        run(step, env=step_env)
    return BuildResult(venv=runtime, cached=cached, seconds=time.monotonic() - started, dependencies=venv,
                       installer=steps.installer, layered=layered)


def _tool(kind: str, cache_dir: Path, *, src: Path, log: Callable[[str], None], deadline: float | None,
          tasks: TaskRecords | None) -> str:
    """The executable of installer `kind`: uv comes with branchyard; poetry and pipenv are installed on first use."""
    if kind == detect.UV:
        found = interpreters.uv_binary()
        if found is None:
            raise BuildFailed("uv.lock: the uv executable is missing (it comes with branchyard's `uv` dependency)")
        return found
    env = _build_env(Path(cache_dir) / "tools" / kind, None)

    def run(argv: Sequence[str], label: str) -> None:
        _run(list(argv), label, cwd=src, env=env, log=log, deadline=deadline, tasks=tasks)

    with _flock(Path(cache_dir) / f"tools-{kind}.lock", deadline=deadline, on_wait=lambda: log(f"waiting for {kind}")):
        return tools.ensure(installers.TOOLS[kind], Path(cache_dir), run=run, log=log)


def _requirement_files(src: Path, build_command: str | None) -> list[Path]:
    """The app's requirements files an install may read (requirements.txt, those the build command names, what they
    include), and pyproject.toml: where a failed install's culprit is looked for."""
    found: dict[Path, None] = {}
    for step in [IMPLICIT_INSTALL, *split_top_level(build_command or "")]:
        for path in requirement_files(step, src):
            found[path] = None
    if (src / "pyproject.toml").is_file():
        found[(src / "pyproject.toml").resolve()] = None
    return list(found)


def _run_step(step: installers.Step, *, env: dict[str, str], src: Path, log: Callable[[str], None],
              deadline: float | None, tasks: TaskRecords | None, req_files: Sequence[Path]) -> None:
    """One step through /bin/sh; a failed install names the requirements line at fault when pip or uv says which."""
    log(f"$ {step.label}")
    for name, text in step.writes:
        try:
            (src / name).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BuildFailed(f"build failed: cannot write {name}: {exc.strerror}") from None
    tail: list[str] = []

    def keep(line: str) -> None:
        tail.append(line)
        del tail[:-200]
        log(line)

    try:
        _run(["/bin/sh", "-c", step.command], step.label, cwd=src, env=env, log=keep, deadline=deadline, tasks=tasks)
    except BuildFailed as err:
        if step.not_editable is not None and any("build_editable" in line for line in tail):
            log("note: the app's build backend cannot install it editable (no PEP 660 `build_editable`): "
                "installing a copy instead, every build")
            return _run_step(step.not_editable, env=env, src=src, log=log, deadline=deadline, tasks=tasks,
                             req_files=req_files)
        at_fault = requirements.blame(tail, src, req_files)
        if at_fault:
            raise BuildFailed(f"{err}: {at_fault}") from None
        raise


def _reuse_layer(layer: Path, key: str, src: Path, log: Callable[[str], None]) -> bool:
    """Copy the layer of an earlier release with the same packaging and file list (app_layer); False if none fits."""
    found = app_layer.find_source(layer.parent, key, exclude=layer)
    if found is None:
        return False
    source, marker = found
    started = time.monotonic()
    try:
        rewritten = app_layer.relocate(source, marker, layer, src.resolve())
    except app_layer.CannotRelocate as exc:
        log(f"note: the app's layer of {source.name[:12]} cannot be reused ({exc}): installing the app")
        return False
    app_layer.write_marker(layer, key=key, src=src.resolve())
    log(f"reusing the app's layer of {source.name[:12]} (packaging files and file list unchanged; "
        f"{rewritten} files relocated in {(time.monotonic() - started) * 1000:.0f} ms)")
    return True


def _identity_of(tool: str | None) -> str:
    """What identifies an installer's executable for a cache key: its path, size and modification time."""
    if not tool:
        return ""
    try:
        st = os.stat(tool)
    except OSError:
        return tool
    return f"{tool} {st.st_size} {st.st_mtime_ns}"


def _make_layer(python: str, base: Path, layer: Path, *, src: Path, log: Callable[[str], None],
                deadline: float | None, tasks: TaskRecords | None) -> None:
    """A virtualenv that sees `base`'s packages (a .pth file), with `base`'s scripts pointed at its own python."""
    shutil.rmtree(layer, ignore_errors=True)
    layer.parent.mkdir(parents=True, exist_ok=True)
    env = _build_env(base, None)
    _run([python, "-m", "venv", "--without-pip", "--prompt", "app", str(layer)], f"{python} -m venv --without-pip", cwd=src, env=env,
         log=log, deadline=deadline, tasks=tasks)
    [layer_site] = list(layer.glob("lib/python*/site-packages")) or [None]
    [base_site] = list(base.glob("lib/python*/site-packages")) or [None]
    if layer_site is None or base_site is None:
        raise BuildFailed(f"build failed: no site-packages in {layer if layer_site is None else base}")
    # An `import` line in a .pth file runs at start-up: addsitedir also reads base's own .pth files.
    _write_atomic(layer_site / "_branchyard_dependencies.pth", f"import site; site.addsitedir({str(base_site)!r})\n")
    old, new = f"{base}/bin/".encode(), f"{layer}/bin/".encode()
    for script in sorted((base / "bin").iterdir()):
        target = layer / "bin" / script.name
        if script.is_symlink() or not script.is_file() or target.exists() or target.is_symlink():
            continue
        try:
            data = script.read_bytes()
        except OSError:
            continue
        head, sep, rest = data.partition(b"\n")
        second, sep2, rest2 = rest.partition(b"\n")
        if not head.startswith(b"#!") or old not in head + second:
            continue
        target.write_bytes(head.replace(old, new) + sep + second.replace(old, new) + sep2 + rest2)
        target.chmod(script.stat().st_mode & 0o777)


# -- internals -------------------------------------------------------------------------------------


def _resolve_commit(git_dir: Path, sha: str, env: dict[str, str]) -> str:
    short = sha[:12]
    if not sha or sha.startswith("-") or any(c.isspace() for c in sha):
        raise BuildFailed(f"git: not a commit: {sha!r}")
    try:
        proc = subprocess.run(
            ["git", f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=_GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"git: timed out looking up commit {short}") from None
    except OSError as exc:
        raise BackendError(f"git: cannot run git: {exc.strerror}") from None
    full = proc.stdout.strip()
    if proc.returncode != 0 or not _REV.match(full):
        if not (git_dir / "HEAD").exists() and not (git_dir / "objects").is_dir():
            raise BuildFailed(f"git: {git_dir} is not a git repository")
        raise BuildFailed(f"git: commit {short} not found")
    return full


def _archive_into(git_dir: Path, full: str, dest: Path, env: dict[str, str]) -> None:
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                ["git", f"--git-dir={git_dir}", "archive", "--format=tar", full],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise BackendError(f"git: cannot run git: {exc.strerror}") from None
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    _check_member(member)
                    _extract(tar, member, dest)
            while proc.stdout.read(65536):  # drain the end-of-archive padding so git exits cleanly
                pass
        except (tarfile.TarError, OSError) as exc:
            proc.kill()
            proc.wait()
            raise BuildFailed(f"export of {full[:12]} failed: {_git_error(err) or exc}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        rc = proc.wait()
        if rc != 0:
            raise BuildFailed(f"git archive {full[:12]} exited with code {rc}: {_git_error(err) or 'no error output'}")


def _git_error(err: IO[bytes]) -> str:
    err.seek(0)
    text = err.read().decode("utf-8", errors="replace").strip()
    return text.splitlines()[-1] if text else ""


def _check_member(m: tarfile.TarInfo) -> None:
    name = m.name
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../"):
        raise BuildFailed(f"export: refusing path outside the release: {name}")
    if m.issym():
        target = m.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise BuildFailed(f"export: refusing symlink {name} -> {target}: it points outside the release")
    elif not (m.isreg() or m.isdir()):
        raise BuildFailed(f"export: refusing {name}: not a regular file, directory or symlink")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python ≥ 3.11.4: a second line of defence
        try:
            tar.extract(member, dest, filter="data")
        except tarfile.FilterError as exc:
            raise BuildFailed(f"export: refusing {member.name}: {exc}") from None
        return
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""  # pragma: no cover
    member.mode &= 0o755  # pragma: no cover
    tar.extract(member, dest)  # pragma: no cover


def _replace_dir(tmp: Path, dest: Path) -> None:
    try:
        os.rename(tmp, dest)
        return
    except OSError as exc:
        if not dest.exists():
            raise BuildFailed(f"export: cannot move release into {dest}: {exc.strerror}") from None
    if release_complete(dest):  # another exporter finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    trash = dest.parent / f".{dest.name}.trash-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(dest, trash)
        os.rename(tmp, dest)
    except OSError as exc:
        raise BuildFailed(f"export: cannot replace {dest}: {exc.strerror}") from None
    shutil.rmtree(trash, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BackendError(f"cannot write {path}: {exc.strerror}") from None


def _feed(digest: hashlib._Hash, data: bytes) -> None:
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def _installs_into_venv(steps: Sequence[str]) -> bool:
    """True if a step (run every build) pip-installs something, typically the app: `pip install .`."""
    return any(_PIP_INSTALL.search(step) for step in steps)


def _build_env(venv: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP and not k.startswith(_ENV_DROP_PREFIXES)}
    env.update(extra or {})
    bin_dir = str(venv / "bin")
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", os.defpath)
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)  # uv sync installs into this virtualenv, never a .venv of the app
    env["UV_PYTHON_DOWNLOADS"] = "never"  # the interpreter was chosen before the build
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONHOME", None)
    return env


@contextlib.contextmanager
def _flock(path: Path, *, deadline: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive flock on `path`; calls on_wait once if another holder makes us wait."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BuildFailed(f"cannot open lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise BuildFailed(
                            "build failed: timed out waiting for another build of the same dependencies"
                        ) from None
                    time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _run(
    argv: list[str],
    label: str,
    *,
    cwd: Path,
    env: dict[str, str],
    log: Callable[[str], None],
    deadline: float | None,
    tasks: TaskRecords | None = None,
) -> None:
    """Run argv in its own process group, passing its output to `log` line by line as it arrives.

    `log` is called on the caller's thread. Raises BuildFailed on a non-zero exit or the deadline.
    Background processes a step leaves holding its output are killed shortly after it exits.
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise BuildFailed(f"build failed: cannot run `{label}`: {exc.strerror}") from None
    with tasks.running(proc.pid, label) if tasks is not None else contextlib.nullcontext():
        if tasks is not None:
            failpoints.hit("deploy.during_build")
        _follow(proc, label, log=log, deadline=deadline)


def _follow(proc: subprocess.Popen[bytes], label: str, *, log: Callable[[str], None], deadline: float | None) -> None:
    """Pass proc's output to `log` until it exits (killing its group at the deadline); BuildFailed unless it exits 0."""
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    timed_out = False
    exited_at: float | None = None
    killed_at: float | None = None
    try:
        while True:
            try:
                raw = lines.get(timeout=0.1)
            except queue.Empty:
                pass
            else:
                if raw is None:
                    break
                log(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            now = time.monotonic()
            if deadline is not None and now >= deadline and killed_at is None:
                timed_out = True
                killed_at = now
                kill_group(proc.pid)
            if proc.poll() is not None:
                exited_at = exited_at or now
                if killed_at is None and now - exited_at > _LINGER:
                    killed_at = now
                    kill_group(proc.pid)  # something it started still holds the output pipe
            if killed_at is not None and now - killed_at > _LINGER:
                break  # a process outside the group holds the pipe: stop listening
        rc = proc.wait()
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise
    if timed_out:
        raise BuildFailed(f"build failed: `{label}` timed out")
    if rc != 0:
        raise BuildFailed(f"build failed: `{label}` exited with code {rc}")


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw)
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)
        with contextlib.suppress(OSError):
            stream.close()
