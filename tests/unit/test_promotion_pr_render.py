"""The promotion pull request's title and body (pure): what reviewers read on GitHub is the plan, safely quoted."""

from __future__ import annotations

from branchyard.github import promotion_pr


def promotion(commits: list[dict], variables: list[dict] | None = None, gates: list[dict] | None = None) -> dict:
    return {"id": "3f6c0000-aaaa", "source": "staging", "target": "production", "state": "PLANNED", "commit": "9a0c3311b7f2" + "0" * 28,
            "requested_by": "alice", "plan": {
                "source_deployment_id": "71c2a0e4-bbbb", "commit_range": {"from": None, "to": "9a0c3311b7f2" + "0" * 28,
                                                                          "commits": commits},
                "variables": variables or [], "services": [], "gates": gates or [],
                "migrations": {"will_run": False, "commands": [], "backup_first": False}}}  # fmt: skip


def test_title_and_an_empty_plan() -> None:
    pr = promotion_pr.render(promotion([]), repository="o/r", head="develop", base="main")
    assert (pr.repository, pr.head, pr.base, pr.title) == ("o/r", "develop", "main", "Promote staging → production (9a0c331)")
    assert "`nothing deployed` → `9a0c3311b7f2` (0 commits)" in pr.body
    for section in ("### Commits\n\n- (none)", "(secrets masked)\n\nNo change.", "### Services\n\nNo change.",
                    "### Migrations\n\nNone (no preDeployCommand).", "### Gates\n\nNone."):
        assert section in pr.body


def test_free_text_cannot_mention_people_break_tables_or_inject_html() -> None:
    pr = promotion_pr.render(
        promotion([{"sha": "1" * 40, "subject": "thanks @bob <script>"}],
                  variables=[{"key": "A|B", "change": "added", "before": None, "after": "x`y|z"}],
                  gates=[{"id": "smoke-tests", "passed": False, "detail": "exit 1:\n@team"}]),
        repository="o/r", head="develop", base="main")
    assert f"- `{'1' * 12}` thanks @\u200bbob &lt;script&gt;" in pr.body
    assert "| added | `A\\|B` | — | x'y\\|z |" in pr.body
    assert "- ❌ **smoke-tests**: exit 1: @\u200bteam" in pr.body


def test_long_commit_lists_are_cut() -> None:
    commits = [{"sha": f"{i:040x}", "subject": f"c{i}"} for i in range(promotion_pr.COMMITS_SHOWN + 7)]
    body = promotion_pr.render(promotion(commits), repository="o/r", head="develop", base="main").body
    assert body.count("\n- `") == promotion_pr.COMMITS_SHOWN and "- … and 7 more" in body
