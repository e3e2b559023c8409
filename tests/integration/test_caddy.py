"""The router against a real Caddy: real processes, real HTTP on loopback, free ports, temp dirs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from branchyard.backends.local.caddy import Route, Router, find_caddy, parse_routes, render_config
from branchyard.errors import BackendError, BadInput

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


class _NameHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[Callable[[str], str]]:
    """Factory: a tiny HTTP server on loopback answering its own name; returns its host:port."""
    servers: list[ThreadingHTTPServer] = []

    def start(name: str) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _NameHandler)
        server.daemon_threads = True
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


def load_count(router: Router) -> int:
    text = router.log_file.read_text() if router.log_file.exists() else ""
    return sum(1 for line in text.splitlines() if '"uri":"/load"' in line)


# ------------------------------------------------------------------------------- pure: render_config


def test_render_config_for_two_routes() -> None:
    routes = [
        Route("yoto.localhost", "yoto", "production", ("127.0.0.1:41234", "127.0.0.1:41235")),
        Route("yoto-staging.localhost", "yoto", "staging", (), "sleeping"),
    ]
    storage = Path("/nonexistent/branchyard/storage")
    config = render_config(routes, http_port=8080, admin_port=2999, storage_dir=storage)

    assert config == render_config(routes, http_port=8080, admin_port=2999, storage_dir=storage)
    assert config == render_config(list(reversed(routes)), http_port=8080, admin_port=2999, storage_dir=storage)
    assert not storage.exists()
    json.dumps(config)  # serialisable as is

    assert config["admin"] == {"listen": "127.0.0.1:2999", "config": {"persist": False}}
    assert config["storage"] == {"module": "file_system", "root": str(storage)}
    assert config["apps"]["pki"] == {"certificate_authorities": {"local": {"install_trust": False}}}
    assert "logging" not in config
    assert render_config([], http_port=8080, admin_port=1, storage_dir=storage, listen="fd/3")["apps"]["http"][
        "servers"
    ]["branchyard"]["listen"] == ["fd/3"]
    server = config["apps"]["http"]["servers"]["branchyard"]
    assert server["@id"] == "branchyard-server"
    assert server["listen"] == [":8080"]
    assert server["automatic_https"] == {"disable": True}

    staging, production, not_found = server["routes"]  # sorted by host; catch-all last
    assert production == {
        "@id": "branchyard-route-yoto.production",
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
                "headers": {"response": {"set": {"X-Branchyard-Environment": ["production"]}}},
            },
        ],
        "terminal": True,
    }
    assert staging["@id"] == "branchyard-route-yoto.staging"
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


def test_render_config_with_log_file_rolls_it() -> None:
    config = render_config([], http_port=80, admin_port=2019, storage_dir=Path("/s"), log_file=Path("/l/caddy.log"))
    writer = config["logging"]["logs"]["default"]["writer"]
    assert writer["output"] == "file"
    assert writer["filename"] == "/l/caddy.log"
    routes = config["apps"]["http"]["servers"]["branchyard"]["routes"]
    assert [r["@id"] for r in routes] == ["branchyard-not-found"]


def test_render_config_refuses_a_host_claimed_twice() -> None:
    a = Route("same.localhost", "yoto", "production", ("127.0.0.1:1000",))
    b = Route("same.localhost", "yoto", "staging", ("127.0.0.1:1001",))
    with pytest.raises(BadInput, match="host 'same.localhost' is claimed by both yoto/production and yoto/staging"):
        render_config([a, b], http_port=8080, admin_port=2019, storage_dir=Path("/s"))


def test_project_and_environment_with_dashes_get_distinct_ids() -> None:
    a = Route("a.localhost", "my-app", "prod", ("127.0.0.1:1000",))
    b = Route("b.localhost", "my", "app-prod", ("127.0.0.1:1001",))
    assert a.id != b.id
    render_config([a, b], http_port=8080, admin_port=2019, storage_dir=Path("/s"))


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

    loads = load_count(router)
    assert router.apply(list(reversed(second))) is False  # same routes, other order: no call at all
    assert load_count(router) == loads
    assert router.routes() == sorted(second, key=lambda r: r.host)

    assert router.apply([]) is True
    assert router.routes() == []
    assert get(router.http_port, "yoto.localhost").status_code == 404


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


def test_dead_upstream_gets_an_error_page_not_an_empty_body(router: Router) -> None:
    dead = f"127.0.0.1:{free_port()}"
    router.apply([Route("yoto.localhost", "yoto", "production", (dead,))])
    started = time.monotonic()
    resp = get(router.http_port, "yoto.localhost")
    assert resp.status_code == 502
    assert "502 Bad Gateway" in resp.text
    assert "did not answer" in resp.text
    assert time.monotonic() - started >= 4.5  # retried for lb_try_duration before giving up


def test_retries_another_upstream_when_one_is_down(router: Router, upstream) -> None:
    alive = upstream("alpha")
    dead = f"127.0.0.1:{free_port()}"
    router.apply([Route("yoto.localhost", "yoto", "production", (dead, alive))])
    for _ in range(4):
        resp = get(router.http_port, "yoto.localhost")
        assert (resp.status_code, resp.text) == (200, "alpha")


def test_switching_routes_under_load_never_serves_a_wrong_answer(router: Router, upstream) -> None:
    """Hammer the router while routes flip: every answer is a 200 from a valid upstream.

    Caddy replaces its HTTP server on every config load. A connection the old server accepted in
    the last instant can be closed without any response (about one per reload under this load);
    like browsers and most HTTP clients do for idempotent requests, the client here retries such a
    request once. What must never happen is a gap: a refused connection, a reset while connecting,
    a 404/502, or a second consecutive failure.
    """
    a, b = upstream("alpha"), upstream("beta")
    sets = [
        [Route("yoto.localhost", "yoto", "production", (a,))],
        [Route("yoto.localhost", "yoto", "production", (b,))],
        [Route("yoto.localhost", "yoto", "production", (a, b))],
    ]
    router.apply(sets[0])
    wrong: list[str] = []
    retried: list[str] = []
    seen: set[str] = set()
    served = 0
    stop = threading.Event()
    url = f"http://127.0.0.1:{router.http_port}/"

    def hammer() -> None:
        nonlocal served
        with httpx.Client(trust_env=False, timeout=10) as client:  # keep-alive across reloads
            while not stop.is_set():
                for attempt in (1, 2):
                    try:
                        resp = client.get(url, headers={"Host": "yoto.localhost"})
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        if attempt == 2:
                            wrong.append(f"failed twice: {exc!r}")
                        else:
                            retried.append(repr(exc))
                        continue
                    except httpx.HTTPError as exc:  # connect errors: the port was not served
                        wrong.append(repr(exc))
                        break
                    if resp.status_code != 200 or resp.text not in ("alpha", "beta"):
                        wrong.append(f"HTTP {resp.status_code} {resp.text[:40]!r}")
                    seen.add(resp.text)
                    served += 1
                    break

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    reloads = 0
    try:
        for i in range(30):
            reloads += router.apply(sets[(i + 1) % 3])
            time.sleep(0.03)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\n{served} requests, {reloads} reloads, {len(retried)} retried after a reload closed the connection")
    assert wrong == []
    assert seen == {"alpha", "beta"}
    assert served > 100


def test_a_new_router_object_adopts_the_running_caddy(make_router, upstream) -> None:
    first = make_router()
    first.ensure_running()
    pid = first.pid()
    assert pid is not None
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first.apply([route])

    second = make_router()  # same home, admin_port=0 → the remembered port
    assert second.admin_url == first.admin_url
    second.ensure_running()
    assert second.pid() == pid
    assert processes_mentioning(str(second.config_file)) == [pid]  # no second caddy
    assert second.routes() == [route]
    assert second.apply([route]) is False
    assert get(second.http_port, "yoto.localhost").text == "alpha"


def test_caddy_survives_its_owner_process_exiting(make_router, home: Path, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    http_port = free_port()
    owner = (
        "import sys\n"
        "from pathlib import Path\n"
        "from branchyard.backends.local.caddy import Route, Router\n"
        f"r = Router(home=Path({str(home)!r}), http_port={http_port}, admin_port=0)\n"
        "r.ensure_running()\n"
        f"r.apply([Route('yoto.localhost', 'yoto', 'production', ({route.upstreams[0]!r},))])\n"
        "print(r.pid())\n"
    )
    done = subprocess.run([sys.executable, "-c", owner], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())

    successor = make_router(http_port=http_port)
    successor.ensure_running()
    assert successor.pid() == pid
    assert successor.routes() == [route]
    assert get(http_port, "yoto.localhost").text == "alpha"
    successor.stop()  # not our child any more: stopped through the admin API and the pid file
    assert processes_mentioning(str(home)) == []
    assert not listening(http_port)


def test_a_changed_http_port_restarts_caddy_on_the_new_port(make_router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first = make_router()
    first.ensure_running()
    first.apply([route])
    old_pid, old_port = first.pid(), first.http_port

    moved = make_router(http_port=free_port())
    moved.ensure_running()
    assert moved.pid() not in (None, old_pid)
    assert not listening(old_port)
    assert get(moved.http_port, "yoto.localhost").text == "alpha"  # the saved routes came along


def test_caddy_outlives_its_owner_process_group(router: Router) -> None:
    pid = router.pid()
    assert pid is not None
    assert os.getpgid(pid) != os.getpgid(0)
    assert os.getsid(pid) == pid  # own session: no Ctrl-C / SIGHUP from our terminal


def test_restarted_caddy_serves_the_last_applied_routes(make_router, upstream) -> None:
    route = Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))
    first = make_router()
    first.ensure_running()
    first.apply([route])
    old_pid = first.pid()
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)  # Caddy crashed

    second = make_router()
    second.ensure_running()
    assert second.pid() not in (None, old_pid)
    assert second.routes() == [route]
    assert get(second.http_port, "yoto.localhost").text == "alpha"


def test_foreign_server_on_remembered_admin_port_is_not_adopted(make_router, home: Path, upstream) -> None:
    squatter = upstream("not caddy")  # answers GET /config/ with 200 "not caddy"
    home.mkdir(parents=True)
    (home / "admin.json").write_text(json.dumps({"admin_port": int(squatter.rsplit(":", 1)[1])}))

    router = make_router()
    router.ensure_running()
    assert router.admin_url != f"http://{squatter}"
    assert router.pid() is not None
    assert json.loads((home / "admin.json").read_text()) == {"admin_port": router.admin_port}

    fixed = make_router(admin_port=int(squatter.rsplit(":", 1)[1]))
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
        assert router.pid() is None
        assert not router.pid_file.exists()
        assert processes_mentioning(str(home)) == []
        assert not listening(router.admin_port)


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
    assert router.pid() is None
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


def test_stop_leaves_nothing_listening(router: Router, upstream) -> None:
    router.apply([Route("yoto.localhost", "yoto", "production", (upstream("alpha"),))])
    pid = router.pid()
    assert pid is not None
    assert listening(router.http_port) and listening(router.admin_port)

    router.stop()
    assert not listening(router.http_port)
    assert not listening(router.admin_port)
    assert router.pid() is None
    assert processes_mentioning(str(router.home)) == []
    with pytest.raises(BackendError, match="admin API at .* is not answering"):
        router.routes()
    router.stop()  # idempotent


def test_stop_by_another_router_object(make_router) -> None:
    first = make_router()
    first.ensure_running()
    second = make_router()
    second.stop()
    assert first.pid() is None
    assert not listening(first.http_port)

