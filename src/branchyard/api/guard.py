"""What stands in front of every route: the token check with its slowdown of repeated wrong tokens (429), and the
request-body size limit (413).

Both are written for a control plane reachable from outside (issue 14): behind the edge every request arrives
from loopback, so the client's address is the last `X-Forwarded-For` entry the edge appended.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..access import Actor
from ..errors import PayloadTooLarge, TooManyRequests, Unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Bodies: every API route takes a few kB of JSON, GitHub's deliveries we act on are a few kB (GitHub caps them at
# 25 MB); until now the API read any body whole into memory. git pushes are streamed to `git http-backend`, never
# held, so their limit only bounds the disk a push may fill.
BACKUP_MAX_BODY = 50 * 1024**3  # bytes: far above a database an environment of this scale holds, below a full disk
API_MAX_BODY = 5 * 1024 * 1024
GIT_MAX_BODY = 2 * 1024 * 1024 * 1024
# An over-limit body is read and thrown away before the 413 is sent, up to this much: a server that answers and
# closes with unread bytes in its socket makes the kernel send a reset, and the client, still sending, sees
# "connection reset" instead of the answer (what an over-limit webhook got before). Beyond it we close anyway.
DRAIN_MAX = 64 * 1024 * 1024

# Wrong tokens: after FAILURES wrong tokens within WINDOW seconds from one address, that address gets 429 (token
# not even compared) until its oldest failure leaves the window. A missing token is not a guess (git asks without
# one first) and does not count; a right token never counts. 10 per minute makes a 256-bit token unguessable.
FAILURES = 10
WINDOW = 60.0
_LOOPBACK = ("127.", "::1")


def client_address(scope: Scope) -> str:
    """The client's address: the peer's, or behind the edge on loopback, the last X-Forwarded-For entry."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if peer.startswith(_LOOPBACK):
        for name, value in scope.get("headers") or ():
            if name == b"x-forwarded-for":
                last = value.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
    return peer


class Throttle:
    """Wrong-token failures per client address in a sliding window (thread-safe: sync routes run in threads)."""

    def __init__(self, failures: int = FAILURES, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.window, self.clock = failures, window, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[address]
        return times

    def wait(self, address: str) -> int:
        """Seconds `address` must wait before its token is looked at again; 0 when it may try now."""
        with self._lock:
            now = self.clock()
            times = self._recent(address, now)
            if len(times) < self.failures:
                return 0
            return max(1, math.ceil(times[-self.failures] + self.window - now))

    def failed(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            self._recent(address, now)
            self._seen.setdefault(address, deque()).append(now)
            if len(self._seen) > 100_000:  # a flood from many addresses must not grow the table without end
                self._seen.clear()


class Gate:
    """The token check, shared by the JSON routes (Bearer) and git (HTTP Basic, the token as the password): the
    token → the user it belongs to (`authenticate`, e.g. Users.authenticate), with wrong tokens slowed down."""

    def __init__(self, authenticate: Callable[[str], Actor], throttle: Throttle | None = None) -> None:
        self.authenticate = authenticate
        self.throttle = throttle or Throttle()

    def check(self, given: str | None, address: str) -> Actor:
        """The user, or TooManyRequests (address throttled) or Unauthorized (missing, wrong, revoked, expired)."""
        wait = self.throttle.wait(address)
        if wait:
            raise TooManyRequests(f"too many wrong tokens from {address}: try again in {wait}s", retry_after=wait)
        if not given:
            raise Unauthorized("missing or wrong API token")
        try:
            return self.authenticate(given)
        except Unauthorized:
            self.throttle.failed(address)
            raise


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header ('' when absent or of another scheme)."""
    value = (authorization or "").strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


def basic_password(authorization: str | None) -> str:
    """The password of an `Authorization: Basic …` header (any user name), else a Bearer token, else ''."""
    value = (authorization or "").strip()
    if value[:6].lower() != "basic ":
        return bearer(value)
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "\0"  # present but malformed: a wrong token, not a missing one
    return decoded.partition(":")[2] or ("\0" if decoded else "")


def error_response(status: int, detail: str, error: str, headers: dict[str, str] | None = None) -> tuple[dict, bytes]:
    """The http.response.start message and JSON body of an error answered outside the routes."""
    body = json.dumps({"detail": detail, "error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": raw}, body


def limit_for(path: str) -> int:
    """The body limit of a request path: a git push's pack, an environment's database dump (issue 19: a backup
    CronJob's upload or a data job's transfer, api/routes/releases.py), or an API request's JSON."""
    if path.startswith("/git/"):
        return GIT_MAX_BODY
    return BACKUP_MAX_BODY if path.startswith(("/internal/backups/", "/internal/transfers/")) else API_MAX_BODY


class BodyLimit:
    """ASGI middleware: a body over its path's limit gets a 413 with a JSON body the client can read.

    A declared Content-Length over the limit is answered before the app sees the request; a chunked body is cut
    where it passes the limit, and whatever the app was about to answer is replaced by the 413. Either way the
    rest of the body is read and dropped first (up to DRAIN_MAX), so the client is not reset mid-send."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 limit: Callable[[str], int] = limit_for) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        declared = next((v for k, v in scope.get("headers") or () if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if not any(k == b"expect" and v.lower() == b"100-continue" for k, v in scope.get("headers") or ()):
                await _drain(receive, 0)  # (a client that waits for "100 Continue" never sends it: nothing to drain)
            await _refuse(send, limit)
            return
        state = {"seen": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    if message.get("more_body"):
                        await _drain(receive, state["seen"])
                    raise PayloadTooLarge(_too_large(limit))
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"] and not state["started"]:
                return  # the app's own answer to a body it could not read; the 413 goes out instead
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"] or state["started"]:
                raise
        if state["over"] and not state["started"]:
            await _refuse(send, limit)


def _too_large(limit: int) -> str:
    return f"request body over the limit of {limit} bytes"


async def _drain(receive: Receive, seen: int) -> None:
    """Read and drop the rest of a request body (up to DRAIN_MAX)."""
    while seen <= DRAIN_MAX:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _refuse(send: Send, limit: int) -> None:
    start, body = error_response(413, _too_large(limit), "PayloadTooLarge", {"connection": "close"})
    await send(start)
    await send({"type": "http.response.body", "body": body})
