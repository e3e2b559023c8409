"""Shared pieces of file parsing: layers of sourced values, and a per-file context that formats errors,
warnings (unknown keys, with did-you-mean) and notes about ignored keys."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import SpecError
from .textfile import find_line
from .values import InvalidValue, show

T = TypeVar("T")


class _Unset:
    """Marker value: a higher layer removes a variable set by a lower one."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Entry:
    """One resolved value and the layer it came from, e.g. "railway.toml [deploy]"."""

    value: Any
    source: str


Layer = dict[str, Entry]  # dotted key ("web.replicas", "postgres.memory_mb", "variables.X") → entry


def dotted(path: Sequence[str]) -> str:
    """Key path as written in messages: deploy.healthcheckTimeout."""
    return ".".join(path)


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key `key` most likely misspells (same letters in another case first), or None."""
    lowered = {option.lower(): option for option in known}
    match = lowered.get(key.lower())
    if match is None:
        close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
        match = lowered[close[0]] if close else None
    return match


def suggestion(key: str, known: Iterable[str]) -> str:
    """` (did you mean "x"?)` for the closest known key, or ""."""
    match = closest(key, known)
    return f" (did you mean {json.dumps(match)}?)" if match else ""


@dataclass
class FileContext:
    """One project file being read: its label (path relative to the project root), text and notes."""

    label: str
    text: str
    syntax: str  # "toml" or "json"
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def source(self, path: Sequence[str]) -> str:
        """Layer label for a table: `railway.toml [environments.pr.deploy]`."""
        return f"{self.label} [{dotted(path)}]" if path else self.label

    def fail(self, path: Sequence[str], message: str) -> SpecError:
        """A one-line SpecError: `<file>: <path>: <message> (line N)`."""
        line = find_line(self.text, self.syntax, path)
        where = f" (line {line})" if line else ""
        return SpecError(f"{self.label}: {dotted(path)}: {message}{where}")

    def parse(self, path: Sequence[str], parser: Callable[[Any], T], value: Any) -> T:
        """Run a value parser, turning its InvalidValue into a located SpecError."""
        try:
            return parser(value)
        except InvalidValue as err:
            raise self.fail(path, err.message) from None

    def table(self, path: Sequence[str], value: Any) -> dict[str, Any]:
        """The value at path, which must be a table/object."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {show(value)}")
        return value

    def section(self, path: Sequence[str]) -> str:
        """A table as this file writes it: [environments.pr.deploy] in TOML, "environments.pr.deploy" in JSON."""
        return f"[{dotted(path)}]" if self.syntax == "toml" else json.dumps(dotted(path))

    def unknown(self, path: Sequence[str], key: str, value: Any, known: Iterable[str]) -> None:
        """Warn about an unknown key (an unknown top-level table is called a section)."""
        if not path and isinstance(value, dict):
            match = closest(key, known)
            hint = f" (did you mean {self.section([match])}?)" if match else ""
            self.warnings.append(f"{self.label}: unknown section {self.section([key])}{hint}")
        else:
            self.warnings.append(f"{self.label}: {dotted([*path, key])}: unknown key{suggestion(key, known)}")

    def unknown_section(self, path: Sequence[str], key: str, known: Iterable[str]) -> SpecError:
        """An unknown table where only known sections may be, as an error:
        `railway.toml: unknown section [deploys] (did you mean [deploy]?) (line 4)`."""
        match = closest(key, known)
        hint = f" (did you mean {self.section([*path, match])}?)" if match else ""
        line = find_line(self.text, self.syntax, [*path, key])
        where = f" (line {line})" if line else ""
        return SpecError(f"{self.label}: unknown section {self.section([*path, key])}{hint}{where}")

    def ignore(self, path: Sequence[str], value: Any, reason: str) -> None:
        """Note a known key that branchyard has no use for."""
        self.ignored.append(f"{self.label}: {dotted(path)} = {show(value)} is ignored ({reason})")
