"""`branchyard render -e ENV [--backend kubernetes] [-o DIR]`: the manifests the Kubernetes backend would apply for
one environment, from the project's files alone (no cluster, no control plane), to review or to feed to GitOps.

Placeholders `<set at apply: …>` stand where only the control plane knows the value (backends/kubernetes/offline.py):
no secret value is ever printed. The operator's BRANCHYARD_* settings (domain, BRANCHYARD_KUBE_*) apply, so what is
printed is what this operator's control plane would apply.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from . import ui

RENDER_MARK = ".branchyard-render"  # a directory render wrote: the next render may replace it


@click.command("render")
@click.option("-e", "--environment", "environment", required=True, help="Environment (e.g. production, pr-123).")
@click.option("--backend", type=click.Choice(["kubernetes", "local"]), default="kubernetes", show_default=True,
              help="The backend whose manifests to print (only Kubernetes has manifests).")
@click.option("-o", "--output", "output", default=None, metavar="DIR",
              help="Write one file per object into DIR (created, or replaced if render wrote it) instead of printing.")
@click.option("--path", default=None, help="The app's directory (default: the current one).")
def render(environment: str, backend: str, output: str | None, path: str | None) -> None:
    """Print the manifests an environment is on Kubernetes (no cluster needed)."""
    from .. import settings as settings_module
    from ..backends.kubernetes import documents
    from ..backends.kubernetes.manifests import namespace_of, render_environment
    from ..backends.kubernetes.offline import inputs_from_files
    from ..errors import BadInput

    if backend == "local":
        raise BadInput("--backend local: the local backend runs processes, Caddy routes and databases on this machine; "
                       "it has no manifests to render (use --backend kubernetes)")
    root = Path(path) if path else Path.cwd()
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory", param_hint="--path")
    inputs = inputs_from_files(root, environment, settings_module.load(), infer_start=lambda cfg: _inferred(root, cfg))
    objects = render_environment(inputs)
    header = [f"branchyard render -e {environment}: project {inputs.project}, namespace {namespace_of(inputs)}",
              "What the Kubernetes backend applies, in order (server-side apply, field manager \"branchyard\"); the",
              "Jobs are awaited before the Deployments. <set at apply: …> marks what only the control plane knows.",
              "The seed Job runs on a new database only; `next` is the release the next deploy creates."]
    if output is None:
        sys.stdout.write(documents.stream(objects, header))
        return
    _write_directory(Path(output), objects, header)
    ui.success(f"{len(objects)} manifests written to {output}")


def _inferred(root: Path, config):
    """The start command a build would infer when the files name none (as `config show` says it)."""
    from .. import names
    from ..build import detect

    src = root if config.web.root_dir in ("", ".") else names.safe_join(root, config.web.root_dir)
    found = detect.infer_start_command(src)
    return detect.with_inferred_start(config, found) if found is not None else config


def _write_directory(target: Path, objects: list, header: list[str]) -> None:
    """All files or none: written beside the target, then swapped in. A directory render did not write is never
    touched (it might be anything)."""
    from ..backends.kubernetes import documents
    from ..errors import BadInput

    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / RENDER_MARK).exists())):
        raise BadInput(f"-o {target}: exists and was not written by `branchyard render` (give a new or empty directory)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (fresh / RENDER_MARK).write_text("".join(f"{line}\n" for line in header))
        for name, obj in zip(documents.file_names(objects), objects, strict=True):
            (fresh / name).write_text(documents.dump(obj))
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            fresh.rename(target)
            shutil.rmtree(old)
        else:
            fresh.rename(target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
