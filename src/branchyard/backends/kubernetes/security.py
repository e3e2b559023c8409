"""The security contexts every container and pod branchyard runs gets. Pure.

Containers: no privilege escalation, every capability dropped. Pods: the runtime's default seccomp profile and,
when branchyard knows the image's user, that user and never root (the "restricted" Pod Security Standard).
"""

from __future__ import annotations

from typing import Any


def container() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod(uid: int | None) -> dict[str, Any]:
    """`uid` None: a prebuilt image, whose own user is kept (it may need root: the namespace's "baseline" allows it)."""
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if uid is not None:
        context |= {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    return context
