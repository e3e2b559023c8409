"""PostgreSQL for environments: a cluster branchyard runs itself, and provisioning on any server.

`LocalServer` is a cluster in a directory of its own, started detached (it outlives the control plane)
and adopted again by whoever calls `ensure_running` next. Layout of `data_dir`:

    pgdata/             the cluster (initdb --auth=scram-sha-256; listens on 127.0.0.1 only)
    postgresql.log      the server's log (pg_ctl -l)
    socket/             its unix socket (mode 0700; left out when the path would be too long)
    server.json         port, superuser name and password (mode 0600); the postmaster's pid while it should run
    .lock               serialises ensure_running/stop/destroy between processes

Settings branchyard owns are written to `pgdata/branchyard.conf` before every start (included from
postgresql.conf): listen address, port, socket directory, and with `memory_mb` shared_buffers = 25 %
and effective_cache_size = 75 % of it. Written before the start, they apply without a restart;
an operator's ALTER SYSTEM still overrides them (postgresql.auto.conf is read last).

A server that dies without `stop` (kill -9, the OOM killer) is brought back by `revive`, which the
reconciler calls every second: server.json still names its pid, so it is known to have died rather than
been stopped. What it left is cleared first — children still attached to its shared memory, and its
postmaster.pid, whose pid may still exist as a zombie or be taken by another process (PostgreSQL would
then refuse to start) — and PostgreSQL's own crash recovery replays the WAL.

As root, the server runs as the system user `branchyard` (see pgtools): the cluster, log and socket
directories are given to it, data_dir stays root's with mode 0711, and its parents get o+x only.

`Admin` provisions one database and one role per environment on any server reachable with a superuser
URL: the role can log in, owns its database and public schema, and nothing else — PUBLIC's CONNECT on
the database is revoked, so every other environment's role is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from branchyard.backends.local import pgtools
from branchyard.backends.local.pgtools import ServiceAccount, pg_bin
from branchyard.backends.local.processes import pid_exists
from branchyard.errors import BackendError, BadInput, BranchyardError, Conflict, NotFound
from branchyard.names import check_name
from branchyard.restore_sql import restore_epilogue, restore_prelude

__all__ = ["Admin", "Database", "LocalServer", "pg_bin"]

SUPERUSER = "postgres"
START_TIMEOUT = 60.0  # seconds for pg_ctl start -w, and again for the first successful connection
STOP_TIMEOUT = 60.0
ORPHAN_WAIT = 5.0  # seconds for a killed postmaster's children to notice and exit before SIGKILL
_RESERVED_DATABASES = {"postgres", "template0", "template1"}
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


def new_password(length: int = 32) -> str:
    """A random password of letters and digits (nothing that needs escaping anywhere)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class Database:
    """What an environment gets: one database and the one role that owns it."""

    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}:{self.port}/{quote(self.name, safe='')}"

    def variables(self) -> dict[str, str]:
        """Railway's variable set for a PostgreSQL service."""
        return {
            "DATABASE_URL": self.url,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.name,
        }


# ---------------------------------------------------------------------------------------------------
# A cluster branchyard runs itself


