"""The per-home secrets: the one with which the router calls the control plane's internal wake endpoint (issue 17),
and the dashboard's CSRF key (issue 18, `dashboard/session.py`).

Generated once (mode 0600 in BRANCHYARD_HOME), read by the router adapter (it puts it in the wake routes' request
headers) and by the API (which compares it in constant time). Never printed or logged."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

WAKE_SECRET_FILE = "wake.secret"
WAKE_HEADER = "X-Branchyard-Wake-Secret"


def wake_secret(home: Path) -> str:
    """This home's wake secret, created on first use."""
    return home_secret(home, WAKE_SECRET_FILE)


def home_secret(home: Path, name: str) -> str:
    """A secret of this home kept in the file `name` (mode 0600), created on first use; two processes of one home
    starting together agree on one value."""
    path = Path(home) / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this home made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an absent or empty header never matches."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
