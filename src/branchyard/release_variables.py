"""The built-in variables of a release: what identifies a deployment, under Railway's names (RAILWAY_*) and
branchyard's own (BRANCHYARD_*). Pure: both backends give a release the same facts (local replicas, Kubernetes pods).
"""

from __future__ import annotations


def public_domain(host: str, router_port: int) -> str:
    """The host apps build their links from: with the router's port unless it is a default one (80, 443)."""
    return host if router_port in (80, 443) else f"{host}:{router_port}"


def release_facts(project: str, env_name: str, dep_id: str, sha: str, branch: str | None) -> dict[str, str]:
    """What identifies a deployment, without the RAILWAY_/BRANCHYARD_ prefix: what error trackers (Sentry's
    release and environment) and hooks read. Replicas get these and their own (domain, replica id)."""
    return {
        "PROJECT_NAME": project,
        "PROJECT_ID": project,  # names are unique and stable here: they serve as ids
        "ENVIRONMENT_NAME": env_name,
        "ENVIRONMENT_ID": f"{project}/{env_name}",
        "SERVICE_NAME": "web",
        "SERVICE_ID": f"{project}/{env_name}/web",
        "GIT_COMMIT_SHA": sha,
        "GIT_BRANCH": branch or "",
        "DEPLOYMENT_ID": dep_id,
    }


def prefixed(facts: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(RAILWAY_*, BRANCHYARD_*) of the same facts, with Railway's older names beside its current ones."""
    railway = {f"RAILWAY_{k}": v for k, v in facts.items()} | {"RAILWAY_ENVIRONMENT": facts["ENVIRONMENT_NAME"]}
    if "PUBLIC_DOMAIN" in facts:
        railway["RAILWAY_STATIC_URL"] = facts["PUBLIC_DOMAIN"]  # the older name of RAILWAY_PUBLIC_DOMAIN
    return railway, {f"BRANCHYARD_{k}": v for k, v in facts.items()}

