"""The only printer: tables, JSON, progress lines and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# `out` and `err` (rich Consoles) are made on first use: a command that only streams text, such as
# `rollback` following its deployment's log, does not pay for importing rich.
_consoles: dict[str, Console] = {}


def _console(name: str) -> Console:
    console = _consoles.get(name)
    if console is None:
        from rich.console import Console

        console = _consoles[name] = Console(stderr=name == "err", highlight=False, soft_wrap=True)
    return console


def __getattr__(name: str) -> Console:
    if name in ("out", "err"):
        return _console(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row))
    _console("out").print(t)


def info(message: str) -> None:
    _console("out").print(message, markup=False)


def success(message: str) -> None:
    _console("out").print(f"[green]✓[/green] {escape(message)}")


def warn(message: str) -> None:
    _console("err").print(f"[yellow]warning:[/yellow] {escape(message)}")


def error(message: str) -> None:
    _console("err").print(f"[red]error:[/red] {escape(message)}")


def raw(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


STATUS_COLOURS = {
    "SUCCESS": "green",
    "FAILED": "red",
    "CRASHED": "red",
    "DEGRADED": "yellow",
    "DOWN": "red",
    "UNHEALTHY": "yellow",
    "passed": "green",
    "failed": "red",
    "running": "cyan",
    "skipped": "dim",
    "BUILDING": "cyan",
    "DEPLOYING": "cyan",
    "QUEUED": "cyan",
    "SLEEPING": "yellow",
    "REMOVED": "dim",
    "SKIPPED": "dim",
}


def status_word(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STATUS_COLOURS.get(status, ""))
