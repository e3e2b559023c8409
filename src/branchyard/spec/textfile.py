"""Reading TOML and JSON project files: lenient JSON (comments, trailing commas), strict on duplicates,
and a best-effort lookup of the line a key sits on, for error messages."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from ..errors import SpecError

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([^=#\[]+?)\s*=")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def decode(label: str, data: bytes) -> str:
    """Bytes of a project file as text (UTF-8, an optional BOM dropped)."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise SpecError(f"{label}: not UTF-8 text") from None


def parse_toml(label: str, text: str) -> dict[str, Any]:
    """Parse TOML; tomllib refuses duplicate keys and its message carries line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{label}: invalid TOML: {err}") from None


def parse_json(label: str, text: str) -> dict[str, Any]:
    """Parse JSON with // and /* */ comments and trailing commas; refuse duplicate keys."""
    try:
        data = json.loads(strip_json_extras(text), object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise SpecError(f"{label}: invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except _DuplicateKey as dup:
        line = _duplicate_line(text, dup.key)
        where = f" (line {line})" if line else ""
        raise SpecError(f"{label}: invalid JSON: duplicate key {json.dumps(dup.key)}{where}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{label}: invalid JSON: expected an object at the top level")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _duplicate_line(text: str, key: str) -> int | None:
    """Line of the second `"key":` when the key appears exactly twice (best effort)."""
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return text.count("\n", 0, hits[1]) + 1 if len(hits) == 2 else None


def strip_json_extras(text: str) -> str:
    """Blank out comments and drop trailing commas outside strings, keeping every newline in place."""
    return _drop_trailing_commas(_blank_comments(text))


def _string_end(text: str, start: int) -> int:
    """Index just past the JSON string that opens at `start` (or the end of text)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return len(text)


def _blank_comments(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = len(text) if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _drop_trailing_commas(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        if text[i] == ",":
            rest = text[i + 1 :].lstrip()
            out.append(" " if rest[:1] in ("}", "]") else ",")
        else:
            out.append(text[i])
        i += 1
    return "".join(out)


def find_line(text: str, syntax: str, path: Sequence[str]) -> int | None:
    """1-based line where the key at `path` is written, or None when it cannot be found."""
    if not path:
        return None
    if syntax == "json":
        return _json_line(text, path)
    return _toml_line(text.splitlines(), tuple(path))


def _json_line(text: str, path: Sequence[str]) -> int | None:
    """Find each key of the path in turn, each after the previous one."""
    position = 0
    for part in path:
        match = re.compile(re.escape(json.dumps(part)) + r"\s*:").search(text, position)
        if match is None:
            return None
        position = match.start()
    return text.count("\n", 0, position) + 1


def _dotted(raw: str) -> tuple[str, ...]:
    """Split a TOML dotted key or header into its parts (quotes dropped, best effort)."""
    return tuple(part.strip().strip("\"'") for part in raw.split("."))


def _toml_line(lines: list[str], path: tuple[str, ...]) -> int | None:
    """Find the deepest [header] that prefixes the path, then the key under it (or a sub-table's header)."""
    headers = [(i, _dotted(m.group(1))) for i, line in enumerate(lines) if (m := _HEADER.match(line))]
    best = max((h for h in headers if path[: len(h[1])] == h[1]), key=lambda h: len(h[1]), default=None)
    start = 0 if best is None else best[0] + 1
    rest = path if best is None else path[len(best[1]) :]
    if not rest and best is not None:
        return best[0] + 1
    end = next((i for i, _ in headers if i >= start), len(lines))
    found = _key_line(lines, start, end, rest)
    if found is None:
        found = next((i + 1 for i, name in headers if name[: len(path)] == path), None)
    return found


def _key_line(lines: list[str], start: int, end: int, rest: tuple[str, ...]) -> int | None:
    """Line of `rest` (or of its longest written prefix, e.g. an inline table) within lines[start:end]."""
    found: tuple[int, int] | None = None
    for i in range(start, end):
        match = _KEY.match(lines[i])
        if not match:
            continue
        key = _dotted(match.group(1))
        if rest[: len(key)] == key and (found is None or len(key) > found[1]):
            found = (i + 1, len(key))
    return found[0] if found else None
