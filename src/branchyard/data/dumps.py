"""Database dump files as the control plane keeps them: pg_dump's custom format, written whole (0600, synced) or not
at all, with their SHA-256. One writer for every dump that arrives over the network (a backup CronJob's upload, a
data job's transfer on Kubernetes), so each is checked the same way before anything trusts it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import BadInput

DUMP_MAGIC = b"PGDMP"  # the first bytes of every pg_dump custom-format file (what `restore` hands pg_restore)


def write_dump(path: Path, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write the chunks to a new file (0600) and sync it; (sha256, size). BadInput unless it starts with DUMP_MAGIC,
    checked as soon as that many bytes have arrived, so a wrong upload stops early. The file must not exist yet."""
    digest, size, head = hashlib.sha256(), 0, b""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            if len(head) < len(DUMP_MAGIC):
                head += chunk[: len(DUMP_MAGIC) - len(head)]
                _check_magic(head, final=False)
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        _check_magic(head, final=True)
        out.flush()
        os.fsync(out.fileno())  # trusted only once it is on disk
    return digest.hexdigest(), size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_magic(head: bytes, *, final: bool) -> None:
    if not DUMP_MAGIC.startswith(head) or (final and head != DUMP_MAGIC):
        raise BadInput("the upload is not a pg_dump custom-format file (it does not start with PGDMP)")
