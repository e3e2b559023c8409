"""Webhook verification, parsing and the decisions about previews (pure functions, exact values)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from webhooks import pull_request, push  # noqa: E402

from branchyard.controller.previews import (
    Deploy,
    Destroy,
    Evaluate,
    PreviewObs,
    Slot,
    first_in_line,
    make_room,
    plan_previews,
    queue,
)
from branchyard.errors import BadInput, Unauthorized
from branchyard.spec.model import PreviewDecl
from branchyard.triggers import github_webhook as gh

SHA = "a" * 40
SHA2 = "b" * 40
REPO = "owner/app"


# --- signatures -------------------------------------------------------------------------------------------


def test_signature_matches_githubs_documented_example() -> None:
    # docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody", payload "Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert gh.sign(b"Hello, World!", "It's a Secret to Everybody") == expected
    assert gh.verify_signature(b"Hello, World!", expected, ["other", "It's a Secret to Everybody"]) == \
        "It's a Secret to Everybody"


@pytest.mark.parametrize(
    ("header", "secrets", "message"),
    [
        (None, ["s3cret"], "missing X-Hub-Signature-256 header: configure the webhook with a secret"),
        ("sha1=abc", ["s3cret"], "X-Hub-Signature-256: expected sha256=<hex digest>"),
        (gh.sign(b"body", "wrong"), ["s3cret"],
         "X-Hub-Signature-256 does not match the body: wrong webhook secret or altered payload"),
        (gh.sign(b"other body", "s3cret"), ["s3cret"],
         "X-Hub-Signature-256 does not match the body: wrong webhook secret or altered payload"),
        (gh.sign(b"body", "s3cret"), [], "no webhook secret configured: set BRANCHYARD_GITHUB_WEBHOOK_SECRET or run "
                                         "`branchyard github configure --webhook-secret S`"),
    ],
)
def test_bad_signatures_are_refused(header, secrets, message) -> None:
    with pytest.raises(Unauthorized) as err:
        gh.verify_signature(b"body", header, secrets)
    assert str(err.value) == message
    assert err.value.http_status == 401


def test_content_type_and_size() -> None:
    gh.check_content_type("application/json")
    gh.check_content_type("application/json; charset=utf-8")
    with pytest.raises(gh.UnsupportedMediaType) as err:
        gh.check_content_type("application/x-www-form-urlencoded")
    assert str(err.value) == ("Content-Type 'application/x-www-form-urlencoded' is not accepted: set the webhook's "
                              "content type to application/json")
    assert err.value.http_status == 415
    gh.check_size(gh.MAX_BODY)
    with pytest.raises(gh.PayloadTooLarge) as big:
        gh.check_size(gh.MAX_BODY + 1)
    assert big.value.http_status == 413 and str(big.value) == (
        f"payload of {gh.MAX_BODY + 1} bytes is over the limit of {gh.MAX_BODY} bytes")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"action": ', "payload is not valid JSON: Expecting value (line 1, column 12)"),
        (b"[1, 2]", "payload: expected a JSON object"),
        (b"\xff\xfe", "payload is not UTF-8"),
    ],
)
def test_malformed_bodies(body, message) -> None:
    with pytest.raises(BadInput) as err:
        gh.parse_body(body)
    assert str(err.value) == message


# --- parsing ----------------------------------------------------------------------------------------------


def test_parse_pull_request_same_repo_fork_bot() -> None:
    event = gh.parse_pull_request(pull_request("opened", 12, head_sha=SHA, head_ref="feature/x", repository=REPO))
    assert (event.number, event.head_sha, event.head_ref, event.fork, event.bot, event.draft) == \
        (12, SHA, "feature/x", False, False, False)
    fork = gh.parse_pull_request(pull_request("opened", 13, head_sha=SHA, head_ref="feature/x", repository=REPO,
                                              head_repository="stranger/app"))
    assert fork.fork is True and fork.head_repo == "stranger/app"
    gone = gh.parse_pull_request(pull_request("opened", 14, head_sha=SHA, head_ref="x", repository=REPO,
                                              head_repository=""))
    assert gone.head_repo is None and gone.fork is True  # a deleted fork is still a fork
    bot = gh.parse_pull_request(pull_request("opened", 15, head_sha=SHA, head_ref="dependabot/pip/x", repository=REPO,
                                             user="dependabot[bot]", user_type="Bot"))
    assert bot.bot is True
    renovate = gh.parse_pull_request(pull_request("opened", 16, head_sha=SHA, head_ref="renovate/x", repository=REPO,
                                                  user="renovate[bot]", user_type="User"))
    assert renovate.bot is True


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("number"), "payload: missing field number"),
        (lambda d: d.update(number="12"), 'payload: field number: expected int, got "12"'),
        (lambda d: d.update(number=True), "payload: field number: expected int, got true"),
        (lambda d: d.update(number=0), "payload: field number: expected a positive pull request number, got 0"),
        (lambda d: d["pull_request"]["head"].update(sha="not-a-sha"),
         "payload: field pull_request.head.sha: expected a 40-digit commit sha, got 'not-a-sha'"),
        (lambda d: d["pull_request"]["head"].pop("ref"), "payload: missing field pull_request.head.ref"),
        (lambda d: d.pop("repository"), "payload: missing field repository.full_name"),
    ],
)
def test_bad_pull_request_payloads(mutate, message) -> None:
    data = pull_request("opened", 12, head_sha=SHA, head_ref="feature/x", repository=REPO)
    mutate(data)
    with pytest.raises(BadInput) as err:
        gh.parse_pull_request(json.loads(json.dumps(data)))
    assert str(err.value) == message


def test_parse_push() -> None:
    event = gh.parse_push(push("refs/heads/main", after=SHA, before=SHA2, repository=REPO))
    assert (event.branch, event.after, event.deleted) == ("main", SHA, False)
    gone = gh.parse_push(push("refs/heads/feature/x", after=SHA, before=SHA2, repository=REPO, deleted=True))
    assert gone.deleted is True and gone.branch == "feature/x"
    tag = gh.parse_push(push("refs/tags/v1", after=SHA, repository=REPO))
    assert tag.branch is None


@pytest.mark.parametrize(
    ("action", "merged", "intent"),
    [
        ("opened", False, gh.Intent("open")),
        ("reopened", False, gh.Intent("open")),
        ("ready_for_review", False, gh.Intent("open")),
        ("synchronize", False, gh.Intent("open")),
        ("closed", True, gh.Intent("close", "merged")),
        ("closed", False, gh.Intent("close", "closed")),
        ("converted_to_draft", False, gh.Intent("draft")),
        ("labeled", False, gh.Intent("ignore", "pull_request action 'labeled' changes nothing here")),
    ],
)
def test_pr_intent(action, merged, intent) -> None:
    event = gh.parse_pull_request(pull_request(action, 3, head_sha=SHA, head_ref="f", repository=REPO, merged=merged))
    assert gh.pr_intent(event) == intent


# --- admission --------------------------------------------------------------------------------------------

POLICY = PreviewDecl(patterns=("feature/*", "fix/*"), base="staging")


@pytest.mark.parametrize(
    ("facts", "policy", "expected"),
    [
        ({}, POLICY, gh.Admission("deploy")),
        ({}, None, gh.Admission("refused", "the base branch's branchyard.toml has no [environments.pr] template")),
        ({"branch": "main"}, POLICY, gh.Admission("refused", "branch 'main' deploys a persistent environment")),
        ({"branch": "docs/x"}, POLICY, gh.Admission("refused", "branch 'docs/x' matches none of feature/*, fix/*")),
        ({"bot": True}, POLICY,
         gh.Admission("refused", "pull requests opened by bots get no preview (set bots = true to allow)")),
        ({"bot": True}, PreviewDecl(patterns=("*",), bots=True), gh.Admission("deploy")),
        ({"draft": True}, POLICY,
         gh.Admission("refused", "draft pull request (set drafts = true, or mark it ready for review)")),
        ({"draft": True}, PreviewDecl(patterns=("*",), drafts=True), gh.Admission("deploy")),
        ({"fork": True}, POLICY,
         gh.Admission("pending_approval", f"from a fork: waiting for `branchyard previews approve` of {SHA[:12]}")),
        ({"fork": True, "approved_sha": SHA}, POLICY, gh.Admission("deploy")),
        ({"fork": True, "approved_sha": SHA2}, POLICY,  # approved an older commit: the new one waits again
         gh.Admission("pending_approval", f"from a fork: waiting for `branchyard previews approve` of {SHA[:12]}")),
        ({"fork": True, "approved_sha": SHA}, PreviewDecl(forks="never"),
         gh.Admission("refused", 'pull requests from forks get no preview (forks = "never")')),
        ({"fork": True}, PreviewDecl(forks="always"), gh.Admission("deploy")),
        ({}, PreviewDecl(trigger="branch"),
         gh.Admission("refused", 'previews are per branch here (trigger = "branch"), not per pull request')),
    ],
)
def test_admission(facts, policy, expected) -> None:
    args = {"branch": "feature/x", "fork": False, "bot": False, "draft": False, "head_sha": SHA, "approved_sha": None}
    assert gh.admit(**(args | facts), policy=policy, persistent_branches=["main", "develop"]) == expected


# --- the desired set → actions ----------------------------------------------------------------------------

DAY = 86400.0


def obs(env="pr-1", *, open=True, decision="deploy", head=SHA, exists=True, latest=SHA, idle_days=0.0, since=None):
    return PreviewObs(environment=env, open=open, decision=decision, head_sha=head, last_activity=100 * DAY - idle_days * DAY,
                      env_exists=exists, latest_sha=latest if exists else None, waiting_since=since)


def waiting(env, since):
    return obs(env, decision="waiting", exists=False, since=since)


@pytest.mark.parametrize(
    ("previews", "expire", "busy", "actions"),
    [
        ([obs()], None, (), []),  # converged
        ([obs(exists=False)], None, (), [Deploy("pr-1", SHA)]),  # missing: create it
        ([obs(latest=SHA2)], None, (), [Deploy("pr-1", SHA)]),  # a new head: redeploy
        ([obs(decision=None, exists=False)], None, (), [Evaluate("pr-1")]),
        ([obs(open=False)], None, (), [Destroy("pr-1", "closed")]),
        ([obs(open=False, exists=False)], None, (), []),  # closed and gone
        ([obs(decision="pending_approval", exists=False)], None, (), []),
        ([obs(decision="evicted")], None, (), [Destroy("pr-1", "evicted")]),
        ([obs(decision="refused")], None, (), [Destroy("pr-1", "refused")]),
        ([obs(idle_days=3)], 2.0, (), [Destroy("pr-1", "idle for 3.0 days (expireAfterDays = 2)", mark="expired")]),
        ([obs(idle_days=1)], 2.0, (), []),
        ([obs(open=False)], None, ("pr-1",), []),  # an action is in flight for it: wait
        ([obs("pr-2", exists=False), obs("pr-1", open=False)], None, (),
         [Destroy("pr-1", "closed"), Deploy("pr-2", SHA)]),
    ],
)
def test_plan_previews(previews, expire, busy, actions) -> None:
    assert plan_previews(previews, expire_after_days=expire, now=100 * DAY, busy=frozenset(busy)) == actions


@pytest.mark.parametrize(
    ("active", "maximum", "evict", "expected"),
    [
        ([], None, "refuse", (True, None)),
        ([Slot("pr-1", 5)], 2, "refuse", (True, None)),
        ([Slot("pr-1", 5), Slot("pr-2", 3)], 2, "refuse", (False, None)),
        ([Slot("pr-1", 5), Slot("pr-2", 3)], 2, "oldest", (True, "pr-2")),
    ],
)
def test_make_room(active, maximum, evict, expected) -> None:
    assert make_room(active, max_previews=maximum, evict=evict) == expected


@pytest.mark.parametrize(
    ("active", "maximum", "evict", "queued", "expected"),
    [
        ([Slot("pr-1", 5)], 2, "refuse", 0, (True, None)),  # first in line (or nobody waits): the free slot
        ([Slot("pr-1", 5)], 2, "refuse", 1, (False, None)),  # one waits before it: the free slot is theirs
        ([Slot("pr-1", 5)], 3, "refuse", 1, (True, None)),  # two free slots, one ahead
        ([], 1, "refuse", 1, (False, None)),
        ([], None, "refuse", 5, (True, None)),  # no cap, no line
        ([Slot("pr-1", 5)], 2, "oldest", 1, (True, None)),  # evict = "oldest" keeps no line
        ([Slot("pr-1", 5), Slot("pr-2", 3)], 2, "oldest", 1, (True, "pr-2")),
    ],
)
def test_make_room_lets_those_waiting_go_first(active, maximum, evict, queued, expected) -> None:
    assert make_room(active, max_previews=maximum, evict=evict, queued=queued) == expected


def test_queue_is_in_the_order_refused() -> None:
    assert queue([("pr-3", 30.0), ("pr-9", 10.0), ("pr-2", 20.0)]) == ["pr-9", "pr-2", "pr-3"]
    assert queue([("pr-3", 5.0), ("pr-2", 5.0), ("pr-7", None)]) == ["pr-7", "pr-2", "pr-3"]  # ties by name


@pytest.mark.parametrize(
    ("previews", "maximum", "actions"),
    [
        # the cap is reached: those waiting stay waiting, nothing else moves
        ([obs("pr-1"), waiting("pr-2", 10), waiting("pr-3", 20)], 1, []),
        # pr-1 closed (its slot is free at once): the first refused gets it, not the lowest number
        ([obs("pr-1", open=False), waiting("pr-5", 10), waiting("pr-3", 20)], 1,
         [Destroy("pr-1", "closed"), Evaluate("pr-5")]),
        # pr-1 expired (its environment is gone): two free slots, two admitted in order
        ([obs("pr-1", decision="expired", exists=False), waiting("pr-4", 30), waiting("pr-3", 20), waiting("pr-2", 10)], 2,
         [Evaluate("pr-2"), Evaluate("pr-3")]),
        # evicted previews free their slot too
        ([obs("pr-1", decision="evicted", exists=False), waiting("pr-2", 10)], 1, [Evaluate("pr-2")]),
        # a policy refusal is never admitted by a free slot
        ([obs("pr-1", decision="refused", exists=False), waiting("pr-2", 10)], 2, [Evaluate("pr-2")]),
        ([obs("pr-1", decision="refused", exists=False)], 2, []),
        # the cap raised or removed: everyone waiting is admitted
        ([obs("pr-1"), waiting("pr-2", 10), waiting("pr-3", 20)], None, [Evaluate("pr-2"), Evaluate("pr-3")]),
        # a new pull request is evaluated (its admission puts it at the back of the line)
        ([obs("pr-1"), waiting("pr-2", 10), obs("pr-3", decision=None, exists=False)], 1, [Evaluate("pr-3")]),
        # a waiting pull request that closes just leaves the line
        ([obs("pr-1", open=False, exists=False), obs("pr-2", open=False, decision="waiting", exists=False),
          waiting("pr-3", 20)], 1, [Evaluate("pr-3")]),
    ],
)
def test_plan_previews_admits_those_waiting_when_a_slot_frees(previews, maximum, actions) -> None:
    assert plan_previews(previews, expire_after_days=None, now=100 * DAY, max_previews=maximum) == actions


def test_a_waiting_preview_being_evaluated_still_holds_its_free_slot() -> None:
    previews = [obs("pr-1", open=False, exists=False), waiting("pr-2", 10), waiting("pr-3", 20)]
    assert first_in_line(previews, max_previews=1) == ["pr-2"]
    assert plan_previews(previews, expire_after_days=None, now=100 * DAY, busy=frozenset({"pr-2"}), max_previews=1) == []
