"""Installers branchyard does not ship (poetry, pipenv): installed from the operator's package index on first use
into a tools virtualenv under the build cache, then reused."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import BuildFailed

# The distributions each tool needs (poetry's export plugin is not: the build never writes requirements files).
PACKAGES = {"poetry": ("poetry",), "pipenv": ("pipenv",)}
_MARKER = ".complete"


def ensure(name: str, cache_dir: Path, *, run: Callable[[Sequence[str], str], None], log: Callable[[str], None]) -> str:
    """The path of tool `name`, installing it into `<cache>/tools/<name>` (with the control plane's Python) first if
    needed. `run(argv, label)` runs one command, streaming its output; BuildFailed if it fails."""
    home = Path(cache_dir) / "tools" / name
    exe = home / "bin" / name
    if (home / _MARKER).is_file() and exe.is_file():
        return str(exe)
    log(f"installing {name} (first use) into {home}")
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        run([sys.executable, "-m", "venv", str(home)], f"python -m venv {home.name}")
        run([str(home / "bin" / "pip"), "install", "--quiet", *PACKAGES[name]], f"pip install {' '.join(PACKAGES[name])}")
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    if not exe.is_file():
        raise BuildFailed(f"build failed: installing {name} gave no {exe}")
    (home / _MARKER).write_text("ok\n")
    return str(exe)
