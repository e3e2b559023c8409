"""Promotion plans (pure): what `branchyard promote SOURCE TARGET` would change in TARGET, and its gates.

The controller observes (deployments, health probes, smoke-test runs, approvals, variables) and hands the
facts in; nothing here does I/O. A promotion deploys the exact release running in SOURCE — no rebuild —
with TARGET's own variables.

Approvals are bound to identity: an approval is an authenticated user's, and users are counted once each by
user id. With `preventSelfReview` the promoters' approvals do not count and are refused at the door: the user
who planned the promotion *and* the one who typed PROMOTE (the confirmation is what lets it deploy, so that
person is as much "the promoter" as the planner; GitHub's rule is the same: who triggered the run cannot
approve it). With `reviewers`, only those users' approvals count. The counting is done again from the stored
approvals every time the gates run, so an approval given before its author confirmed, or before `reviewers`
changed, stops counting by itself.

`waitTimer` holds a ready promotion: it starts `waitTimer` minutes after the later of the confirmation and the
approval that completed the count (approvals beyond the count do not move it; an early approval cannot skip it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput, Forbidden
from .spec.model import PromotionSpec

CONFIRM_WORD = "PROMOTE"

# Gate ids, in the order the plan shows them.
GATE_SOURCE_HEALTHY = "source-healthy"
GATE_SMOKE = "smoke-tests"
GATE_APPROVALS = "approvals"
GATE_SOURCE_FIRST = "ran-in-source"
GATE_WAIT_TIMER = "wait-timer"
# Gates that hold a promotion open instead of refusing it.
_HOLDING = frozenset({GATE_APPROVALS, GATE_WAIT_TIMER})
# What the controller does next with a confirmed promotion (`Plan.next_step`).
REFUSE, AWAIT_APPROVALS, WAIT, START = "refuse", "await-approvals", "wait", "start"
# Statuses of a deployment that reached SUCCESS at some point (REMOVED: replaced after it served).
RAN_SUCCESSFULLY = frozenset({"SUCCESS", "REMOVED", "SLEEPING"})


@dataclass(frozen=True)
class DeploymentFacts:
    """A deployment as observed: id, status, commit and its effective config snapshot (config_json)."""

    id: str
    status: str
    commit: str
    config: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SmokeResult:
    """One run of the smokeCommand: passed, and a one-line detail (exit code / timeout and the last output line)."""

    passed: bool
    detail: str


@dataclass(frozen=True)
class ApprovalFact:
    """One stored approval: the user's name and id (None: recorded before users existed) and when (naive UTC)."""

    name: str
    user_id: int | None
    at: dt.datetime


@dataclass(frozen=True)
class Promoters:
    """Who planned the promotion (name, user id) and who confirmed it (name: the schema keeps only the name, and
    user names are unique)."""

    planned_by: str
    planned_by_id: int | None = None
    confirmed_by: str | None = None


@dataclass(frozen=True)
class Observed:
    """Everything the plan is computed from."""

    source: str
    target: str
    source_deployment: DeploymentFacts | None
    source_health: tuple[bool, str]  # (passing now, detail)
    target_deployment: DeploymentFacts | None
    target_config_after: Mapping[str, Any]  # the promoted release's spec resolved for TARGET (cfg.to_dict())
    variables_before: Mapping[str, str]  # TARGET's current variables (plain values; masked on output)
    variables_after: Mapping[str, str]  # TARGET's variables after the promotion
    commits: tuple[tuple[str, str], ...] = ()  # (sha, subject) of target's commit..source's commit, newest first
    source_env_successes: frozenset[str] = frozenset()  # commits that ran successfully in promotion.from
    approvals: tuple[ApprovalFact, ...] = ()  # in the order they were given
    promoters: Promoters = Promoters("")
    confirmed_at: dt.datetime | None = None  # None: not confirmed yet
    now: dt.datetime | None = None  # naive UTC; None: the wait timer is not due
    smoke: SmokeResult | None = None  # None: no smokeCommand


