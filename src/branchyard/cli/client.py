"""A small client for the control plane's API, found through BRANCHYARD_HOME/server.json.

Standard library only (http.client, one loopback connection per call): every CLI command pays for
its imports before it does anything, and on a busy machine importing httpx took longer than the
whole rollback it asked for.
"""

from __future__ import annotations

import codecs
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

from .. import errors
from ..server import read_server_file
from ..settings import Settings

_BY_STATUS = {400: errors.BadInput, 401: errors.Unauthorized, 404: errors.NotFound, 409: errors.Conflict, 422: errors.DeployFailed}
TIMEOUT = 120.0  # seconds for one API call (a log that is followed has none)


class Client:
    def __init__(self, settings: Settings) -> None:
        info = read_server_file(settings)
        if not info:
            raise errors.ServerUnavailable(
                f"the control plane is not running for {settings.home}; start it with `branchyard server --detach`"
            )
        self.url = info["url"]
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._headers = {"Authorization": f"Bearer {info['token']}"}

    def _send(self, method: str, path: str, *, params: dict | None = None, json_body: object = None,
              timeout: float | None = TIMEOUT) -> http.client.HTTPResponse:
        """Send one request; the response (status and headers read) or ServerUnavailable."""
        if params:
            path += "?" + urlencode(params)
        headers = {**self._headers, "Connection": "close"}
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
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
        text = resp.read().decode(errors="replace")
        try:
            detail = json.loads(text).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if not isinstance(detail, str):
            detail = f"HTTP {resp.status}: {text[:200]}"
        raise _BY_STATUS.get(resp.status, errors.BranchyardError)(detail)

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


_json_loads = json.loads  # `request` has a parameter named json
