"""The example app reports errors to Sentry when SENTRY_DSN is set: the app run directly (uvicorn, the real
sentry-sdk) against a tiny local stand-in for Sentry's envelope endpoint (`POST /api/<project>/envelope/`). An
endpoint that raises → the receiver gets an event whose release is the commit (RAILWAY_GIT_COMMIT_SHA) and whose
environment is RAILWAY_ENVIRONMENT_NAME. Off when SENTRY_DSN is unset."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for

APP = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
SHA = "0123456789abcdef0123456789abcdef01234567"


class Receiver:
    """Sentry's envelope endpoint, as far as the SDK needs it: it POSTs envelopes, we keep their items."""

    def __init__(self) -> None:
        self.items: list[tuple[dict, bytes]] = []
        self.paths: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli  # the SDK compresses with brotli only when it is importable

                    body = brotli.decompress(body)
                received.paths.append(self.path)
                received.items += _items(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def events(self) -> list[dict]:
        return [json.loads(payload) for header, payload in self.items if header.get("type") == "event"]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _items(envelope: bytes) -> list[tuple[dict, bytes]]:
    """An envelope: a header line, then items — a header line (with `length` or not) and its payload."""
    _, _, rest = envelope.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"]:].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


def run_app(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=APP, env=base | env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: proc.poll() is not None or _answers(port), timeout=30)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    return proc, port


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def test_an_error_reaches_sentry_with_the_commit_as_its_release():
    pytest.importorskip("sentry_sdk")
    with Receiver() as sentry:
        proc, port = run_app({"SENTRY_DSN": f"http://publickey@127.0.0.1:{sentry.port}/42",
                              "RAILWAY_GIT_COMMIT_SHA": SHA, "RAILWAY_ENVIRONMENT_NAME": "staging",
                              "YOTO_DEBUG_ERROR_ROUTE": "1"})
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/debug/error", timeout=10, trust_env=False).status_code == 500
            (event,) = wait_for(lambda: sentry.events() or None, timeout=30)
        finally:
            stop(proc)
    assert set(sentry.paths) <= {"/api/42/envelope/"} and sentry.paths
    assert event["release"] == SHA
    assert event["environment"] == "staging"
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "debug error: raised on purpose by GET /debug/error")
    assert event["request"]["url"].endswith("/debug/error")
    assert "cookies" not in event["request"] and "publickey" not in json.dumps(event)


def test_without_sentry_dsn_nothing_is_reported_and_the_debug_route_needs_its_switch(monkeypatch):
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.syspath_prepend(str(APP))
    import errortracking

    assert errortracking.init() is False
    monkeypatch.delenv("YOTO_DEBUG_ERROR_ROUTE", raising=False)
    assert errortracking.debug_route_enabled() is False
    proc, port = run_app({})
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/debug/error", timeout=10, trust_env=False).status_code == 404
    finally:
        stop(proc)
