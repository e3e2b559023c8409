"""A small client for the control plane's API, found through BRANCHYARD_HOME/server.json."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from .. import errors
from ..server import read_server_file
from ..settings import Settings

_BY_STATUS = {400: errors.BadInput, 401: errors.Unauthorized, 404: errors.NotFound, 409: errors.Conflict, 422: errors.DeployFailed}


class Client:
    def __init__(self, settings: Settings) -> None:
        info = read_server_file(settings)
        if not info:
            raise errors.ServerUnavailable(
                f"the control plane is not running for {settings.home}; start it with `branchyard server --detach`"
            )
        self.url = info["url"]
        self._http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {info['token']}"}, timeout=120, trust_env=False
        )

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code < 400:
            return resp
        resp.read()
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = None
        if not isinstance(detail, str):
            detail = f"HTTP {resp.status_code}: {resp.text[:200]}"
        raise _BY_STATUS.get(resp.status_code, errors.BranchyardError)(detail)

    def request(self, method: str, path: str, **kw) -> object:
        try:
            return self._check(self._http.request(method, path, **kw)).json()
        except httpx.TransportError as err:
            raise errors.ServerUnavailable(f"cannot reach the control plane at {self.url}: {err}") from None

    def get(self, path: str, **params) -> object:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict) -> object:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> object:
        return self.request("DELETE", path)

    def follow_log(self, deployment_id: str) -> Iterator[str]:
        try:
            with self._http.stream("GET", f"/api/deployments/{deployment_id}/log", params={"follow": "true"}, timeout=None) as r:
                self._check(r)
                yield from r.iter_text()
        except httpx.TransportError as err:
            raise errors.ServerUnavailable(f"lost the control plane at {self.url}: {err}") from None
