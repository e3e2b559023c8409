"""Named crash points for restart-safety tests: BRANCHYARD_FAILPOINTS=deploy.after_spawn,… makes the
control plane SIGKILL itself when it reaches one, exactly as an operator's `kill -9` would."""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(p.strip() for p in os.environ.get("BRANCHYARD_FAILPOINTS", "").split(",") if p.strip())


def hit(name: str) -> None:
    """Die here if this point is armed (no clean-up of any kind runs)."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
