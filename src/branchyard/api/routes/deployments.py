"""Deployments: an environment's list and logs, redeploy, rollback, one deployment and its (followed) build log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ... import logrecords
from ...access import Actor, Permission
from ...controller.core import Controller
from ...errors import BadInput, NotFound
from ..permissions import allow


class RedeployIn(BaseModel):
    deployment_id: str | None = None


def router(ctl: Controller) -> APIRouter:
    """The deployment routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/deployments")
    def deployments(project: str, env: str, limit: int = 50, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.environments.deployments(project, env, limit)

    @r.get("/api/projects/{project}/environments/{env}/logs")
    def logs(project: str, env: str, lines: int = 100, build: bool = False, deployment: str | None = None,
             since: str | None = None, until: str | None = None, level: str | None = None, grep: str | None = None,
             http: str = "exclude", limit: int | None = None, cursor: int | None = None,
             who: Actor = allow(Permission.READ)) -> dict:
        if not 1 <= (limit or lines) <= 100_000:
            raise BadInput(f"logs: limit {limit or lines} is out of range (1 to 100000)")
        query = logrecords.make_query(now=time.time(), since=since, until=until, level=level, grep=grep, http=http,
                                         deployment=deployment, build=build)
        return ctl.environments.logs(project, env, lines=lines, build=build, deployment_id=deployment, query=query,
                                     cursor=cursor, limit=limit)

    @r.post("/api/projects/{project}/environments/{env}/redeploy")
    def redeploy(project: str, env: str, body: RedeployIn, who: Actor = allow(Permission.DEPLOY)) -> dict:
        target = body.deployment_id or ctl.environments.info(project, env)["current_deployment"]
        if isinstance(target, dict):
            target = target["id"]
        if not target:
            raise NotFound(f"environment {env!r} has no deployment to redeploy")
        return {"deployment_id": ctl.deployer.redeploy(project, env, target, actor=who)}

    @r.post("/api/projects/{project}/environments/{env}/rollback")
    def rollback(project: str, env: str, who: Actor = allow(Permission.DEPLOY)) -> dict:
        return {"deployment_id": ctl.deployer.rollback(project, env, actor=who)}

    @r.get("/api/deployments/{deployment_id}")
    def deployment(deployment_id: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.environments.deployment(deployment_id)

    @r.get("/api/deployments/{deployment_id}/log")
    async def deployment_log(deployment_id: str, follow: bool = False, offset: int = 0,
                             who: Actor = allow(Permission.READ)) -> StreamingResponse:
        text, offset, done = await run_in_threadpool(ctl.environments.read_log, deployment_id, offset)
        if not follow:
            return StreamingResponse(iter([text]), media_type="text/plain")

        async def stream() -> AsyncIterator[str]:
            nonlocal text, offset, done
            while True:
                if text:
                    yield text
                if done:
                    # one last read: lines written just before the status turned terminal
                    text, offset, _ = await run_in_threadpool(ctl.environments.read_log, deployment_id, offset)
                    if text:
                        yield text
                    return
                await asyncio.sleep(0.05)
                text, offset, done = await run_in_threadpool(ctl.environments.read_log, deployment_id, offset)

        return StreamingResponse(stream(), media_type="text/plain")

    return r
