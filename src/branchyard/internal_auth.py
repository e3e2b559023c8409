"""The per-home secrets: the one with which the router calls the control plane's internal wake endpoint (issue 17),
the dashboard's CSRF key (issue 18, `dashboard/session.py`), and the cluster key (issue 19) from which the tokens
of a Kubernetes environment's pods are derived (`release_token`, `backup_token`; api/routes/releases.py).

Generated once (mode 0600 in BRANCHYARD_HOME), read by the router adapter (it puts it in the wake routes' request
headers) and by the API (which compares it in constant time). Never printed or logged."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

WAKE_SECRET_FILE = "wake.secret"
WAKE_HEADER = "X-Branchyard-Wake-Secret"
# The key of the pods' tokens (derived per release and per environment, see below). Deleting the file revokes every
# one of them at once: Secrets already in clusters then hold tokens that no longer match.
CLUSTER_KEY_FILE = "cluster.key"


def wake_secret(home: Path) -> str:
    """This home's wake secret, created on first use."""
    return home_secret(home, WAKE_SECRET_FILE)


def release_token(home: Path, deployment_id: str) -> str:
    """The token that lets its holder fetch the archive of this one release (deployment), and do nothing else.

    Derived, not stored: the control plane recomputes it to check a fetch, so a release needs no token row."""
    return _derived(home, "release", deployment_id)


def backup_token(home: Path, project: str, environment: str) -> str:
    """The token that lets its holder upload a dump of this one environment's database, and do nothing else (not
    read, list or restore backups, nor upload another environment's). Derived, not stored, like `release_token`."""
    return _derived(home, "backup", project, environment)


def _derived(home: Path, kind: str, *parts: str) -> str:
    """HMAC-SHA256 under the cluster key of `kind`, NUL, the parts joined by NUL: the kind separates the token
    types (a release token is never a backup token), and refusing NUL inside a part keeps the message unambiguous
    (project "a<NUL>b", environment "c" must not sign the same as project "a", environment "b<NUL>c")."""
    if any("\0" in part for part in parts):
        raise ValueError(f"a {kind} token's subject contains a NUL byte")
    key = home_secret(home, CLUSTER_KEY_FILE).encode()
    return hmac.new(key, "\0".join((kind, *parts)).encode(), hashlib.sha256).hexdigest()


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
