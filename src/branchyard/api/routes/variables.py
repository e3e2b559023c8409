"""Variables: an environment's effective variables (masked, or revealed for `run`/`connect`), set and delete."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ...access import Actor, Permission
from ...controller import oneoff
from ...controller.core import Controller
from ..permissions import allow


class ExecIn(BaseModel):
    command: list[str] = Field(min_length=1)


class VariablesIn(BaseModel):
    variables: dict[str, str]
    secret: bool = False
    skip_deploys: bool = False


def router(ctl: Controller) -> APIRouter:
    """The variable routes."""
    r = APIRouter()

    @r.get("/api/projects/{project}/environments/{env}/variables")
    def variables(project: str, env: str, who: Actor = allow(Permission.READ)) -> dict:
        return ctl.variables.effective(project, env)

    # before .../variables/{key}: a request to .../variables/reveal with neither method is answered by this route (405, Allow: POST)
    @r.post("/api/projects/{project}/environments/{env}/variables/reveal")
    def reveal_variables(project: str, env: str, who: Actor = allow(Permission.SHELL)) -> dict:
        """Plain values, for `branchyard run` and `connect` on this machine only: the one place secrets leave."""
        return ctl.variables.effective(project, env, reveal=True)

    @r.post("/api/projects/{project}/environments/{env}/run")
    def run_context(project: str, env: str, who: Actor = allow(Permission.SHELL)) -> dict:
        """For `branchyard run`: the current release's directory and virtualenv, and the variables (revealed); on a
        cluster backend `{"where": "cluster"}` only: the command runs there (`exec`)."""
        return ctl.oneoffs.context(project, env)

    @r.post("/api/projects/{project}/environments/{env}/exec")
    async def exec_command(project: str, env: str, body: ExecIn, who: Actor = allow(Permission.SHELL)) -> StreamingResponse:
        """`branchyard run` where the caller cannot run it itself: against a control plane elsewhere (the command
        runs here, in the same place a local `run` would), or on a cluster backend (a Job in the environment's
        namespace). Its output streamed as JSON lines ({"output": …} …, then {"exit": N})."""
        if ctl.oneoffs.in_cluster:
            run = await run_in_threadpool(ctl.oneoffs.cluster_run, project, env, body.command)
            return StreamingResponse(ctl.oneoffs.stream_in_cluster(run), media_type="application/x-ndjson")
        where = await run_in_threadpool(ctl.oneoffs.context, project, env)
        return StreamingResponse(oneoff.execute(where, body.command), media_type="application/x-ndjson")

    @r.post("/api/projects/{project}/environments/{env}/variables")
    def set_variables(project: str, env: str, body: VariablesIn, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.variables.set(project, env, body.variables, secret=body.secret, deploy=not body.skip_deploys,
                                 actor=who)

    @r.delete("/api/projects/{project}/environments/{env}/variables/{key}")
    def delete_variable(project: str, env: str, key: str, skip_deploys: bool = False, who: Actor = allow(Permission.CONFIGURE)) -> dict:
        return ctl.variables.delete(project, env, key, deploy=not skip_deploys, actor=who)

    return r
