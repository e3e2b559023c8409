"""GET /internal/tls/ask?domain=HOST: the edge's on-demand TLS permission check (Caddy's `ask`).

Caddy calls it before ordering a certificate for a name it saw in a TLS handshake: 200 lets it order one, any
other status refuses. It answers 200 only for a host the router serves (a generated host of an existing environment,
previews included, or a custom domain attached to one), 404 otherwise. Open (Caddy sends no token), so it says
nothing else: an empty body either way, and the same answer for a malformed name as for an unknown one. Cheap: it
reads the host set the last route sync computed (at most HOSTS_FRESH seconds old), never the store per call.

Caddy reaches it on the API's loopback listener: `http://127.0.0.1:<api port>/internal/tls/ask` as the `endpoint`
of `apps.tls.automation.on_demand.permission` (module `http`). It is meant for the edge only: when the control
plane is published through the edge, route `/api`, `/webhooks` and `/git` there, not `/internal`.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from ... import domains
from ...controller.core import Controller

ASK_PATH = domains.ASK_PATH


def ask_url(api_port: int) -> str:
    """The URL the edge asks (its on-demand TLS `permission` endpoint): the API on loopback. Caddy adds `?domain=`."""
    return f"http://127.0.0.1:{api_port}{ASK_PATH}"


def router(ctl: Controller) -> APIRouter:
    """The ask route (open: see api/app.py)."""
    r = APIRouter()

    @r.get(ASK_PATH, include_in_schema=False)
    def ask(domain: str | None = None) -> Response:
        allowed = domains.may_issue(domain, ctl.routes.hosts())
        return Response(status_code=200 if allowed else 404, headers={"Cache-Control": "no-store"})

    return r
