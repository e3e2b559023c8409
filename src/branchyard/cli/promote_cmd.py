"""`branchyard promote|approve|check`: promoting the release tested in one environment to another, its approvals,
and the policy checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import errors, names, promotion_text
from . import ui
from .context import State, git_config, json_option, pass_state, resolve_project

if TYPE_CHECKING:
    from .client import Client

PROMOTION_TIMEOUT = 1500  # seconds: planning and proceeding run the smoke tests (smokeTimeout ≤ 600) twice at most


AS_GONE = ("{command}: --as is gone: the control plane records the user whose token makes the request (see "
           "`branchyard whoami`); each person approves with their own token")


def _no_as(command: str, value: str | None) -> None:
    """An old script's `--as NAME`: one clear line, nothing sent."""
    if value is not None:
        raise errors.BadInput(AS_GONE.format(command=command))


def _show_plan(promo: dict) -> None:
    for line in promotion_text.plan_lines(promo):
        ui.info(line)


def _show_people(promo: dict) -> None:
    """After the confirmation: who confirmed and approved it, and when a wait timer lets it start."""
    for line in promotion_text.people_lines(promo):
        ui.info(line)


def _follow_promotion(client: Client, promo: dict, *, quiet: bool) -> dict:
    """Stream the target's deployment (and an automatic rollback) until the promotion ends."""
    import time

    followed: set[str] = set()
    while True:
        promo = client.get(f"/api/promotions/{promo['id']}")
        for key in ("target_deployment_id", "rollback_deployment_id"):
            dep_id = promo.get(key)
            if dep_id and dep_id not in followed:
                followed.add(dep_id)
                if not quiet:
                    for chunk in client.follow_log(dep_id):
                        ui.raw(chunk)
        if promo["state"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return _with_git(client, promo)
        time.sleep(0.3)


GIT_WAIT = 10.0  # seconds to wait for what happened to the production branch (one git call, right after success)


def _with_git(client: Client, promo: dict) -> dict:
    """A succeeded promotion once its `git` note is known: the production branch moved, or has diverged (the
    promotion still deployed). Recorded by the control plane right after the success; the wait is short."""
    import time

    deadline = time.monotonic() + GIT_WAIT
    while promo["state"] == "SUCCESS" and promo.get("git") is None and time.monotonic() < deadline:
        time.sleep(0.2)
        promo = client.get(f"/api/promotions/{promo['id']}")
    return promo


def _promotion_outcome(promo: dict, *, as_json: bool) -> None:
    """Print how the promotion stands; non-zero exit unless it succeeded."""
    if as_json:
        ui.print_json(promo)
    state, pid = promo["state"], promo["id"]
    if state == "SUCCESS":
        if not as_json:
            ui.success(f"promotion {pid[:8]}: {promo['target']} runs {promo['commit'][:12]} (the release tested in "
                       f"{promo['source']})")
            note = promo.get("git")
            if note:
                (ui.warn if note["kind"] == "git.branch_diverged" else ui.info)(f"git: {note['message']}")
        return
    if state == "WAITING":
        raise errors.Conflict(f"promotion {pid} is WAITING: {_wait_detail(promo)}; it starts by itself")
    if state in ("PLANNED", "PENDING_APPROVAL"):
        gate = next((g for g in promo["plan"]["gates"] if g["id"] == "approvals"), None)
        raise errors.Conflict(f"promotion {pid} is {state} ({gate['detail'] if gate else 'waiting'}): approvers run "
                              f"`branchyard approve {pid}`; the approval that completes the count promotes")
    raise errors.DeployFailed(f"promotion {pid[:8]} {state}: {promo['error'] or 'see the log above'}")


_wait_detail = promotion_text.wait_detail
_approvals_detail = promotion_text.approvals_detail


@click.command()
@click.argument("source")
@click.argument("target")
@click.option("--confirm", default=None, metavar="PROMOTE", help="Typed confirmation for scripts: PROMOTE.")
@click.option("--as", "actor", default=None, hidden=True)  # gone: refused with a clear line
@click.option("-p", "--project", default=None, help="Project (default: the linked one).")
@json_option
@pass_state
def promote(state: State, source: str, target: str, confirm: str | None, actor: str | None, project: str | None,
            as_json: bool) -> None:
    """Promote the exact release running in SOURCE to TARGET: plan, gates, typed confirmation, approvals."""
    from ..promotion import CONFIRM_WORD

    _no_as("promote", actor)
    if confirm is not None and confirm != CONFIRM_WORD:
        raise errors.BadInput(f"--confirm: expected {CONFIRM_WORD}, got {confirm!r}; nothing planned, nothing deployed")
    source, target = names.environment_name(source), names.environment_name(target)
    client = state.client()
    promo = client.request("POST", f"/api/projects/{resolve_project(project)}/promotions", timeout=PROMOTION_TIMEOUT,
                           json={"source": source, "target": target})
    if not as_json:
        _show_plan(promo)
    if promo["state"] not in ("PLANNED", "PENDING_APPROVAL", "WAITING"):
        _promotion_outcome(promo, as_json=as_json)
        return
    if confirm is None and promo["state"] == "PLANNED":
        if not sys.stdin.isatty():
            client.post(f"/api/promotions/{promo['id']}/cancel", {"reason": "no confirmation given"})
            raise errors.BadInput(f"promotion {promo['id'][:8]} needs typed confirmation: pass --confirm {CONFIRM_WORD}; "
                                  "cancelled, nothing deployed")
        confirm = click.prompt(f"Type {CONFIRM_WORD} to promote {source} → {target}", default="", show_default=False)
    promo = client.request("POST", f"/api/promotions/{promo['id']}/confirm", timeout=PROMOTION_TIMEOUT,
                           json={"confirm": confirm or ""})
    if not as_json:
        _show_people(promo)
    if promo["state"] in ("PROMOTING", "VERIFYING"):
        promo = _follow_promotion(client, promo, quiet=as_json)
    _promotion_outcome(promo, as_json=as_json)


@click.command()
@click.argument("promotion_id")
@click.option("--as", "approver", default=None, hidden=True)  # gone: refused with a clear line
@json_option
@pass_state
def approve(state: State, promotion_id: str, approver: str | None, as_json: bool) -> None:
    """Approve an open promotion as yourself (your token's user); the approval that completes the count starts it."""
    _no_as("approve", approver)
    client = state.client()
    promo = client.request("POST", f"/api/promotions/{promotion_id}/approvals", timeout=PROMOTION_TIMEOUT, json={})
    who = promo.get("approved_by") or "you"
    if promo["state"] in ("PROMOTING", "VERIFYING"):
        if not as_json:
            ui.info(f"approved by {who}: {_approvals_detail(promo)}; approvals complete: promoting {promo['source']} → "
                    f"{promo['target']}")
        promo = _follow_promotion(client, promo, quiet=as_json)
        _promotion_outcome(promo, as_json=as_json)
        return
    if as_json:
        ui.print_json(promo)
    if promo["state"] in ("PLANNED", "PENDING_APPROVAL", "WAITING"):
        if not as_json:
            if promo["state"] == "WAITING":
                then = f"; {_wait_detail(promo)}, by itself"
            elif promo["state"] == "PENDING_APPROVAL":
                then = "; it proceeds when the count is met"
            else:
                then = f"; then `branchyard promote {promo['source']} {promo['target']} --confirm PROMOTE`"
            ui.success(f"approved by {who}: {_approvals_detail(promo)}{then}")
        return
    _promotion_outcome(promo, as_json=as_json)


@click.command()
@click.option("-p", "--project", default=None, help="Project (default: the linked one).")
@json_option
@pass_state
def check(state: State, project: str | None, as_json: bool) -> None:
    """Policy checks over the project files and, when the server runs, the live environments."""
    from .. import policy
    from ..spec import load_project

    root = Path.cwd()
    if not any((root / name).is_file() for name in ("branchyard.toml", "railway.toml", "railway.json")):
        done = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        root = Path(done.stdout.strip()) if done.returncode == 0 else root
    spec = load_project(root)
    live, why = None, None
    try:
        live = state.client().get(f"/api/projects/{project or git_config('branchyard.project') or spec.name}/policy")
    except errors.ServerUnavailable:
        why = "the control plane is not running"
    except errors.NotFound as err:
        why = str(err)
    report = policy.evaluate(spec, live)
    if as_json:
        ui.print_json(report.to_dict() | {"skipped_reason": why})
    else:
        for f in report.findings:
            ui.info(f"{f.severity:<7}  {f.rule}: {f.message}")
            ui.info(f"         fix: {f.fix}")
        ui.info(f"{len(report.checked)} rules checked, {len(report.errors)} errors, "
                f"{len(report.findings) - len(report.errors)} warnings")
        if report.skipped:
            ui.info(f"skipped ({why}): {', '.join(report.skipped)}")
    if report.errors:
        raise errors.BranchyardError(f"check: {len(report.errors)} policy error{'s' if len(report.errors) != 1 else ''} "
                                     f"({', '.join(sorted({f.rule for f in report.errors}))})")
