"""One-time file transfers between the control plane and a data job in a Kubernetes environment's namespace
(issue 19): the job uploads a dump it made to the control plane (`backup create`, the source side of `db refresh`),
or downloads one it is to restore (`restore`, the target side of `db refresh`). A pod cannot read the control
plane's disk, and the control plane may not reach the namespace's PostgreSQL at all (it may run outside the cluster);
both reach each other over HTTP at BRANCHYARD_KUBE_CONTROL_URL, as releases are fetched.

A transfer is one file, one direction and one random token, open until its owner closes it. The token travels to the
job in a Secret of its own, never in the Job's spec. Open transfers live in memory: a control plane that restarts
forgets them, and the job waiting on one fails (its owner — the request that started it — is gone too)."""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

UPLOAD = "upload"  # the job sends the file to the control plane
DOWNLOAD = "download"  # the job fetches the file from the control plane


@dataclass(frozen=True)
class Transfer:
    id: str  # lowercase hex: a Kubernetes object name's suffix as it is
    path: Path
    direction: str
    token: str = field(repr=False)


class Transfers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Transfer] = {}

    def expect_upload(self, path: Path) -> Transfer:
        """A transfer into `path`, which must not exist yet (the upload creates it)."""
        return self._add(Path(path), UPLOAD)

    def offer_download(self, path: Path) -> Transfer:
        return self._add(Path(path), DOWNLOAD)

    def find(self, transfer_id: str, direction: str, token: str | None) -> Transfer | None:
        """The open transfer of that id and direction whose token is `token` (constant-time), else None: an unknown
        id and a wrong token look the same to the caller."""
        with self._lock:
            found = self._open.get(transfer_id)
        if found is None or found.direction != direction or not token:
            return None
        return found if hmac.compare_digest(token.encode(), found.token.encode()) else None

    def close(self, transfer: Transfer) -> None:
        with self._lock:
            self._open.pop(transfer.id, None)

    def _add(self, path: Path, direction: str) -> Transfer:
        transfer = Transfer(id=secrets.token_hex(6), path=path, direction=direction, token=secrets.token_urlsafe(32))
        with self._lock:
            self._open[transfer.id] = transfer
        return transfer
