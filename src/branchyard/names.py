"""THE sanitising boundary: every name that becomes a path, a hostname or an environment passes here.

Nothing else in branchyard builds a path or a hostname out of user input; it calls one of these.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from pathlib import Path, PurePosixPath

from .errors import BadInput, NameRefused

LABEL_MAX = 63  # one DNS label
NAME_MAX = 40  # environment and project names
_HASH_LEN = 8

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_NAME_RULE = "use 1-40 lowercase letters, digits and dashes, starting and ending with a letter or digit"
_DOMAIN = re.compile(r"(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
HOST_MAX = 253  # a whole DNS name, dots included, without the trailing dot
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_REF_BAD_CHARS = frozenset(" ~^:?*[\\")
_REF_MAX = 255
# scheme://userinfo@ — userinfo runs to the last "@" before the host (a password may hold a raw "@")
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/\s'\"<>@]*(?:@[^/\s'\"<>@]*)*@")
REDACTED_USERINFO = "***"


def _digest(value: str) -> str:
    """First 8 hex digits of the SHA-1 of a value: a stable suffix for shortened names."""
    return hashlib.sha1(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def _shorten(text: str, original: str, limit: int) -> str:
    """Cut a slug longer than limit and append a hash of the original, so distinct inputs stay distinct."""
    if len(text) <= limit:
        return text
    head = text[: limit - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{_digest(original)}"


def slug(value: str, *, what: str = "name", max_length: int = LABEL_MAX) -> str:
    """Lowercase ASCII letters, digits and single dashes; hash-shortened above max_length characters."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    text = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    if not text:
        raise NameRefused(f"{what} {value!r} has no letters or digits to make a name from")
    return _shorten(text, value, max_length)


