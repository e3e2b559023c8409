"""Post-deploy tests (pure): what a deployment's test result is called, what a tier does about it, and what a
restarted control plane does with a result it left unfinished.

The controller (`controller/verify.py`) runs `[environments.<env>.tests]` against the environment's URL after a
deployment switched in, records the result on the deployment and acts on it as `decide` says: production rolls
back to the previous deployment, staging and previews keep serving and show the deployment UNHEALTHY.
"""

from __future__ import annotations

from dataclasses import dataclass

# A deployment's post-deploy test result (deployments.tests_status); None: not decided yet (the verifier has not
# looked at it, e.g. the switch committed just before a crash).
PASSED, FAILED, RUNNING, SKIPPED = "passed", "failed", "running", "skipped"
RESULTS = (PASSED, FAILED, RUNNING, SKIPPED)
UNHEALTHY = "UNHEALTHY"  # what `status` shows for a serving deployment whose tests failed (its status stays SUCCESS)

# What the tier does with a finished result
KEEP, MARK_UNHEALTHY, ROLLBACK = "keep", "mark-unhealthy", "rollback"


@dataclass(frozen=True)
class CommandResult:
    """One command of the tests: passed, and its one-line detail (exit code or timeout, the last output line)."""

    command: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str  # one line


def verdict(results: list[CommandResult] | tuple[CommandResult, ...]) -> Verdict:
    """The commands run in order and stop at the first failure: the failing one's detail, or the last's."""
    if not results:
        return Verdict(True, "no test command")
    for result in results:
        if not result.passed:
            return Verdict(False, _one_line(result.detail))
    last = results[-1]
    prefix = f"{len(results)} commands passed; last: " if len(results) > 1 else ""
    return Verdict(True, _one_line(prefix + last.detail))


def decide(*, production: bool, passed: bool, is_rollback: bool, still_current: bool) -> str:
    """The tier's action on a finished result.

    production + failed → ROLLBACK, unless the deployment is itself a rollback (rolling back again would walk
    further into the past on a check that fails everywhere) or no longer serves (a newer deployment replaced it:
    nothing to undo) — then MARK_UNHEALTHY. Staging and previews: failed → MARK_UNHEALTHY. Passed → KEEP."""
    if passed:
        return KEEP
    if production and not is_rollback and still_current:
        return ROLLBACK
    return MARK_UNHEALTHY


def on_restart(status: str | None, *, declared: bool, serving: bool) -> str | None:
    """What a (re)started control plane does with a deployment that is serving or ran: the result to record now
    (SKIPPED), RUNNING to run the tests (again), or None to leave it as it is.

    A result left RUNNING by a crash is never lost: the tests run again if the deployment still serves, else the
    result becomes SKIPPED (a newer deployment replaced it while nobody watched; so does one with no result). A
    serving deployment with no result yet (the switch committed, the verifier had not started) is tested if tests
    are declared, else SKIPPED."""
    if status in (PASSED, FAILED, SKIPPED):
        return None
    if not serving:
        return SKIPPED
    if not declared:
        return SKIPPED
    return RUNNING


def rollback_owed(status: str | None, *, production: bool, is_rollback: bool, still_current: bool,
                  reported: bool) -> bool:
    """A failed result whose rollback a crash cut off (recorded FAILED, no `deploy.tests_rollback` event yet): the
    restarted control plane rolls back now, as `decide` said then."""
    return status == FAILED and not reported and decide(
        production=production, passed=False, is_rollback=is_rollback, still_current=still_current) == ROLLBACK


def label(status: str | None) -> str:
    """The deployment's state as `status` shows it: UNHEALTHY when its post-deploy tests failed."""
    return UNHEALTHY if status == FAILED else ""


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."
