"""The control plane's HTTP API (loopback, bearer token). Thin: every route calls the controller."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import Depends, FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..controller.core import Controller
from ..errors import BadInput, BranchyardError, NotFound, Unauthorized
from ..triggers.github_webhook import check_size


class ProjectIn(BaseModel):
    name: str
    upstream: str | None = None
    github_repository: str | None = None


class GithubIn(BaseModel):
    webhook_secret: str | None = None
    repository: str | None = None


class EnvironmentIn(BaseModel):
    name: str
    branch: str | None = None


class RedeployIn(BaseModel):
    deployment_id: str | None = None


class ScaleIn(BaseModel):
    service: str = "web"
    replicas: int


class VariablesIn(BaseModel):
    variables: dict[str, str]
    secret: bool = False
    skip_deploys: bool = False


class PluginIn(BaseModel):
    plugin: str


class RestoreIn(BaseModel):
    backup_id: str


class RefreshIn(BaseModel):
    source: str


class PromotionIn(BaseModel):
    source: str
    target: str
    actor: str = "cli"


class ConfirmIn(BaseModel):
    confirm: str
    actor: str = "cli"


class ApprovalIn(BaseModel):
    approver: str


class CancelIn(BaseModel):
    actor: str = "cli"
    reason: str = "cancelled"


class PushIn(BaseModel):
    ref: str
    old: str
    new: str
    git_env: dict[str, str] = Field(default_factory=dict)


def create_app(controller: Controller, token: str) -> FastAPI:
    app = FastAPI(title="branchyard", version=__version__, docs_url=None, redoc_url=None)

    @app.exception_handler(BranchyardError)
    async def _error(_request: Request, err: BranchyardError) -> JSONResponse:
        return JSONResponse({"detail": str(err), "error": type(err).__name__}, status_code=err.http_status)

    def auth(authorization: str | None = Header(default=None)) -> None:
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("missing or wrong API token")

    ctl = controller
    api = Depends(auth)

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "version": __version__}

    @app.get("/api/projects", dependencies=[api])
    def projects() -> list[dict]:
        return ctl.projects.list()

    @app.post("/api/projects", dependencies=[api])
    def create_project(body: ProjectIn) -> dict:
        return ctl.projects.create(body.name, body.upstream, body.github_repository)

    @app.post("/api/projects/{project}/github", dependencies=[api])
    def configure_github(project: str, body: GithubIn) -> dict:
        return ctl.projects.configure_github(project, webhook_secret=body.webhook_secret, repository=body.repository)

    @app.get("/api/projects/{project}/previews", dependencies=[api])
    def previews(project: str) -> list[dict]:
        return ctl.previews.list(project)

    @app.post("/api/projects/{project}/previews/{number}/approve", dependencies=[api])
    def approve_preview(project: str, number: int) -> dict:
        return ctl.previews.approve(project, number)

    @app.post("/webhooks/github")
    async def github_webhook(request: Request) -> JSONResponse:
        """GitHub deliveries. Not behind the API token (GitHub cannot send it): the HMAC signature protects it."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit():
            check_size(int(length))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            check_size(size)  # a chunked body is cut off at the limit, never read whole
            chunks.append(chunk)
        status, answer = await run_in_threadpool(
            ctl.webhooks.receive, event=request.headers.get("x-github-event"),
            delivery=request.headers.get("x-github-delivery"), signature=request.headers.get("x-hub-signature-256"),
            content_type=request.headers.get("content-type"), body=b"".join(chunks),
        )
        return JSONResponse(answer, status_code=status)

    @app.get("/api/projects/{project}", dependencies=[api])
    def project(project: str) -> dict:
        return ctl.projects.info(project)

    @app.get("/api/projects/{project}/environments", dependencies=[api])
    def environments(project: str) -> list[dict]:
        return ctl.environments.list(project)

    @app.post("/api/projects/{project}/environments", dependencies=[api])
    def add_environment(project: str, body: EnvironmentIn) -> dict:
        return ctl.environments.add(project, body.name, branch=body.branch)

    @app.get("/api/projects/{project}/environments/{env}", dependencies=[api])
    def environment(project: str, env: str) -> dict:
        return ctl.environments.info(project, env)

    @app.delete("/api/projects/{project}/environments/{env}", dependencies=[api])
    def delete_environment(project: str, env: str) -> dict:
        ctl.teardown.delete_environment(project, env)
        return {"deleted": env}

    @app.get("/api/projects/{project}/environments/{env}/deployments", dependencies=[api])
    def deployments(project: str, env: str, limit: int = 50) -> list[dict]:
        return ctl.environments.deployments(project, env, limit)

    @app.get("/api/projects/{project}/environments/{env}/logs", dependencies=[api])
    def logs(project: str, env: str, lines: int = 100, build: bool = False, deployment: str | None = None) -> dict:
        return ctl.environments.logs(project, env, lines=lines, build=build, deployment_id=deployment)

    @app.post("/api/projects/{project}/environments/{env}/redeploy", dependencies=[api])
    def redeploy(project: str, env: str, body: RedeployIn) -> dict:
        target = body.deployment_id or ctl.environments.info(project, env)["current_deployment"]
        if isinstance(target, dict):
            target = target["id"]
        if not target:
            raise NotFound(f"environment {env!r} has no deployment to redeploy")
        return {"deployment_id": ctl.deployer.redeploy(project, env, target)}

    @app.post("/api/projects/{project}/environments/{env}/rollback", dependencies=[api])
    def rollback(project: str, env: str) -> dict:
        return {"deployment_id": ctl.deployer.rollback(project, env)}

    @app.post("/api/projects/{project}/environments/{env}/down", dependencies=[api])
    def down(project: str, env: str) -> dict:
        return ctl.environments.down(project, env)

    @app.post("/api/projects/{project}/environments/{env}/wake", dependencies=[api])
    def wake(project: str, env: str) -> dict:
        return {"deployment_id": ctl.environments.wake(project, env)}

    @app.post("/api/projects/{project}/environments/{env}/scale", dependencies=[api])
    def scale(project: str, env: str, body: ScaleIn) -> dict:
        if body.service != "web":
            raise BadInput(f"scale: unknown service {body.service!r} (only web runs replicas)")
        return ctl.environments.scale(project, env, body.replicas)

    @app.get("/api/projects/{project}/environments/{env}/variables", dependencies=[api])
    def variables(project: str, env: str) -> dict:
        return ctl.variables.effective(project, env)

    @app.post("/api/projects/{project}/environments/{env}/variables/reveal", dependencies=[api])
    def reveal_variables(project: str, env: str) -> dict:
        """Plain values, for `branchyard run` and `connect` on this machine only: the one place secrets leave."""
        return ctl.variables.effective(project, env, reveal=True)

    @app.post("/api/projects/{project}/environments/{env}/variables", dependencies=[api])
    def set_variables(project: str, env: str, body: VariablesIn) -> dict:
        return ctl.variables.set(project, env, body.variables, secret=body.secret, deploy=not body.skip_deploys)

    @app.delete("/api/projects/{project}/environments/{env}/variables/{key}", dependencies=[api])
    def delete_variable(project: str, env: str, key: str, skip_deploys: bool = False) -> dict:
        return ctl.variables.delete(project, env, key, deploy=not skip_deploys)

    @app.post("/api/projects/{project}/environments/{env}/plugins", dependencies=[api])
    def add_plugin(project: str, env: str, body: PluginIn) -> dict:
        return ctl.databases.add_plugin(project, env, body.plugin)

    @app.post("/api/projects/{project}/environments/{env}/connection/{kind}", dependencies=[api])
    def connection(project: str, env: str, kind: str) -> dict:
        if kind not in ("postgres", "redis"):
            raise BadInput(f"connect: unknown service {kind!r} (postgres or redis)")
        return ctl.databases.connection(project, env, kind)

    @app.get("/api/projects/{project}/templates", dependencies=[api])
    def templates(project: str) -> list[dict]:
        return ctl.data.list_templates(project)

    @app.delete("/api/projects/{project}/templates", dependencies=[api])
    def drop_templates(project: str, key: str | None = None) -> dict:
        return {"dropped": ctl.data.drop_templates(project, key)}

    @app.post("/api/projects/{project}/environments/{env}/backups", dependencies=[api])
    def backup(project: str, env: str) -> dict:
        return ctl.backups.create(project, env)

    @app.get("/api/projects/{project}/environments/{env}/backups", dependencies=[api])
    def backups(project: str, env: str) -> list[dict]:
        return ctl.backups.list(project, env)

    @app.post("/api/projects/{project}/environments/{env}/restore", dependencies=[api])
    def restore(project: str, env: str, body: RestoreIn) -> dict:
        return ctl.backups.restore(project, env, body.backup_id)

    @app.post("/api/projects/{project}/environments/{env}/refresh", dependencies=[api])
    def refresh(project: str, env: str, body: RefreshIn) -> dict:
        return ctl.databases.refresh(project, env, body.source)

    @app.post("/api/projects/{project}/push", dependencies=[api])
    def push(project: str, body: PushIn) -> dict:
        result = ctl.pushes.receive(project, body.ref, body.old, body.new, body.git_env)
        return {"deployment_id": result.deployment_id, "note": result.note}

    @app.get("/api/deployments/{deployment_id}", dependencies=[api])
    def deployment(deployment_id: str) -> dict:
        return ctl.environments.deployment(deployment_id)

    @app.get("/api/deployments/{deployment_id}/log", dependencies=[api])
    async def deployment_log(deployment_id: str, follow: bool = False, offset: int = 0):
        text, offset, done = await run_in_threadpool(ctl.environments.read_log, deployment_id, offset)
        if not follow:
            return StreamingResponse(iter([text]), media_type="text/plain")

        async def stream():
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

    @app.post("/api/projects/{project}/promotions", dependencies=[api])
    def plan_promotion(project: str, body: PromotionIn) -> dict:
        return ctl.promotions.create(project, body.source, body.target, body.actor)

    @app.get("/api/projects/{project}/promotions", dependencies=[api])
    def promotions(project: str, limit: int = 50) -> list[dict]:
        return ctl.promotions.list(project, limit)

    @app.get("/api/promotions/{promotion_id}", dependencies=[api])
    def promotion(promotion_id: str) -> dict:
        return ctl.promotions.get(promotion_id)

    @app.post("/api/promotions/{promotion_id}/confirm", dependencies=[api])
    def confirm_promotion(promotion_id: str, body: ConfirmIn) -> dict:
        return ctl.promotions.confirm(promotion_id, body.confirm, body.actor)

    @app.post("/api/promotions/{promotion_id}/approvals", dependencies=[api])
    def approve_promotion(promotion_id: str, body: ApprovalIn) -> dict:
        return ctl.promotions.approve(promotion_id, body.approver)

    @app.post("/api/promotions/{promotion_id}/cancel", dependencies=[api])
    def cancel_promotion(promotion_id: str, body: CancelIn) -> dict:
        return ctl.promotions.cancel(promotion_id, body.actor, body.reason)

    @app.get("/api/projects/{project}/policy", dependencies=[api])
    def policy_facts(project: str) -> dict:
        from ..controller.policy_facts import live_facts

        return live_facts(ctl.store, ctl.data, ctl.guards, project)

    @app.get("/api/events", dependencies=[api])
    def events(project: str | None = None, environment: str | None = None, limit: int = 100) -> list[dict]:
        return ctl.environments.events(project, environment, limit)

    return app