@dataclass(frozen=True)
class Gate:
    id: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Plan:
    source: str
    target: str
    source_deployment_id: str
    commit: str
    commit_from: str | None  # the target's current commit (None: nothing deployed yet)
    commits: tuple[tuple[str, str], ...]
    variables: tuple[dict[str, str | None], ...]  # {key, change, before, after}, values masked
    services: tuple[dict[str, Any], ...]  # {key, before, after}
    migrations: dict[str, Any]
    gates: tuple[Gate, ...] = field(default=())
    approvals_required: int = 0
    start_after: dt.datetime | None = None  # waitTimer: not started before this (naive UTC)
    wait_timer: float = 0.0  # minutes

    @property
    def blocking(self) -> tuple[Gate, ...]:
        """Failed gates that neither approvals nor time can fix: the promotion is refused."""
        return tuple(g for g in self.gates if not g.passed and g.id not in _HOLDING)

    @property
    def awaiting_approval(self) -> bool:
        return any(g.id == GATE_APPROVALS and not g.passed for g in self.gates)

    @property
    def waiting(self) -> bool:
        return any(g.id == GATE_WAIT_TIMER and not g.passed for g in self.gates)

    @property
    def next_step(self) -> str:
        """For a confirmed promotion: refuse (a gate failed), await approvals, wait for the timer, or start."""
        if self.blocking:
            return REFUSE
        if self.awaiting_approval:
            return AWAIT_APPROVALS
        if self.waiting:
            return WAIT
        return START

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "source_deployment_id": self.source_deployment_id,
            "commit_range": {"from": self.commit_from, "to": self.commit,
                             "commits": [{"sha": sha, "subject": subject} for sha, subject in self.commits]},
            "variables": [dict(v) for v in self.variables],
            "services": [dict(s) for s in self.services],
            "migrations": dict(self.migrations),
            "gates": [g.to_dict() for g in self.gates],
            "approvals_required": self.approvals_required,
            "wait_timer": self.wait_timer,
            "start_after": iso(self.start_after),
        }


def check_route(source: str, target: str, *, source_production: bool, target_production: bool,
                spec: PromotionSpec | None) -> None:
    """Refuse promotions that make no sense (BadInput): to itself, out of production, from another source than `from`."""
    if source == target:
        raise BadInput(f"promote: {source} cannot be promoted to itself")
    if source_production:
        raise BadInput(f"promote: {source} is production; nothing is promoted out of production "
                       f"(to give {target} production's data use `branchyard db refresh {target} --from {source}`)")
    if spec is not None and spec.source is not None and spec.source != source:
        raise BadInput(f"promote: {target} takes promotions only from {spec.source} "
                       f"(branchyard.toml: environments.{target}.promotion.from), not from {source}")
    if target_production and spec is None:
        return  # allowed, but `branchyard check` warns that production has no promotion gates


def iso(at: dt.datetime | None) -> str | None:
    """A naive UTC datetime as the API shows it (ISO 8601 with Z)."""
    return at.isoformat() + "Z" if at is not None else None


def _same_user(a_name: str, a_id: int | None, b_name: str | None, b_id: int | None) -> bool:
    """By user id when both have one (names of deleted users may be reused), else by name."""
    if a_id is not None and b_id is not None:
        return a_id == b_id
    return b_name is not None and a_name == b_name


def refusal(spec: PromotionSpec | None, name: str, user_id: int | None, promoters: Promoters) -> str | None:
    """Why this user's approval cannot count (one phrase), or None when it counts."""
    spec = spec or PromotionSpec()
    if spec.prevent_self_review:
        if _same_user(name, user_id, promoters.planned_by, promoters.planned_by_id):
            return f"{name} planned this promotion (preventSelfReview: the promoter's approval does not count)"
        if promoters.confirmed_by is not None and name == promoters.confirmed_by:
            return f"{name} confirmed this promotion (preventSelfReview: the promoter's approval does not count)"
    if spec.reviewers and name not in spec.reviewers:
        return f"{name} is not one of the reviewers ({', '.join(spec.reviewers)})"
    return None


def check_approver(spec: PromotionSpec | None, name: str, user_id: int | None, promoters: Promoters, *,
                   promotion: str) -> None:
    """Forbidden (one line, nothing recorded) unless this user's approval would count."""
    why = refusal(spec, name, user_id, promoters)
    if why is not None:
        raise Forbidden(f"approve: {why}; promotion {promotion} unchanged")


def counted(approvals: Iterable[ApprovalFact], spec: PromotionSpec | None, promoters: Promoters) -> tuple[ApprovalFact, ...]:
    """The approvals that count: one per user (their first), in time order, none refused by the rules."""
    seen: set[object] = set()
    out = []
    for a in sorted(approvals, key=lambda a: a.at):
        key = a.user_id if a.user_id is not None else a.name
        if key in seen or refusal(spec, a.name, a.user_id, promoters) is not None:
            continue
        seen.add(key)
        out.append(a)
    return tuple(out)