def _checked_name(value: object, what: str) -> str:
    """Return value if it is a valid environment/project name, else raise NameRefused."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise NameRefused(f"{what} {value!r} is not allowed: {_NAME_RULE}")
    return value


def environment_name(value: str) -> str:
    """Validate a user-given environment name (1-40 chars of [a-z0-9-], alphanumeric at both ends)."""
    return _checked_name(value, "environment name")


def project_name(value: str) -> str:
    """Validate a project name: the same rule as environment names."""
    return _checked_name(value, "project name")


def pr_environment(number: int | str) -> str:
    """Name of the preview environment of pull request `number`: pr-<n>."""
    refused = NameRefused(f"pull request number {number!r} is not a positive integer")
    if isinstance(number, bool):
        raise refused
    if isinstance(number, str):
        if not (number.isascii() and number.isdigit()):
            raise refused
        number = int(number)
    if not isinstance(number, int) or number <= 0 or len(str(number)) > NAME_MAX - 3:
        raise refused
    return f"pr-{number}"


def branch_environment(branch: str) -> str:
    """Name of the preview environment of a branch (branch-triggered previews): a slug of at most 40 chars."""
    return slug(branch, what="branch", max_length=NAME_MAX)


def domain_name(value: str) -> str:
    """Validate and lowercase a DNS domain such as "localhost" or "apps.example.com"."""
    domain = value.strip().lower().rstrip(".") if isinstance(value, str) else ""
    if not _DOMAIN.fullmatch(domain):
        raise NameRefused(f"domain {value!r} is not a valid domain name")
    return domain


def hostname(project: str, environment: str, domain: str, *, production: bool) -> str:
    """Public hostname: {project}.{domain} for production, {project}-{environment}.{domain} otherwise."""
    label = project if production else f"{project}-{environment}"
    return f"{slug(label, what='hostname label')}.{domain_name(domain)}"


def database_name(project: str, env_name: str) -> str:
    """`by_<project>_<env>`: one database and one role per environment (identifier-safe), on every backend."""
    return f"by_{project}_{env_name}".replace("-", "_")[:63]


def custom_domain(value: object, *, generated_base: str | None = None) -> str:
    """Validate a custom domain (`domain add`, a spec's `domains`): an RFC 1123 host name, lowercased, without its
    trailing dot. Refused with a one-line reason: non-ASCII (IDN is given as punycode: the message shows it),
    wildcards, IP addresses, localhost, single labels, and hosts under `generated_base` (BRANCHYARD_DOMAIN, where
    branchyard's own generated hosts live)."""
    shown = value if isinstance(value, str) else repr(value)
    if not isinstance(value, str) or not value.strip():
        raise NameRefused(f"domain {shown!r}: give a host name such as www.example.com")
    text = value.strip()
    if not text.isascii():
        raise NameRefused(f"domain {text!r}: internationalised names are given in punycode{_punycode_hint(text)}")
    host = text.lower()
    host = host[:-1] if host.endswith(".") else host

    def refuse(reason: str) -> NameRefused:
        return NameRefused(f"domain {text!r}: {reason}")

    if "*" in host:
        raise refuse("wildcard domains are not supported (certificates are issued on demand per host name, through "
                     "an HTTP-01 challenge, which cannot issue wildcards): add each host, e.g. www.example.com")
    if _is_ip(host):
        raise refuse("an IP address is not a domain: point a host name at this machine and add that")
    if "://" in host or any(c in host for c in "/:@?#[] "):
        raise refuse("give a bare host name, without scheme, port or path (e.g. www.example.com)")
    if host == "localhost" or host.endswith(".localhost"):
        raise refuse("localhost names only ever reach this machine itself; add a public host name")
    if len(host) > HOST_MAX:
        raise refuse(f"longer than {HOST_MAX} characters")
    labels = host.split(".")
    if "" in labels:
        raise refuse("an empty label (two dots in a row, or a leading dot)")
    for label in labels:
        if len(label) > LABEL_MAX:
            raise refuse(f"a label is {len(label)} characters long (at most {LABEL_MAX})")
        if not _LABEL.fullmatch(label):
            raise refuse(f"label {label!r}: use letters, digits and dashes, starting and ending with a letter or digit")
        if label.startswith("xn--") and not _valid_a_label(label):
            raise refuse(f"label {label!r} is not valid punycode")
    if len(labels) < 2:
        raise refuse("a single label is not a public host name: give the full name, e.g. www.example.com")
    if labels[-1].isdigit():
        raise refuse("the last label cannot be all digits")
    if generated_base and (host == generated_base or host.endswith(f".{generated_base}")):
        raise refuse(f"hosts under {generated_base} are branchyard's generated ones (BRANCHYARD_DOMAIN)")
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _punycode_hint(text: str) -> str:
    """`: xn--bcher-kva.example` for "bücher.example" (IDNA 2008 with UTS 46 mapping, else Python's IDNA 2003 codec)."""
    candidate = text.lower().rstrip(".")
    try:
        import idna  # httpx's dependency: always installed with branchyard

        encoded = idna.encode(candidate, uts46=True).decode("ascii")
    except Exception:  # noqa: BLE001 - idna raises several kinds; any of them means "no punycode form"
        try:
            encoded = candidate.encode("idna").decode("ascii")
        except UnicodeError:
            return " (xn--...), and this name has no valid punycode form"
    return f": {encoded}"


def _valid_a_label(label: str) -> bool:
    """An xn-- label that decodes to a Unicode label (IDNA 2008 when the idna package is there)."""
    try:
        import idna

        idna.decode(label)
    except ImportError:
        try:
            label.encode("ascii").decode("idna")
        except UnicodeError:
            return False
    except Exception:  # noqa: BLE001 - idna.IDNAError and friends
        return False
    return True


def is_safe_git_ref(ref: str) -> bool:
    """True when ref obeys git check-ref-format (roughly) and cannot be taken for a command-line option."""
    if not isinstance(ref, str) or not ref or len(ref) > _REF_MAX:
        return False
    if ref == "@" or ref.startswith(("-", "/")) or ref.endswith(("/", ".")):
        return False
    if ".." in ref or "//" in ref or "@{" in ref:
        return False
    if any(ord(c) < 32 or ord(c) == 127 or c in _REF_BAD_CHARS for c in ref):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/"))


def branch_from_ref(ref: str) -> str:
    """Branch name from "refs/heads/<branch>" (a bare branch name passes through); refuse unsafe refs."""
    prefix = "refs/heads/"
    if ref.startswith(prefix):
        branch = ref[len(prefix) :]
    elif ref.startswith("refs/"):
        raise NameRefused(f"git ref {ref!r} is not a branch (expected refs/heads/<branch>)")
    else:
        branch = ref
    if not is_safe_git_ref(branch):
        raise NameRefused(f"git ref {ref!r} is not a safe branch name")
    return branch


def scrub_credentials(text: str) -> str:
    """`text` with the userinfo (user, password, token) of every URL in it replaced by ***:
    "fatal: https://user:token@host/x.git" → "fatal: https://***@host/x.git". For git output, upstream URLs, errors."""
    return _URL_USERINFO.sub(lambda match: f"{match.group(1)}{REDACTED_USERINFO}@", text or "")


def safe_join(base: Path, *parts: str) -> Path:
    """Join parts under base and guarantee the resolved result stays inside base."""
    root = Path(base).resolve()
    for part in parts:
        if "\x00" in part:
            raise NameRefused(f"path {part!r} contains a NUL byte")
        pure = PurePosixPath(part)
        if pure.is_absolute():
            raise NameRefused(f"path {part!r} is absolute")
        if ".." in pure.parts:
            raise NameRefused(f"path {part!r} climbs out with '..'")
    joined = root.joinpath(*parts).resolve()
    if joined != root and root not in joined.parents:
        raise NameRefused(f"path {'/'.join(parts)!r} resolves outside {root}")
    return joined


_PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED_ROLES = {"public", "none", "current_user", "session_user", "current_role"}


def check_name(name: str, kind: str = "database") -> str:
    """Validate a PostgreSQL database or role name against ^[a-z_][a-z0-9_]{0,62}$ (callers sanitise; this is the
    guard)."""
    if not isinstance(name, str) or not _PG_NAME.match(name):
        raise BadInput(f"invalid PostgreSQL {kind} name {name!r}: use 1-63 of a-z, 0-9, _ (not starting with a digit)")
    if kind == "role" and (name in _RESERVED_ROLES or name.startswith("pg_")):
        raise BadInput(f"PostgreSQL role name {name!r} is reserved")
    return name
