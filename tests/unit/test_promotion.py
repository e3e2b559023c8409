"""Promotion plans (pure) and the [environments.<env>.promotion] spec keys."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from branchyard import promotion as pm
from branchyard.errors import BadInput, Forbidden, SpecError
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
T0 = dt.datetime(2026, 12, 3, 9, 0, 0)  # naive UTC, as stored
PROMOTERS = pm.Promoters("dana", 4, confirmed_by="erin")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def approval(name: str, user_id: int | None, seconds: float) -> pm.ApprovalFact:
    return pm.ApprovalFact(name, user_id, at(seconds))


ALICE, BOB, CAROL, DANA, ERIN = (approval("alice", 1, 10), approval("bob", 2, 20), approval("carol", 3, 30),
                                 approval("dana", 4, 40), approval("erin", 5, 50))


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
        approvals=(ALICE, BOB),
        promoters=PROMOTERS,
        confirmed_at=at(0),
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


def test_procfile_process_types_and_a_cron_schedule_added_removed_or_changed_are_listed() -> None:
    before = {"web": {"replicas": 1}, "processes": {"worker": {"command": "python worker.py", "replicas": 1},
                                                      "beat": {"command": "celery beat", "replicas": 1}}}
    after = {"web": {"replicas": 1, "cron_schedule": "0 * * * *"},
             "processes": {"worker": {"command": "python worker.py --fast", "replicas": 2},
                           "mailer": {"command": "python mailer.py", "replicas": 1}}}
    assert pm.service_changes(before, after) == (
        {"key": "web.cron_schedule", "before": None, "after": "0 * * * *"},
        {"key": "processes.beat", "before": "celery beat", "after": None},
        {"key": "processes.mailer", "before": None, "after": "python mailer.py"},
        {"key": "processes.worker.command", "before": "python worker.py", "after": "python worker.py --fast"},
        {"key": "processes.worker.replicas", "before": 1, "after": 2},
    )
    assert pm.service_changes(after, after) == ()


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
    ({"approvals": (ALICE, approval("alice", 1, 15))}, "approvals", "1 of 2 approvals (alice)"),
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


SELF = PromotionSpec(approvals=2, prevent_self_review=True)
REVIEWERS = PromotionSpec(approvals=2, reviewers=("alice", "bob", "dana"))
BOTH = PromotionSpec(approvals=2, prevent_self_review=True, reviewers=("alice", "bob", "dana"))


@pytest.mark.parametrize(("spec", "who", "why"), [
    (SELF, DANA, "dana planned this promotion (preventSelfReview: the promoter's approval does not count)"),
    (SELF, ERIN, "erin confirmed this promotion (preventSelfReview: the promoter's approval does not count)"),
    (SELF, approval("dana", 9, 0), None),  # another user now wears the planner's (deleted) name: ids decide
    (SELF, approval("dana", None, 0), "dana planned this promotion (preventSelfReview: the promoter's approval does not count)"),
    (SELF, ALICE, None),
    (PromotionSpec(approvals=2), DANA, None),  # without preventSelfReview the promoter may approve
    (REVIEWERS, CAROL, "carol is not one of the reviewers (alice, bob, dana)"),
    (REVIEWERS, DANA, None),
    (BOTH, DANA, "dana planned this promotion (preventSelfReview: the promoter's approval does not count)"),
    (BOTH, CAROL, "carol is not one of the reviewers (alice, bob, dana)"),
    (BOTH, BOB, None),
    (None, DANA, None),
])
def test_who_may_approve(spec, who, why) -> None:
    assert pm.refusal(spec, who.name, who.user_id, PROMOTERS) == why
    if why is None:
        pm.check_approver(spec, who.name, who.user_id, PROMOTERS, promotion="3f6c0a1b")
    else:
        with pytest.raises(Forbidden) as err:
            pm.check_approver(spec, who.name, who.user_id, PROMOTERS, promotion="3f6c0a1b")
        assert str(err.value) == f"approve: {why}; promotion 3f6c0a1b unchanged"


@pytest.mark.parametrize(("spec", "approvals", "passed", "detail"), [
    (SELF, (), False, "0 of 2 approvals"),
    (SELF, (ALICE, approval("alice", 1, 12)), False, "1 of 2 approvals (alice)"),  # the same user twice counts once
    (SELF, (ALICE, approval("alias", 1, 12)), False, "1 of 2 approvals (alice)"),  # by user id, not by name
    (SELF, (ALICE, BOB), True, "2 of 2 approvals (alice, bob)"),
    (SELF, (BOB, ALICE), True, "2 of 2 approvals (alice, bob)"),  # named in the order given
    (SELF, (ALICE, DANA), False, "1 of 2 approvals (alice); not counted: dana planned this promotion "
                                 "(preventSelfReview: the promoter's approval does not count)"),
    (SELF, (ALICE, ERIN, BOB), True, "2 of 2 approvals (alice, bob); not counted: erin confirmed this promotion "
                                     "(preventSelfReview: the promoter's approval does not count)"),
    (BOTH, (ALICE, CAROL), False, "1 of 2 approvals (alice); not counted: carol is not one of the reviewers "
                                  "(alice, bob, dana)"),
    (PromotionSpec(approvals=2), (DANA, ERIN), True, "2 of 2 approvals (dana, erin)"),
    (PromotionSpec(approvals=1), (approval("old", None, 5), approval("old", None, 6)), True, "1 of 1 approvals (old)"),
])
def test_approvals_are_counted_per_user(spec, approvals, passed, detail) -> None:
    gate = pm.approvals_gate(approvals, spec, PROMOTERS)
    assert (gate.id, gate.passed, gate.detail) == ("approvals", passed, detail)


WAIT = PromotionSpec(approvals=2, prevent_self_review=True, wait_timer=0.5)


@pytest.mark.parametrize(("spec", "approvals", "confirmed", "expected"), [
    (WAIT, (ALICE, BOB), at(0), at(20 + 30)),  # 30 s after bob's approval completed the count
    (WAIT, (ALICE, BOB, CAROL), at(0), at(20 + 30)),  # approvals beyond the count do not move it
    (WAIT, (ALICE, DANA, CAROL), at(0), at(30 + 30)),  # dana's does not count: carol's completes it
    (WAIT, (ALICE, BOB), at(100), at(100 + 30)),  # approved before the confirmation: from the confirmation
    (WAIT, (ALICE,), at(0), None),  # approvals short
    (WAIT, (ALICE, BOB), None, None),  # not confirmed
    (PromotionSpec(wait_timer=2), (), at(0), at(120)),  # no approvals needed: from the confirmation
    (PromotionSpec(approvals=2), (ALICE, BOB), at(0), None),  # no wait timer
    (None, (), at(0), None),
])
def test_start_after(spec, approvals, confirmed, expected) -> None:
    assert pm.start_after(spec, approvals, PROMOTERS, confirmed) == expected


@pytest.mark.parametrize(("approvals", "confirmed", "now", "passed", "detail", "step"), [
    ((ALICE,), at(0), at(1000), False, "waitTimer 0.5 min after the confirmation and the last approval needed",
     pm.AWAIT_APPROVALS),
    ((ALICE, BOB), at(0), at(49), False, "starts after 09:00:50 UTC (waitTimer 0.5 min)", pm.WAIT),
    ((ALICE, BOB), at(0), at(50), True, "waited until 09:00:50 UTC (waitTimer 0.5 min)", pm.START),
    ((ALICE, BOB), at(0), None, False, "starts after 09:00:50 UTC (waitTimer 0.5 min)", pm.WAIT),
])
def test_the_wait_timer_holds_the_start(approvals, confirmed, now, passed, detail, step) -> None:
    spec = PromotionSpec(approvals=2, prevent_self_review=True, wait_timer=0.5)
    plan = pm.plan(observed(approvals=approvals, confirmed_at=confirmed, now=now, smoke=None), spec,
                   target_production=True, mask=MASK)
    gate = plan.gates[-1]
    assert (gate.id, gate.passed, gate.detail) == ("wait-timer", passed, detail)
    assert plan.blocking == ()  # the timer holds the promotion; it never refuses it
    assert plan.next_step == step
    assert plan.to_dict()["start_after"] == (None if len(approvals) < 2 else "2026-12-03T09:00:50Z")
    assert plan.to_dict()["wait_timer"] == 0.5


def test_next_step_refuses_before_anything_else() -> None:
    spec = PromotionSpec(approvals=2, smoke_command="x", wait_timer=1)
    plan = pm.plan(observed(approvals=(), smoke=pm.SmokeResult(False, "exit 1")), spec, target_production=True, mask=MASK)
    assert plan.next_step == pm.REFUSE
    assert pm.plan(observed(), PromotionSpec(approvals=2), target_production=True, mask=MASK).next_step == pm.START


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
    # 317: a duration no other test uses, so a process another test left behind is not taken for one of these
    result = run_smoke_command(_runtime(tmp_path), "sh -c 'sleep 317 & sleep 317'", url="http://127.0.0.1:9", environment="staging",
                               release_dir=tmp_path, cfg_root=".", timeout=1)
    assert not result.passed
    assert result.detail == "`sh -c 'sleep 317 & sleep 317'` against http://127.0.0.1:9 timed out after 1s (killed)"
    assert time.monotonic() - started < 10
    from conftest import processes_mentioning, wait_for

    # killed (SIGKILL to the group) before the call returned; the kernel may list a dying process a moment longer
    wait_for(lambda: processes_mentioning("sleep 317", cwd=False) == [], timeout=10)


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
