"""Procfiles (Heroku's format, `type: command` per line): which process types an app declares (pure)."""

from __future__ import annotations

import re

_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(.*)")
RUN = ("web", "release")  # `web` runs as the replicas, `release` as the pre-deploy command; the others not yet


def parse_procfile(text: str) -> dict[str, str]:
    """Process type → command, in file order; the first line of a type wins, as on Heroku; blanks and comments skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line.strip())
        if match and match.group(2).strip() and not line.lstrip().startswith("#"):
            found.setdefault(match.group(1), match.group(2).strip())
    return found


def not_run(label: str, processes: dict[str, str]) -> str | None:
    """The notice for process types branchyard does not run yet (worker, clock …), or None."""
    others = [name for name in processes if name not in RUN]
    if not others:
        return None
    return (f"{label}: {', '.join(others)}: not run yet (branchyard runs `web`, and `release` as the pre-deploy "
            "command when none is set)")
