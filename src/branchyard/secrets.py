"""Secrets: encrypted at rest with one Fernet key file, masked when shown, redacted from logs.

The key file is created on first use, 0600 from its first byte, and published atomically with
link(2) so two processes starting at once agree on one key. A key file that group or other can
access at all (any of the 0o077 bits) is refused rather than silently fixed: someone may already
have read it, and the operator should know.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from cryptography.fernet import Fernet, InvalidToken

from .errors import BackendError, BadInput

MASK = "••••••"
MIN_REDACTED_LENGTH = 4  # shorter values ("1", "yes", "dev") would mask half of every log line


class SecretBox:
    """Encrypts and decrypts secret values with the Fernet key kept in `key_file`."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self._fernet: Fernet | None = None

    def encrypt(self, plaintext: str) -> str:
        """A Fernet token (URL-safe ASCII) for `plaintext`."""
        return self._box().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made by `encrypt` with this key file."""
        box = self._box()
        try:
            return box.decrypt(token).decode("utf-8")
        except (InvalidToken, ValueError, TypeError):  # ValueError: non-ASCII token or non-UTF-8 plaintext
            raise BadInput("secret cannot be decrypted: wrong key file?") from None

    def _box(self) -> Fernet:
        if self._fernet is None:
            self._fernet = self._load()
        return self._fernet

    def _load(self) -> Fernet:
        try:
            fd = os.open(self.key_file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._create()
            fd = self._open_existing()
        except OSError as exc:
            raise BackendError(f"cannot open key file {self.key_file}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)  # the file we read, not whatever the path points to a moment later
            if not stat.S_ISREG(info.st_mode):
                raise BadInput(f"key file {self.key_file} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                raise BadInput(
                    f"key file {self.key_file} has mode {mode:04o}: it must not be readable by group or other "
                    f"(chmod 600 {self.key_file})"
                )
            key = os.read(fd, 4096).strip()
        except OSError as exc:
            raise BackendError(f"cannot read key file {self.key_file}: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            return Fernet(key)
        except ValueError:
            raise BadInput(f"key file {self.key_file} does not hold a Fernet key") from None

    def _open_existing(self) -> int:
        try:
            return os.open(self.key_file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise BackendError(f"cannot open key file {self.key_file}: {exc.strerror}") from None

    def _create(self) -> None:
        """Write a new key to a private temporary file, then link it into place unless another process won."""
        directory = self.key_file.parent
        tmp = directory / f".{self.key_file.name}.{os.urandom(8).hex()}.new"  # unique per thread and process
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, Fernet.generate_key() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.key_file)  # atomic, and fails if the key file appeared meanwhile
            except FileExistsError:
                pass  # someone else created it first: use theirs
        except OSError as exc:
            raise BackendError(f"cannot create key file {self.key_file}: {exc.strerror}") from None
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def mask(value: str) -> str:
    """MASK for any non-empty value (its length is not revealed); "" stays ""."""
    return MASK if value else ""


class Redactor:
    """Replaces every occurrence of the given secret values in a text with MASK.

    Values shorter than MIN_REDACTED_LENGTH characters are not redacted: too many false hits.
    Each value is also matched in its URL-encoded form (`quote(value, safe="")`), as it appears
    inside connection URLs. Overlapping or adjacent occurrences become a single MASK, so no part of
    any value survives (longest match first at each position).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in secrets:
            if value and len(value) >= MIN_REDACTED_LENGTH:
                forms.add(value)
                forms.add(quote(value, safe=""))
        ordered = sorted(forms, key=lambda v: (-len(v), v))
        # A lookahead finds a match starting at *every* position, so overlapping occurrences are all seen.
        self._pattern = re.compile("(?=(" + "|".join(map(re.escape, ordered)) + "))") if ordered else None

    def __call__(self, text: str) -> str:
        """`text` with every secret value masked."""
        if self._pattern is None or not text:
            return text
        spans: list[list[int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += [text[pos:start], MASK]
            pos = end
        out.append(text[pos:])
        return "".join(out)
