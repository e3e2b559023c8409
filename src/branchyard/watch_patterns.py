"""Railway's `watchPatterns`: does a push deploy? Pure: the changed files come in, a decision goes out; table-tested.

Patterns are gitignore-style, matched from the repository's root whatever the service's root directory (as Railway
documents: `/app/**`, `**/*.py`, `!docs/**` after an including rule), with pathspec's GitIgnoreSpec. A push deploys
when no patterns are set, when the environment has never deployed (its first deploy always deploys), when git cannot
list the changed files, or when at least one changed file (a rename: its old or its new path) matches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pathspec

SHOWN = 5  # changed files named in the message


@dataclass(frozen=True)
class WatchDecision:
    deploy: bool
    reason: str  # why it deploys or not, one line


def decide(patterns: Sequence[str], changed: Sequence[str] | None, *, base: str | None) -> WatchDecision:
    """Whether a push deploys: `changed` are the files changed since `base`, the environment's deployed commit (None:
    it has never deployed); `changed` None: git could not tell."""
    if not patterns:
        return WatchDecision(True, "no watchPatterns")
    if base is None:
        return WatchDecision(True, "the first deploy of an environment always deploys")
    if changed is None:
        return WatchDecision(True, f"the files changed since {base[:12]} are unknown: deploying")
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    matched = [path for path in changed if spec.match_file(path)]
    if matched:
        return WatchDecision(True, f"{_files(matched)} match{'es' if len(matched) == 1 else ''} watchPatterns")
    what = f"{_files(changed)} changed since {base[:12]}" if changed else f"no file changed since {base[:12]}"
    return WatchDecision(False, f"no deploy: no changed file matches watchPatterns {json.dumps(list(patterns))} ({what})")


def _files(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
    return shown