def approvals_gate(approvals: Iterable[ApprovalFact], spec: PromotionSpec, promoters: Promoters) -> Gate:
    """`N of M approvals (who)`, and the approvals given that do not count, with why."""
    approvals = tuple(approvals)
    good = counted(approvals, spec, promoters)
    counted_names = {a.name for a in good}
    detail = f"{len(good)} of {spec.approvals} approvals" + (f" ({', '.join(a.name for a in good)})" if good else "")
    ignored = {a.name: refusal(spec, a.name, a.user_id, promoters) for a in approvals if a.name not in counted_names}
    notes = [why for why in ignored.values() if why]
    if notes:
        detail += "; not counted: " + "; ".join(notes)
    return Gate(GATE_APPROVALS, len(good) >= spec.approvals, detail)


def start_after(spec: PromotionSpec | None, approvals: Iterable[ApprovalFact], promoters: Promoters,
                confirmed_at: dt.datetime | None) -> dt.datetime | None:
    """When a confirmed promotion whose approvals are complete may start: `waitTimer` minutes after the later of the
    confirmation and the approval that completed the count. None: no wait timer, not confirmed, or approvals short."""
    spec = spec or PromotionSpec()
    if spec.wait_timer <= 0 or confirmed_at is None:
        return None
    good = counted(approvals, spec, promoters)
    if len(good) < spec.approvals:
        return None
    ready = max([confirmed_at] + ([good[spec.approvals - 1].at] if spec.approvals > 0 else []))
    return ready + dt.timedelta(minutes=spec.wait_timer)


def wait_gate(spec: PromotionSpec, at: dt.datetime | None, now: dt.datetime | None) -> Gate:
    """Passed once `now` reaches `at` (start_after); the detail says until when."""
    minutes = f"waitTimer {spec.wait_timer:g} min"
    if at is None:
        return Gate(GATE_WAIT_TIMER, False, f"{minutes} after the confirmation and the last approval needed")
    clock = at.strftime("%H:%M:%S UTC")
    if now is not None and now >= at:
        return Gate(GATE_WAIT_TIMER, True, f"waited until {clock} ({minutes})")
    return Gate(GATE_WAIT_TIMER, False, f"starts after {clock} ({minutes})")


def gates(observed: Observed, spec: PromotionSpec | None) -> tuple[Gate, ...]:
    """Each configured gate with pass/fail. Source health is always a gate."""
    spec = spec or PromotionSpec()
    out = [_source_healthy(observed)]
    if spec.smoke_command:
        smoke = observed.smoke
        if smoke is None:
            out.append(Gate(GATE_SMOKE, False, "smoke tests did not run"))
        else:
            out.append(Gate(GATE_SMOKE, smoke.passed, smoke.detail))
    if spec.source is not None and spec.require_source:
        commit = observed.source_deployment.commit if observed.source_deployment else ""
        ok = commit in observed.source_env_successes
        detail = (f"{commit[:12]} ran successfully in {spec.source}" if ok
                  else f"{commit[:12] or 'no commit'} never ran successfully in {spec.source}")
        out.append(Gate(GATE_SOURCE_FIRST, ok, detail))
    if spec.approvals > 0:
        out.append(approvals_gate(observed.approvals, spec, observed.promoters))
    if spec.wait_timer > 0:
        at = start_after(spec, observed.approvals, observed.promoters, observed.confirmed_at)
        out.append(wait_gate(spec, at, observed.now))
    return tuple(out)


def _source_healthy(observed: Observed) -> Gate:
    dep = observed.source_deployment
    if dep is None:
        return Gate(GATE_SOURCE_HEALTHY, False, f"{observed.source} has no current deployment")
    if dep.status != "SUCCESS":
        return Gate(GATE_SOURCE_HEALTHY, False, f"{observed.source}'s current deployment {dep.id[:8]} is {dep.status}")
    ok, detail = observed.source_health
    return Gate(GATE_SOURCE_HEALTHY, ok, f"deployment {dep.id[:8]} SUCCESS; health check {detail}")


