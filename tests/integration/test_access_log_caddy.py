"""The routes tier's access log per environment, with a real Caddy: the rendered shape, then a request → an http
record with the right status and bytes, no query string, no header; off when the operator says so."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import wait_for

from branchyard import logrecords as lr
from branchyard.backends.local.caddy import ACCESS_ENCODER, Route, Router, render_config
from branchyard.controller.logship import LogShipper
from branchyard.monitoring import HttpEntry

pytestmark = pytest.mark.integration

TOKEN = "tok-abcdef-0123456789"


def test_render_config_logs_each_environment_to_its_file() -> None:
    routes = [Route("a.localhost", "shop", "production", ("127.0.0.1:1",)),
              Route("www.shop.example", "shop", "production", ("127.0.0.1:1",)),
              Route("b.localhost", "shop", "pr-7", (), state="sleeping")]
    config = render_config(routes, routes_port=80, admin_port=2019, storage_dir=Path("/s"),
                           log_file=Path("/l/caddy.log"), access_log_dir=Path("/h/logs"))
    server = config["apps"]["http"]["servers"]["branchyard"]
    assert server["logs"] == {"logger_names": {"a.localhost": ["by_shop_production"], "b.localhost": ["by_shop_pr-7"],
                                               "www.shop.example": ["by_shop_production"]},
                              "skip_unmapped_hosts": True}
    logs = config["logging"]["logs"]
    assert logs["default"]["exclude"] == ["admin.api", "http.log.access"]
    assert logs["by_shop_production"] == {
        "writer": {"output": "file", "filename": "/h/logs/shop/production/access.log", "roll_size_mb": 16,
                   "roll_keep": 2, "roll_gzip": False},
        "encoder": ACCESS_ENCODER, "include": ["http.log.access.by_shop_production"]}
    assert logs["by_shop_pr-7"]["writer"]["filename"] == "/h/logs/shop/pr-7/access.log"
    assert set(logs) == {"default", "by_shop_production", "by_shop_pr-7"}
    # off (BRANCHYARD_ACCESS_LOG=off): no server logs, no loggers
    off = render_config(routes, routes_port=80, admin_port=2019, storage_dir=Path("/s"), log_file=Path("/l/caddy.log"))
    assert "logs" not in off["apps"]["http"]["servers"]["branchyard"]
    assert set(off["logging"]["logs"]) == {"default"}


class _App(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = 500 if self.path.startswith("/fail") else 201
        out = b"got " + body
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Set-Cookie", f"session={TOKEN}")
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def router_home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    from test_caddy import processes_mentioning  # only ours: matched by path

    for pid in processes_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_a_request_becomes_an_http_record_without_query_or_headers(router_home: Path, app: str, on: bool) -> None:
    logs = router_home / "logs"
    router = Router(home=router_home / "caddy", http_port=_free_port(), admin_port=0,
                    access_log_dir=logs if on else None)
    try:
        router.ensure_running()
        router.apply([Route("shop.localhost", "shop", "production", (app,))])
        url = f"http://127.0.0.1:{router.http_port}"
        headers = {"Host": "shop.localhost", "Authorization": f"Bearer {TOKEN}", "Cookie": f"s={TOKEN}"}
        r1 = httpx.post(f"{url}/items/7?token={TOKEN}&x=1", content=b"0123456789", headers=headers)
        r2 = httpx.post(f"{url}/fail", content=b"abc", headers={"Host": "shop.localhost"})
        r3 = httpx.post(f"{url}/nobody", content=b"x", headers={"Host": "unknown.localhost"})  # unmapped: not logged
        assert (r1.status_code, r2.status_code, r3.status_code) == (201, 500, 404)
        seen: list[tuple[str, str, HttpEntry]] = []
        shipper = LogShipper(logs, redactor=lambda p, e: (lambda s: s), http_sink=lambda *a: seen.append(a))
        access = logs / "shop" / "production" / "access.log"
        if not on:
            # the same requests served, and no access log anywhere (the router is asked for none)
            assert not access.exists() and shipper.ship_once() == 0 and seen == []
            return
        wait_for(lambda: access.exists() and len(access.read_text().splitlines()) == 2)
        raw = access.read_text()
        assert TOKEN not in raw and "token=" not in raw and "Authorization" not in raw and "Set-Cookie" not in raw
        assert shipper.ship_once() == 2
        got = [(p, e, x.method, x.host, x.path, x.status, x.bytes_in, x.bytes_out) for p, e, x in seen]
        assert got == [("shop", "production", "POST", "shop.localhost", "/items/7", 201, 10, 14),
                       ("shop", "production", "POST", "shop.localhost", "/fail", 500, 3, 7)]
        assert all(x.duration_s > 0 for _, _, x in seen)
        records = shipper.query("shop", "production", lr.Query(http="only"), limit=10)[0]
        assert [(r["path"], r["status"], r["level"], r["bytes_in"], r["bytes_out"]) for r in records] == [
            ("/items/7", 201, "info", 10, 14), ("/fail", 500, "error", 3, 7)]
        assert all(TOKEN not in str(r) for r in records)
    finally:
        router.stop()


def test_every_request_is_shipped_across_caddys_own_rolls(router_home: Path, app: str, monkeypatch) -> None:
    """Caddy rolls the access log itself (here every 1 MB): the shipper, reading while the requests come, finishes
    each rolled file and goes on with the new one — exactly one http record per request, none lost at a roll."""
    import branchyard.backends.local.caddy as caddy

    monkeypatch.setattr(caddy, "ACCESS_ROLL_MB", 1)  # Caddy's smallest roll size
    logs = router_home / "logs"
    router = Router(home=router_home / "caddy", http_port=_free_port(), admin_port=0, access_log_dir=logs)
    seen: list[HttpEntry] = []
    shipper = LogShipper(logs, redactor=lambda p, e: (lambda s: s), http_sink=lambda p, e, x: seen.append(x))
    sent = 0
    try:
        router.ensure_running()
        router.apply([Route("shop.localhost", "shop", "production", (app,))])
        with httpx.Client(base_url=f"http://127.0.0.1:{router.http_port}", headers={"Host": "shop.localhost"}) as c:
            root = logs / "shop" / "production"
            while len(list(root.glob("access-*"))) < 2:  # two rolls (about 3,000 requests each): crossed by the shipper
                assert sent < 20_000, f"Caddy rolled {[p.name for p in root.iterdir()]} after {sent} requests"
                for _ in range(200):
                    assert c.post(f"/items/{sent}", content=b"x" * 100).status_code == 201
                    sent += 1
                shipper.ship_once()
        assert not list(root.glob("*.gz"))  # rolled files stay plain: the shipper reads them
        wait_for(lambda: shipper.ship_once() == 0 and len(seen) >= sent, timeout=30)
        assert sorted(int(x.path.rsplit("/", 1)[1]) for x in seen) == list(range(sent))
    finally:
        router.stop()
