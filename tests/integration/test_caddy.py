"""The router against a real Caddy: real processes, real HTTP on loopback, free ports, temp dirs.

Two Caddys per router: the edge on the public port, the routes tier behind it on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from branchyard.backends.local.caddy import (
    EdgeTLS,
    Route,
    Router,
    _bind_public,
    caddy_gomaxprocs,
    find_caddy,
    parse_routes,
    render_config,
    render_edge_config,
)
from branchyard.errors import BackendError, BadInput
from branchyard.settings import Acme

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def processes_mentioning(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains `text` (our temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text.encode() in argv and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def get(port: int, host: str, path: str = "/") -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host})


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


class _NameHandler(BaseHTTPRequestHandler):
    """GET: the server's name. POST: `<name> <sha256 of the body>`. /headers: the request headers as JSON."""

    def _send(self, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/headers":
            self._send(json.dumps({k: self.headers.get_all(k) for k in self.headers}).encode(), "application/json")
        else:
            self._send(self.server.name.encode())  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(f"{self.server.name} {digest(body)}".encode())  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: with 16 clients its accept queue overflows and it resets
    # connections, which the router rightly does not retry for a POST. Real app servers use ~2048.
    request_queue_size = 1024


@pytest.fixture
def upstream() -> Iterator[Callable[[str], str]]:
    """Factory: a tiny HTTP server on loopback answering its own name; returns its host:port."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> str:
        server = _Server(("127.0.0.1", 0), _NameHandler)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A router home; afterwards, kill any process still running from it (only ours: matched by path)."""
    path = tmp_path / "caddy"
    yield path
    for pid in processes_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def make_router(home: Path) -> Iterator[Callable[..., Router]]:
    """Factory for Routers on `home` with a free http port; every one is stopped afterwards."""
    made: list[Router] = []
    http_port = free_port()

    def make(**kwargs: object) -> Router:
        opts: dict[str, object] = {"home": home, "http_port": http_port, "admin_port": 0, **kwargs}
        router = Router(**opts)  # type: ignore[arg-type]
        made.append(router)
        return router

    yield make
    for router in made:
        try:
            router.stop()
        except BackendError:
            pass


@pytest.fixture
def router(make_router: Callable[..., Router]) -> Router:
    r = make_router()
    r.ensure_running()
    return r


def server_starts(log_file: Path) -> int:
    """How many times a Caddy started its HTTP server: once at start, once per config load."""
    text = log_file.read_text() if log_file.exists() else ""
    return sum(1 for line in text.splitlines() if '"msg":"server running"' in line)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def listen_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is little-endian
                found.add(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words))
    return found


# ------------------------------------------------------------------------- pure: render_*_config


def test_render_config_for_two_routes() -> None:
    routes = [
        Route("yoto.localhost", "yoto", "production", ("127.0.0.1:41234", "127.0.0.1:41235")),
        Route("yoto-staging.localhost", "yoto", "staging", (), "sleeping"),
    ]
    storage = Path("/nonexistent/branchyard/storage")
    config = render_config(routes, routes_port=8080, admin_port=2999, storage_dir=storage)

    assert config == render_config(routes, routes_port=8080, admin_port=2999, storage_dir=storage)
    assert config == render_config(list(reversed(routes)), routes_port=8080, admin_port=2999, storage_dir=storage)
    assert not storage.exists()
    json.dumps(config)  # serialisable as is

    assert config["admin"] == {"listen": "127.0.0.1:2999", "config": {"persist": False}}
    assert config["storage"] == {"module": "file_system", "root": str(storage)}
    assert config["apps"]["pki"] == {"certificate_authorities": {"local": {"install_trust": False}}}
    assert config["apps"]["http"]["http_port"] == 8080
    assert "logging" not in config
    assert render_config([], routes_port=8080, admin_port=1, storage_dir=storage, listen="fd/3")["apps"]["http"][
        "servers"
    ]["branchyard"]["listen"] == ["fd/3"]
    server = config["apps"]["http"]["servers"]["branchyard"]
    assert server["@id"] == "branchyard-server"
    assert server["listen"] == ["127.0.0.1:8080"]  # loopback only: clients come through the edge
    assert server["automatic_https"] == {"disable": True}
    assert server["trusted_proxies"] == {"source": "static", "ranges": ["127.0.0.1/32", "::1/128"]}
    assert server["client_ip_headers"] == ["X-Forwarded-For"]

    staging, production, not_found = server["routes"]  # sorted by host; catch-all last
    assert production == {
        "@id": "branchyard-route-yoto.production@yoto.localhost",
        "match": [{"host": ["yoto.localhost"]}],
        "handle": [
            {
                "handler": "vars",
                "branchyard_project": "yoto",
                "branchyard_environment": "production",
                "branchyard_state": "serving",
            },
            {
                "handler": "reverse_proxy",
                "upstreams": [{"dial": "127.0.0.1:41234"}, {"dial": "127.0.0.1:41235"}],
                "load_balancing": {
                    "selection_policy": {"policy": "round_robin"},
                    "try_duration": "5s",
                    "try_interval": "100ms",
                },
                "headers": {
                    "request": {"set": {"X-Forwarded-For": ["{http.vars.client_ip}"]}},
                    "response": {"set": {"X-Branchyard-Environment": ["production"]}},
                },
            },
        ],
        "terminal": True,
    }
    assert staging["@id"] == "branchyard-route-yoto.staging@yoto-staging.localhost"
    assert staging["match"] == [{"host": ["yoto-staging.localhost"]}]
    page = staging["handle"][1]
    assert page["handler"] == "static_response"
    assert page["status_code"] == 503
    assert page["headers"]["Retry-After"] == ["30"]
    assert page["headers"]["X-Branchyard-Environment"] == ["staging"]
    assert "Environment &#39;staging&#39; of yoto is sleeping" in page["body"]
    assert "branchyard up -e staging" in page["body"]
    assert "match" not in not_found
    assert not_found["handle"][0]["status_code"] == 404
    assert "{http.request.host}" in not_found["handle"][0]["body"]

    assert parse_routes(config) == sorted(routes, key=lambda r: r.host)
    assert parse_routes({"apps": {}}) == []


