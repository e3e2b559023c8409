"""The edge's certificates as Caddy stores them: `<storage>/certificates/<issuer-key>/<host>/<host>.crt` (PEM,
the leaf first), read-only. The Certificates port for `domain list`; Caddy obtains and renews them itself.

Caddy keeps one directory per issuer (an ACME directory URL made into a key, e.g.
`acme-v02.api.letsencrypt.org-directory`, or `local` for its internal CA), so a host may have a certificate under
several; the one that expires last is reported. A wildcard host is stored as `wildcard_.example.com`; branchyard
refuses wildcards, so it never asks for one.

The CA's error for a host is not in the storage: Caddy logs it, one JSON object a line —
`{"level":"error","logger":"tls.obtain","msg":"could not get certificate from issuer","identifier":"www.shop.test",
"issuer":"…","error":"HTTP 400 urn:ietf:params:acme:error:rejectedIdentifier - Error creating new order :: …"}` —
and `"msg":"certificate obtained successfully"` with the same `identifier` once it succeeds. `errors` is the hook:
a callable host → the CA's last error; `CaddyLogErrors` reads it from the tiers' log files (`ca_errors` parses).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..ports import CertificateStatus

ErrorSource = Callable[[str], str | None]  # host → the CA's last error for it, or None


class CaddyCertificates:
    def __init__(self, storage_roots: Sequence[Path], errors: ErrorSource | None = None) -> None:
        self.storage_roots = [Path(root) for root in storage_roots]  # Caddy's `storage.root` of each TLS tier
        self.errors = errors

    def certificate(self, host: str) -> CertificateStatus | None:
        """The certificate for `host` that expires last, across issuers and storage roots; None without one and
        without a known error."""
        best: CertificateStatus | None = None
        for root in self.storage_roots:
            base = root / "certificates"
            try:
                issuers = sorted(p for p in base.iterdir() if p.is_dir())
            except OSError:
                continue
            for issuer in issuers:
                not_after = not_after_of(issuer / host / f"{host}.crt")
                if not_after is not None and (best is None or best.not_after is None or not_after > best.not_after):
                    best = CertificateStatus(host=host, not_after=not_after, issuer=issuer.name)
        error = self.errors(host) if self.errors is not None else None
        if error is None:
            return best
        return CertificateStatus(host=host, not_after=best.not_after if best else None,
                                 issuer=best.issuer if best else None, error=error)


    def local_root(self) -> str | None:
        """Caddy's local CA root (`<storage>/pki/authorities/local/root.crt`), from the first storage that has one."""
        for root in self.storage_roots:
            try:
                return (root / "pki" / "authorities" / "local" / "root.crt").read_text()
            except (OSError, UnicodeDecodeError):
                continue
        return None


    def forget(self, host: str) -> None:
        """Remove `<storage>/certificates/<issuer>/<host>/` under every issuer and storage root (Caddy keeps serving
        a certificate it holds in memory until it restarts; it loads none for `host` after that)."""
        if not host or "/" in host or host in (".", ".."):
            return
        for root in self.storage_roots:
            for issuer in (root / "certificates").glob("*"):
                shutil.rmtree(issuer / host, ignore_errors=True)


def not_after_of(pem_path: Path) -> dt.datetime | None:
    """notAfter (naive UTC) of the first certificate in a PEM file; None if the file is missing or unreadable."""
    from cryptography import x509  # a dependency of branchyard (secrets); imported on use: only `domain list` reads

    try:
        data = pem_path.read_bytes()
        cert = x509.load_pem_x509_certificates(data)[0]
    except (OSError, ValueError, IndexError):
        return None
    return cert.not_valid_after_utc.replace(tzinfo=None)


OBTAIN_FAILED = "could not get certificate from issuer"
OBTAINED = "certificate obtained successfully"
LOG_TAIL = 4 << 20  # bytes of each log read: Caddy rolls its log at 10 MB (caddy.py), the newest part is what counts


def ca_errors(lines: Iterable[str]) -> dict[str, str]:
    """Host → the CA's last error, from Caddy's JSON log lines in order; a later success for a host clears it.
    Lines that are not Caddy's JSON (a cut first line, another program's text) are skipped."""
    errors: dict[str, str] = {}
    for line in lines:
        if OBTAIN_FAILED not in line and OBTAINED not in line:
            continue  # cheap: most lines are neither
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        host = entry.get("identifier") if isinstance(entry, dict) else None
        if not isinstance(host, str):
            continue
        if entry.get("msg") == OBTAIN_FAILED and entry.get("error"):
            errors[host] = str(entry["error"])
        elif entry.get("msg") == OBTAINED:
            errors.pop(host, None)
    return errors


class CaddyLogErrors:
    """The `errors` hook over Caddy's log files: each file's tail is parsed again only when it changed."""

    def __init__(self, log_paths: Sequence[Path]) -> None:
        self.log_paths = [Path(p) for p in log_paths]
        self._parsed: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}  # path → ((mtime_ns, size), errors)
        self._lock = threading.Lock()

    def __call__(self, host: str) -> str | None:
        found = None
        with self._lock:
            for path in self.log_paths:
                found = self._errors(path).get(host) or found
        return found

    def _errors(self, path: Path) -> dict[str, str]:
        try:
            stat = path.stat()
        except OSError:
            return {}
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with path.open("rb") as f:
                f.seek(max(0, stat.st_size - LOG_TAIL))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return {}
        errors = ca_errors(text.splitlines())
        self._parsed[path] = (key, errors)
        return errors
