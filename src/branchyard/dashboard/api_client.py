"""The dashboard's way to the API: the same app the CLI talks to, called in-process (httpx over ASGI, no socket), with
the signed-in user's token. Every permission check, every masking and every error message is therefore the API's
own; the dashboard has no other way to the controller."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp

API_BASE = "http://branchyard.api"  # never resolved: the transport hands each request to the app directly
TIMEOUT = 1800.0  # planning a promotion runs its smoke tests; the browser waits as the CLI does


class ApiError(Exception):
    """The API answered an error: its status and its one-line `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApiClient:
    """One httpx client over the app (kept for the control plane's life: over ASGI it holds no connection to
    close); a call names the token and the browser's
    address, which the API's wrong-token slowdown counts (it reads the last `X-Forwarded-For` entry of a loopback
    peer, as behind the edge)."""

    def __init__(self, app: ASGIApp) -> None:
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 0)),
                                       base_url=API_BASE, timeout=TIMEOUT)

    def as_user(self, token: str, client_address: str) -> UserApi:
        return UserApi(self._http, token, client_address)


class UserApi:
    """The API as one user sees it."""

    def __init__(self, http: httpx.AsyncClient, token: str, client_address: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": client_address}

    async def get(self, path: str, **params: Any) -> Any:
        return await self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def text(self, path: str, **params: Any) -> str:
        response = await self._http.request("GET", path, params=params, headers=self._headers)
        _raise_for(response)
        return response.text

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self._call("POST", path, json=body if body is not None else {})

    async def delete(self, path: str, **params: Any) -> Any:
        return await self._call("DELETE", path, params=params)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, headers=self._headers, **kwargs)
        _raise_for(response)
        return response.json()


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if not isinstance(detail, str):  # FastAPI's validation errors: a list of problems
        detail = f"the API refused the request ({response.status_code})" if detail is None else _first_problem(detail)
    raise ApiError(response.status_code, detail)


def _first_problem(detail: Any) -> str:
    try:
        problem = detail[0]
        return f"{'.'.join(str(p) for p in problem['loc'][1:])}: {problem['msg']}"
    except (LookupError, TypeError):
        return str(detail)
