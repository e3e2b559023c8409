"""A small client for the control plane's API: the machine's own (found through BRANCHYARD_HOME/server.json) or a
remote one (a `Target` of cli/contexts.py, over http or https).

Standard library only (http.client, one loopback connection per call): every CLI command pays for
its imports before it does anything, and on a busy machine importing httpx took longer than the
whole rollback it asked for.
"""

from __future__ import annotations

import codecs
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from .. import errors
from ..server import read_server_file
from ..settings import Settings
from .contexts import Target

if TYPE_CHECKING:
    from .websocket import Endpoint  # imported when used: only `connect`'s tunnel pays for wsproto

_BY_STATUS = {400: errors.BadInput, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound, 409: errors.Conflict,
              413: errors.PayloadTooLarge, 422: errors.DeployFailed, 429: errors.TooManyRequests}
TIMEOUT = 120.0  # seconds for one API call (a log that is followed has none)


class Client:
    def __init__(self, where: Settings | Target, *, token: str | None = None) -> None:
        """`where`: the machine's own control plane (its settings) or a remote one; `token` replaces the machine's
        admin token for the machine's own (BRANCHYARD_TOKEN)."""
        if isinstance(where, Target):
            self.url, token = where.url, where.token
        else:
            info = read_server_file(where)
            if not info:
                raise errors.ServerUnavailable(
                    f"the control plane is not running for {where.home}; start it with `branchyard server --detach`"
                )
            self.url, token = info["url"], token or info["token"]
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")  # a control plane served under a path
        self._headers = {"Authorization": f"Bearer {token}"}

    def _send(self, method: str, path: str, *, params: dict | None = None, json_body: object = None,
              timeout: float | None = TIMEOUT) -> http.client.HTTPResponse:
        """Send one request; the response (status and headers read) or ServerUnavailable."""
        path = self._prefix + path
        if params:
            path += "?" + urlencode(params)
        headers = {**self._headers, "Connection": "close"}
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=tls_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise errors.ServerUnavailable(f"cannot reach the control plane at {self.url}: {err or type(err).__name__}") from None
        return resp  # with "Connection: close" the response owns the socket; closing it closes the connection

    def _check(self, resp: http.client.HTTPResponse) -> None:
        if resp.status < 400:
            return
        raise refusal(resp.status, resp.read().decode(errors="replace"))

    def websocket_endpoint(self, path: str) -> Endpoint:
        """Where the WebSocket at `path` is opened (connect's tunnel): this client's address, TLS settings and token."""
        from .websocket import Endpoint

        return Endpoint(self.url, self._host, self._port, tls_context() if self._https else None, self._prefix + path,
                        tuple(self._headers.items()))

    def request(self, method: str, path: str, *, params: dict | None = None, json: object = None,  # noqa: A002
                timeout: float | None = TIMEOUT) -> object:
        resp = self._send(method, path, params=params, json_body=json, timeout=timeout)
        try:
            self._check(resp)
            data = resp.read()
        except (OSError, http.client.HTTPException) as err:
            raise errors.ServerUnavailable(f"cannot reach the control plane at {self.url}: {err or type(err).__name__}") from None
        finally:
            resp.close()
        try:
            return _json_loads(data)
        except ValueError:
            raise errors.BranchyardError(f"the control plane at {self.url} sent something else than JSON") from None

    def get(self, path: str, **params) -> object:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict) -> object:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> object:
        return self.request("DELETE", path)

    def stream_json(self, path: str, body: dict) -> Iterator[dict]:
        """POST `body`; the answer's JSON lines as they arrive (no timeout: a command may run long)."""
        resp = self._send("POST", path, json_body=body, timeout=None)
        try:
            self._check(resp)
            while line := resp.readline():
                if line.strip():
                    yield _json_loads(line)
        except (OSError, http.client.HTTPException) as err:
            raise errors.ServerUnavailable(f"lost the control plane at {self.url}: {err or type(err).__name__}") from None
        except ValueError:
            raise errors.BranchyardError(f"the control plane at {self.url} sent something else than JSON lines") from None
        finally:
            resp.close()

    def follow_log(self, deployment_id: str) -> Iterator[str]:
        resp = self._send("GET", f"/api/deployments/{deployment_id}/log", params={"follow": "true"}, timeout=None)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            self._check(resp)
            while chunk := resp.read1(65536):
                if text := decoder.decode(chunk):
                    yield text
            if tail := decoder.decode(b"", final=True):
                yield tail
        except (OSError, http.client.HTTPException) as err:
            raise errors.ServerUnavailable(f"lost the control plane at {self.url}: {err or type(err).__name__}") from None
        finally:
            resp.close()


def tls_context() -> ssl.SSLContext:
    """TLS to the control plane: the system's CAs (SSL_CERT_FILE, when set, names another bundle), names checked."""
    return ssl.create_default_context()


def refusal(status: int, text: str, *, otherwise: str | None = None) -> errors.BranchyardError:
    """The error of an API answer with `status` ≥ 400 and body `text`: its JSON `detail`, else `otherwise`, else the
    status and the text."""
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if not isinstance(detail, str):
        detail = otherwise or f"HTTP {status}: {text[:200]}"
    return _BY_STATUS.get(status, errors.BranchyardError)(detail)


_json_loads = json.loads  # `request` has a parameter named json
