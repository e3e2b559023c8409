"""`branchyard server`: run the control plane (API + reconciler), detach it, find it, stop it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .backends.local.processes import pid_exists
from .backends.ports import Machine
from .errors import Conflict, ServerUnavailable
from .names import scrub_credentials
from .settings import Settings

log = logging.getLogger("branchyard.server")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
API_BACKLOG = 2048  # uvicorn's own default backlog: the socket is ours now, bound before uvicorn runs


class ScrubbingFormatter(logging.Formatter):
    """The server log's lines, tracebacks included, with the credentials of any URL in them scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_credentials(super().format(record))


def _token(settings: Settings) -> str:
    """This machine's API token (an admin's: see controller/users.py), created once (mode 0600), kept across
    restarts; deleting the file makes a new one for the same admin at the next start."""
    path = settings.home / "token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def read_server_file(settings: Settings) -> dict | None:
    try:
        return json.loads(settings.server_file.read_text())
    except (OSError, ValueError):
        return None


def status(settings: Settings) -> dict:
    """Whether the control plane runs: url, pid, router port; `running` False when it does not answer."""
    info = read_server_file(settings)
    if not info or not pid_exists(int(info.get("pid", 0))):
        return {"running": False, "home": str(settings.home)}
    import httpx  # here, not at import: every CLI command imports this module for read_server_file

    try:
        ok = httpx.get(f"{info['url']}/api/health", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        ok = False
    return {
        "running": ok,
        "pid": info["pid"],
        "url": info["url"],
        "api_url": info["url"],
        "router_port": info.get("router_port"),
        "domain": info.get("domain"),
        "home": str(settings.home),
        "version": info.get("version"),
    } | ({"public_url": info["public_url"]} if info.get("public_url") else {})


def machine_for(settings: Settings, *, api_port: int | None = None) -> Machine:
    """The backend BRANCHYARD_BACKEND names: this machine (Caddy, processes, embedded PostgreSQL and Redis), or a
    Kubernetes cluster (BRANCHYARD_KUBE_*). `api_port`: the control plane's, which the local edge publishes."""
    if settings.backend == "kubernetes":
        from .backends.kubernetes.machine import kubernetes_machine

        return kubernetes_machine(settings)
    from .backends.local.machine import local_machine

    return local_machine(settings, api_port=api_port)


def run(settings: Settings) -> None:
    """Run in the foreground until SIGTERM/SIGINT. Apps and the router keep running after it exits."""
    import uvicorn

    from . import __version__, isolation
    from .api.app import create_app
    from .controller.core import Controller
    from .store.db import Store

    settings.home.mkdir(parents=True, exist_ok=True)
    lock = open(settings.home / "server.lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict(f"a control plane is already running for {settings.home}") from None
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(ScrubbingFormatter(LOG_FORMAT))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Caddy admin call is noise
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # and per Kubernetes API call (lightkube)
    store = Store(settings.state_db)
    api_socket = _api_socket(settings)  # bound before the router starts: its edge asks the API (TLS) and publishes it
    port = api_socket.getsockname()[1]
    machine = machine_for(settings, api_port=port)
    controller = Controller(settings, store, machine)
    from .github import feedback as github_feedback
    from .github import promotion_pr

    # None without BRANCHYARD_GITHUB_TOKEN
    feedback = github_feedback.start(settings, store, hostname=controller.routes.hostname, redactor=controller.data.redactor)
    promotion_prs = promotion_pr.start(settings, store)
    token = _token(settings)
    admin = controller.users.bootstrap(token)  # the machine's own token is an admin's (controller/users.py)
    try:
        controller.start()
    except BaseException:  # e.g. the router's port is taken: nothing of this start is left that nothing uses
        machine.runtime.release_network_if_unused()
        raise
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(create_app(controller), host=settings.api_host, port=port, log_level="warning", access_log=False,
                       ws="wsproto")  # connect's tunnel (api/routes/tunnel.py): the WebSocket library we depend on
    )
    _write_json_atomic(
        settings.server_file,
        {
            "pid": os.getpid(),
            "url": url,
            "token": token,
            "router_port": settings.http_port,
            "domain": settings.domain,
            "version": __version__,
        } | ({"public_url": settings.control_url} if settings.control_url else {}),
    )
    where = (f"environments on Kubernetes ({settings.kubernetes.namespace_prefix}* namespaces)"
             if settings.backend == "kubernetes" else f"router on :{settings.http_port}")
    log.info("branchyard control plane on %s; %s; this machine's token is %s's", url, where, admin.name)
    enforced = machine.runtime.isolation()  # issue 17: what is not enforced is said once here, and in status/check
    log.log(logging.INFO if enforced.limits and enforced.network else logging.WARNING, isolation.start_line(enforced))
    # uvicorn handles SIGTERM while it serves, then raises it again with the handler it found: make that handler
    # end the process through the `finally` below (without it the default action kills it before any clean-up).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run(sockets=[api_socket])
    finally:
        controller.shutdown()
        if feedback is not None:
            feedback.stop()
        if promotion_prs is not None:
            promotion_prs.stop()
        info = read_server_file(settings)
        if info and info.get("pid") == os.getpid():
            settings.server_file.unlink(missing_ok=True)
        store.close()
        log.info("control plane stopped cleanly")


def _api_socket(settings: Settings) -> socket.socket:
    """The API's listening socket on BRANCHYARD_API_HOST (127.0.0.1), bound now and handed to uvicorn: never a port found free and bound
    later, which another process may take in between. BRANCHYARD_API_PORT; else the port the last start used when it
    is still free, else one the kernel picks (remembered): the router's edge names it (the TLS `ask` endpoint,
    BRANCHYARD_PUBLIC_URL), and a port that changed at every start would make the edge reload its config."""
    if settings.api_port:
        try:
            return _listen(settings.api_port, settings.api_host)
        except OSError:
            raise Conflict(f"BRANCHYARD_API_PORT: port {settings.api_port} on {settings.api_host} is already in use") from None
    remembered = settings.home / "api_port"
    try:
        return _listen(int(remembered.read_text().strip()), settings.api_host)
    except (OSError, ValueError):
        sock = _listen(0, settings.api_host)
        with contextlib.suppress(OSError):
            remembered.write_text(f"{sock.getsockname()[1]}\n")
        return sock


def _listen(port: int, host: str = "127.0.0.1") -> socket.socket:
    return socket.create_server((host, port), backlog=API_BACKLOG)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def detach(settings: Settings, *, timeout: float = 60.0) -> dict:
    """Start `branchyard server` in the background and wait until its API answers."""
    current = status(settings)
    if current["running"]:
        return current
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / "server.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "branchyard.cli.main", "server"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=os.environ | {"BRANCHYARD_HOME": str(settings.home)},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ServerUnavailable(f"the control plane exited at start: {tail[0].removeprefix('error: ')}")
        current = status(settings)
        if current["running"] and current["pid"] == proc.pid:
            return current
        time.sleep(0.1)
    proc.terminate()
    raise ServerUnavailable(f"the control plane did not answer within {timeout:.0f}s; see {log_path}")


def stop(settings: Settings, *, timeout: float = 30.0) -> bool:
    """SIGTERM the control plane and wait for it to exit. False if none was running."""
    info = read_server_file(settings)
    if not info or not pid_exists(int(info.get("pid", 0))):
        settings.server_file.unlink(missing_ok=True)
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_exists(pid):
        time.sleep(0.05)
    if pid_exists(pid):
        os.kill(pid, signal.SIGKILL)
    return True
