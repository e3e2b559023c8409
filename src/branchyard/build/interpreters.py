"""Finding a Python interpreter on this machine for an app's version request (PATH, pyenv, uv), or installing one
with `uv python install` when the operator allows downloads."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, BuildFailed
from .detect import PythonRequest, minor_candidates

_ASK = "import sys; v = sys.version_info; print(v[0], v[1], v[2]); print(sys.executable)"


@dataclass(frozen=True)
class Interpreter:
    path: str  # what the build runs (an absolute path, or the operator's BRANCHYARD_PYTHON as given)
    version: tuple[int, int, int]
    origin: str  # "BRANCHYARD_PYTHON", "PATH", "pyenv", "uv"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def describe(self) -> str:
        return f"Python {self.version_text} ({self.path}, found via {self.origin})"


def choose(request: PythonRequest | None, *, default: str, allow_downloads: bool = False, uv: str | None = None,
           log: Callable[[str], None] = lambda _: None) -> Interpreter:
    """The interpreter for `request`: the operator's default when the app asks nothing (or the default fits),
    else the newest matching one on the machine; BadInput (one line: version, source, what to install) if none."""
    default_interp = _probe(default, "BRANCHYARD_PYTHON")
    if request is None:
        if default_interp is None:
            raise BuildFailed(f"python: cannot run `{default}` (BRANCHYARD_PYTHON)")
        return default_interp
    if default_interp is not None and request.matches(default_interp.version):
        return default_interp
    found = _newest(request, _local_candidates(request))
    if found is None and uv:  # `uv python find` probes every interpreter it knows of (~0.5 s): only when needed
        path = _uv_find(request, uv)
        found = _newest(request, [_once(path, "uv", set())] if path else [])
    if found is not None:
        return found
    if allow_downloads and uv:
        installed = _uv_install(request, uv, log)
        if installed is not None and request.matches(installed.version):
            return installed
    hint = f"`pyenv install {request.spec}` or `uv python install {request.spec}`" if _plain(request.spec) else \
        "a Python that satisfies it (pyenv install / uv python install)"
    downloads = "" if allow_downloads else ", or let branchyard download it: BRANCHYARD_PYTHON_DOWNLOADS=1"
    raise BadInput(f"{request.describe()} is not installed on this machine: install {hint}{downloads}; "
                   f"or change {request.source}")


def _plain(spec: str) -> bool:
    return all(part.isdigit() for part in spec.split("."))


def _newest(request: PythonRequest, candidates: Iterable[Iterable[Interpreter]]) -> Interpreter | None:
    found = [i for group in candidates for i in group if request.matches(i.version)]
    return max(found, key=lambda i: i.version) if found else None


def _local_candidates(request: PythonRequest) -> Iterator[Iterator[Interpreter]]:
    """`python3.X` on PATH, then pyenv's versions (each real file once)."""
    seen: set[str] = set()
    for minor in minor_candidates(request.spec):
        found = shutil.which(f"python{minor}")
        if found:
            yield _once(found, "PATH", seen)
    for path in _pyenv_pythons():
        yield _once(str(path), "pyenv", seen)


def _once(path: str, origin: str, seen: set[str]) -> Iterator[Interpreter]:
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    interp = _probe(path, origin)
    if interp is not None:
        yield interp


def _pyenv_pythons() -> list[Path]:
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    exe = shutil.which("pyenv")
    if exe:
        try:
            roots.insert(0, subprocess.run([exe, "root"], capture_output=True, text=True, timeout=10,
                                           stdin=subprocess.DEVNULL).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    for root in roots:
        if root and (Path(root) / "versions").is_dir():
            return sorted(p for p in Path(root, "versions").glob("*/bin/python3") if p.exists())
    return []


def _uv_find(request: PythonRequest, uv: str) -> str | None:
    try:
        done = subprocess.run([uv, "python", "find", "--no-project", request.spec], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL, env=os.environ | {"UV_PYTHON_DOWNLOADS": "never"})
    except (OSError, subprocess.SubprocessError):
        return None
    path = done.stdout.strip()
    return path if done.returncode == 0 and path else None


def _uv_install(request: PythonRequest, uv: str, log: Callable[[str], None]) -> Interpreter | None:
    log(f"installing {request.describe()} with `uv python install {request.spec}` (BRANCHYARD_PYTHON_DOWNLOADS)")
    try:
        done = subprocess.run([uv, "python", "install", request.spec], capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"uv python install failed: {exc}")
        return None
    if done.returncode != 0:
        log(f"uv python install failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
        return None
    path = _uv_find(request, uv)
    return _probe(path, "uv") if path else None


_PROBED: dict[tuple, Interpreter | None] = {}


def _probe(path: str, origin: str) -> Interpreter | None:
    """Ask the interpreter its version (kept while its file is unchanged); None if it cannot run."""
    found = shutil.which(path)
    if not found:
        return None
    try:
        st = os.stat(os.path.realpath(found))
    except OSError:
        return None
    key = (path, origin, os.path.realpath(found), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _PROBED:
        return _PROBED[key]
    try:
        done = subprocess.run([found, "-c", _ASK], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        lines = done.stdout.split("\n")
        major, minor, patch = (int(x) for x in lines[0].split())
        result: Interpreter | None = Interpreter(path if origin == "BRANCHYARD_PYTHON" else lines[1].strip() or found,
                                                 (major, minor, patch), origin)
        if done.returncode != 0:
            result = None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        result = None
    _PROBED[key] = result
    return result


def uv_binary() -> str | None:
    """The uv executable shipped with the `uv` wheel (a dependency of branchyard), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")
