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


def test_hooks_and_tests_get_the_deployments_facts_under_both_names():
    from branchyard.controller.replicas import prefixed, release_facts

    railway, own = prefixed(release_facts("shop", "staging", "d" * 32, "a" * 40, None))
    assert (railway["RAILWAY_GIT_COMMIT_SHA"], railway["RAILWAY_DEPLOYMENT_ID"], railway["RAILWAY_GIT_BRANCH"]) == (
        "a" * 40, "d" * 32, "")
    assert (railway["RAILWAY_ENVIRONMENT_NAME"], railway["RAILWAY_SERVICE_NAME"], railway["RAILWAY_PROJECT_NAME"]) == (
        "staging", "web", "shop")
    assert own == {"BRANCHYARD_" + k.removeprefix("RAILWAY_"): v for k, v in railway.items() if k != "RAILWAY_ENVIRONMENT"}


# The layering (what Sentry's release reads): a user's own RAILWAY_* value wins, as on Railway where a service
# variable shadows the provided one; BRANCHYARD_* and PORT are the platform's and nothing overrides them.
@pytest.mark.parametrize(
    ("user", "name", "value"),
    [
        ({}, "RAILWAY_GIT_COMMIT_SHA", "a" * 40),
        ({"RAILWAY_GIT_COMMIT_SHA": "mine"}, "RAILWAY_GIT_COMMIT_SHA", "mine"),
        ({"RAILWAY_ENVIRONMENT_NAME": "prod-eu"}, "RAILWAY_ENVIRONMENT_NAME", "prod-eu"),
        ({"BRANCHYARD_GIT_COMMIT_SHA": "mine"}, "BRANCHYARD_GIT_COMMIT_SHA", "a" * 40),
        ({"BRANCHYARD_DEPLOYMENT_ID": "mine"}, "BRANCHYARD_DEPLOYMENT_ID", "d" * 32),
        ({"PORT": "1"}, "PORT", "5001"),
        ({"PATH": "/mine"}, "PATH", "/mine"),  # the app's variables over the clean base
        ({"SENTRY_DSN": "https://k@o.ingest/1"}, "SENTRY_DSN", "https://k@o.ingest/1"),
    ],
)
def test_layering_a_users_own_value_against_the_platforms(user, name, value):
    from branchyard.controller.replicas import layered

    railway, own = builtin_variables(CTX, 0, port=5001, router_port=80)
    env = layered({"PATH": "/usr/bin", "HOME": "/h"}, railway, user, own)
    assert env[name] == value
    assert env["HOME"] == "/h"
