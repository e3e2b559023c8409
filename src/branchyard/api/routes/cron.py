"""A cron service's runs (issue 17): each slot of its cronSchedule, run or skipped, with exit code and log tail."""

from __future__ import annotations

from fastapi import APIRouter

from ...access import Actor, Permission
from ...controller.core import Controller
from ..permissions import allow


def router(ctl: Controller) -> APIRouter:
    """The cron routes (read only: the schedule lives in the project's files)."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/cron/runs")
    def cron_runs(project: str, env: str, limit: int = 50, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.cron.runs(project, env, limit=max(1, min(limit, 500)))

    return r
