"""A replica's built-in variables: Railway's documented names (RAILWAY_*) and branchyard's own, the same facts."""

from pathlib import Path

import pytest

from branchyard.controller.replicas import ReleaseCtx, builtin_variables, public_domain

CTX = ReleaseCtx(project="shop", env_id=7, env_name="staging", dep_id="d" * 32, host="shop-staging.localhost",
                 src=Path("/r"), venv=Path("/v"), start_command="x", variables={}, sha="a" * 40, branch="develop",
                 healthcheck_path=None, healthcheck_timeout=30, draining_seconds=0, overlap_seconds=0, replicas=1)


@pytest.mark.parametrize(
    ("router_port", "expected"),
    [(80, "shop-staging.localhost"), (443, "shop-staging.localhost"), (8080, "shop-staging.localhost:8080"),
     (18443, "shop-staging.localhost:18443")],
)
def test_public_domain_carries_the_routers_port_unless_it_is_a_default_one(router_port, expected):
    assert public_domain("shop-staging.localhost", router_port) == expected
    railway, own = builtin_variables(CTX, 0, port=5001, router_port=router_port)
    assert railway["RAILWAY_PUBLIC_DOMAIN"] == own["BRANCHYARD_PUBLIC_DOMAIN"] == expected


def test_railway_variables_are_the_documented_names_with_branchyards_facts():
    railway, own = builtin_variables(CTX, 2, port=5001, router_port=8080)
    assert railway == {
        "RAILWAY_PROJECT_NAME": "shop",
        "RAILWAY_PROJECT_ID": "shop",
        "RAILWAY_ENVIRONMENT_NAME": "staging",
        "RAILWAY_ENVIRONMENT_ID": "shop/staging",
        "RAILWAY_ENVIRONMENT": "staging",
        "RAILWAY_SERVICE_NAME": "web",
        "RAILWAY_SERVICE_ID": "shop/staging/web",
        "RAILWAY_PUBLIC_DOMAIN": "shop-staging.localhost:8080",
        "RAILWAY_STATIC_URL": "shop-staging.localhost:8080",
        "RAILWAY_GIT_COMMIT_SHA": "a" * 40,
        "RAILWAY_GIT_BRANCH": "develop",
        "RAILWAY_DEPLOYMENT_ID": "d" * 32,
        "RAILWAY_REPLICA_ID": "staging.web.2",
    }
    assert own["PORT"] == "5001" and own["BRANCHYARD_REPLICA_ID"] == "staging.web.2"
    assert {k.removeprefix("BRANCHYARD_") for k in own if k != "PORT"} == {
        k.removeprefix("RAILWAY_") for k in railway if k not in ("RAILWAY_ENVIRONMENT", "RAILWAY_STATIC_URL")}
