"""The edge's certificates as Caddy stores them: `<storage>/certificates/<issuer-key>/<host>/<host>.crt` (PEM,
the leaf first), read-only. The Certificates port for `domain list`; Caddy obtains and renews them itself.

Caddy keeps one directory per issuer (an ACME directory URL made into a key, e.g.
`acme-v02.api.letsencrypt.org-directory`, or `local` for its internal CA), so a host may have a certificate under
several; the one that expires last is reported. A wildcard host is stored as `wildcard_.example.com`; branchyard
refuses wildcards, so it never asks for one.

The CA's error for a host that has no certificate is not in the storage: Caddy logs it ("could not get certificate
from issuer", with the host as `identifier` and the CA's `error`). `errors` is the hook for that: a callable the
TLS work wires to the edge's log reader; until then no error is known and a host without a certificate is pending.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
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


def not_after_of(pem_path: Path) -> dt.datetime | None:
    """notAfter (naive UTC) of the first certificate in a PEM file; None if the file is missing or unreadable."""
    from cryptography import x509  # a dependency of branchyard (secrets); imported on use: only `domain list` reads

    try:
        data = pem_path.read_bytes()
        cert = x509.load_pem_x509_certificates(data)[0]
    except (OSError, ValueError, IndexError):
        return None
    return cert.not_valid_after_utc.replace(tzinfo=None)
