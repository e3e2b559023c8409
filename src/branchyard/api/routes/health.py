"""GET /api/health: whether the control plane answers, and its version."""

from __future__ import annotations

from fastapi import APIRouter

from ... import __version__


def router() -> APIRouter:
    """The health route; it needs no controller."""
    r = APIRouter()

    @r.get("/api/health")
    def health() -> dict:
        return {"ok": True, "version": __version__}

    return r
