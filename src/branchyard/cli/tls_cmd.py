"""`branchyard tls root`: the root certificate the router signs with in `internal` mode, for clients to trust."""

from __future__ import annotations

from pathlib import Path

import click

from . import ui
from .context import State, pass_state


@click.group()
def tls() -> None:
    """The router's TLS (BRANCHYARD_TLS)."""


@tls.command("root")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the PEM to this file instead of printing it.")
@pass_state
def tls_root(state: State, output: Path | None) -> None:
    """Print the PEM of the local CA's root (BRANCHYARD_TLS=internal): trust it in a browser, or `curl --cacert`."""
    pem = str(state.client().get("/api/tls/root")["pem"])
    if output is None:
        ui.raw(pem if pem.endswith("\n") else pem + "\n")
        return
    try:
        output.write_text(pem)
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc.strerror}") from None
    ui.success(f"wrote the local CA's root to {output}")
