"""This machine as the controller sees it: the Caddy router, process replicas, task records."""

from __future__ import annotations

from ...settings import Settings
from ..ports import Machine
from .caddy import Router
from .runtime import LocalRuntime
from .tasks import TaskRecords


def local_machine(settings: Settings) -> Machine:
    tasks = TaskRecords(settings.home / "tasks")
    router = Router(home=settings.home / "caddy", http_port=settings.http_port, admin_port=settings.admin_port)
    return Machine(router=router, runtime=LocalRuntime(tasks), tasks=tasks)
