"""A promotion's plan and people as text lines (pure): what `branchyard promote` prints and what the dashboard's
promotion page shows, from one function, so the two never say different things."""

from __future__ import annotations

from typing import Any


def clock(iso: str | None) -> str:
    """`2026-12-03T09:00:50.123Z` → `09:00:50 UTC`."""
    return f"{iso[11:19]} UTC" if iso else "-"


def plan_lines(promo: dict[str, Any]) -> list[str]:
    """The plan of a promotion (`POST /api/projects/{project}/promotions`'s answer): commits, release, variables
    (masked by the API), services, migrations, gates, who planned it."""
    plan = promo["plan"]
    lines = [f"promotion {promo['id']}: {promo['source']} → {promo['target']} ({promo['state']})"]
    rng = plan["commit_range"]
    commits = rng["commits"]
    start = rng["from"][:12] if rng["from"] else "nothing deployed"
    lines.append(f"  commits     {start} → {rng['to'][:12]} ({len(commits)} commit{'s' if len(commits) != 1 else ''})")
    lines += [f"                {c['sha'][:12]} {c['subject']}" for c in commits[:20]]
    lines.append(f"  release     deployment {plan['source_deployment_id'][:8]} of {promo['source']}, as built (no rebuild)")
    lines.append(f"  variables   {promo['target']} before → after (secrets masked):" if plan["variables"] else
                 f"  variables   no change in {promo['target']}")
    lines += [f"                {v['change']:<8} {v['key']}: {v['before'] if v['before'] is not None else '-'} → "
              f"{v['after'] if v['after'] is not None else '-'}" for v in plan["variables"]]
    lines.append("  services    " + ("; ".join(f"{x['key']} {_or_dash(x['before'])} → {_or_dash(x['after'])}"
                                               for x in plan["services"]) or "no change"))
    mig = plan["migrations"]
    lines.append("  migrations  " + (", ".join(mig["commands"]) + (" (backup first)" if mig["backup_first"] else "")
                                     if mig["will_run"] else "none (no preDeployCommand)"))
    lines.append("  gates")
    lines += [f"    {'PASS' if g['passed'] else 'FAIL'}  {g['id']}: {g['detail']}" for g in plan["gates"]]
    lines.append(f"  planned by    {promo.get('requested_by') or '-'}")
    return lines


def _or_dash(value: Any) -> str:
    """A service added or removed: `-` on the side where it is absent (as the variables lines say it)."""
    return "-" if value is None else str(value)


def people_lines(promo: dict[str, Any]) -> list[str]:
    """After the confirmation: who confirmed and approved it, and when a wait timer lets it start."""
    lines = []
    if promo.get("confirmed_by"):
        lines.append(f"  confirmed by  {promo['confirmed_by']} at {clock(promo.get('confirmed_at'))}")
    approvers = promo.get("approvers") or []
    if approvers or promo["plan"].get("approvals_required"):
        lines.append(f"  approved by   {', '.join(approvers) if approvers else 'nobody yet'}")
    if promo.get("start_after"):
        lines.append(f"  starts after  {clock(promo['start_after'])} (waitTimer {promo['plan'].get('wait_timer', 0):g} min)")
    return lines


def wait_detail(promo: dict[str, Any]) -> str:
    return f"approved, starts after {clock(promo.get('start_after'))} (waitTimer {promo['plan'].get('wait_timer', 0):g} min)"


def approvals_detail(promo: dict[str, Any]) -> str:
    gate = next((g for g in promo["plan"]["gates"] if g["id"] == "approvals"), None)
    return gate["detail"] if gate else f"{len(promo['approvers'])} approvals"
