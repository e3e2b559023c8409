"""Sleep and wake (issue 17), the pure parts as tables: `sleepAfter` values, which rule decides an environment's idle
time, the idle decision, branchyard.toml errors, the wake route's Caddy JSON and the Route contract; and the internal
wake endpoint's secret (403 before anything is woken)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from branchyard import internal_auth
from branchyard.api.routes import wake as wake_api
from branchyard.backends.local.caddy import parse_routes, render_config
from branchyard.backends.local.wake_route import WakeTarget
from branchyard.backends.ports import Route
from branchyard.errors import BadInput, SpecError
from branchyard.settings import preview_sleep_after
from branchyard.spec import load_project
from branchyard.spec.sleep import effective, should_sleep, sleep_after
from branchyard.spec.values import InvalidValue


@pytest.mark.parametrize(("value", "seconds"), [
    (600, 600), (2, 2), (0, 0), (False, 0), ("600", 600), ("45s", 45), ("10m", 600), ("10 min", 600), ("2h", 7200),
    ("1d", 86400), (" 30 seconds ", 30), ("0", 0), (30 * 86400, 30 * 86400),
])
def test_sleep_after_values(value: object, seconds: int) -> None:
    assert sleep_after(value) == seconds


@pytest.mark.parametrize("value", [True, -1, 1.5, "10 parsecs", "m", "", None, [600], 30 * 86400 + 1, "31d"])
def test_sleep_after_refuses(value: object) -> None:
    with pytest.raises(InvalidValue, match=r"^expected seconds \(e\.g\. 600\) or a duration like \"10m\""):
        sleep_after(value)


@pytest.mark.parametrize(("declared", "sleep_application", "production", "ephemeral", "preview_default", "expected"), [
    (None, False, True, False, 1800, (None, "default: never")),  # production never sleeps unless told
    (None, False, False, False, 1800, (None, "default: never")),  # nor does staging
    (None, False, False, True, 1800, (1800, "previews' default (BRANCHYARD_PREVIEW_SLEEP_AFTER)")),
    (None, False, False, True, 0, (None, "previews' default (BRANCHYARD_PREVIEW_SLEEP_AFTER)")),  # operator: never
    (None, True, True, False, 1800, (600, "sleepApplication (Railway: 10 minutes)")),  # told, by Railway's key
    (None, True, False, True, 1800, (600, "sleepApplication (Railway: 10 minutes)")),
    (120, False, True, False, 1800, (120, "sleepAfter")),
    (120, True, False, True, 1800, (120, "sleepAfter")),  # the environment's own value wins over both defaults
    (0, True, False, True, 1800, (None, "sleepAfter")),  # 0: never, whatever else says
])
def test_which_rule_decides(declared, sleep_application, production, ephemeral, preview_default, expected) -> None:
    assert effective(declared, sleep_application=sleep_application, production=production, ephemeral=ephemeral,
                     preview_default=preview_default) == expected


@pytest.mark.parametrize(("declared", "sleep_application", "ephemeral"), [
    (None, False, True),  # a cron preview: not the previews' default
    (None, True, False),  # nor sleepApplication
    (120, False, False),  # nor its own sleepAfter
])
def test_a_cron_service_never_sleeps_for_want_of_requests(declared, sleep_application, ephemeral) -> None:
    assert effective(declared, sleep_application=sleep_application, production=False, ephemeral=ephemeral,
                     preview_default=1800, cron=True) == (None, "a cron service: its schedule runs it, no request does")


@pytest.mark.parametrize(("last", "now", "after", "sleeps"), [
    (1000.0, 1599.9, 600, False),
    (1000.0, 1600.0, 600, True),
    (1000.0, 9999.0, None, False),  # never
    (1000.0, 9999.0, 0, False),
    (1000.0, 1002.0, 2, True),
    (1005.0, 1000.0, 2, False),  # activity "in the future" (clock skew between the access log and us): awake
])
def test_the_idle_decision(last: float, now: float, after: int | None, sleeps: bool) -> None:
    assert should_sleep(last, now, after) is sleeps


def write(root: Path, toml: str) -> Path:
    (root / "branchyard.toml").write_text(textwrap.dedent(toml).lstrip())
    return root


BASE = """
[project]
name = "shop"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
{staging}

