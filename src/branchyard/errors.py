"""One exception tree for branchyard: every error maps to a CLI exit code and an HTTP status.

Adapters convert third-party exceptions (CalledProcessError, httpx.HTTPError, OSError…) into these
at the boundary, so nothing above them needs to know which library failed.
"""

from __future__ import annotations


class BranchyardError(Exception):
    """Base class. `str(err)` is a one-line message fit for a user."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadInput(BranchyardError):
    """The user gave something invalid: a config file, a CLI argument, a name, a request body."""

    exit_code = 2
    http_status = 400


class SpecError(BadInput):
    """A project file (branchyard.toml, railway.toml/json, Procfile) is invalid."""


class NameRefused(BadInput):
    """A name (project, environment, branch) cannot be turned into a safe slug."""


class NotFound(BranchyardError):
    """A project, environment, deployment… that does not exist."""

    exit_code = 3
    http_status = 404


class Conflict(BranchyardError):
    """The request is valid but clashes with current state (already exists, busy, locked)."""

    exit_code = 4
    http_status = 409


class Unauthorized(BranchyardError):
    """Missing or wrong API token / webhook signature."""

    exit_code = 5
    http_status = 401


class Forbidden(BranchyardError):
    """An authenticated user whose role does not hold the permission a request needs (the message names it)."""

    exit_code = 5
    http_status = 403


class TooManyRequests(BranchyardError):
    """Too many wrong tokens from one client address: it waits `retry_after` seconds before trying again."""

    exit_code = 5
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(BranchyardError):
    """A request body over the API's size limit."""

    exit_code = 2
    http_status = 413


class ServerUnavailable(BranchyardError):
    """The control plane is not running or cannot be reached."""

    exit_code = 6
    http_status = 503


class BuildFailed(BranchyardError):
    """Exporting or building a release failed."""

    http_status = 422


class DeployFailed(BranchyardError):
    """A deployment could not be brought up (start, health check, route switch)."""

    http_status = 422


class BackendError(BranchyardError):
    """An external part (Caddy, git, a process) failed in an unexpected way."""

    http_status = 502
