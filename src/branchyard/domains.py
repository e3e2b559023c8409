"""Custom domains and certificates, the pure part: which host may get a certificate (the edge's on-demand TLS
`ask`), and a domain's certificate state in words. Decisions from values; the store and the edge are elsewhere."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from .names import HOST_MAX

PENDING = "pending"
ISSUED = "issued"
FAILED = "failed"
SOURCE_CLI = "cli"  # `branchyard domain add`: only `domain delete` (or deleting the environment) removes it
SOURCE_SPEC = "spec"  # `domains = [...]` in branchyard.toml: follows the environment's deployed files


def asked_host(query: object) -> str | None:
    """The host name Caddy asks about (`?domain=`), normalised as stored (lowercase, no trailing dot), or None
    when it could never be one of ours: not a string, too long, not a valid host name."""
    if not isinstance(query, str) or not query or len(query) > HOST_MAX + 1:
        return None
    host = query.lower()
    host = host[:-1] if host.endswith(".") else host
    if not host or "*" in host or any(not (c.isalnum() and c.isascii()) and c not in "-." for c in host):
        return None
    return host


def may_issue(query: object, hosts: Collection[str]) -> bool:
    """The `ask` decision: True (200, the edge may order a certificate) only for a host the router serves: a
    generated host of an existing environment or a custom domain attached to one. Everything else: False (404)."""
    host = asked_host(query)
    return host is not None and host in hosts


@dataclass(frozen=True)
class CertificateState:
    """A domain's certificate as `domain list` shows it."""

    state: str  # pending | issued | failed
    not_after: dt.datetime | None = None  # issued: valid until (UTC)
    error: str | None = None  # failed: the CA's error as the edge reported it

    def text(self) -> str:
        """`pending`, `issued until 2027-03-01`, `failed: <the CA's error>`."""
        if self.state == ISSUED and self.not_after is not None:
            return f"issued until {self.not_after:%Y-%m-%d}"
        if self.state == FAILED:
            return f"failed: {self.error or 'unknown error'}"
        return PENDING


def certificate_state(not_after: dt.datetime | None, error: str | None, now: dt.datetime) -> CertificateState:
    """What the edge reports for a host (its certificate's notAfter, the CA's last error) → the state shown.

    A valid certificate wins over a later error (a failed renewal still serves the old certificate until it expires);
    an expired one with no error is reported as failed too, since nothing serves HTTPS for the host any more."""
    if not_after is not None and not_after > now:
        return CertificateState(ISSUED, not_after=not_after)
    if error:
        return CertificateState(FAILED, not_after=not_after, error=" ".join(error.split()))
    if not_after is not None:
        return CertificateState(FAILED, not_after=not_after, error=f"the certificate expired on {not_after:%Y-%m-%d} "
                                                                    "and was not renewed")
    return CertificateState(PENDING)


def wants_hsts(hsts: str, *, tls: str, production: bool) -> bool:
    """Whether a host's responses carry Strict-Transport-Security: TLS on, and BRANCHYARD_HSTS `all`, or
    `production` (the default) for a production environment's hosts."""
    return tls != "off" and (hsts == "all" or (hsts == "production" and production))


ASK_PATH = "/internal/tls/ask"  # the control plane's on-demand TLS permission endpoint (api/routes/tls.py)
