"""A sleeping environment's route that wakes it (issue 17), built from Caddy's own handlers (pure).

The chain is Caddy's `forward_auth` pattern, then a second proxy:
1. `reverse_proxy` to the control plane's loopback API, the request rewritten to `GET /internal/wake/<project>/<env>`
   with the home's wake secret in a header (only on that upstream request: the app never sees it). The control plane
   answers once a replica is healthy AND the router serves the environment's new route. On a 2xx its
   `handle_response` routes write nothing, so Caddy goes on to the next handler with the ORIGINAL request (method,
   path, query and body untouched: tests/e2e/test_sleep_wake.py posts a body through it); on anything else they
   write the router's "unavailable" page.
2. `reverse_proxy` back into the routes tier itself (same Host), which by then routes to the woken replicas. It marks
   the request (WOKEN_HEADER), and a wake route answers a marked request with the unavailable page instead of waking
   again, so a route that is still (or again) asleep can never loop.
The held request waits in Caddy, not in the control plane: the control plane holds one future per environment
(controller/sleep.py), however many requests wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...internal_auth import WAKE_HEADER

WAKE_PATH = "/internal/wake"  # + /<project>/<environment> (api/routes/wake.py)
WOKEN_HEADER = "X-Branchyard-Woken"
ASK_TRY_DURATION = "15s"  # dialling the control plane is retried this long (a restart takes a few seconds)


@dataclass(frozen=True)
class WakeTarget:
    """Where the routes tier asks for a wake: the control plane's API on loopback, and the secret it sends."""

    api_port: int
    secret: str


def handler(project: str, environment: str, *, target: WakeTarget, routes_port: int,
            unavailable: dict[str, Any]) -> dict[str, Any]:
    """The subroute that wakes `project`/`environment` and then proxies the held request; `unavailable` is the
    handler that answers when waking fails (the router's 503 page)."""
    ask = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"127.0.0.1:{target.api_port}"}],
        # a control plane restarting (its API not yet listening) is waited for, not answered with an error page
        "load_balancing": {"try_duration": ASK_TRY_DURATION, "try_interval": "250ms"},
        # the trailing "?" drops the client's query string: it may carry tokens, and the endpoint needs none
        "rewrite": {"method": "GET", "uri": f"{WAKE_PATH}/{project}/{environment}?"},
        "headers": {"request": {"set": {WAKE_HEADER: [target.secret]},
                                "delete": ["Authorization", "Cookie", "Proxy-Authorization"]}},
        "handle_response": [
            {"match": {"status_code": [2]}, "routes": [{"handle": [{"handler": "vars"}]}]},  # writes nothing: go on
            {"routes": [{"handle": [unavailable]}]},
        ],
    }
    again = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"127.0.0.1:{routes_port}"}],
        "headers": {"request": {"set": {WOKEN_HEADER: ["1"]}}},
    }
    return {"handler": "subroute", "routes": [
        {"match": [{"header": {WOKEN_HEADER: ["1"]}}], "handle": [unavailable], "terminal": True},
        {"handle": [ask, again], "terminal": True},
    ]}
