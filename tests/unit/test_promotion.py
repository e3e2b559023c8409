"""Promotion plans (pure) and the [environments.<env>.promotion] spec keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard import promotion as pm
from branchyard.errors import BadInput, SpecError
from branchyard.secrets import MASK as SECRET_MASK
from branchyard.secrets import Redactor
from branchyard.spec import PromotionSpec, load_project

SECRET_BEFORE = "prod-secret-value-1"
SECRET_AFTER = "prod-secret-value-2"
MASK = Redactor([SECRET_BEFORE, SECRET_AFTER])

CONFIG_BEFORE = {"web": {"replicas": 2, "memory_mb": 1024, "pre_deploy_command": ["python manage.py migrate"]},
                 "postgres": {"memory_mb": 2048}, "redis": {"memory_mb": 512}}
CONFIG_AFTER = {"web": {"replicas": 3, "memory_mb": 1024, "pre_deploy_command": ["python manage.py migrate"]},
                "postgres": {"memory_mb": 2048}, "redis": None}
SPEC = PromotionSpec(source="staging", approvals=2, smoke_command="python manage.py smoke", smoke_timeout=30,
                     require_source=True)


def observed(**overrides) -> pm.Observed:
    base = dict(
        source="staging", target="production",
        source_deployment=pm.DeploymentFacts("sdep-123456", "SUCCESS", "b" * 40),
        source_health=(True, "passing: 1/1 replicas healthy (GET /health)"),
        target_deployment=pm.DeploymentFacts("tdep-123456", "SUCCESS", "a" * 40, CONFIG_BEFORE),
        target_config_after=CONFIG_AFTER,
        variables_before={"LOG_LEVEL": "warning", "TOKEN": SECRET_BEFORE, "OLD": "x"},
        variables_after={"LOG_LEVEL": "warning", "TOKEN": SECRET_AFTER, "NEW": "y"},
        commits=(("b" * 40, "v2"), ("c" * 40, "v1.5")),
        source_env_successes=frozenset({"b" * 40}),
        approvers=("alice", "bob"),
        smoke=pm.SmokeResult(True, "passed"),
    )
    return pm.Observed(**(base | overrides))


def test_plan_content() -> None:
    plan = pm.plan(observed(), SPEC, target_production=True, mask=MASK)
    d = plan.to_dict()
    assert d["commit_range"] == {"from": "a" * 40, "to": "b" * 40, "commits": [{"sha": "b" * 40, "subject": "v2"},
                                                                          {"sha": "c" * 40, "subject": "v1.5"}]}
    assert d["variables"] == [
        {"key": "NEW", "change": "added", "before": None, "after": "y"},
        {"key": "OLD", "change": "removed", "before": "x", "after": None},
        {"key": "TOKEN", "change": "changed", "before": f"{SECRET_MASK} (secret)", "after": f"{SECRET_MASK} (secret, differs)"},
    ]
    assert d["services"] == [{"key": "redis", "before": "present", "after": None},
                             {"key": "web.replicas", "before": 2, "after": 3},
                             {"key": "redis.memory_mb", "before": 512, "after": None}]
    assert d["migrations"] == {"will_run": True, "commands": ["python manage.py migrate"], "backup_first": True}
    assert [(g["id"], g["passed"]) for g in d["gates"]] == [
        ("source-healthy", True), ("smoke-tests", True), ("ran-in-source", True), ("approvals", True)]
    assert d["approvals_required"] == 2
    assert SECRET_BEFORE not in str(d) and SECRET_AFTER not in str(d)
    assert plan.blocking == () and not plan.awaiting_approval


def test_replicas_override_in_the_target_is_kept() -> None:
    plan = pm.plan(observed(), SPEC, target_production=True, mask=MASK, replicas_override=2)
    assert "web.replicas" not in [s["key"] for s in plan.to_dict()["services"]]


def test_first_promotion_has_no_previous_commit_and_no_backup_without_production() -> None:
    plan = pm.plan(observed(target_deployment=None), SPEC, target_production=False, mask=MASK)
    assert plan.commit_from is None
    assert plan.migrations["backup_first"] is False


@pytest.mark.parametrize(("overrides", "gate", "detail"), [
    ({"source_deployment": None}, "source-healthy", "staging has no current deployment"),
    ({"source_deployment": pm.DeploymentFacts("sdep-123456", "CRASHED", "b" * 40)}, "source-healthy",
     "staging's current deployment sdep-123 is CRASHED"),
    ({"source_health": (False, "failing: 0/1 replicas healthy (GET /health)")}, "source-healthy",
     "deployment sdep-123 SUCCESS; health check failing: 0/1 replicas healthy (GET /health)"),
    ({"smoke": pm.SmokeResult(False, "`x` timed out after 2s (killed)")}, "smoke-tests", "`x` timed out after 2s (killed)"),
    ({"smoke": None}, "smoke-tests", "smoke tests did not run"),
    ({"source_env_successes": frozenset()}, "ran-in-source", f"{'b' * 12} never ran successfully in staging"),
    ({"approvers": ("alice", "Alice ", "ALICE")}, "approvals", "1 of 2 approvals (alice)"),
])
def test_each_gate_fails_on_its_own(overrides, gate, detail) -> None:
    plan = pm.plan(observed(**overrides), SPEC, target_production=True, mask=MASK)
    failed = [(g.id, g.detail) for g in plan.gates if not g.passed]
    assert failed[0] == (gate, detail)
    assert len(failed) == (2 if "source_deployment" in overrides and overrides["source_deployment"] is None else 1)
    assert plan.awaiting_approval is (gate == "approvals")
    assert [g.id for g in plan.blocking][:1] == ([] if gate == "approvals" else [gate])


def test_gates_not_configured_are_not_shown() -> None:
    plan = pm.plan(observed(), None, target_production=True, mask=MASK)
    assert [g.id for g in plan.gates] == ["source-healthy"]


def test_distinct_approvers() -> None:
    assert pm.distinct(["Alice", "bob", " alice", "BOB", "carol"]) == ("alice", "bob", "carol")
    with pytest.raises(BadInput, match=r"approve: --as '': expected a name"):
        pm.approver_name("")
    with pytest.raises(BadInput, match=r"approve: --as 'a b'"):
        pm.approver_name("a b")


@pytest.mark.parametrize(("source", "target", "kw", "message"), [
    ("staging", "staging", {}, "promote: staging cannot be promoted to itself"),
    ("production", "staging", {"source_production": True},
     "promote: production is production; nothing is promoted out of production"),
    ("pr-3", "production", {"spec": SPEC},
     "promote: production takes promotions only from staging (branchyard.toml: environments.production.promotion.from), "
     "not from pr-3"),
])
def test_check_route_refuses(source, target, kw, message) -> None:
    args = {"source_production": False, "target_production": True, "spec": None} | kw
    with pytest.raises(BadInput) as err:
        pm.check_route(source, target, **args)
    assert str(err.value).startswith(message)


def test_check_route_allows() -> None:
    pm.check_route("staging", "production", source_production=False, target_production=True, spec=SPEC)
    pm.check_route("qa", "staging", source_production=False, target_production=False, spec=None)


def test_smoke_command_gets_the_url_and_environment() -> None:
    argv, env = pm.smoke_argv_env("python manage.py smoke", url="http://app-staging.localhost:8080",
                                  environment="staging", base_env={"PATH": "/bin"})
    assert argv == ["/bin/sh", "-c", "python manage.py smoke --environment staging"]
    assert env == {"PATH": "/bin", "BRANCHYARD_TARGET_URL": "http://app-staging.localhost:8080",
                   "BRANCHYARD_ENVIRONMENT": "staging"}


# --- the spec keys -------------------------------------------------------------------------------------

BASE = """
[project]
name = "app"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"