[environments.pr]
base = "staging"
{pr}
"""


@pytest.mark.parametrize(("staging", "pr", "env", "declared"), [
    ("sleepAfter = 600", "", "staging", 600),
    ('sleepAfter = "10m"', "", "staging", 600),
    ("sleepAfter = false", "", "staging", 0),
    ("", 'sleepAfter = "5m"', "pr-7", 300),  # the pr template's value applies to every preview
    ('sleepAfter = "5m"', "", "pr-7", None),  # not through `base`: a preview takes the template's (here: none)
    ("", "", "production", None),
])
def test_sleep_after_in_branchyard_toml(tmp_path: Path, staging: str, pr: str, env: str, declared: int | None) -> None:
    spec = load_project(write(tmp_path, BASE.format(staging=staging, pr=pr)))
    assert spec.environment(env).sleep_after == declared
    assert spec.environment(env).to_dict()["sleep_after"] == declared


@pytest.mark.parametrize(("staging", "message"), [
    ('sleepAfter = "soon"', 'branchyard.toml: environments.staging.sleepAfter: expected seconds (e.g. 600) or a duration '
                            'like "10m"; 0 or false: never, got "soon" (line 9)'),
    ("sleepAfter = -5", 'branchyard.toml: environments.staging.sleepAfter: expected seconds (e.g. 600) or a duration '
                        'like "10m"; 0 or false: never (at most 2592000 s), got -5 (line 9)'),
])
def test_a_bad_sleep_after_is_one_line_naming_file_field_and_value(tmp_path: Path, staging: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        load_project(write(tmp_path, BASE.format(staging=staging, pr="")))
    assert str(err.value) == message


@pytest.mark.parametrize(("raw", "seconds"), [(None, 1800), ("", 1800), ("0", 0), ("15m", 900), ("90", 90)])
def test_the_operators_preview_default(raw: str | None, seconds: int) -> None:
    env = {} if raw is None else {"BRANCHYARD_PREVIEW_SLEEP_AFTER": raw}
    assert preview_sleep_after(env) == seconds


def test_a_bad_preview_default_names_the_setting() -> None:
    with pytest.raises(BadInput, match=r'^BRANCHYARD_PREVIEW_SLEEP_AFTER: expected seconds .* got "later"$'):
        preview_sleep_after({"BRANCHYARD_PREVIEW_SLEEP_AFTER": "later"})


# --- the route ----------------------------------------------------------------------------------

def test_only_a_sleeping_route_wakes() -> None:
    Route(host="a.localhost", project="a", environment="pr-1", upstreams=(), state="sleeping", wake=True)
    with pytest.raises(BadInput, match="only a sleeping route wakes on a request, not a unavailable one"):
        Route(host="a.localhost", project="a", environment="pr-1", upstreams=(), state="unavailable", wake=True)
    with pytest.raises(BadInput, match="only a sleeping route wakes on a request, not a serving one"):
        Route(host="a.localhost", project="a", environment="pr-1", upstreams=("127.0.0.1:5000",), wake=True)


ROUTES = [Route(host="a-pr-1.localhost", project="a", environment="pr-1", upstreams=(), state="sleeping", wake=True),
          Route(host="a-staging.localhost", project="a", environment="staging", upstreams=(), state="sleeping")]


def _handlers(config: dict, host: str) -> list[dict]:
    routes = config["apps"]["http"]["servers"]["branchyard"]["routes"]
    return next(r for r in routes if r.get("match") == [{"host": [host]}])["handle"]


def test_the_wake_route_asks_the_control_plane_then_proxies_back_into_the_routes_tier() -> None:
    config = render_config(ROUTES, routes_port=41000, admin_port=2999, storage_dir=Path("/x"),
                           wake=WakeTarget(api_port=7070, secret="s3cret"))
    meta, sub = _handlers(config, "a-pr-1.localhost")
    assert meta["branchyard_wake"] is True and sub["handler"] == "subroute"
    loop_guard, chain = sub["routes"]
    assert loop_guard["match"] == [{"header": {"X-Branchyard-Woken": ["1"]}}]
    assert loop_guard["handle"][0]["status_code"] == 503
    ask, again = chain["handle"]
    assert ask["upstreams"] == [{"dial": "127.0.0.1:7070"}]
    assert ask["rewrite"] == {"method": "GET", "uri": "/internal/wake/a/pr-1?"}
    assert ask["headers"]["request"]["set"] == {"X-Branchyard-Wake-Secret": ["s3cret"]}
    assert ask["handle_response"][0] == {"match": {"status_code": [2]}, "routes": [{"handle": [{"handler": "vars"}]}]}
    assert ask["handle_response"][1]["routes"][0]["handle"][0]["status_code"] == 503  # the unavailable page
    assert again["upstreams"] == [{"dial": "127.0.0.1:41000"}]
    # `down` keeps the sleeping page; without a wake target (a machine torn down) so does an idle sleep
    assert _handlers(config, "a-staging.localhost")[1]["handler"] == "static_response"
    plain = render_config(ROUTES, routes_port=41000, admin_port=2999, storage_dir=Path("/x"))
    assert _handlers(plain, "a-pr-1.localhost")[1]["handler"] == "static_response"
    assert sorted(parse_routes(config), key=lambda r: r.host) == ROUTES  # the wake flag reads back


# --- the internal endpoint ----------------------------------------------------------------------

def test_the_wake_endpoint_refuses_without_the_secret_and_wakes_with_it(tmp_path: Path) -> None:
    asked: list[tuple[str, str, str]] = []

    class Sleeper:
        def wake(self, project: str, env: str, *, trigger: str):
            from concurrent.futures import Future

            asked.append((project, env, trigger))
            done: Future[str] = Future()
            done.set_result(f"{env} woke in 0.1 s")
            return done

        def health_timeout(self, project: str, env: str) -> float:
            return 5.0

    ctl = SimpleNamespace(settings=SimpleNamespace(home=tmp_path), sleeper=Sleeper())
    app = FastAPI()
    app.include_router(wake_api.router(ctl))  # type: ignore[arg-type]
    client = TestClient(app)
    secret = internal_auth.wake_secret(tmp_path)
    assert (tmp_path / internal_auth.WAKE_SECRET_FILE).stat().st_mode & 0o777 == 0o600
    for headers in ({}, {"X-Branchyard-Wake-Secret": ""}, {"X-Branchyard-Wake-Secret": secret + "x"}):
        r = client.get("/internal/wake/a/pr-1", headers=headers)
        assert (r.status_code, r.text) == (403, "")
    assert asked == []
    r = client.get("/internal/wake/a/pr-1", headers={"X-Branchyard-Wake-Secret": secret})
    assert (r.status_code, r.text) == (200, "pr-1 woke in 0.1 s\n") and asked == [("a", "pr-1", "request")]
    assert internal_auth.wake_secret(tmp_path) == secret  # made once, kept


def test_a_wake_that_fails_answers_503_with_one_line(tmp_path: Path) -> None:
    from concurrent.futures import Future

    from branchyard.errors import DeployFailed

    class Sleeper:
        def wake(self, project: str, env: str, *, trigger: str):
            failed: Future[str] = Future()
            failed.set_exception(DeployFailed("replica web.0 failed its health check: process exited with code 3\nmore"))
            return failed

        def health_timeout(self, project: str, env: str) -> float:
            return 5.0

    app = FastAPI()
    app.include_router(wake_api.router(SimpleNamespace(settings=SimpleNamespace(home=tmp_path), sleeper=Sleeper())))  # type: ignore[arg-type]
    r = TestClient(app).get("/internal/wake/a/pr-1", headers={"X-Branchyard-Wake-Secret": internal_auth.wake_secret(tmp_path)})
    assert (r.status_code, r.text) == (503, "replica web.0 failed its health check: process exited with code 3\n")
