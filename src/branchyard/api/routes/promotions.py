"""Promotions: plan, list, show, confirm, approve, cancel; and the live facts the policy checks read."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ...access import Actor, Permission
from ...controller.core import Controller
from ...controller.policy_facts import live_facts
from ...errors import BadInput
from ..permissions import allow


class PromotionIn(BaseModel):
    source: str
    target: str


class ConfirmIn(BaseModel):
    confirm: str


class ApprovalIn(BaseModel):
    approver: str | None = None  # gone: the approver is the authenticated user (refused when given)


class CancelIn(BaseModel):
    reason: str = "cancelled"


def router(ctl: Controller) -> APIRouter:
    """The promotion and policy routes."""
    r = APIRouter()

    @r.post("/api/projects/{project}/promotions")
    def plan_promotion(project: str, body: PromotionIn, who: Actor = allow(Permission.PROMOTE)) -> dict:
        return ctl.promotions.create(project, body.source, body.target, who)

    @r.get("/api/projects/{project}/promotions")
    def promotions(project: str, limit: int = 50, who: Actor = allow(Permission.READ)) -> list[dict]:
        return ctl.promotions.list(project, limit)

    @r.get("/api/promotions/{promotion_id}")
    def promotion(promotion_id: str, who: Actor = allow(Permission.READ)) -> dict:
        # `your_approval`: whether the asking user's approval would count, and why not (the dashboard's Approve button)
        why = ctl.promotions.approval_refusal(promotion_id, who) if who.is_user else None
        return ctl.promotions.get(promotion_id) | {"your_approval": {"counts": why is None, "why": why}}

    @r.post("/api/promotions/{promotion_id}/confirm")
    def confirm_promotion(promotion_id: str, body: ConfirmIn, who: Actor = allow(Permission.PROMOTE)) -> dict:
        return ctl.promotions.confirm(promotion_id, body.confirm, who)

    @r.post("/api/promotions/{promotion_id}/approvals")
    def approve_promotion(promotion_id: str, body: ApprovalIn | None = None, who: Actor = allow(Permission.APPROVE)) -> dict:
        if body is not None and body.approver is not None:
            raise BadInput("approve: an approver name is not accepted any more: the approval is recorded for the "
                           "user whose token made the request")
        return ctl.promotions.approve(promotion_id, who)

    @r.post("/api/promotions/{promotion_id}/cancel")
    def cancel_promotion(promotion_id: str, body: CancelIn, who: Actor = allow(Permission.PROMOTE)) -> dict:
        return ctl.promotions.cancel(promotion_id, who, body.reason)

    @r.get("/api/projects/{project}/policy")
    def policy_facts(project: str, who: Actor = allow(Permission.READ)) -> dict:
        return live_facts(ctl.store, ctl.data, ctl.guards, project, costs=ctl.costs, runtime=ctl.replicas.runtime,
                          measures=ctl.metrics.current)

    return r
