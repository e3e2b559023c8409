"""Value parsers for project files: each turns a raw TOML/JSON value into a typed one or raises InvalidValue.

Messages have one shape, `expected <what>, got <value>`; the loader prefixes file and key path and appends
the line number.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

import pathspec
from croniter import croniter

from ..errors import SpecError

RESTART_POLICIES = ("ON_FAILURE", "ALWAYS", "NEVER")
_INT = re.compile(r"\s*[+-]?\d+\s*")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
_MB_PER_UNIT = {
    "": 1.0,
    "b": 1 / 1024**2,
    "k": 1 / 1024, "kb": 1 / 1024, "kib": 1 / 1024,
    "m": 1.0, "mb": 1.0, "mib": 1.0,
    "g": 1024.0, "gb": 1024.0, "gib": 1024.0,
    "t": 1024.0**2, "tb": 1024.0**2, "tib": 1024.0**2,
}  # fmt: skip
_CPU = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(vcpus?|cpus?|cores?)?\s*", re.IGNORECASE)
_MILLICPU = re.compile(r"\s*(\d+)m\s*")
_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,39}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SANITIZE_KINDS = ("keep", "mask_email", "fake_name", "hash", "null")
FIXED_PREFIX = "fixed:"
_SHOW_MAX = 60


class InvalidValue(SpecError):
    """A value has the wrong type or range; the loader adds file, key path and line."""


def show(value: object) -> str:
    """Render a raw value the way it would be written in TOML/JSON, shortened when long."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > _SHOW_MAX and isinstance(value, dict):
        return "{...}"
    if len(text) > _SHOW_MAX and isinstance(value, list):
        return "[...]"
    return text


def expected(what: str, value: object) -> InvalidValue:
    """The one error shape: `expected <what>, got <value>`."""
    return InvalidValue(f"expected {what}, got {show(value)}")


