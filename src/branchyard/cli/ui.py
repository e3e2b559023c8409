"""The only printer: tables, JSON, progress lines and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> None:
    t = Table(title=title, show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row))
    out.print(t)


def info(message: str) -> None:
    out.print(message, markup=False)


def success(message: str) -> None:
    out.print(f"[green]✓[/green] {escape(message)}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")


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
    "BUILDING": "cyan",
    "DEPLOYING": "cyan",
    "QUEUED": "cyan",
    "SLEEPING": "yellow",
    "REMOVED": "dim",
    "SKIPPED": "dim",
}


def status_word(status: str) -> Text:
    return Text(status, style=STATUS_COLOURS.get(status, ""))