def variable_changes(before: Mapping[str, str], after: Mapping[str, str],
                     mask: Callable[[str], str]) -> tuple[dict[str, str | None], ...]:
    """Keys whose value differs (compared in plain text, shown masked), added or removed; sorted by key."""
    rows = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        shown_old = None if old is None else mask(old)
        shown_new = None if new is None else mask(new)
        if change == "changed" and shown_old == shown_new:
            shown_old, shown_new = f"{shown_old} (secret)", f"{shown_new} (secret, differs)"
        rows.append({"key": key, "change": change, "before": shown_old, "after": shown_new})
    return tuple(rows)


_SERVICE_KEYS = (
    ("web", "replicas"), ("web", "memory_mb"), ("web", "cpu"), ("web", "start_command"), ("web", "healthcheck_path"),
    ("web", "cron_schedule"),
    ("postgres", "memory_mb"), ("postgres", "storage_mb"), ("postgres", "backups"), ("redis", "memory_mb"),
    ("redis", "persistence"),
)  # fmt: skip


def service_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any],
                    replicas_override: int | None = None) -> tuple[dict[str, Any], ...]:
    """Services added/removed and resource settings (replicas first) that differ between the two configs."""
    rows: list[dict[str, Any]] = []
    before = before or {}
    for section in ("postgres", "redis"):
        had, has = bool(before.get(section)), bool(after.get(section))
        if had != has and before:
            rows.append({"key": section, "before": "present" if had else None, "after": "present" if has else None})
    for section, key in _SERVICE_KEYS:
        old = (before.get(section) or {}).get(key) if before else None
        new = (after.get(section) or {}).get(key)
        if section == "web" and key == "replicas" and replicas_override is not None:
            old = new = replicas_override  # `branchyard scale` wins over the spec in the target
        if (old != new) and (before or new is not None):
            rows.append({"key": f"{section}.{key}", "before": old, "after": new})
    rows.extend(_process_changes(before.get("processes") or {} if before else {}, after.get("processes") or {}))
    return tuple(rows)


def _process_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Procfile process types (worker: …) added, removed, or run with another command or replica count."""
    rows: list[dict[str, Any]] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name) or {}, after.get(name) or {}
        if bool(old) != bool(new):
            rows.append({"key": f"processes.{name}", "before": old.get("command"), "after": new.get("command")})
            continue
        for key in ("command", "replicas"):
            if old.get(key) != new.get(key):
                rows.append({"key": f"processes.{name}.{key}", "before": old.get(key), "after": new.get(key)})
    return rows


def migrations(after: Mapping[str, Any], *, target_production: bool) -> dict[str, Any]:
    """Whether the target's preDeployCommand runs (it always runs on a promotion), and whether a backup comes first."""
    commands = list((after.get("web") or {}).get("pre_deploy_command") or [])
    return {
        "will_run": bool(commands),
        "commands": commands,
        "backup_first": bool(commands) and target_production and bool(after.get("postgres")),
    }


def plan(observed: Observed, spec: PromotionSpec | None, *, target_production: bool,
         mask: Callable[[str], str], replicas_override: int | None = None) -> Plan:
    """The whole plan: commit range, variable and service changes, migrations, and every gate."""
    dep = observed.source_deployment
    current = observed.target_deployment
    return Plan(
        source=observed.source,
        target=observed.target,
        source_deployment_id=dep.id if dep else "",
        commit=dep.commit if dep else "",
        commit_from=current.commit if current else None,
        commits=observed.commits,
        variables=variable_changes(observed.variables_before, observed.variables_after, mask),
        services=service_changes(current.config if current else None, observed.target_config_after, replicas_override),
        migrations=migrations(observed.target_config_after, target_production=target_production),
        gates=gates(observed, spec),
        approvals_required=spec.approvals if spec is not None else 0,
        start_after=start_after(spec, observed.approvals, observed.promoters, observed.confirmed_at),
        wait_timer=spec.wait_timer if spec is not None else 0.0,
    )


def smoke_argv_env(command: str, *, url: str, environment: str, base_env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The smoke test's command line (the spec's command + `--environment NAME`) and its environment."""
    import shlex

    argv = ["/bin/sh", "-c", f"{command} --environment {shlex.quote(environment)}"]
    env = dict(base_env) | {"BRANCHYARD_TARGET_URL": url, "BRANCHYARD_ENVIRONMENT": environment}
    return argv, env
