"""Promotion staging → production on the example app, with real processes, PostgreSQL, Redis and Caddy.

Gates, typed confirmation, approvals by distinct authenticated users (preventSelfReview, reviewers), the wait
timer, post-deploy verification with automatic rollback, the git-path refusal (requireStaging), the isolation
guard, and bad input that must deploy nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

import pytest

pytestmark = pytest.mark.integration


def pipeline(plane, tmp_path, project, *, edit=None):
    """The example app with production (main) and staging (develop) deployed; `edit(repo)` changes files first."""
    repo = plane.app_repo(tmp_path, "app", project=project)
    if edit is not None:
        edit(repo)
        plane.commit(repo, "test settings")
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    (repo / "CHANGELOG").write_text("v2\n")
    sha = plane.commit(repo, "v2 on develop")
    plane.git(repo, "push", "branchyard", "develop")
    return repo, sha


def prompt(plane, repo, typed, *args):
    """Run the CLI with a terminal on stdin (an interactive confirmation) and type `typed`."""
    import os
    import pty
    import subprocess

    from conftest import BRANCHYARD

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*BRANCHYARD, *args], cwd=repo, env=plane.env, stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        os.write(master, typed.encode())
        out, err = proc.communicate(timeout=300)
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def set_promotion(repo, text):
    toml = repo / "branchyard.toml"
    body = toml.read_text()
    start = body.index("[environments.production.promotion]")
    end = body.index("\n\n", start)
    toml.write_text(body[:start] + "[environments.production.promotion]\n" + text.strip() + body[end:])


def deployments(plane, repo, env="production"):
    return plane.json("deployments", "-e", env, cwd=repo)


def test_promote_plan_approvals_and_the_exact_release(plane, tmp_path):
    repo, sha = pipeline(plane, tmp_path, "promo")
    dana, alice, bob, carol = (plane.add_user(name, "member") for name in ("dana", "alice", "bob", "carol"))
    staging_dep = plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["id"]
    before = deployments(plane, repo)

    unconfirmed = plane.run("promote", "staging", "production", cwd=repo, check=False)  # stdin is not a terminal
    assert unconfirmed.returncode == 2 and "needs typed confirmation: pass --confirm PROMOTE" in unconfirmed.stderr
    assert "cancelled, nothing deployed" in unconfirmed.stderr
    cancelled = [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == "promotion.cancelled"]
    assert cancelled and cancelled[0]["actor"] not in ("", "system")
    typo = prompt(dana, repo, "PROMOT\n", "promote", "staging", "production")
    assert typo.returncode == 2, typo.stderr
    assert "Type PROMOTE to promote staging → production" in typo.stdout
    assert "confirmation did not match 'PROMOTE'; promotion" in typo.stderr and "cancelled, nothing deployed" in typo.stderr
    assert [e["actor"] for e in plane.json("events", "-e", "production", cwd=repo)
            if e["kind"] == "promotion.cancelled"][0] == "dana"

    done = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert done.returncode == 4, done.stderr
    assert "PENDING_APPROVAL" in done.stderr and "0 of 2 approvals" in done.stderr
    out = done.stdout
    assert "staging → production" in out
    assert f"→ {sha[:12]} (1 commit)" in out and "v2 on develop" in out
    assert "PASS  source-healthy" in out and "PASS  smoke-tests" in out and "FAIL  approvals: 0 of 2" in out
    assert "planned by    admin" in out and "confirmed by  admin at " in out and "approved by   nobody yet" in out
    assert "changed  ENVIRONMENT" not in out  # production keeps its own variables
    assert "python manage.py migrate (backup first)" in out
    assert "production-client-secret-value" not in out and "staging-client-secret-value" not in out
    assert deployments(plane, repo) == before  # nothing deployed while approvals are missing

    promo = [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == "promotion.planned"][0]
    pid = promo["message"].split()[1]
    full = json.loads(plane.run("promote", "staging", "production", "--confirm", "PROMOTE", "--json", cwd=repo,
                                check=False).stdout)
    assert full["id"].startswith(pid) and full["state"] == "PENDING_APPROVAL"  # the same promotion, re-planned
    pid = full["id"]

    one = alice.run("approve", pid, cwd=repo)
    assert "approved by alice: 1 of 2 approvals (alice)" in one.stdout
    plane.run("server", "stop")  # promotions and approvals are stored: a restart loses neither
    plane.run("server", "--detach", timeout=120)
    again = alice.run("approve", pid, cwd=repo)  # the same person counts once
    assert "1 of 2 approvals (alice)" in again.stdout
    assert deployments(plane, repo) == before

    final = bob.run("approve", pid, cwd=repo, timeout=600)  # completes the count: promotes
    assert "promoted release of" in final.stdout and "not rebuilt" in final.stdout
    assert "backup" in final.stdout and "preDeployCommand: python manage.py migrate" in final.stdout
    assert "building" not in final.stdout
    state = plane.json("status", "-e", "production", cwd=repo)
    assert state["current_deployment"]["commit"] == sha and state["current_deployment"]["trigger"] == "promote"
    health = plane.get("promo.localhost").json()
    assert health["commit"] == sha and health["environment"] == "production" and health["database"] == "ok"
    assert health["redis"] == "ok"
    assert plane.get("promo.localhost", "/").json()["debug"] is False  # production's own variables
    assert len(state["replicas"]) == 2

    assert "approved by bob: 2 of 2 approvals (alice, bob)" in final.stdout
    late = carol.run("approve", pid, cwd=repo, check=False)
    assert late.returncode == 4 and "is SUCCESS: only open promotions" in late.stderr
    unknown = carol.run("approve", "ffffffff-0000", cwd=repo, check=False)
    assert unknown.returncode == 3 and "unknown promotion 'ffffffff-0000'" in unknown.stderr

    kinds = [(e["kind"], e["actor"]) for e in plane.json("events", "-e", "production", cwd=repo)]
    assert ("promotion.planned", "admin") in kinds and ("promotion.confirmed", "admin") in kinds
    assert ("promotion.approved", "alice") in kinds and ("promotion.approved", "bob") in kinds
    assert ("promotion.succeeded", "post-deploy verification") in kinds
    assert any(k == "promotion.started" and a == "bob" for k, a in kinds)
    # staging's release directory was copied, not shared: staging pruning cannot remove production's release
    assert staging_dep != state["current_deployment"]["id"]


def one_line_refusal(done, text):
    """A refused approval: exit 5 (Forbidden), the reason on one line."""
    assert done.returncode == 5, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and text in done.stderr, done.stderr


def events_until(plane, repo, kinds, timeout=300):
    """production's events (oldest first) once one of `kinds` is among them (the promotion ended)."""
    deadline = time.monotonic() + timeout
    while True:
        events = list(reversed(plane.json("events", "-e", "production", cwd=repo)))
        if any(e["kind"] in kinds for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def at(iso):
    return dt.datetime.fromisoformat(iso.removesuffix("Z"))


def test_approvals_are_bound_to_identity_and_the_wait_timer_holds_the_start(plane, tmp_path):
    def edit(repo):
        set_promotion(repo, 'from = "staging"\napprovals = 2\npreventSelfReview = true\n'
                            'reviewers = ["ann", "ben", "dora"]\nwaitTimer = 0.25')

    repo, sha = pipeline(plane, tmp_path, "rules", edit=edit)
    # users of their own: the control plane (and its users) is shared by this module's tests
    dora, ann, ben, cole = (plane.add_user(name, "member") for name in ("dora", "ann", "ben", "cole"))
    vic = plane.add_user("vic", "viewer")
    before = deployments(plane, repo)

    planned = dora.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert planned.returncode == 4 and "PENDING_APPROVAL (0 of 2 approvals)" in planned.stderr, planned.stderr
    assert "planned by    dora" in planned.stdout and "confirmed by  dora at " in planned.stdout
    assert "FAIL  wait-timer: waitTimer 0.25 min after the confirmation and the last approval needed" in planned.stdout
    pid = [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == "promotion.planned"][0]["message"].split()[1]

    own = dora.run("approve", pid, cwd=repo, check=False)  # dora is a reviewer, but she planned it
    one_line_refusal(own, "approve: dora planned this promotion (preventSelfReview: the promoter's approval does not count)")
    outsider = cole.run("approve", pid, cwd=repo, check=False)
    one_line_refusal(outsider, "approve: cole is not one of the reviewers (ann, ben, dora)")
    viewer = vic.run("approve", pid, cwd=repo, check=False)
    one_line_refusal(viewer, "permission 'approve' needs role member; vic is viewer")

    first = json.loads(ann.run("approve", pid, "--json", cwd=repo).stdout)
    assert first["approvers"] == ["ann"] and first["state"] == "PENDING_APPROVAL"  # the refused ones left nothing
    assert ann.run("approve", pid, cwd=repo).stdout.count("1 of 2 approvals (ann)") == 1  # twice counts once
    assert not [e for e in plane.json("events", "-e", "production", cwd=repo)
                if e["kind"] == "promotion.approved" and e["actor"] in ("dora", "cole", "vic")]

    waiting = json.loads(ben.run("approve", pid, "--json", cwd=repo).stdout)  # completes the count: the timer runs
    assert waiting["state"] == "WAITING" and waiting["approvers"] == ["ann", "ben"]
    assert (waiting["requested_by"], waiting["confirmed_by"], waiting["approved_by"]) == ("dora", "dora", "ben")
    last_approval = at(waiting["approvals"][-1]["at"])
    assert at(waiting["start_after"]) == last_approval + dt.timedelta(seconds=15)
    assert deployments(plane, repo) == before

    plane.run("server", "stop")  # the timer is in the store, not in a thread: a restart keeps it
    with sqlite3.connect(plane.home / "state.db") as db:
        held = db.execute("SELECT state FROM promotions WHERE id = ?", (waiting["id"],)).fetchone()
    assert held == ("WAITING",)  # not started by the control plane that stopped
    plane.run("server", "--detach", timeout=120)

    events = events_until(plane, repo, ("promotion.succeeded", "promotion.failed"))
    kinds = [(e["kind"], e["actor"]) for e in events]
    assert ("promotion.succeeded", "post-deploy verification") in kinds, kinds
    waited = [e for e in events if e["kind"] == "promotion.waiting"]
    assert len(waited) == 1 and waited[0]["actor"] == "ben" and "starts after" in waited[0]["message"]
    started = [e for e in events if e["kind"] == "promotion.started"]
    assert [e["actor"] for e in started] == ["wait timer"]
    assert at(started[0]["at"]) >= at(waiting["start_after"])  # the timer held it: no earlier start
    assert ("promotion.planned", "dora") in kinds and ("promotion.confirmed", "dora") in kinds
    assert plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == sha


def test_without_approvals_the_wait_timer_runs_from_the_confirmation(plane, tmp_path):
    def edit(repo):
        set_promotion(repo, 'from = "staging"\nwaitTimer = 0.05')

    repo, sha = pipeline(plane, tmp_path, "timer", edit=edit)
    done = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "is WAITING: approved, starts after " in done.stderr and "(waitTimer 0.05 min); it starts by itself" in done.stderr
    assert "  starts after  " in done.stdout

    events = events_until(plane, repo, ("promotion.succeeded", "promotion.failed"))
    confirmed = [e for e in events if e["kind"] == "promotion.confirmed"][-1]
    started = [e for e in events if e["kind"] == "promotion.started"]
    assert [e["actor"] for e in started] == ["wait timer"], [(e["kind"], e["actor"]) for e in events]
    # start_after = the confirmation + 3 s; the confirmation is recorded just after confirmed_at, so allow its delay
    assert at(started[0]["at"]) >= at(confirmed["at"]) + dt.timedelta(seconds=2.5)
    assert any(e["kind"] == "promotion.succeeded" for e in events)
    assert plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == sha


def test_failing_post_deploy_smoke_tests_roll_production_back(plane, tmp_path):
    def edit(repo):
        (repo / "smoke.py").write_text(
            "import sys\n"
            "env = sys.argv[sys.argv.index('--environment') + 1]\n"
            "print(f'smoke on {env}')\n"
            "sys.exit(1 if env == 'production' else 0)\n"
        )
        set_promotion(repo, 'from = "staging"\nsmokeCommand = "python smoke.py"\nsmokeTimeout = 30')

    repo, sha = pipeline(plane, tmp_path, "verify", edit=edit)
    old = plane.json("status", "-e", "production", cwd=repo)["current_deployment"]
    done = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "post-deploy smoke tests failed on production" in done.stderr
    assert f"rolled back to deployment {old['id'][:8]}" in done.stderr
    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["current_deployment"]["commit"] == old["commit"] != sha
    assert status["current_deployment"]["trigger"] == "rollback"
    assert plane.get("verify.localhost").json()["commit"] == old["commit"]
    events = plane.json("events", "-e", "production", cwd=repo)
    assert any(e["kind"] == "promotion.rolled_back" and e["actor"] == "post-deploy verification" for e in events)
    failed = [e for e in events if e["kind"] == "promotion.failed"]
    assert failed and "smoke on production" in failed[0]["message"]


def test_bad_input_deploys_nothing(plane, tmp_path):
    def edit(repo):
        set_promotion(repo, 'from = "staging"\nsmokeCommand = "python -c \'import time; time.sleep(30)\'"\nsmokeTimeout = 2')

    repo, _ = pipeline(plane, tmp_path, "badpromo", edit=edit)
    before = deployments(plane, repo), deployments(plane, repo, "staging")

    missing = plane.run("promote", "staging", "qa", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert missing.returncode == 3 and "unknown environment 'qa' in project 'badpromo'" in missing.stderr
    backwards = plane.run("promote", "production", "staging", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert backwards.returncode == 2 and "production is production; nothing is promoted out of production" in backwards.stderr
    typo = plane.run("promote", "staging", "production", "--confirm", "PROMOT", cwd=repo, check=False)
    assert typo.returncode == 2 and "--confirm: expected PROMOTE, got 'PROMOT'" in typo.stderr

    hanging = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False, timeout=60)
    assert hanging.returncode == 1
    assert "FAIL  smoke-tests" in hanging.stdout and "timed out after 2s (killed)" in hanging.stderr
    assert not [p for p in _sleepers()]  # the hanging command was killed
    assert (deployments(plane, repo), deployments(plane, repo, "staging")) == before
    refused = [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == "promotion.refused"]
    assert refused and "gate smoke-tests failed" in refused[0]["message"]

    plane.run("down", "-e", "staging", cwd=repo)
    asleep = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False, timeout=60)
    assert asleep.returncode == 1 and "gate source-healthy failed: staging's current deployment" in asleep.stderr
    assert "is SLEEPING" in asleep.stderr
    assert deployments(plane, repo) == before[0]


def _sleepers():
    from conftest import processes_mentioning

    return [pid for pid in processes_mentioning("time.sleep(30)", cwd=False)]


def test_git_push_to_main_requires_staging_first(plane, tmp_path):
    def edit(repo):
        set_promotion(repo, 'from = "staging"\nrequireStaging = true')

    repo = plane.app_repo(tmp_path, "app", project="gitpath")
    edit(repo)
    sha = plane.commit(repo, "require staging")
    before = len(processes_of(plane))
    pushed = plane.git(repo, "push", "branchyard", "main", check=False)
    assert pushed.returncode != 0
    assert f"{sha[:12]} never ran successfully in staging" in pushed.stderr + pushed.stdout
    deps = deployments(plane, repo)
    assert [d["status"] for d in deps] == ["FAILED"]
    log = plane.run("logs", "-e", "production", "--build", cwd=repo).stdout
    assert f"!!! deployment FAILED: {sha[:12]} never ran successfully in staging" in log  # the log is this deployment's
    assert "building" not in log
    assert len(processes_of(plane)) == before

    plane.git(repo, "push", "branchyard", "main:develop")  # staging runs it first…
    plane.git(repo, "push", "branchyard", "main")  # …then production accepts it
    assert plane.get("gitpath.localhost").json()["commit"] == sha
    refused = [e for e in plane.json("events", "-e", "production", cwd=repo) if e["kind"] == "deploy.refused"]
    assert refused and refused[0]["actor"] == "git push"


def processes_of(plane):
    from conftest import processes_mentioning

    return processes_mentioning(str(plane.home))


def test_isolation_guard_refuses_a_staging_deploy_that_reaches_production(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="iso")
    plane.git(repo, "push", "branchyard", "main")
    prod = plane.run("run", "-e", "production", "--", "sh", "-c", "printf %s \"$DATABASE_URL\"", cwd=repo).stdout
    assert prod.startswith("postgres")
    # `variables set` refuses it before storing anything (tests/e2e/test_variables_guard.py has the details)
    refused = plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "staging", f"PROD_DB={prod}", cwd=repo,
                        check=False)
    assert refused.returncode == 2 and "isolation guard: staging: PROD_DB " in \
        refused.stderr and prod not in refused.stderr
    stored = plane.json("variables", "list", "-e", "staging", cwd=repo)  # exactly the secrets set before, no PROD_DB
    assert stored["secrets"] == ["SENTRY_DSN_STAGING", "YOTO_CLIENT_ID", "YOTO_CLIENT_SECRET"]
    assert sorted(stored["variables"]) == ["SENTRY_DSN_STAGING", "YOTO_CLIENT_ID", "YOTO_CLIENT_SECRET"]
    # a commit can still say it: the deploy is refused
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace('ENVIRONMENT = "staging"',
                                             f'ENVIRONMENT = "staging"\nDATABASE_URL = "{prod}"', 1))
    plane.commit(repo, "staging on production's database")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    pushed = plane.git(repo, "push", "branchyard", "develop", check=False)
    assert pushed.returncode != 0
    text = pushed.stderr + pushed.stdout
    assert "isolation guard: staging: DATABASE_URL" in text and "production's" in text
    assert prod not in text
    assert [d["status"] for d in deployments(plane, repo, "staging")] == ["FAILED"]
    assert plane.get("iso-staging.localhost").status_code != 200

    check = plane.run("check", "--json", cwd=repo, check=False)
    report = json.loads(check.stdout)
    # a failed deploy is a warning and nothing reached production (no `isolation` finding); the one error is the
    # literal URL in the files, which pr-* inherits from staging
    assert report["skipped"] == [] and {f["rule"] for f in report["findings"] if f["severity"] == "error"} == {
        "no-shared-databases"}, report
    assert check.returncode == 1
    assert "failed-deploys" in {f["rule"] for f in report["findings"]}
