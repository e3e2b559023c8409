"""Split a build command into dependency-install steps (cacheable) and the rest (run every build).

Pure: reads requirement files under `src` but runs nothing. A step counts as an install step only
when it surely installs third-party dependencies into the active virtualenv and nothing else:
`pip install -r requirements.txt`, `python -m pip install pkg==1.2`… Installing the app itself
(`pip install .`, `-e .`, a requirements file that contains `-e .`), installing elsewhere
(`--target`, `--user`), or anything with shell syntax beyond `&&` is an ordinary step.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

IMPLICIT_INSTALL = "pip install -r requirements.txt"

_PIP = re.compile(r"^pip(3(\.\d+)?)?$")
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
# Shell syntax that makes a segment more than one simple command: leave such steps alone.
_SHELL_META = re.compile(r"[;|&<>`$\n]")
# Options that take a value, and whether that value is a requirements file to read.
_OPTS_WITH_VALUE = {
    "-r": True,
    "--requirement": True,
    "-c": True,
    "--constraint": True,
    "-i": False,
    "--index-url": False,
    "--extra-index-url": False,
    "-f": False,
    "--find-links": False,
    "--only-binary": False,
    "--no-binary": False,
    "--platform": False,
    "--python-version": False,
    "--implementation": False,
    "--abi": False,
    "--trusted-host": False,
    "--timeout": False,
    "--retries": False,
    "--progress-bar": False,
    "--cache-dir": False,
    "--config-settings": False,
    "-C": False,
}
# Options that make pip install somewhere else than the venv, or install the app in place.
_OPTS_REFUSED = {"-e", "--editable", "-t", "--target", "--user", "--prefix", "--root", "--src"}
_REQ_FILE_LINE = re.compile(r"^(-r|--requirement|-c|--constraint)(\s+|=)(?P<file>\S+)")


def split_top_level(cmd: str) -> list[str]:
    """Split on `&&` outside quotes; segments stripped, empty ones dropped."""
    parts, buf, quote, i = [], [], "", 0
    while i < len(cmd):
        ch = cmd[i]
        if quote:
            if ch == "\\" and quote == '"' and i + 1 < len(cmd):
                buf.append(cmd[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "\\" and i + 1 < len(cmd):
            buf.append(cmd[i : i + 2])
            i += 2
            continue
        elif cmd.startswith("&&", i):
            parts.append("".join(buf))
            buf = []
            i += 2
            continue
        buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def split_build_command(cmd: str | None, src: Path) -> tuple[list[str], list[str]]:
    """(install_steps, other_steps): the leading dependency installs, then everything else."""
    if cmd is None or not cmd.strip():
        if cmd is None and (src / "requirements.txt").is_file():
            if is_install_step(IMPLICIT_INSTALL, src):
                return [IMPLICIT_INSTALL], []
            return [], [IMPLICIT_INSTALL]
        return [], []
    steps = split_top_level(cmd)
    n = 0
    while n < len(steps) and is_install_step(steps[n], src):
        n += 1
    return steps[:n], steps[n:]


def is_install_step(step: str, src: Path) -> bool:
    """True if `step` only installs third-party dependencies into the active virtualenv."""
    if _SHELL_META.search(_shell_active(step)):
        return False
    try:
        args = _pip_install_args(shlex.split(step))
    except ValueError:
        return False
    if args is None:
        return False
    wanted = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            if _is_local_path(arg):
                return False  # `pip install .`, `./libs/x`, `file:…`: installs code from the tree
            wanted = True
            continue
        name, eq, value = arg.partition("=")
        if not name.startswith("--"):
            name, eq, value = arg, "", ""
        if name in _OPTS_REFUSED or arg[:2] == "-e" or arg[:2] == "-t":
            return False
        if name in _OPTS_WITH_VALUE:
            if not eq:
                if i >= len(args):
                    return False
                value = args[i]
                i += 1
            if _OPTS_WITH_VALUE[name]:
                if not _requirements_are_deps(src, value):
                    return False
                wanted = True
        elif arg[:2] in ("-r", "-c") and len(arg) > 2:  # -rrequirements.txt
            if not _requirements_are_deps(src, arg[2:]):
                return False
            wanted = True
    return wanted


def requirement_files(step: str, src: Path) -> list[Path]:
    """Requirement/constraint files an install step reads (transitively), existing under src."""
    try:
        args = _pip_install_args(shlex.split(step)) or []
    except ValueError:
        return []
    found: list[Path] = []
    seen: set[Path] = set()
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if arg in ("-r", "--requirement", "-c", "--constraint") and i + 1 < len(args):
            found.extend(_walk_requirements(src, args[i + 1], seen))
        elif eq and name in ("--requirement", "--constraint"):
            found.extend(_walk_requirements(src, value, seen))
        elif len(arg) > 2 and arg[:2] in ("-r", "-c"):
            found.extend(_walk_requirements(src, arg[2:], seen))
    return found


def split_local_lines(src: Path, rel: str = "requirements.txt") -> tuple[str, str] | None:
    """(dependencies, local) texts of a requirements file whose own lines install local code (`-e .`, `./pkg`) while
    the files it includes install only dependencies; None when that split is not possible or not needed."""
    path = _inside(src, rel)
    if path is None or not path.is_file():
        return None
    deps, local = [], []
    for line in _lines(path):
        m = _REQ_FILE_LINE.match(line)
        if m:
            if not _requirements_are_deps(src, str(path.parent / m["file"])):
                return None
            deps.append(line)
            continue
        first = line.split()[0]
        is_local = first in ("-e", "--editable") or first.startswith(("--editable=", "-e")) or _is_local_path(first)
        (local if is_local else deps).append(line)
    if not local:
        return None
    return "".join(f"{line}\n" for line in deps), "".join(f"{line}\n" for line in local)


def editable_projects(local_text: str) -> list[str] | None:
    """The directories a requirements file's local lines install editable (`-e .`, `--editable=./lib[extra]`), or
    None when one of them installs otherwise (a copy: `./pkg`, a wheel; a URL)."""
    dirs: list[str] = []
    for line in local_text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in ("-e", "--editable") and len(words) == 2:
            target = words[1]
        elif words[0].startswith("--editable=") and len(words) == 1:
            target = words[0][len("--editable="):]
        elif words[0].startswith("-e") and words[0] != "-e" and len(words) == 1:
            target = words[0][2:]
        else:
            return None
        target = target.split("[", 1)[0]
        if not (target in (".", "..") or target.startswith(("./", "../"))) or target.startswith("../"):
            return None
        dirs.append(target)
    return dirs or None


# -- internals -------------------------------------------------------------------------------------


def _shell_active(step: str) -> str:
    """The characters the shell interprets: quoted text dropped, except `$` and backquotes in "…"."""
    out, quote = [], ""
    for ch in step:
        if quote == "'":
            quote = "" if ch == "'" else quote
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch in "$`":
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        else:
            out.append(ch)
    return "".join(out)


def _pip_install_args(argv: list[str]) -> list[str] | None:
    """The arguments after `install` if argv is a pip install, else None."""
    if len(argv) >= 2 and _PIP.match(argv[0]) and argv[1] == "install":
        return argv[2:]
    if len(argv) >= 4 and _PYTHON.match(argv[0]) and argv[1:4] == ["-m", "pip", "install"]:
        return argv[4:]
    return None


def _is_local_path(arg: str) -> bool:
    return arg in (".", "..") or arg.startswith(("./", "../", "/", "~", "file:")) or arg.endswith(("/", ".whl"))


def _inside(src: Path, rel: str) -> Path | None:
    root = src.resolve()
    path = (root / rel).resolve()
    return path if path == root or root in path.parents else None


def _walk_requirements(src: Path, rel: str, seen: set[Path]) -> Iterator[Path]:
    path = _inside(src, rel)
    if path is None or path in seen or not path.is_file():
        return
    seen.add(path)
    yield path
    for line in _lines(path):
        m = _REQ_FILE_LINE.match(line)
        if m:  # nested includes are relative to the including file
            yield from _walk_requirements(src, str(path.parent / m["file"]), seen)


def _requirements_are_deps(src: Path, rel: str, seen: set[Path] | None = None) -> bool:
    """False if the requirements file (or one it includes) installs local code (`-e .`, `./pkg`)."""
    seen = set() if seen is None else seen
    path = _inside(src, rel)
    if path is None:
        return False  # outside the release: we could not hash it
    if path in seen or not path.is_file():
        return True  # a missing file makes pip fail loudly; nothing to cache wrongly
    seen.add(path)
    for line in _lines(path):
        m = _REQ_FILE_LINE.match(line)
        if m:
            if not _requirements_are_deps(src, str(path.parent / m["file"]), seen):
                return False
            continue
        first = line.split()[0]
        if first in ("-e", "--editable") or first.startswith(("--editable=", "-e")):
            return False
        if _is_local_path(first):
            return False
    return True


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
