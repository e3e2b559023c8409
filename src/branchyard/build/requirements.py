"""The app's requirements files and the operator's package index: which index wins, and which line a failed
install points at."""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_INDEX_LINE = re.compile(r"^\s*(-i|--index-url)(\s+|=)(?P<url>\S+)")
_PIP_CONFIG_FILES = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", "~/.config/pip/pip.conf", "~/.pip/pip.conf")
_NOT_FOUND = (
    re.compile(r"No matching distribution found for (?P<req>\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (?P<req>\S+)"),
    re.compile(r"Because (?P<req>[A-Za-z0-9._-]+\S*) was not found in the package registry"),
    re.compile(r"No solution found when resolving dependencies:.*?(?P<req>[A-Za-z0-9._-]+)"),
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def operator_index(setting: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The package index the operator chose: BRANCHYARD_PIP_INDEX_URL, else PIP_INDEX_URL, else pip's config files."""
    environ = os.environ if environ is None else environ
    if setting:
        return setting
    if environ.get("PIP_INDEX_URL"):
        return environ["PIP_INDEX_URL"]
    files = [environ["PIP_CONFIG_FILE"]] if environ.get("PIP_CONFIG_FILE") else list(_PIP_CONFIG_FILES)
    found = None
    for name in files:  # later files win, as in pip
        parser = configparser.RawConfigParser()
        try:
            parser.read(os.path.expanduser(name), encoding="utf-8")
        except (configparser.Error, OSError):
            continue
        for section in ("global", "install"):
            if parser.has_option(section, "index-url"):
                found = parser.get(section, "index-url").strip() or found
    return found


def shown(url: str) -> str:
    """A URL fit for a log: credentials replaced by ***."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"***@{host}{port}", parts.path, parts.query, parts.fragment))
    return url


def override_index_lines(src: Path, files: Iterable[Path], index: str, log: Callable[[str], None]) -> None:
    """Comment out `-i`/`--index-url` lines of the app's requirements files (in the release's own copy), so the
    operator's index wins; each one is named in the log."""
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        except (OSError, UnicodeDecodeError):
            continue
        changed = False
        for n, line in enumerate(lines):
            m = _INDEX_LINE.match(line)
            if m:
                rel = path.relative_to(src.resolve()).as_posix()
                log(f"ignored `{m.group(1)} {shown(m['url'])}` ({rel} line {n + 1}): the operator's package index "
                    f"{shown(index)} is used")
                lines[n] = "# branchyard: operator index used instead of: " + line
                changed = True
        if changed:
            path.write_text("".join(lines), encoding="utf-8")


def blame(output: Sequence[str], src: Path, files: Iterable[Path]) -> str | None:
    """For a failed install, the requirements line (file and number) naming what could not be found, if any."""
    wanted = None
    for line in reversed(output):
        for pattern in _NOT_FOUND:
            m = pattern.search(line)
            if m:
                wanted = m["req"].strip("`'\".,:")
                break
        if wanted:
            break
    if not wanted:
        return None
    name = _normal((_NAME.match(wanted) or re.match(".*", wanted)).group(0))
    root = src.resolve()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for n, raw in enumerate(text.splitlines()):
            line = raw.split(" #", 1)[0].strip().strip("\"',")
            m = _NAME.match(line)
            if m and not line.startswith("-") and _normal(m.group(0)) == name:
                return f"{path.relative_to(root).as_posix()} line {n + 1}: `{line}` not found on the package index"
    return f"`{wanted}` not found on the package index"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
