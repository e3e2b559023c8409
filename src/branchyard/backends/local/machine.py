"""This machine as the controller sees it: the Caddy router, process replicas, task records, data servers."""

from __future__ import annotations

import logging
import urllib.parse

from ...domains import ASK_PATH
from ...errors import BranchyardError
from ...internal_auth import wake_secret
from ...settings import Settings
from ..ports import Machine
from . import netns
from .caddy import ControlPlane, EdgeTLS, Router
from .certificates import CaddyCertificates, CaddyLogErrors
from .cgroups import Cgroups
from .data import LocalDataServers
from .runtime import LocalRuntime
from .tasks import TaskRecords
from .wake_route import WakeTarget

log = logging.getLogger("branchyard.machine")


def local_machine(settings: Settings, *, api_port: int | None = None) -> Machine:
    """api_port: the control plane's API on loopback, which the edge asks before ordering a certificate and
    publishes at BRANCHYARD_PUBLIC_URL (None: neither, e.g. to stop everything)."""
    tasks = TaskRecords(settings.home / "tasks")
    tls = control = wake = None
    if api_port is not None:
        wake = WakeTarget(api_port=api_port, secret=wake_secret(settings.home))  # issue 17: requests wake sleepers
        if settings.tls != "off":
            tls = EdgeTLS(mode=settings.tls, https_port=settings.https_port, acme=settings.acme,
                          ask_url=f"http://127.0.0.1:{api_port}{ASK_PATH}")
        host = urllib.parse.urlsplit(settings.control_url).hostname if settings.control_url else None
        if host:
            control = ControlPlane(host=host.lower(), api_port=api_port)
    router = Router(home=settings.home / "caddy", http_port=settings.http_port, admin_port=settings.admin_port,
                    tls=tls, control=control, wake=wake, access_log_dir=settings.logs_dir if settings.access_log else None)
    # Caddy's storage roots (its own layout under the router's home): the tier that terminates TLS keeps the
    # certificates there; both are read, so it does not matter here which tier that is.
    caddy = settings.home / "caddy"
    storage = [caddy / "data" / "caddy-edge", caddy / "data" / "caddy"]
    errors = CaddyLogErrors([caddy / "edge.log", caddy / "caddy.log"])  # the CA's refusals, as Caddy logs them
    network, why_not = netns.from_settings(settings.home, settings.network_isolation, settings.network_pool)
    if api_port is not None:  # the control plane starts: its table and ip_forward now, said once
        if network is not None:
            try:
                network.setup()
            except BranchyardError as err:
                network, why_not = None, f"{err}; environments share the host network"
        if network is not None:
            log.info("network isolation: on (a namespace per environment, nftables table inet %s, pool %s, "
                     "net.ipv4.ip_forward = 1)", network.table, network.pool)
        else:
            log.warning("network isolation: off — %s", why_not)
    runtime = LocalRuntime(tasks, cgroups=Cgroups(settings.home), netns=network, network_why_not=why_not)
    return Machine(router=router, runtime=runtime, tasks=tasks, data=LocalDataServers(settings, netns=network),
                   certificates=CaddyCertificates(storage, errors=errors))