[environments.production.promotion]
"""


def load(tmp_path: Path, promotion: str):
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(BASE) + textwrap.dedent(promotion))
    return load_project(tmp_path)


def test_promotion_keys(tmp_path) -> None:
    spec = load(tmp_path, 'from = "staging"\napprovals = 2\nsmokeCommand = "./smoke"\nsmokeTimeout = 9\n'
                          "requireStaging = true\nauto = false\n")
    assert spec.environments["production"].promotion == PromotionSpec("staging", 2, "./smoke", 9, True,
                                                                      prevent_self_review=True)
    assert spec.environments["staging"].promotion is None
    assert spec.warnings == ()


@pytest.mark.parametrize(("text", "message"), [
    ("auto = true\n", "branchyard.toml: environments.production.promotion.auto: promotion is never automatic: remove "
                      "this key and promote with `branchyard promote SOURCE TARGET` (typed confirmation, gates, "
                      "approvals) (line 12)"),
    ('autoPromote = "yes"\n', "branchyard.toml: environments.production.promotion.autoPromote: promotion is never "
                              "automatic"),
    ('from = "qa"\n', "branchyard.toml: environments.production.promotion.from: no environment 'qa' to promote from "
                      "(declared: staging)"),
    ('from = "production"\n', "branchyard.toml: environments.production.promotion.from: an environment cannot be "
                              "promoted from itself ('production')"),
    ("approvals = -1\n", "branchyard.toml: environments.production.promotion.approvals: expected a whole number of at "
                         "least 0, got -1"),
    ("smokeTimeout = 0\n", "branchyard.toml: environments.production.promotion.smokeTimeout: expected integer seconds "
                           "of at least 1, got 0"),
    ("smokeTimeout = 601\n", "branchyard.toml: environments.production.promotion.smokeTimeout: expected integer "
                             "seconds from 1 to 600, got 601"),
    ("requireStaging = true\n", "branchyard.toml: environments.production.promotion.requireStaging: needs from = "
                                '"<environment>"'),
    ("smokeCommand = 3\n", "branchyard.toml: environments.production.promotion.smokeCommand: expected a command "
                           "string, got 3"),
])
def test_promotion_errors(tmp_path, text, message) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    assert str(err.value).startswith(message)


def test_promotion_from_production_and_into_previews_are_refused(tmp_path) -> None:
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(BASE).replace(
        "[environments.production.promotion]", '[environments.staging.promotion]\nfrom = "production"'))
    with pytest.raises(SpecError, match="'production' is production: nothing is promoted out of production"):
        load_project(tmp_path)
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(BASE).replace(
        "[environments.production.promotion]", "[environments.pr.promotion]\napprovals = 1"))
    with pytest.raises(SpecError, match="environments.pr.promotion: previews are not promoted into"):
        load_project(tmp_path)


def test_unknown_promotion_key_is_a_warning(tmp_path) -> None:
    spec = load(tmp_path, 'from = "staging"\napprovers = 2\n')
    assert spec.warnings == ('branchyard.toml: environments.production.promotion.approvers: unknown key '
                             '(did you mean "approvals"?)',)


# --- running the smoke command (real processes, no server) -------------------------------------------------


def _runtime(tmp_path):
    from branchyard.backends.local.runtime import LocalRuntime
    from branchyard.backends.local.tasks import TaskRecords

    return LocalRuntime(TaskRecords(tmp_path / "tasks"))


def test_a_hanging_smoke_command_is_killed_with_its_children(tmp_path) -> None:
    import time

    from branchyard.controller.promotions import run_smoke_command

    started = time.monotonic()
    result = run_smoke_command(_runtime(tmp_path), "sh -c 'sleep 300 & sleep 300'", url="http://127.0.0.1:9", environment="staging",
                               release_dir=tmp_path, cfg_root=".", timeout=1)
    assert not result.passed
    assert result.detail == "`sh -c 'sleep 300 & sleep 300'` against http://127.0.0.1:9 timed out after 1s (killed)"
    assert time.monotonic() - started < 10
    from conftest import processes_mentioning

    assert processes_mentioning("sleep 300", cwd=False) == []


def test_the_example_smoke_command_against_a_real_server(tmp_path) -> None:
    import http.server
    import shutil
    import threading

    from branchyard.controller.promotions import run_smoke_command

    answers = {"/health": (200, b'{"status": "ok"}')}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            code, body = answers.get(self.path, (404, b"{}"))
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = tmp_path / "app"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream", app)
    url = f"http://app-staging.localhost:{server.server_port}"
    try:
        ok = run_smoke_command(_runtime(tmp_path), "python3 manage.py smoke", url=url, environment="staging", release_dir=app, cfg_root=".",
                               timeout=30)
        assert ok.passed, ok.detail
        assert ok.detail.endswith(f"smoke staging: GET {url}/health → 200 ok")
        answers["/health"] = (503, b'{"status": "degraded"}')
        bad = run_smoke_command(_runtime(tmp_path), "python3 manage.py smoke", url=url, environment="production", release_dir=app,
                                cfg_root=".", timeout=30)
        assert not bad.passed
        assert bad.detail.endswith(f"exited with code 1: manage.py: smoke production: GET {url}/health answered 503 "
                                   "(status 'degraded')")
    finally:
        server.shutdown()