def test_render_edge_config_forwards_everything_to_the_routes_tier() -> None:
    storage = Path("/nonexistent/branchyard/edge")
    config = render_edge_config(http_port=8080, routes_port=41000, admin_port=2998, storage_dir=storage)

    assert config == render_edge_config(http_port=8080, routes_port=41000, admin_port=2998, storage_dir=storage)
    assert not storage.exists()
    json.dumps(config)
    assert config["admin"] == {"listen": "127.0.0.1:2998", "config": {"persist": False}}
    assert config["storage"] == {"module": "file_system", "root": str(storage)}
    assert config["apps"]["http"]["http_port"] == 8080
    assert config["apps"]["pki"] == {"certificate_authorities": {"local": {"install_trust": False}}}
    server = config["apps"]["http"]["servers"]["branchyard"]
    assert server["@id"] == "branchyard-edge"
    assert server["listen"] == [":8080"]
    assert "trusted_proxies" not in server  # clients cannot set the X-Forwarded-For the routes tier trusts
    assert server["routes"] == [
        {
            "@id": "branchyard-edge-proxy",
            "handle": [
                {
                    "handler": "reverse_proxy",
                    "upstreams": [{"dial": "127.0.0.1:41000"}],
                    "request_buffers": 1048576,
                    "load_balancing": {
                        "try_duration": "5s",
                        "try_interval": "50ms",
                        "retry_match": [
                            {"method": ["GET", "HEAD", "OPTIONS", "TRACE", "DELETE"]},
                            {"header_regexp": {"Content-Length": {"pattern": "^[0-9]{1,6}$"}}},
                        ],
                    },
                }
            ],
            "terminal": True,
        }
    ]
    (on_error,) = server["errors"]["routes"]
    page = on_error["handle"][0]
    assert page["status_code"] == "{http.error.status_code}"
    assert "branchyard router: routes tier unavailable" in page["body"]
    assert render_edge_config(http_port=80, routes_port=1, admin_port=2, storage_dir=storage, listen="fd/3")["apps"][
        "http"
    ]["servers"]["branchyard"]["listen"] == ["fd/3"]
    assert parse_routes(config) == []  # the edge holds no routes


def test_render_config_with_log_file_rolls_it_without_admin_requests() -> None:
    for config in (
        render_config([], routes_port=80, admin_port=2019, storage_dir=Path("/s"), log_file=Path("/l/caddy.log")),
        render_edge_config(http_port=80, routes_port=81, admin_port=2019, storage_dir=Path("/s"), log_file=Path("/l/caddy.log")),
    ):
        default = config["logging"]["logs"]["default"]
        assert default["writer"] == {"output": "file", "filename": "/l/caddy.log", "roll_size_mb": 10, "roll_keep": 3}
        assert default["exclude"] == ["admin.api"]  # the control plane polls the admin API every second
    routes = render_config([], routes_port=80, admin_port=2019, storage_dir=Path("/s"))["apps"]["http"]["servers"][
        "branchyard"
    ]["routes"]
    assert [r["@id"] for r in routes] == ["branchyard-not-found"]