def _whole(value: object, what: str) -> int:
    """An int from an int, an integral float or a numeric string; bools are refused."""
    if isinstance(value, bool):
        raise expected(what, value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    raise expected(what, value)


def seconds(value: object, *, minimum: int = 0) -> int:
    """Whole seconds, at least `minimum`."""
    number = _whole(value, "integer seconds")
    if number < minimum:
        raise expected(f"integer seconds of at least {minimum}", value)
    return number


def positive_seconds(value: object) -> int:
    """Whole seconds, at least 1."""
    return seconds(value, minimum=1)


def count(value: object, *, minimum: int = 0) -> int:
    """A whole number, at least `minimum`."""
    number = _whole(value, "a whole number")
    if number < minimum:
        raise expected(f"a whole number of at least {minimum}", value)
    return number


def positive_days(value: object) -> float:
    """A number of days above 0 (fractions allowed: 0.5 is twelve hours)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise expected("a number of days above 0", value)
    return float(value)


def positive_count(value: object) -> int:
    """A whole number, at least 1."""
    return count(value, minimum=1)


def replicas(value: object) -> int:
    """A replica count, at least 1."""
    return count(value, minimum=1)


def text(value: object) -> str:
    """Any string."""
    if not isinstance(value, str):
        raise expected("a string", value)
    return value


def command(value: object) -> str | None:
    """A shell command line kept as written ($PORT stays for the runner's shell); empty means unset."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise expected("a command string", value)
    return value.strip() or None


def commands(value: object) -> tuple[str, ...]:
    """One command as a string, or a list of commands run in order."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise expected("a command string or a list of command strings", value)


def patterns(value: object) -> tuple[str, ...]:
    """A list of glob patterns (a single string is accepted as a list of one)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return tuple(value)
    raise expected("a list of strings", value)


def watch_patterns(value: object) -> tuple[str, ...]:
    """Railway's watchPatterns: gitignore-style patterns of the repository's files ("/app/**", "**/*.py", "!docs/")."""
    globs = patterns(value)
    for glob in globs:
        try:
            pathspec.GitIgnoreSpec.from_lines([glob])
        except (ValueError, TypeError):
            raise expected("gitignore-style patterns like \"/app/**\" or \"**/*.py\"", glob) from None
    return globs


def repository_globs(value: object) -> tuple[str, ...]:
    """A non-empty list of glob patterns of files inside the repository ("migrations/**", "manage.py")."""
    globs = patterns(value)
    if not globs:
        raise expected("a non-empty list of file patterns", value)
    for glob in globs:
        pure = PurePosixPath(glob.strip())
        if "\x00" in glob or not glob.strip() or pure.is_absolute() or ".." in pure.parts:
            raise expected("file patterns inside the repository (no absolute paths, no '..')", glob)
    return tuple(str(PurePosixPath(g.strip())) for g in globs)


def boolean(value: object) -> bool:
    """true/false, also as the strings "true"/"false" in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise expected("true or false", value)


def choice(value: object, choices: Iterable[str], *, upper: bool = True) -> str:
    """One of `choices`, matched in any case with - and _ interchangeable."""
    options = tuple(choices)
    if isinstance(value, str):
        normal = value.strip().replace("-", "_")
        normal = normal.upper() if upper else normal.lower()
        if normal in options:
            return normal
    raise expected("one of " + ", ".join(options), value)


def restart_policy(value: object) -> str:
    """ON_FAILURE, ALWAYS or NEVER (Railway's restartPolicyType), any case."""
    return choice(value, RESTART_POLICIES)


def http_path(value: object) -> str | None:
    """A URL path such as /health; empty means unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise expected('a path starting with "/"', value)
    return value


def cron(value: object) -> str | None:
    """A five-field cron expression; empty means unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value.split()) != 5:
        raise expected('a cron expression with 5 fields like "0 3 * * *"', value)
    schedule = " ".join(value.split())
    if not croniter.is_valid(schedule):  # a field out of range ("61 * * * *") or not cron syntax
        raise expected('a valid cron expression (minute hour day-of-month month day-of-week, UTC) like "0 3 * * *"',
                       value)
    return schedule


def optional_text(value: object) -> str | None:
    """A string; empty means unset."""
    if value is None:
        return None
    return text(value).strip() or None


def parse_memory(value: object) -> int:
    """A size in MB from 1024, "512MB", "512 MiB", "2 GB" (units are binary: 1 GB = 1024 MB)."""
    what = 'a size like "512 MB" or "2 GB"'
    if isinstance(value, bool):
        raise expected(what, value)
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise expected(what, value)
    if unit not in _MB_PER_UNIT or not math.isfinite(number) or number <= 0:
        raise expected(what, value)
    return math.ceil(number * _MB_PER_UNIT[unit])


def parse_cpu(value: object) -> float:
    """A number of vCPUs from 0.5, 2, "1 vCPU", "500m"."""
    what = "a number of vCPUs like 0.5 or 2"
    if isinstance(value, bool):
        raise expected(what, value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (match := _CPU.fullmatch(value)):
        number = float(match.group(1))
    elif isinstance(value, str) and (match := _MILLICPU.fullmatch(value)):
        number = int(match.group(1)) / 1000
    else:
        raise expected(what, value)
    if not math.isfinite(number) or number <= 0:
        raise expected(what, value)
    return number


def backups(value: object) -> str | None:
    """"daily" or "none" (false and true are accepted too)."""
    if isinstance(value, bool):
        return "daily" if value else None
    return None if choice(value, ("daily", "none"), upper=False) == "none" else "daily"


def service_name(value: object) -> str:
    """The namespace of a service in references such as ${{Postgres.DATABASE_URL}}."""
    if not isinstance(value, str) or not _SERVICE_NAME.fullmatch(value):
        raise expected('a service name of letters, digits, "-" and "_" like "Postgres"', value)
    return value


def variable_name(value: str) -> str:
    """An environment variable name: letters, digits and _, not starting with a digit."""
    if not _VARIABLE_NAME.fullmatch(value):
        raise InvalidValue(f"{show(value)} is not a variable name (use letters, digits and _, not starting with a digit)")
    return value


def variable_value(value: object) -> str:
    """A variable's value as a string; numbers and booleans are written the way the app reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise expected("a string, number or boolean", value)


def directory(value: object) -> str:
    """A directory inside the repository, normalised ("./backend/" → "backend", "" → ".")."""
    if not isinstance(value, str) or "\x00" in value:
        raise expected("a directory inside the repository", value)
    pure = PurePosixPath(value.strip().lstrip("/") or ".")
    if ".." in pure.parts:
        raise expected("a directory inside the repository", value)
    return str(pure)


def sql_identifier(value: object, what: str = "table name") -> str:
    """A table or column name as branchyard accepts it: ^[a-z_][a-z0-9_]*$, at most 63 characters."""
    if not isinstance(value, str) or not _SQL_IDENTIFIER.fullmatch(value):
        raise expected(f"a {what} of a-z, 0-9 and _ (at most 63, not starting with a digit)", value)
    return value


def identifiers(value: object) -> tuple[str, ...]:
    """A list of table names (duplicates dropped, order kept)."""
    if not isinstance(value, list):
        raise expected("a list of table names", value)
    return tuple(dict.fromkeys(sql_identifier(item) for item in value))


def sanitize_rule(value: object) -> tuple[str, str | None]:
    """A column rule: keep, mask_email, fake_name, hash, null (any case) or "fixed:<value>" → (kind, literal)."""
    if isinstance(value, str):
        if value[: len(FIXED_PREFIX)].lower() == FIXED_PREFIX:
            literal = value[len(FIXED_PREFIX) :]
            if "\x00" in literal:
                raise expected("a fixed value without NUL characters", value)
            return "fixed", literal
        kind = value.strip().replace("-", "_").lower()
        if kind in SANITIZE_KINDS:
            return kind, None
    raise expected("one of " + ", ".join(SANITIZE_KINDS) + f", {FIXED_PREFIX}<value>", value)
