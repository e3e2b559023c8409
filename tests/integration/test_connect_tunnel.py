"""`connect`'s tunnel from the CLI's side, against a real uvicorn serving the API (wsproto, as `branchyard server` runs
it) over a stand-in controller that names the server: a command's connections relayed (each over a WebSocket of its
own), its stdin and exit code its own, a tunnel lost mid-way said in one line, refusals and an unreachable server in
one line before the command runs, TLS with the CAs the CLI's client trusts. Then `branchyard connect redis` itself on
the control plane's machine, with a real redis-server: through the tunnel when the connection says `tunnel` (the
Kubernetes backend), straight at the server when not (the local backend).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from api_users import single_token
from conftest import BRANCHYARD, processes_mentioning, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tunnel_fakes import PATH, TOKEN, FakeController, FakeDatabases, app_for, closed_port, upper_server

from branchyard import errors
from branchyard.access import Actor
from branchyard.api.app import create_app
from branchyard.backends.local.redis import RedisServer
from branchyard.cli.client import Client
from branchyard.cli.contexts import Target
from branchyard.cli.tunnel import run_through_tunnel
from branchyard.cli.websocket import Endpoint, connect

pytestmark = pytest.mark.integration

MACHINE_TOKEN = "the-machine-token"


@pytest.fixture()
def server():
    with upper_server() as srv:
        yield srv


class Uvicorn:
    """The app served by uvicorn (wsproto, as `branchyard server` runs it) on a socket bound before it starts."""

    def __init__(self, app, tls: tuple[Path, Path] | None = None) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))  # listening now: connections wait in its backlog
        self.port = self.socket.getsockname()[1]
        cert, key = tls or (None, None)
        config = uvicorn.Config(app, log_level="error", ws="wsproto", ssl_certfile=cert, ssl_keyfile=key)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture()
def served(server) -> Iterator[tuple[Uvicorn, FakeDatabases]]:
    databases = FakeDatabases(server.server_address[1])
    plane = Uvicorn(app_for(databases))
    yield plane, databases
    plane.stop()


def endpoint_of(port: int, token: str = TOKEN, scheme: str = "http") -> Endpoint:
    client = Client(Target("plane", f"{scheme}://127.0.0.1:{port}", token))
    return client.websocket_endpoint(PATH)


# the command psql stands for: connects to the listener, sends its stdin's first line, prints the answer, exits 7
COMMAND = ("import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1])));"
           "s.sendall(sys.stdin.readline().strip().encode()); print('got', s.recv(100).decode(), flush=True); sys.exit(7)")
# `connect`'s part, in a process of its own so that the command inherits a stdin of the test's choosing
DRIVER = """
import os, sys
from branchyard.cli.client import Client
from branchyard.cli.contexts import Target
from branchyard.cli.tunnel import run_through_tunnel
endpoint = Client(Target("plane", sys.argv[1], os.environ["TUNNEL_TEST_TOKEN"])).websocket_endpoint(sys.argv[2])
sys.exit(run_through_tunnel(endpoint, lambda port: [sys.executable, "-c", sys.argv[3], str(port)], dict(os.environ)))
"""


def test_a_commands_connection_goes_through_the_tunnel_with_its_stdin_and_exit_code(served) -> None:
    plane, databases = served
    env = {"PATH": "/usr/bin:/bin", "TUNNEL_TEST_TOKEN": TOKEN}
    done = subprocess.run([sys.executable, "-c", DRIVER, f"http://127.0.0.1:{plane.port}", PATH, COMMAND], env=env,
                          input="select 1\n", capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (7, "got SELECT 1\n", "")
    assert databases.calls == [("target", "yoto", "staging", "postgres"),
                               ("opened", "yoto", "staging", "postgres", "tester")]


def test_each_connection_of_the_command_gets_a_tunnel_of_its_own(served) -> None:
    plane, databases = served
    both = ("import socket, sys; port = int(sys.argv[1]);"
            "a = socket.create_connection(('127.0.0.1', port)); b = socket.create_connection(('127.0.0.1', port));"
            "a.sendall(b'first'); b.sendall(b'second'); print(b.recv(100).decode(), a.recv(100).decode(), flush=True)")
    done = subprocess.run([sys.executable, "-c", DRIVER, f"http://127.0.0.1:{plane.port}", PATH, both],
                          env={"PATH": "/usr/bin:/bin", "TUNNEL_TEST_TOKEN": TOKEN}, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stdout) == (0, "SECOND FIRST\n"), done.stderr
    assert [c[0] for c in databases.calls] == ["target", "opened", "target", "opened"]


def test_a_tunnel_closed_with_an_error_is_one_line_and_the_command_goes_on(served) -> None:
    plane, databases = served
    done = subprocess.run([sys.executable, "-c", DRIVER, f"http://127.0.0.1:{plane.port}", PATH, COMMAND],
                          env={"PATH": "/usr/bin:/bin", "TUNNEL_TEST_TOKEN": TOKEN}, input="reset\n",
                          capture_output=True, text=True, timeout=60)
    port = databases.port
    assert (done.returncode, done.stdout) == (7, "got \n")  # the command saw its connection end, and decided
    assert done.stderr == f"error: connect: lost staging's postgres at 127.0.0.1:{port}: [Errno 104] Connection reset by peer\n"


@pytest.mark.parametrize(("token", "error"), [("wrong", errors.Unauthorized), (None, errors.Forbidden)])
def test_a_refusal_is_raised_before_the_command_runs(server, tmp_path: Path, token, error) -> None:
    databases = FakeDatabases(server.server_address[1])
    plane = Uvicorn(app_for(databases, role="viewer"))
    marker = tmp_path / "ran"

    def command(port: int) -> list[str]:
        marker.write_text("ran")
        return [sys.executable, "-c", "pass"]

    try:
        with pytest.raises(error) as refused:
            run_through_tunnel(endpoint_of(plane.port, token or TOKEN), command, {})
    finally:
        plane.stop()
    assert "\n" not in str(refused.value) and not marker.exists()
    if error is errors.Forbidden:
        assert "permission 'shell' needs role member; tester is viewer" in str(refused.value)
    assert databases.calls == [] and server.accepted == []


def test_an_unreachable_server_is_raised_in_one_line_before_the_command_runs(tmp_path: Path) -> None:
    port = closed_port()
    plane = Uvicorn(app_for(FakeDatabases(port)))
    try:
        with pytest.raises(errors.BranchyardError) as refused:
            run_through_tunnel(endpoint_of(plane.port), lambda p: [sys.executable, "-c", "pass"], {})
    finally:
        plane.stop()
    assert str(refused.value).startswith(f"connect: the control plane cannot reach staging's postgres at 127.0.0.1:{port}")


def test_a_control_plane_that_is_not_there_is_one_line() -> None:
    port = closed_port()
    with pytest.raises(errors.ServerUnavailable) as refused:
        run_through_tunnel(endpoint_of(port), lambda p: [sys.executable, "-c", "pass"], {})
    assert str(refused.value).startswith(f"cannot reach the control plane at http://127.0.0.1:{port}: ")


# --- TLS: the CLI's client's trust (the system's CAs, or SSL_CERT_FILE's) -------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "branchyard test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_over_tls_the_tunnel_trusts_what_the_clis_client_trusts(server, tmp_path: Path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    databases = FakeDatabases(server.server_address[1])
    plane = Uvicorn(app_for(databases), tls=(cert, key))
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(errors.ServerUnavailable) as untrusted:  # not a CA of the system's
            asyncio.run(connect(endpoint_of(plane.port, scheme="https")))
        assert "certificate verify failed" in str(untrusted.value) and databases.calls == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as the CLI's HTTP requests take it
        assert Client(Target("plane", f"https://127.0.0.1:{plane.port}", TOKEN)).get("/api/health")["ok"] is True

        async def roundtrip() -> bytes | None:
            websocket = await connect(endpoint_of(plane.port, scheme="https"))
            await websocket.send(b"over tls")
            try:
                return await websocket.receive()
            finally:
                await websocket.close()

        assert asyncio.run(roundtrip()) == b"OVER TLS"
    finally:
        plane.stop()
    assert [c[0] for c in databases.calls] == ["target", "opened"]


# --- `branchyard connect` on the control plane's machine ---------------------------------------------------------


class RedisDatabases:
    """The controller's side: the environment's Redis and whether only the control plane reaches it."""

    def __init__(self, variables: dict[str, str], tunnel: bool) -> None:
        self.variables, self.tunnel = variables, tunnel
        self.calls: list[str] = []

    def connection(self, project: str, env: str, kind: str) -> dict:
        self.calls.append("connection")
        return self.variables | {"tunnel": self.tunnel}

    def tunnel_target(self, project: str, env: str, kind: str) -> tuple[str, int]:
        self.calls.append("target")
        return self.variables["REDISHOST"], int(self.variables["REDISPORT"])

    def tunnel_opened(self, project: str, env: str, kind: str, *, actor: Actor) -> None:
        self.calls.append(f"opened by {actor.name}")


def running(pid: int, name: str) -> int | None:
    """`pid` itself when it runs `name` (the CLI exec'd it), else a live child of it running `name`, if any."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm, rest = (proc / "stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        state, ppid = rest.split()[:2]
        if pid in (int(proc.name), int(ppid)) and comm.split("(", 1)[1] == name and state != "Z":
            return int(proc.name)
    return None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[dict[str, str]]:
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    info = server.ensure_running()
    yield {"REDISHOST": info.host, "REDISPORT": str(info.port), "REDISPASSWORD": info.password}
    server.stop()


@pytest.mark.parametrize("tunnel", [True, False])
def test_connect_on_the_machine_tunnels_when_the_connection_says_so(redis_server, tmp_path: Path, tunnel: bool) -> None:
    databases = RedisDatabases(redis_server, tunnel)
    plane = Uvicorn(create_app(FakeController(databases), gatekeeper=single_token(MACHINE_TOKEN), dashboard=False))
    home = tmp_path / "home"
    home.mkdir()  # the machine's own control plane: its server.json
    (home / "server.json").write_text(json.dumps({"pid": os.getpid(), "url": f"http://127.0.0.1:{plane.port}",
                                                  "token": MACHINE_TOKEN}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRANCHYARD_", "XDG_"))}
    env |= {"BRANCHYARD_HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    try:
        done = subprocess.Popen([*BRANCHYARD, "connect", "redis", "-p", "yoto", "-e", "staging"], cwd=tmp_path, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: running(done.pid, "redis-cli"), timeout=30)  # it waits for stdin meanwhile
        in_argv = processes_mentioning(redis_server["REDISPASSWORD"], cwd=False)
        out, err = done.communicate("PING\nSET tunnel yes\nGET tunnel\n", timeout=60)
    finally:
        plane.stop()
    assert (done.returncode, out, err) == (0, "PONG\nOK\nyes\n", "")
    assert in_argv == []  # the password is in redis-cli's environment (REDISCLI_AUTH), never a command line
    assert databases.calls == (["connection", "target", "opened by tester"] if tunnel else ["connection"])