def test_render_config_refuses_a_host_claimed_twice() -> None:
    a = Route("same.localhost", "yoto", "production", ("127.0.0.1:1000",))
    b = Route("same.localhost", "yoto", "staging", ("127.0.0.1:1001",))
    with pytest.raises(BadInput, match="host 'same.localhost' is claimed by both yoto/production and yoto/staging"):
        render_config([a, b], routes_port=8080, admin_port=2019, storage_dir=Path("/s"))


def test_project_and_environment_with_dashes_get_distinct_ids() -> None:
    a = Route("a.localhost", "my-app", "prod", ("127.0.0.1:1000",))
    b = Route("b.localhost", "my", "app-prod", ("127.0.0.1:1001",))
    assert a.id != b.id
    render_config([a, b], routes_port=8080, admin_port=2019, storage_dir=Path("/s"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "Yoto.localhost"}, "not a valid lowercase hostname"),
        ({"host": "yoto.localhost:8080"}, "not a valid lowercase hostname"),
        ({"project": "Yoto"}, "project 'Yoto' is not a slug"),
        ({"environment": "pr{1}"}, "environment 'pr{1}' is not a slug"),
        ({"state": "asleep"}, "state must be one of serving, sleeping, unavailable"),
        ({"upstreams": ()}, "a serving route needs at least one upstream"),
        ({"upstreams": ("127.0.0.1:1",), "state": "sleeping"}, "a sleeping route has no upstreams"),
        ({"upstreams": ("localhost",)}, "upstream 'localhost' is not host:port"),
        ({"upstreams": ("127.0.0.1:70000",)}, "upstream '127.0.0.1:70000' is not host:port"),
        ({"upstreams": ("127.0.0.1:1", "127.0.0.1:1")}, "duplicate upstreams"),
    ],
)
def test_route_refuses_invalid_values(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "host": "yoto.localhost",
        "project": "yoto",
        "environment": "production",
        "upstreams": ("127.0.0.1:41234",),
        **kwargs,
    }
    with pytest.raises(BadInput, match=message.replace("{", r"\{").replace("}", r"\}")):
        Route(**fields)  # type: ignore[arg-type]


def test_find_caddy_finds_the_wheel_binary() -> None:
    assert os.access(find_caddy(), os.X_OK)


# ----------------------------------------------------------------------------------- real Caddy


def test_two_tiers_edge_on_the_public_port_routes_on_loopback(router: Router) -> None:
    pids = router.pids()
    assert set(pids) == {"edge", "routes"}
    assert None not in pids.values() and pids["edge"] != pids["routes"]
    assert router.pid() == pids["routes"]
    assert processes_mentioning(str(router.edge_config_file)) == [pids["edge"]]
    assert processes_mentioning(str(router.config_file)) == [pids["routes"]]
    assert len({router.http_port, router.routes_port, router.admin_port, router.edge_admin_port}) == 4
    assert all(listening(p) for p in (router.http_port, router.routes_port, router.admin_port, router.edge_admin_port))
    assert listen_addresses(router.routes_port) == {"127.0.0.1"}  # not reachable from outside the machine
    assert listen_addresses(router.http_port) in ({"::"}, {"0.0.0.0"})
    assert json.loads(router.admin_file.read_text()) == {
        "admin_port": router.admin_port,
        "edge_admin_port": router.edge_admin_port,
        "routes_port": router.routes_port,
    }


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)


