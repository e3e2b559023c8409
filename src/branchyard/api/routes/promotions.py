"""Promotions: plan, list, show, confirm, approve, cancel; and the live facts the policy checks read."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...controller.core import Controller
from ...controller.policy_facts import live_facts


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


def router(ctl: Controller) -> APIRouter:
    """The promotion and policy routes."""
    r = APIRouter()

    @r.post("/api/projects/{project}/promotions")
    def plan_promotion(project: str, body: PromotionIn) -> dict:
        return ctl.promotions.create(project, body.source, body.target, body.actor)

    @r.get("/api/projects/{project}/promotions")
    def promotions(project: str, limit: int = 50) -> list[dict]:
        return ctl.promotions.list(project, limit)

    @r.get("/api/promotions/{promotion_id}")
    def promotion(promotion_id: str) -> dict:
        return ctl.promotions.get(promotion_id)

    @r.post("/api/promotions/{promotion_id}/confirm")
    def confirm_promotion(promotion_id: str, body: ConfirmIn) -> dict:
        return ctl.promotions.confirm(promotion_id, body.confirm, body.actor)

    @r.post("/api/promotions/{promotion_id}/approvals")
    def approve_promotion(promotion_id: str, body: ApprovalIn) -> dict:
        return ctl.promotions.approve(promotion_id, body.approver)

    @r.post("/api/promotions/{promotion_id}/cancel")
    def cancel_promotion(promotion_id: str, body: CancelIn) -> dict:
        return ctl.promotions.cancel(promotion_id, body.actor, body.reason)

    @r.get("/api/projects/{project}/policy")
    def policy_facts(project: str) -> dict:
        return live_facts(ctl.store, ctl.data, ctl.guards, project)

    return r
