"""Procfiles (Heroku's format, `type: command` per line): which process types an app declares (pure)."""

from __future__ import annotations

import re

_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(.*)")
RUN = ("web", "release")  # `web` runs as the replicas, `release` as the pre-deploy command
# Any other type with such a name runs as a service of the environment (issue 17: `worker`, `clock` …): its slots are
# `<env>.<type>.<n>` and its logs `<type>.<n>.log`, so the name must be a slug a path and a log record can carry.
SERVICE = re.compile(r"[a-z][a-z0-9_-]*")


def parse_procfile(text: str) -> dict[str, str]:
    """Process type → command, in file order; the first line of a type wins, as on Heroku; blanks and comments skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line.strip())
        if match and match.group(2).strip() and not line.lstrip().startswith("#"):
            found.setdefault(match.group(1), match.group(2).strip())
    return found


def services(processes: dict[str, str]) -> dict[str, str]:
    """The process types that run as services besides `web` (worker, clock …), in file order."""
    return {name: command for name, command in processes.items() if name not in RUN and SERVICE.fullmatch(name)}


def not_run(label: str, processes: dict[str, str]) -> str | None:
    """The notice for process types branchyard cannot run (a name that is not a lowercase slug), or None."""
    others = [name for name in processes if name not in RUN and name not in services(processes)]
    if not others:
        return None
    return (f"{label}: {', '.join(others)}: not run (a process type runs as a service when its name matches "
            "[a-z][a-z0-9_-]*; branchyard runs `web`, `release` as the pre-deploy command, and the other types)")