def test_each_tier_gets_half_the_cpus_as_gomaxprocs(make_router, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tiers share the machine with the apps: each runs with GOMAXPROCS = CPUs // 2, at least 1."""
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    expected = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert caddy_gomaxprocs() == int(expected)
    router = make_router()
    router.ensure_running()
    for tier, pid in router.pids().items():
        assert process_env(pid).get("GOMAXPROCS") == expected, tier


def test_gomaxprocs_in_our_environment_wins(make_router, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMAXPROCS", "3")
    router = make_router()
    router.ensure_running()
    for tier, pid in router.pids().items():
        assert process_env(pid).get("GOMAXPROCS") == "3", tier


def test_round_robin_across_upstreams_with_environment_header(router: Router, upstream) -> None:
    a, b = upstream("alpha"), upstream("beta")
    router.apply([Route("yoto.localhost", "yoto", "production", (a, b))])

    responses = [get(router.http_port, "yoto.localhost") for _ in range(6)]
    bodies = [r.text for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert set(bodies) == {"alpha", "beta"}
    assert all(x != y for x, y in zip(bodies, bodies[1:])), bodies  # strictly alternating
    assert all(r.headers["X-Branchyard-Environment"] == "production" for r in responses)


def test_apply_switches_atomically_is_idempotent_and_reads_back(router: Router, upstream) -> None:
    a, b = upstream("alpha"), upstream("beta")
    first = [Route("yoto.localhost", "yoto", "production", (a,))]
    second = [
        Route("yoto.localhost", "yoto", "production", (b,)),
        Route("yoto-staging.localhost", "yoto", "staging", (), "unavailable"),
    ]
    edge_starts = server_starts(router.edge_log_file)

    assert router.apply(first) is True
    assert router.routes() == first
    assert get(router.http_port, "yoto.localhost").text == "alpha"

    assert router.apply(second) is True
    assert router.routes() == sorted(second, key=lambda r: r.host)
    assert get(router.http_port, "yoto.localhost").text == "beta"
    unavailable = get(router.http_port, "yoto-staging.localhost")
    assert unavailable.status_code == 503
    assert "Environment &#39;staging&#39; of yoto is not available yet" in unavailable.text
    assert unavailable.headers["Retry-After"] == "10"

    loads = server_starts(router.log_file)
    assert router.apply(list(reversed(second))) is False  # same routes, other order: no call at all
    assert server_starts(router.log_file) == loads
    assert router.routes() == sorted(second, key=lambda r: r.host)

    assert router.apply([]) is True
    assert router.routes() == []
    assert get(router.http_port, "yoto.localhost").status_code == 404
    assert server_starts(router.edge_log_file) == edge_starts  # the edge never reloads


def test_sleeping_unknown_host_and_host_with_port(router: Router, upstream) -> None:
    router.apply(
        [
            Route("yoto.localhost", "yoto", "production", (upstream("alpha"),)),
            Route("yoto-staging.localhost", "yoto", "staging", (), "sleeping"),
        ]
    )
    port = router.http_port

    with_port = get(port, f"yoto.localhost:{port}")
    assert with_port.status_code == 200
    assert with_port.text == "alpha"

    sleeping = get(port, f"yoto-staging.localhost:{port}")
    assert sleeping.status_code == 503
    assert sleeping.headers["Retry-After"] == "30"
    assert sleeping.headers["Content-Type"] == "text/html; charset=utf-8"
    assert sleeping.headers["X-Branchyard-Environment"] == "staging"
    assert "Environment &#39;staging&#39; of yoto is sleeping" in sleeping.text
    assert "<code>branchyard up -e staging</code>" in sleeping.text
    assert "\\{" not in sleeping.text and "body{font" in sleeping.text  # CSS braces survive Caddy

    unknown = get(port, f"nothing-here.localhost:{port}", "/some/path")
    assert unknown.status_code == 404
    assert "No branchyard environment at host <code>nothing-here.localhost</code>" in unknown.text
    assert "X-Branchyard-Environment" not in unknown.headers


def test_upstream_sees_host_and_the_real_client_address(router: Router, upstream) -> None:
    """Through both tiers the app sees what one proxy would send: Host as given, X-Forwarded-For = client.

    The client connects from 127.0.0.2 so that it differs from the edge's address (127.0.0.1), and
    sends a forged X-Forwarded-For, which the edge must drop.
    """
    router.apply([Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))])
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        resp = client.get(
            f"http://127.0.0.1:{router.http_port}/headers",
            headers={"Host": f"yoto.localhost:{router.http_port}", "X-Forwarded-For": "203.0.113.9"},
        )
    assert resp.status_code == 200
    seen = resp.json()
    assert seen["Host"] == [f"yoto.localhost:{router.http_port}"]
    assert seen["X-Forwarded-For"] == ["127.0.0.2"]
    assert seen["X-Forwarded-Host"] == [f"yoto.localhost:{router.http_port}"]
    assert seen["X-Forwarded-Proto"] == ["http"]


def test_dead_upstream_gets_an_error_page_not_an_empty_body(router: Router) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.apply([Route("yoto.localhost", "yoto", "production", (dead,))])
    started = time.monotonic()
    resp = get(router.http_port, "yoto.localhost")
    assert resp.status_code == 502
    assert "502 Bad Gateway" in resp.text
    assert "did not answer" in resp.text  # the routes tier's page, passed through by the edge
    assert time.monotonic() - started >= 4.5  # retried for lb_try_duration before giving up


def test_retries_another_upstream_when_one_is_down(router: Router, upstream) -> None:
    alive_upstream = upstream("alpha")
    dead = f"127.0.0.1:{free_port()}"
    router.apply([Route("yoto.localhost", "yoto", "production", (dead, alive_upstream))])
    for _ in range(4):
        resp = get(router.http_port, "yoto.localhost")
        assert (resp.status_code, resp.text) == (200, "alpha")


@pytest.mark.parametrize("mode", ["keep-alive", "connection-close", "post"])
def test_no_failed_request_while_routes_switch(router: Router, upstream, mode: str) -> None:
    """16 clients hammer the router while the upstreams change on every apply: not one request fails.

    No retries in the client. Every apply reloads the routes tier, which closes the connections it
    holds; the edge retries those, so no client ever sees it. Modes: keep-alive clients, a new
    connection per request (Connection: close), and keep-alive POSTs whose body must arrive intact.
    """
    a, b = upstream("alpha"), upstream("beta")
    sets = [
        [Route("yoto.localhost", "yoto", "production", (a,))],
        [Route("yoto.localhost", "yoto", "production", (b,))],
        [Route("yoto.localhost", "yoto", "production", (a, b))],
    ]
    router.apply(sets[0])
    failures: Counter[str] = Counter()
    seen: set[str] = set()
    served = 0
    lock = threading.Lock()
    stop = threading.Event()
    url = f"http://127.0.0.1:{router.http_port}/"

    def hammer(worker: int) -> None:
        nonlocal served
        headers = {"Host": "yoto.localhost"}
        if mode == "connection-close":
            headers["Connection"] = "close"
        n = 0
        with httpx.Client(trust_env=False, timeout=15) as client:
            while not stop.is_set():
                n += 1
                body = f"{worker}:{n}:".encode() * (1 + n % 50)
                try:
                    if mode == "post":
                        resp = client.post(url, headers=headers, content=body)
                    else:
                        resp = client.get(url, headers=headers)
                except httpx.HTTPError as exc:
                    with lock:
                        failures[repr(exc)] += 1
                    continue
                name, _, echoed = resp.text.partition(" ")
                with lock:
                    if resp.status_code != 200 or name not in ("alpha", "beta"):
                        page = resp.text.partition("<h1>")[2].partition("</h1>")[0] or resp.text[:60]
                        failures[f"HTTP {resp.status_code} {page!r}"] += 1
                    elif mode == "post" and echoed != digest(body):
                        failures["POST body changed on the way"] += 1
                    seen.add(name)
                    served += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    reloads = 0
    try:
        time.sleep(0.3)
        for i in range(36):
            reloads += router.apply(sets[(i + 1) % 3])
            time.sleep(0.08)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\n{mode}: {served} requests, {reloads} reloads, failures: {dict(failures)}")
    assert reloads == 36
    assert dict(failures) == {}
    assert seen == {"alpha", "beta"}
    assert served > 300


def test_killed_routes_tier_comes_back_with_its_routes_and_the_edge_untouched(router: Router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    router.apply([route])
    before = router.pids()
    edge_starts = server_starts(router.edge_log_file)
    os.kill(before["routes"], signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_until(lambda: not listening(router.routes_port))

    # A request arriving meanwhile waits at the edge (it keeps dialling) instead of failing.
    waiting: list[httpx.Response | Exception] = []

    def request() -> None:
        try:
            waiting.append(get(router.http_port, "yoto.localhost"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            waiting.append(exc)

    client = threading.Thread(target=request)
    client.start()
    time.sleep(0.3)
    router.ensure_running()
    client.join()

    after = router.pids()
    assert after["edge"] == before["edge"]
    assert after["routes"] not in (None, before["routes"])
    assert server_starts(router.edge_log_file) == edge_starts  # not restarted, not reloaded
    assert router.routes() == [route]
    assert [(r.status_code, r.text) for r in waiting if isinstance(r, httpx.Response)] == [(200, "alpha")], waiting
    assert get(router.http_port, "yoto.localhost").text == "alpha"


def test_killed_edge_comes_back_without_touching_the_routes_tier(router: Router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    router.apply([route])
    before = router.pids()
    loads = server_starts(router.log_file)
    os.kill(before["edge"], signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_until(lambda: not listening(router.http_port))

    router.ensure_running()
    after = router.pids()
    assert after["routes"] == before["routes"]
    assert after["edge"] not in (None, before["edge"])
    assert server_starts(router.log_file) == loads  # the routes tier was not reloaded
    assert get(router.http_port, "yoto.localhost").text == "alpha"


def test_ensure_running_when_both_are_fine_changes_nothing(router: Router, upstream) -> None:
    router.apply([Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))])
    pids = router.pids()
    starts = server_starts(router.log_file), server_starts(router.edge_log_file)
    for _ in range(20):
        router.ensure_running()
    assert router.pids() == pids
    assert (server_starts(router.log_file), server_starts(router.edge_log_file)) == starts


def _count_admin_gets(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the admin GETs every Router makes from now on, by path."""
    from branchyard.backends.local import caddy

    calls: Counter[str] = Counter()
    real = caddy._Admin.probe

    def probe(self, path: str = "/config/", timeout: float = caddy.PROBE_TIMEOUT):  # noqa: ANN001, ANN202
        calls[path] += 1
        return real(self, path, timeout)

    monkeypatch.setattr(caddy._Admin, "probe", probe)
    return calls


def test_the_healthy_path_asks_the_admin_apis_only_every_few_seconds(router: Router, upstream,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle control plane reconciles every second: between admin checks a live pid of each tier is enough,
    and the same routes seen served a moment ago need no GET of the whole config."""
    from branchyard.backends.local import caddy

    routes = [Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))]
    router.apply(routes)
    calls = _count_admin_gets(monkeypatch)
    for _ in range(20):
        router.ensure_running()
        assert router.apply(list(routes)) is False
    assert sum(calls.values()) == 0, calls

    monkeypatch.setattr(caddy, "PROBE_EVERY", 0.0)
    monkeypatch.setattr(caddy, "REVERIFY_EVERY", 0.0)
    router.ensure_running()
    assert router.apply(routes) is False
    assert calls["/config/storage"] == 2 and calls["/config/"] == 1, calls  # one check of each tier, one read back


def test_apply_repairs_a_routes_config_changed_behind_its_back(router: Router, upstream,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from branchyard.backends.local import caddy

    routes = [Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))]
    router.apply(routes)
    drifted = json.loads(router.config_file.read_text())
    drifted["apps"]["http"]["servers"]["branchyard"]["routes"] = drifted["apps"]["http"]["servers"]["branchyard"]["routes"][-1:]
    assert httpx.post(f"{router.admin_url}/load", json=drifted, trust_env=False, timeout=10).status_code == 200
    assert get(router.http_port, "yoto.localhost").status_code == 404

    monkeypatch.setattr(caddy, "REVERIFY_EVERY", 0.0)  # the next re-read is due (every 30 s by default)
    assert router.apply(routes) is True
    assert get(router.http_port, "yoto.localhost").text == "alpha"


def test_a_restarted_routes_tier_is_read_again_at_once(router: Router, upstream) -> None:
    """What apply saw served belongs to one routes tier process: a new one is asked again, whatever the time."""
    routes = [Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))]
    router.apply(routes)
    os.kill(router.pids()["routes"], signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_until(lambda: not listening(router.routes_port))
    saved = json.loads(router.config_file.read_text())  # the new process comes up without the route
    saved["apps"]["http"]["servers"]["branchyard"]["routes"] = saved["apps"]["http"]["servers"]["branchyard"]["routes"][-1:]
    router.config_file.write_text(json.dumps(saved))
    router.ensure_running()
    assert get(router.http_port, "yoto.localhost").status_code == 404
    assert router.apply(routes) is True
    assert get(router.http_port, "yoto.localhost").text == "alpha"


def test_edge_answers_a_502_page_while_the_routes_tier_is_down(router: Router) -> None:
    os.kill(router.pids()["routes"], signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_until(lambda: not listening(router.routes_port))
    started = time.monotonic()
    resp = get(router.http_port, "yoto.localhost")
    assert time.monotonic() - started >= 4.5  # kept trying for try_duration first
    assert resp.status_code == 502
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "branchyard router: routes tier unavailable" in resp.text
    assert "<code>yoto.localhost</code>" in resp.text


def test_routes_tier_moves_when_its_port_was_taken_and_the_edge_follows(router: Router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    router.apply([route])
    before = router.pids()
    old_port = router.routes_port
    os.kill(before["routes"], signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_until(lambda: not listening(old_port))
    with socket.socket() as squatter:  # someone else took the port meanwhile
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        router.ensure_running()
        assert router.routes_port != old_port
        assert router.pids()["edge"] == before["edge"]  # re-pointed through its admin API, not restarted
        assert get(router.http_port, "yoto.localhost").text == "alpha"
        assert json.loads(router.admin_file.read_text())["routes_port"] == router.routes_port


def test_a_new_router_object_adopts_both_running_tiers(make_router, upstream) -> None:
    first = make_router()
    first.ensure_running()
    pids = first.pids()
    assert None not in pids.values()
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first.apply([route])

    second = make_router()  # same home, admin_port=0 → the remembered ports
    assert (second.admin_url, second.edge_admin_url, second.routes_port) == (
        first.admin_url,
        first.edge_admin_url,
        first.routes_port,
    )
    second.ensure_running()
    assert second.pids() == pids
    assert processes_mentioning(str(second.config_file)) == [pids["routes"]]  # no second caddy
    assert processes_mentioning(str(second.edge_config_file)) == [pids["edge"]]
    assert second.routes() == [route]
    assert second.apply([route]) is False
    assert get(second.http_port, "yoto.localhost").text == "alpha"


def test_caddy_survives_its_owner_process_exiting(make_router, home: Path, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    http_port = free_port()
    owner = (
        "import json\n"
        "from pathlib import Path\n"
        "from branchyard.backends.local.caddy import Route, Router\n"
        f"r = Router(home=Path({str(home)!r}), http_port={http_port}, admin_port=0)\n"
        "r.ensure_running()\n"
        f"r.apply([Route('yoto.localhost', 'yoto', 'production', ({route.upstreams[0]!r},))])\n"
        "print(json.dumps(r.pids()))\n"
    )
    done = subprocess.run([sys.executable, "-c", owner], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pids = json.loads(done.stdout)

    successor = make_router(http_port=http_port)
    successor.ensure_running()
    assert successor.pids() == pids
    assert successor.routes() == [route]
    assert get(http_port, "yoto.localhost").text == "alpha"
    successor.stop()  # not our children any more: stopped through the admin APIs and the pid files
    assert processes_mentioning(str(home)) == []
    assert not listening(http_port)


def test_a_changed_http_port_restarts_only_the_edge(make_router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first = make_router()
    first.ensure_running()
    first.apply([route])
    old, old_port = first.pids(), first.http_port
    loads = server_starts(first.log_file)

    moved = make_router(http_port=free_port())
    moved.ensure_running()
    assert moved.pids()["routes"] == old["routes"]
    assert moved.pids()["edge"] not in (None, old["edge"])
    assert server_starts(moved.log_file) == loads
    assert not listening(old_port)
    assert get(moved.http_port, "yoto.localhost").text == "alpha"


def test_a_single_caddy_from_before_the_two_tiers_is_replaced(make_router, home: Path, upstream) -> None:
    """An older branchyard ran one Caddy on the public port; the new router takes over its routes."""
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    old = make_router()
    tier = old._routes
    listener = _bind_public(old.http_port)
    try:
        config = render_config(
            [route],
            routes_port=old.http_port,  # that Caddy served the public port itself
            admin_port=old.admin_port,
            storage_dir=tier.storage_dir,
            log_file=tier.log_file,
            listen="fd/3",
        )
        legacy_pid = tier.start(find_caddy(), config, [listener])
    finally:
        listener.close()
    (home / "admin.json").write_text(json.dumps({"admin_port": old.admin_port}))
    assert get(old.http_port, "yoto.localhost").text == "alpha"

    router = make_router()
    router.ensure_running()
    assert legacy_pid not in router.pids().values()
    assert legacy_pid not in processes_mentioning(str(home))
    assert router.routes() == [route]
    assert get(router.http_port, "yoto.localhost").text == "alpha"


def test_caddy_outlives_its_owner_process_group(router: Router) -> None:
    for pid in router.pids().values():
        assert pid is not None
        assert os.getpgid(pid) != os.getpgid(0)
        assert os.getsid(pid) == pid  # own session: no Ctrl-C / SIGHUP from our terminal


def test_restarted_router_serves_the_last_applied_routes(make_router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first = make_router()
    first.ensure_running()
    first.apply([route])
    old = first.pids()
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]  # both crashed (e.g. the machine rebooted)
    assert wait_until(lambda: not listening(first.http_port))

    second = make_router()
    second.ensure_running()
    new = second.pids()
    assert new["edge"] not in (None, old["edge"]) and new["routes"] not in (None, old["routes"])
    assert second.routes() == [route]
    assert get(second.http_port, "yoto.localhost").text == "alpha"


def test_foreign_server_on_remembered_admin_ports_is_not_adopted(make_router, home: Path, upstream) -> None:
    squatter = int(upstream("not caddy").rsplit(":", 1)[1])  # answers GET /config/ with 200 "not caddy"
    other = int(upstream("not caddy either").rsplit(":", 1)[1])
    home.mkdir(parents=True)
    (home / "admin.json").write_text(json.dumps({"admin_port": squatter, "edge_admin_port": other}))

    router = make_router()
    router.ensure_running()
    assert router.admin_port != squatter and router.edge_admin_port != other
    assert None not in router.pids().values()
    assert json.loads((home / "admin.json").read_text()) == {
        "admin_port": router.admin_port,
        "edge_admin_port": router.edge_admin_port,
        "routes_port": router.routes_port,
    }

    fixed = make_router(admin_port=squatter)
    with pytest.raises(BackendError, match="is answered by something that is not branchyard's Caddy"):
        fixed.ensure_running()


def test_taken_http_port_gives_a_clear_error_and_leaves_no_caddy(home: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        router = Router(home=home, http_port=port, admin_port=0)
        with pytest.raises(BackendError) as caught:
            router.ensure_running()
        message = str(caught.value)
        assert message.startswith(f"router: port {port} is already in use by another process")
        assert "\n" not in message
        assert router.pids() == {"edge": None, "routes": None}
        assert not router.pid_file.exists() and not router.edge_pid_file.exists()
        assert processes_mentioning(str(home)) == []
        assert not any(listening(p) for p in (router.admin_port, router.edge_admin_port, router.routes_port))


def test_caddy_start_failure_is_reported_and_cleaned_up(make_router) -> None:
    # A socket bound but not listening: the admin probe is refused, so a Caddy is started, and
    # Caddy's own bind of the admin port then fails.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        admin_port = squatter.getsockname()[1]
        router = make_router(admin_port=admin_port)
        with pytest.raises(BackendError) as caught:
            router.ensure_running()
    message = str(caught.value)
    assert message.startswith(f"router: port {admin_port} is already in use by another process; Caddy could not start")
    assert str(router.log_file) in message
    assert router.pids() == {"edge": None, "routes": None}
    assert processes_mentioning(str(router.home)) == []
    assert not listening(router.http_port)


def test_a_caddy_that_exits_at_once_is_reported_with_its_error(make_router, tmp_path: Path) -> None:
    fake = tmp_path / "fake-caddy"
    fake.write_text("#!/bin/sh\necho 'Error: loading initial config: something bad' >&2\nexit 1\n")
    fake.chmod(0o755)
    router = make_router(caddy_bin=str(fake))
    with pytest.raises(BackendError) as caught:
        router.ensure_running()
    assert str(caught.value) == (
        f"router: Caddy could not start: Error: loading initial config: something bad (log: {router.output_file})"
    )
    assert not router.pid_file.exists()
    assert not listening(router.http_port)


def test_stop_leaves_nothing_listening(router: Router, upstream) -> None:
    router.apply([Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))])
    ports = (router.http_port, router.routes_port, router.admin_port, router.edge_admin_port)
    assert all(listening(p) for p in ports)

    router.stop()
    assert not any(listening(p) for p in ports)
    assert router.pids() == {"edge": None, "routes": None}
    assert processes_mentioning(str(router.home)) == []
    with pytest.raises(BackendError, match="admin API at .* is not answering"):
        router.routes()
    router.stop()  # idempotent


def test_stop_by_another_router_object(make_router) -> None:
    first = make_router()
    first.ensure_running()
    second = make_router()
    second.stop()
    assert first.pids() == {"edge": None, "routes": None}
    assert not listening(first.http_port)
    assert processes_mentioning(str(first.home)) == []


def test_turning_tls_on_and_off_restarts_only_the_edge(make_router, home: Path, upstream) -> None:
    """BRANCHYARD_TLS changed between two starts: the edge gets (or drops) its HTTPS socket; the routes tier and
    its routes are untouched."""
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    plain = make_router()
    plain.ensure_running()
    plain.apply([route])
    before = plain.pids()
    https_port = free_port()
    ask = upstream("ask")  # answers 200 to anything: the permission endpoint says yes
    secure = make_router(tls=EdgeTLS(mode="internal", https_port=https_port, acme=Acme(), ask_url=f"http://{ask}/ask"))
    secure.ensure_running()
    assert secure.pids()["routes"] == before["routes"]
    assert secure.pids()["edge"] not in (None, before["edge"])
    root = home / "data" / "caddy-edge" / "pki" / "authorities" / "local" / "root.crt"
    assert wait_until(root.exists)
    ctx = ssl.create_default_context(cafile=str(root))
    with httpx.Client(verify=ctx, trust_env=False, timeout=30) as client:
        answer = client.send(client.build_request("GET", f"https://127.0.0.1:{https_port}/", headers={"Host": "yoto.localhost"},
                                                  extensions={"sni_hostname": "yoto.localhost"}))
    assert answer.text == "alpha"
    redirect = httpx.get(f"http://127.0.0.1:{secure.http_port}/a?b=1", headers={"Host": "yoto.localhost"}, trust_env=False)
    assert (redirect.status_code, redirect.headers["Location"]) == (308, f"https://yoto.localhost:{https_port}/a?b=1")

    off = make_router()
    off.ensure_running()
    assert off.pids()["routes"] == before["routes"]
    assert not listening(https_port)
    assert get(off.http_port, "yoto.localhost").text == "alpha"
