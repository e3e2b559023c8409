"""This machine as the controller sees it: the Caddy router, process replicas, task records, data servers."""

from __future__ import annotations

from ...settings import Settings
from ..ports import Machine
from .caddy import Router
from .certificates import CaddyCertificates, CaddyLogErrors
from .data import LocalDataServers
from .runtime import LocalRuntime
from .tasks import TaskRecords


def local_machine(settings: Settings) -> Machine:
    tasks = TaskRecords(settings.home / "tasks")
    router = Router(home=settings.home / "caddy", http_port=settings.http_port, admin_port=settings.admin_port)
    # Caddy's storage roots (its own layout under the router's home): the tier that terminates TLS keeps the
    # certificates there; both are read, so it does not matter here which tier that is.
    caddy = settings.home / "caddy"
    storage = [caddy / "data" / "caddy-edge", caddy / "data" / "caddy"]
    errors = CaddyLogErrors([caddy / "edge.log", caddy / "caddy.log"])  # the CA's refusals, as Caddy logs them
    return Machine(router=router, runtime=LocalRuntime(tasks), tasks=tasks, data=LocalDataServers(settings),
                   certificates=CaddyCertificates(storage, errors=errors))