class LocalServer:
    """A PostgreSQL cluster branchyard runs itself (one shared per machine, or one per `dedicated = true` environment)."""

    def __init__(self, *, data_dir: Path, port: int = 0, memory_mb: int | None = None, listen_all: bool = False) -> None:
        if not 0 <= port <= 65535:
            raise BadInput(f"invalid port {port} for PostgreSQL")
        if memory_mb is not None and memory_mb < 32:
            raise BadInput(f"memory_mb must be at least 32 for PostgreSQL, not {memory_mb}")
        self.data_dir = Path(data_dir).absolute().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgresql.log"
        self.socket_dir = self.data_dir / "socket"
        self.state_path = self.data_dir / "server.json"
        self._port = port
        self.memory_mb = memory_mb
        # Network isolation (netns.py): environments reach the server at their own host-side address, so it listens
        # on every IPv4 address (a restart would be needed to add one address per environment); the nftables input
        # rule keeps each environment to its own address and pg_hba each environment's role to its own network.
        self.listen = "0.0.0.0" if listen_all else "127.0.0.1"
        self.hba_path = self.data_dir / "hba.json"

    def __repr__(self) -> str:
        return f"LocalServer(data_dir={str(self.data_dir)!r})"

    # -- public -----------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Initialise the cluster if needed and start it detached, or adopt the one already running."""
        with self._locked():
            self._ensure_running()

    def stop(self) -> None:
        """Fast shutdown (pg_ctl stop -m fast); returns when no postmaster is left and the port is free."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            self._stop()
            state = self._read_state()
            if state is not None and state.get("pid") is not None:
                self._write_state({**state, "pid": None})  # stopped on purpose: not for `revive`

    def revive(self) -> int | None:
        """Start the server again if it died without `stop` (kill -9, OOM killer, crash), as it was: same port,
        same branchyard.conf; PostgreSQL's crash recovery replays the WAL. The dead postmaster's pid, or None
        when there was nothing to do: it runs, it was stopped, it never ran, or another caller holds the cluster.

        Cheap while it runs — the pid file and /proc, no connection: the reconciler calls it every second."""
        if self.pid() is not None or not self._recorded_pid():
            return None
        with self._locked(wait=False) as mine:
            if not mine:
                return None  # someone is starting, stopping or destroying it: their result stands
            state = self._read_state()
            dead = (state or {}).get("pid")
            if state is None or not dead or self.pid() is not None or not (self.pgdata / "PG_VERSION").is_file():
                return None
            account = _owner_account(self.pgdata)
            self._clear_crash()
            self._prepare_dirs(account)
            self._start(account, int(state["port"]))
            self._write_state({**state, "pid": self.pid()})
            return int(dead)

    def pid(self) -> int | None:
        """The postmaster's pid if it is running for this data directory, else None."""
        info = self._postmaster_file()
        if not info:
            return None
        try:
            pid = int(info[0])
        except ValueError:
            return None
        return pid if _is_postmaster(pid, self.pgdata) else None

    @property
    def port(self) -> int:
        """The port the server listens on (or will, once started)."""
        state = self._read_state()
        if state is None:
            if self._port:
                return self._port
            raise NotFound(f"no PostgreSQL cluster in {self.data_dir} yet (call ensure_running)")
        return int(state["port"])

    def admin_url(self) -> str:
        """Superuser URL on 127.0.0.1."""
        state = self._read_state()
        if state is None:
            raise NotFound(f"no PostgreSQL cluster in {self.data_dir} yet (call ensure_running)")
        return f"postgresql://{quote(state['superuser'], safe='')}:{quote(state['password'], safe='')}@127.0.0.1:{state['port']}/postgres"

    def destroy(self) -> None:
        """Stop the server and delete data_dir."""
        if not self.data_dir.exists():
            return
        with self._locked():
            self._stop()
            try:
                shutil.rmtree(self.data_dir)
            except OSError as exc:
                raise BackendError(f"cannot delete {self.data_dir}: {exc}") from exc

    # -- start ------------------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        state = self._read_state()
        if self.pid() is not None:
            if state is None:
                raise BackendError(f"a PostgreSQL server runs on {self.pgdata} but {self.state_path} is missing")
            info = self._postmaster_file()
            running_port = int(info[3]) if len(info) > 3 and info[3].isdigit() else int(state["port"])
            if len(info) > 5 and info[5].strip() not in ("", self.listen):
                self._stop()  # started with other listen addresses (isolation turned on or off): once, restarted
            else:
                if (running_port, self.pid()) != (state["port"], state.get("pid")):
                    self._write_state({**state, "port": running_port, "pid": self.pid()})
                self._wait_answering(time.monotonic() + START_TIMEOUT)
                return

        account = pgtools.service_account()
        self._prepare_dirs(account)
        initialised = (self.pgdata / "PG_VERSION").is_file()
        if initialised and state is None:
            raise BackendError(f"{self.pgdata} holds a cluster but {self.state_path} (its superuser password) is missing")
        if initialised:
            self._clear_crash()  # killed without a shutdown: what it left would stop the start
        port = self._port or (int(state["port"]) if initialised and state else 0) or _free_port()
        if _port_in_use(port):
            raise BackendError(f"cannot start PostgreSQL for {self.data_dir}: port {port} on 127.0.0.1 is already in use")
        if not initialised:
            state = self._initdb(account, port)
        elif state["port"] != port:
            state = {**state, "port": port}
            self._write_state(state)
        self._write_conf(account, port)
        self._start(account, port)
        self._write_state({**state, "port": port, "pid": self.pid()})
        self._harden()

    def _prepare_dirs(self, account: ServiceAccount | None) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o711 if account else 0o700)
            if account:
                pgtools.make_parents_traversable(self.data_dir, account)
                pgtools.make_binaries_readable(account)
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            pgtools.chown(self.socket_dir, account)
            if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_suffix(".log.1"))
            self.log_path.touch(mode=0o600, exist_ok=True)
            pgtools.chown(self.log_path, account)
        except OSError as exc:
            raise BackendError(f"cannot prepare {self.data_dir} for PostgreSQL: {exc}") from exc

    def _initdb(self, account: ServiceAccount | None, port: int) -> dict:
        password = new_password()
        pwfile = self.data_dir / ".initdb-password"
        try:
            if self.pgdata.exists():  # a half-made cluster from an interrupted initdb
                shutil.rmtree(self.pgdata)
            self.pgdata.mkdir(mode=0o700)
            pgtools.chown(self.pgdata, account)
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            pgtools.chown(pwfile, account)
        except OSError as exc:
            raise BackendError(f"cannot prepare {self.pgdata} for initdb: {exc}") from exc
        try:
            pgtools.run(
                "initdb",
                ["-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                 "--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
                 "--no-instructions"],
                account=account, cwd=self.pgdata, timeout=300, what=f"initdb in {self.pgdata}",
            )
            with open(self.pgdata / "postgresql.conf", "a") as conf:
                conf.write("\n# Settings branchyard manages, rewritten before every start\ninclude 'branchyard.conf'\n")
        except BaseException:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        state = {"port": port, "superuser": SUPERUSER, "password": password}
        self._write_state(state)
        return state

    def _write_conf(self, account: ServiceAccount | None, port: int) -> None:
        socket_file = self.socket_dir / f".s.PGSQL.{port}"
        socket_dirs = str(self.socket_dir) if len(str(socket_file)) <= _SOCKET_PATH_MAX else ""
        lines = [
            "# Written by branchyard before every start. ALTER SYSTEM overrides these.",
            f"listen_addresses = '{self.listen}'",
            f"port = {port}",
            f"unix_socket_directories = {_conf_string(socket_dirs)}",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
        ]
        if self.memory_mb is not None:
            lines += [
                f"shared_buffers = '{max(self.memory_mb // 4, 16)}MB'",
                f"effective_cache_size = '{max(self.memory_mb * 3 // 4, 32)}MB'",
            ]
        path = self.pgdata / "branchyard.conf"
        try:
            path.write_text("\n".join(lines) + "\n")
            path.chmod(0o600)
            pgtools.chown(path, account)
        except OSError as exc:
            raise BackendError(f"cannot write {path}: {exc}") from exc

    def _start(self, account: ServiceAccount | None, port: int) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            pgtools.run(
                "pg_ctl",
                ["start", "-D", str(self.pgdata), "-l", str(self.log_path), "-w", "-t", str(int(START_TIMEOUT)), "-s"],
                account=account, cwd=self.pgdata, timeout=START_TIMEOUT + 30, new_session=True,
                what=f"pg_ctl start in {self.pgdata}",
            )
            self._wait_answering(time.monotonic() + START_TIMEOUT)
        except BackendError as exc:
            with contextlib.suppress(BranchyardError):
                self._stop(immediate=True)
            new_log = _read_from(self.log_path, log_offset)
            if "Address already in use" in new_log:
                raise BackendError(f"cannot start PostgreSQL for {self.data_dir}: port {port} on 127.0.0.1 is already in use") from exc
            tail = " | ".join(_tail(new_log, 3)) or str(exc)
            raise BackendError(f"PostgreSQL in {self.data_dir} did not start: {tail} (log: {self.log_path})") from exc

    def _wait_answering(self, deadline: float) -> None:
        last = ""
        while True:
            try:
                with psycopg.connect(self.admin_url(), connect_timeout=5, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last = _one_line(exc)
            if time.monotonic() > deadline:
                tail = " | ".join(_tail(_read_from(self.log_path, 0), 3))
                raise BackendError(f"PostgreSQL in {self.data_dir} does not accept connections: {last} (log: {tail})")
            time.sleep(0.1)

    # -- pg_hba: each environment's role from its own network only (network isolation) ------------------

    def allow(self, key: str, database: str, role: str, network: str) -> None:
        """Let `role` reach `database` from `network` (an environment's /30) with its password; reloaded at once."""
        check_name(database, "database")
        check_name(role, "role")
        with self._locked():
            rules = self._hba_rules()
            if rules.get(key) != [database, role, network]:
                self._write_hba({**rules, key: [database, role, network]})

    def disallow(self, prefix: str) -> None:
        """Forget what `allow(key, …)` let in, for every key starting with `prefix` (an environment's databases)."""
        if not self.data_dir.is_dir():
            return
        with self._locked():
            rules = self._hba_rules()
            kept = {k: v for k, v in rules.items() if not k.startswith(prefix)}
            if kept != rules:
                self._write_hba(kept)

    def _hba_rules(self) -> dict[str, list[str]]:
        try:
            return json.loads(self.hba_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read {self.hba_path}: {exc}") from exc

    def _write_hba(self, rules: dict[str, list[str]]) -> None:
        path = self.pgdata / "pg_hba.conf"
        try:
            lines = path.read_text().splitlines()
            if HBA_BEGIN in lines:
                lines = lines[:lines.index(HBA_BEGIN)]
            lines += [HBA_BEGIN, *render_hba(rules)]
            path.write_text("\n".join(lines) + "\n")
            pgtools.chown(path, _owner_account(self.pgdata))
            self.hba_path.write_text(json.dumps(rules, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            raise BackendError(f"cannot write {path}: {exc}") from exc
        if self.pid() is not None:
            with Admin(self.admin_url())._session() as conn:
                conn.execute("SELECT pg_reload_conf()")

    def _harden(self) -> None:
        """Environment roles may connect to their own database only: not to postgres or template1."""
        with Admin(self.admin_url())._session() as conn:
            conn.execute("REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC")

    # -- stop -------------------------------------------------------------------------------------

    def _stop(self, *, immediate: bool = False) -> None:
        pid = self.pid()
        if pid is None:
            return
        info = self._postmaster_file()
        port = int(info[3]) if len(info) > 3 and info[3].isdigit() else None
        account = _owner_account(self.pgdata)
        modes = ["immediate"] if immediate else ["fast", "immediate"]
        error: BranchyardError | None = None
        for mode in modes:
            try:
                pgtools.run(
                    "pg_ctl", ["stop", "-D", str(self.pgdata), "-m", mode, "-w", "-t", str(int(STOP_TIMEOUT)), "-s"],
                    account=account, cwd=self.pgdata, timeout=STOP_TIMEOUT + 30, what=f"pg_ctl stop in {self.pgdata}",
                )
                error = None
                break
            except BackendError as exc:
                error = exc
                if not _is_postmaster(pid, self.pgdata):  # it went away meanwhile
                    error = None
                    break
        deadline = time.monotonic() + 10
        while _is_postmaster(pid, self.pgdata) or (port and _port_in_use(port)):
            if time.monotonic() > deadline:
                raise BackendError(f"PostgreSQL in {self.data_dir} (pid {pid}) did not stop" + (f": {error}" if error else ""))
            time.sleep(0.05)

    # -- files ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Exclusive use of the cluster across processes. Without `wait`: True if taken, False if busy or gone
        (never creating data_dir: a destroyed cluster stays destroyed)."""
        try:
            if wait:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.data_dir / ".lock", os.O_RDWR | (os.O_CREAT if wait else 0), 0o600)
        except FileNotFoundError:
            if wait:
                raise BackendError(f"cannot lock {self.data_dir}: it does not exist") from None
            yield False
            return
        except OSError as exc:
            raise BackendError(f"cannot lock {self.data_dir}: {exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _recorded_pid(self) -> int | None:
        """The postmaster pid server.json names: set at start, cleared by `stop` (cheap: no lock, no error)."""
        try:
            return json.loads(self.state_path.read_text()).get("pid")
        except (OSError, ValueError, AttributeError):
            return None

    def _clear_crash(self) -> None:
        """After a postmaster died without shutting down: wait for its children (still attached to its shared
        memory, which PostgreSQL refuses to start next to) to exit, SIGKILL them after ORPHAN_WAIT, then remove
        the lock files naming the dead pid. Nothing to do, and quick, after a clean shutdown."""
        deadline = time.monotonic() + ORPHAN_WAIT
        killed = False
        while left := _cluster_processes(self.pgdata):
            if time.monotonic() > deadline:
                if killed:
                    raise BackendError(f"PostgreSQL processes {left} of {self.pgdata} survive SIGKILL; not starting another server")
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 10
            time.sleep(0.05)
        # Their pid may live on as a zombie or in another process: PostgreSQL would then refuse the files.
        try:
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot remove the lock files of a crashed PostgreSQL in {self.pgdata}: {exc}") from exc

    def _postmaster_file(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return []

    def _read_state(self) -> dict | None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read {self.state_path}: {exc}") from exc
        if not {"port", "superuser", "password"} <= state.keys():
            raise BackendError(f"{self.state_path} is incomplete")
        return state

    def _write_state(self, state: dict) -> None:
        tmp = self.state_path.with_suffix(".json.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(state, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            tmp.replace(self.state_path)
        except OSError as exc:
            raise BackendError(f"cannot write {self.state_path}: {exc}") from exc


HBA_BEGIN = "# branchyard: each environment's role, from its own network only (rewritten; edits above this line stay)"


def render_hba(rules: dict[str, list[str]]) -> list[str]:
    """pg_hba.conf lines for `rules` (key → [database, role, network]), in key order (pure)."""
    return [f"host {database} {role} {network} scram-sha-256" for _, (database, role, network) in sorted(rules.items())]


def _owner_account(pgdata: Path) -> ServiceAccount | None:
    """As root, the account owning the cluster (whoever started it); otherwise None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        st = pgdata.stat()
    except OSError:
        return pgtools.service_account()
    if st.st_uid == 0:
        return pgtools.service_account()
    import pwd

    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return ServiceAccount(name, st.st_uid, st.st_gid)


def _is_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is alive (not a zombie) and is the postmaster of `pgdata` (guards against PID reuse)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): fall back to "a process exists"
        return pid_exists(pid)
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    if str(pgdata).encode() in cmdline:
        return True
    try:
        return Path(os.readlink(proc / "cwd")) == pgdata
    except OSError:
        return False


def _cluster_processes(pgdata: Path) -> list[int]:
    """Live (not zombie) postgres processes working in `pgdata`: the postmaster and its children."""
    found = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:  # no procfs (macOS): nothing to wait for
        return []
    for name in entries:
        proc = Path("/proc", name)
        try:
            if Path(os.readlink(proc / "cwd")) != pgdata or Path(os.readlink(proc / "exe")).name != "postgres":
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
        except (OSError, IndexError):
            continue
        found.append(int(name))
    return found


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL does: TIME_WAIT is free
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, n: int) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()][-n:]


def _one_line(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None and diag.message_primary else None
    if primary:
        detail = diag.message_detail
        return primary + (f" ({detail})" if detail else "")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------------
# Provisioning on any server


class Admin:
    """Provisioning on any server given by a superuser (or CREATEROLE+CREATEDB) URL — ours or an operator's existing server."""

    def __init__(self, admin_url: str) -> None:
        try:
            params = conninfo_to_dict(admin_url)
        except psycopg.Error as exc:
            raise BadInput(f"invalid PostgreSQL URL: {_one_line(exc)}") from exc
        self._params = {k: str(v) for k, v in params.items() if v is not None}
        self._params.setdefault("dbname", "postgres")
        self.host = self._params.get("host") or "localhost"
        self.port = int(self._params.get("port") or 5432)

    def __repr__(self) -> str:
        return f"Admin({self._params.get('user', '?')}@{self.host}:{self.port})"

    # -- provisioning -----------------------------------------------------------------------------

    def create_database(self, name: str, owner: str, *, password: str | None = None, template: str | None = None) -> Database:
        """Create (idempotently) role `owner` and database `name` owned by it; set the role's password; return the Database.

        `password=None` generates a new one (and sets it: the old one is unknowable). `template` clones that
        database (it must have no connections) and hands the objects its owner had there to `owner`.
        An existing database is never recreated or re-cloned.
        """
        check_name(name, "database")
        check_name(owner, "role")
        if name in _RESERVED_DATABASES:
            raise BadInput(f"database name {name!r} is reserved")
        if template is not None:
            check_name(template, "database")
            if template == name:
                raise BadInput(f"database {name!r} cannot be its own template")
        if password is None:
            password = new_password()
        elif not isinstance(password, str) or not password or "\0" in password:
            raise BadInput("a database password must be a non-empty string without NUL characters")

        cloned_from: tuple[str, bool] | None = None  # (template owner, is superuser)
        with self._session() as conn:
            me, i_am_super = self._whoami(conn)
            if owner == me:
                raise Conflict(f"role {owner!r} is the admin role itself; an environment needs a role of its own")
            self._ensure_role(conn, owner, password)
            if not i_am_super:
                self._act_as(conn, owner)
            row = conn.execute(
                "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s", (name,)
            ).fetchone()
            if row is None:
                if template is None:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
                else:
                    trow = conn.execute(
                        "SELECT r.rolname, r.rolsuper FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s",
                        (template,),
                    ).fetchone()
                    if trow is None:
                        raise NotFound(f"template database {template!r} does not exist")
                    # Checked first because CREATE DATABASE waits 5 s for them to leave before failing.
                    users = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (template,)).fetchone()[0]
                    if users:
                        raise Conflict(f"cannot clone database {template!r}: it has {users} open connection(s)")
                    try:
                        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {}").format(
                            sql.Identifier(name), sql.Identifier(owner), sql.Identifier(template)))
                    except psycopg.errors.ObjectInUse as exc:
                        raise Conflict(f"cannot clone database {template!r}: it has open connections ({_one_line(exc)})") from exc
                    cloned_from = (trow[0], bool(trow[1]))
            elif row[0] != owner:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(owner)))

        with self._session(name) as conn, conn.transaction():
            if cloned_from and cloned_from[0] != owner and not cloned_from[1]:
                self._take_over_clone(conn, cloned_from[0], owner)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS public AUTHORIZATION {}").format(sql.Identifier(owner)))
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        return Database(self.host, self.port, name, owner, password)

    def copy_database(self, template: str, name: str) -> None:
        """CREATE DATABASE `name` as a plain copy of `template` (same owners inside): a spare to `adopt` later.
        Nothing if `name` exists. One statement, so a copy is either whole or absent."""
        check_name(template, "database")
        check_name(name, "database")
        with self._session() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))

    def adopt_database(self, spare: str, from_owner: str, name: str, owner: str, *, password: str | None = None) -> Database | None:
        """Make the spare copy `spare` (objects owned by `from_owner`) the database `name` of role `owner`, as
        `create_database(name, owner, template=...)` would have made it, without copying anything (a rename).
        None, with nothing changed, when there is no such spare or `name` already exists."""
        for n, kind in ((spare, "database"), (from_owner, "role"), (name, "database"), (owner, "role")):
            check_name(n, kind)
        password = password or new_password()
        with self._session() as conn:
            me, i_am_super = self._whoami(conn)
            if owner == me:
                raise Conflict(f"role {owner!r} is the admin role itself; an environment needs a role of its own")
            found = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname IN (%s, %s)", (spare, name))}
            if spare not in found or name in found:
                return None
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (spare,)).fetchone()[0]:
                return None
            self._ensure_role(conn, owner, password)
            if not i_am_super:
                self._act_as(conn, owner)
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(spare), sql.Identifier(name)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
        with self._session(name) as conn, conn.transaction():
            self._take_over_clone(conn, from_owner, owner)
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        return Database(self.host, self.port, name, owner, password)

    def drop_copy(self, name: str) -> None:
        """Drop database `name` (a spare copy), leaving every role alone. Idempotent."""
        check_name(name, "database")
        if name in _RESERVED_DATABASES:
            raise BadInput(f"database name {name!r} is reserved")
        with self._session() as conn:
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)

    def limit_connections(self, owner: str, limit: int | None) -> None:
        """`ALTER ROLE owner CONNECTION LIMIT limit` (None: -1, no limit): one environment cannot take every connection
        of a shared server. Superusers ignore it; our roles never are one."""
        check_name(owner, "role")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise BadInput(f"a connection limit must be a positive integer, not {limit!r}")
        with self._session() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
                sql.Identifier(owner), sql.Literal(-1 if limit is None else limit)))

    def connection_limit(self, owner: str) -> int | None:
        """The role's CONNECTION LIMIT (None: unlimited, or no such role)."""
        check_name(owner, "role")
        with self._session() as conn:
            row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
        return None if row is None or row[0] < 0 else int(row[0])

    def seal_template(self, name: str) -> None:
        """Make database `name` a template nobody works in: no connections to it, and its role (same name) cannot log in."""
        check_name(name, "database")
        with self._session() as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(name)))

    def drop_database(self, name: str, owner: str) -> None:
        """Terminate the database's connections, drop it, drop its role. Idempotent.

        Privileges the role still holds in other databases (granted to it there) are dropped with it
        (DROP OWNED BY in each database pg_shdepend names), so a role never outlives its environment.
        """
        check_name(name, "database")
        check_name(owner, "role")
        if name in _RESERVED_DATABASES:
            raise BadInput(f"database name {name!r} is reserved")
        with self._session() as conn:
            me, _ = self._whoami(conn)
            role = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            if owner == me or (role and role[0]):
                raise Conflict(f"refusing to drop role {owner!r}: it is the admin role or a superuser")
            row = conn.execute(
                "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s", (name,)
            ).fetchone()
            if row is not None:
                if row[0] != owner and row[0] != me:
                    raise Conflict(f"database {name!r} is owned by {row[0]!r}, not {owner!r}; not dropping it")
                ident = sql.Identifier(name)
                conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
                )
                force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident) + force)
            try:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
                return
            except psycopg.errors.DependentObjectsStillExist:
                # Privileges granted to the role (or stray objects it owns) in other databases: clear them there.
                elsewhere = [r[0] for r in conn.execute(
                    "SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid "
                    "WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %s::regrole",
                    (owner,),
                )]
        for dbname in elsewhere:
            with self._session(dbname) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))
        with self._session() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))  # grants on shared objects
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))

    def databases(self) -> list[str]:
        """Names of the server's databases (templates left out)."""
        with self._session() as conn:
            return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname")]

    def roles(self) -> list[str]:
        """Names of the server's roles (PostgreSQL's built-in pg_* roles left out)."""
        with self._session() as conn:
            return [r[0] for r in conn.execute(r"SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\_%' ORDER BY rolname")]

    # -- data -------------------------------------------------------------------------------------

    def dump(self, db: Database | str, path: Path) -> str:
        """pg_dump --format=custom of `db` into `path` (mode 0600) as the admin; return the file's sha256 hex."""
        name = check_name(db.name if isinstance(db, Database) else db, "database")
        path = Path(path)
        conninfo, env = self._tool_conninfo(name)
        tmp = path.with_name(f".{path.name}.partial")
        digest = hashlib.sha256()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise BackendError(f"cannot write dump {path}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out, tempfile.TemporaryFile() as err:
                try:
                    proc = subprocess.Popen(
                        [pg_bin("pg_dump"), "--format=custom", "--no-password", f"--dbname={conninfo}"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                    )
                except OSError as exc:
                    raise BackendError(f"pg_dump could not run: {exc}") from exc
                assert proc.stdout is not None
                with proc.stdout:
                    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                rc = proc.wait()
                if rc != 0:
                    err.seek(0)
                    why = pgtools.error_line(err.read().decode(errors="replace")) or f"exit {rc}"
                    raise BackendError(f"pg_dump of {name} failed: {why}")
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
        except OSError as exc:
            raise BackendError(f"cannot write dump {path}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def restore(self, path: Path, db_name: str, owner: str) -> None:
        """Replace the content of the EXISTING database `db_name` with the dump at `path`, owned by `owner`, in one transaction.

        Everything in the database's schemas is dropped first (pg_restore --clean alone would keep objects
        the dump lacks), then the dump is restored with --no-owner --no-privileges as `owner` (SET ROLE):
        grants naming another environment's role never come across. pg_restore's SQL is piped into psql
        inside BEGIN…COMMIT, and COMMIT is sent only when pg_restore read the whole archive.
        Objects the role may not create (an untrusted extension such as pg_buffercache) fail the restore:
        create them in the database beforehand as the admin.
        """
        check_name(db_name, "database")
        check_name(owner, "role")
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"dump file {path} does not exist")
        with self._session() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone() is None:
                raise NotFound(f"database {db_name!r} does not exist")
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
                raise NotFound(f"role {owner!r} does not exist")
        conninfo, env = self._tool_conninfo(db_name)
        prelude, epilogue = restore_prelude(owner), restore_epilogue(owner)
        with tempfile.TemporaryFile() as restore_err, tempfile.TemporaryFile() as psql_err:
            try:
                psql = subprocess.Popen(
                    [pg_bin("psql"), "-X", "-q", "--no-password", f"--dbname={conninfo}"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_err, env=env,
                )
            except OSError as exc:
                raise BackendError(f"psql could not run: {exc}") from exc
            reader: subprocess.Popen[bytes] | None = None
            restore_rc: int | None = None
            assert psql.stdin is not None
            try:
                reader = subprocess.Popen(
                    [pg_bin("pg_restore"), "--no-owner", "--no-privileges", f"--role={owner}", "--file=-", str(path)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=restore_err, env=env,
                )
                assert reader.stdout is not None
                psql.stdin.write(prelude.encode())
                for chunk in iter(lambda: reader.stdout.read(1 << 20), b""):
                    psql.stdin.write(chunk)
                restore_rc = reader.wait()
                if restore_rc == 0:
                    psql.stdin.write(epilogue.encode())
                # otherwise: no COMMIT; psql's EOF ends the session and the server rolls the transaction back
            except BrokenPipeError:
                pass  # psql stopped at an error: reported below
            except OSError as exc:
                raise BackendError(f"restore into {db_name} could not run: {exc}") from exc
            finally:
                if reader is not None:
                    if reader.poll() is None:
                        reader.kill()
                        reader.wait()
                    if reader.stdout:
                        reader.stdout.close()
                with contextlib.suppress(BrokenPipeError):
                    psql.stdin.close()
                psql_rc = psql.wait()
            restore_err.seek(0)
            psql_err.seek(0)
            restore_msg = pgtools.error_line(restore_err.read().decode(errors="replace"))
            psql_msg = pgtools.error_line(psql_err.read().decode(errors="replace"))
        failed = f"restore of {path.name} into {db_name} failed (nothing changed)"
        if restore_rc not in (0, None):  # pg_restore could not read the archive: no COMMIT was sent
            raise BackendError(f"{failed}: pg_restore: {restore_msg or f'exit {restore_rc}'}")
        if psql_rc != 0:
            raise BackendError(f"{failed}: {psql_msg or f'psql exit {psql_rc}'}")
        if restore_rc is None:
            raise BackendError(f"{failed}: pg_restore was stopped")

    def psql(self, db: Database, sql_text: str) -> str:
        """Run SQL with psql as the environment's own role; return its unaligned, tuples-only output."""
        conninfo = make_conninfo("", host=db.host, port=str(db.port), user=db.user, dbname=db.name)
        return pgtools.run(
            "psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", f"--dbname={conninfo}"],
            env=pgtools.tool_env({"PGPASSWORD": db.password}), input=sql_text, timeout=300,
            what=f"psql as {db.user} on {db.name}",
        )

    # -- helpers ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, dbname: str | None = None) -> Iterator[psycopg.Connection]:
        """An autocommit connection as the admin; psycopg errors become BackendError (one line)."""
        params = self._params | ({"dbname": dbname} if dbname else {})
        params.setdefault("connect_timeout", "10")
        try:
            conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            where = f"database {params['dbname']!r} on {self.host}:{self.port}"
            raise BackendError(f"cannot connect to PostgreSQL ({where}) as {params.get('user', '?')}: {_one_line(exc)}") from exc
        try:
            with conn:
                yield conn
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL on {self.host}:{self.port}: {_one_line(exc)}") from exc

    @staticmethod
    def _whoami(conn: psycopg.Connection) -> tuple[str, bool]:
        me, su = conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        return me, bool(su)

    @staticmethod
    def _ensure_role(conn: psycopg.Connection, owner: str, password: str) -> None:
        """Role `owner`: LOGIN and none of SUPERUSER/CREATEDB/CREATEROLE/REPLICATION/BYPASSRLS; password set."""
        # Only the SCRAM verifier goes to the server: the plain password never shows in its logs.
        verifier = conn.pgconn.encrypt_password(password.encode(), owner.encode(), b"scram-sha-256").decode()
        ident = sql.Identifier(owner)
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s", (owner,)
        ).fetchone()
        if row is None:
            try:
                conn.execute(sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
                ).format(ident, sql.Literal(verifier)))
                return
            except psycopg.errors.DuplicateObject:
                pass  # created concurrently: fall through to ALTER
            row = (False, False, False, False, False)
        wrong = [flag for flag, on in zip(("NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOREPLICATION", "NOBYPASSRLS"), row) if on]
        conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN {} PASSWORD {}").format(
            ident, sql.SQL(" ".join(wrong)), sql.Literal(verifier)))

    @staticmethod
    def _act_as(conn: psycopg.Connection, owner: str) -> None:
        """A non-superuser admin gets what it needs to hand databases to `owner` and change them."""
        # CREATE DATABASE … OWNER needs SET ROLE on the owner, and ALTER/REVOKE on its database need its
        # privileges; since PG16 a CREATEROLE admin holds only ADMIN OPTION on the roles it creates.
        if conn.info.server_version >= 160000:
            can = conn.execute("SELECT pg_has_role(current_user, %s, 'SET') AND pg_has_role(current_user, %s, 'USAGE')",
                               (owner, owner)).fetchone()[0]
            grant = "GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE"
        else:
            can = conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (owner,)).fetchone()[0]
            grant = "GRANT {} TO CURRENT_USER"
        if not can:
            conn.execute(sql.SQL(grant).format(sql.Identifier(owner)))

    @staticmethod
    def _take_over_clone(conn: psycopg.Connection, old: str, new: str) -> None:
        """Give `new` what the template's owner owned in this clone (REASSIGN OWNED), without moving shared objects.

        REASSIGN OWNED also moves databases and tablespaces `old` owns — the template itself included —
        so their owners are put back in the same transaction.
        """
        shared = conn.execute(
            "SELECT 'd', datname FROM pg_database WHERE datdba = %s::regrole "
            "UNION ALL SELECT 't', spcname FROM pg_tablespace WHERE spcowner = %s::regrole",
            (old, old),
        ).fetchall()
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(sql.Identifier(old), sql.Identifier(new)))
        for kind, obj in shared:
            stmt = "ALTER DATABASE {} OWNER TO {}" if kind == "d" else "ALTER TABLESPACE {} OWNER TO {}"
            conn.execute(sql.SQL(stmt).format(sql.Identifier(obj), sql.Identifier(old)))

    def _tool_conninfo(self, dbname: str) -> tuple[str, dict[str, str]]:
        """A conninfo for client tools without the password, and an environment carrying it as PGPASSWORD."""
        params = dict(self._params)
        password = params.pop("password", None)
        params["dbname"] = dbname
        extra = {"PGPASSWORD": password} if password else {}
        return make_conninfo("", **params), pgtools.tool_env(extra)
