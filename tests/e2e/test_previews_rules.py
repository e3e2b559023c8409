"""Who gets a preview (forks, bots, drafts), branch-triggered previews, the janitor and a storm — on a trivially
fast app (python -m http.server) so many previews stay affordable; real processes, Caddy, git."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import wait_for, webhook_plane
from leaks import leaks
from webhooks import deliver, pull_request, push

pytestmark = pytest.mark.integration

SECRET = "rules-webhook-secret-1234"

TOML = """[project]
name = "{name}"

[github]
repository = "owner/{name}"

[variables]
API_TOKEN = "${{{{ secrets.API_TOKEN }}}}"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"

[environments.pr]
base = "staging"
branches = {branches}
{extra}
"""

RAILWAY = """[deploy]
startCommand = "exec python3 -m http.server $PORT --bind 127.0.0.1"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:
        yield p


def tiny_project(plane, tmp_path: Path, name: str, extra: str = "",
                 branches: str = '["feature/*", "dependabot/*"]') -> tuple[Path, str]:
    """A repository with a static-file app, registered as `name`, with a bare upstream; (repo, main sha)."""
    repo = tmp_path / name
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML.format(name=name, extra=extra, branches=branches))
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    base = plane.commit(repo, "initial")
    upstream = tmp_path / f"{name}-upstream.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(upstream)], check=True, env=plane.env)
    plane.git(repo, "remote", "add", "upstream", str(upstream))
    plane.run("init", "--repo", str(upstream), cwd=repo)
    plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "staging", "API_TOKEN=staging-token-value",
              cwd=repo)
    return repo, base


def branch_commit(plane, repo: Path, branch: str, text: str, *, remote: str = "upstream") -> str:
    plane.git(repo, "checkout", "--quiet", "-B", branch, "main")
    (repo / "VERSION").write_text(text + "\n")
    sha = plane.commit(repo, text)
    plane.git(repo, "push", "--quiet", "--force", remote, f"{branch}:{branch}")
    plane.git(repo, "checkout", "--quiet", "main")
    return sha


def opened(plane, name, number, sha, base, branch=None, action="opened", **kw):
    r = deliver(plane.api_url, "pull_request", pull_request(action, number, head_sha=sha, base_sha=base,
                                                            head_ref=branch or f"feature/{number}",
                                                            repository=f"owner/{name}", **kw), secret=SECRET)
    assert r.status_code == 202, r.text
    return r


def preview(plane, repo, env):
    return next((p for p in plane.json("previews", "list", cwd=repo) if p["environment"] == env), None)


def decided(plane, repo, env, decision):
    return wait_for(lambda: (p := preview(plane, repo, env)) and p["decision"] == decision and p, timeout=60)


def envs(plane, repo) -> set[str]:
    return {e["name"] for e in plane.json("environment", "list", "--ephemeral", cwd=repo)}


def status_of(plane, repo, env):
    done = plane.run("status", "-e", env, "--json", cwd=repo, check=False)
    return None if done.returncode else __import__("json").loads(done.stdout)


def succeeded(plane, repo, env, sha=None):
    def ok():
        s = status_of(plane, repo, env)
        return s and s["current_deployment"] and s["current_deployment"]["status"] == "SUCCESS" and (
            sha is None or s["current_deployment"]["commit"] == sha) and s
    return wait_for(ok, timeout=120, interval=0.3)


def test_fork_bot_and_draft_rules(plane, tmp_path):
    repo, base = tiny_project(plane, tmp_path, "rules")
    same = branch_commit(plane, repo, "feature/1", "same-repo")
    opened(plane, "rules", 1, same, base)
    succeeded(plane, repo, "pr-1", same)
    token = plane.run("run", "-e", "pr-1", "--", "sh", "-c", "echo $API_TOKEN", cwd=repo).stdout.strip()
    assert token == "staging-token-value"  # a same-repository PR gets the base's (staging's) secrets
    assert plane.get("rules-pr-1.localhost").status_code == 200

    # a fork: not deployed until approved, and then without secrets (the deploy names the missing one)
    fork = branch_commit(plane, repo, "feature/2", "from-a-fork")
    plane.git(repo, "push", "--quiet", "upstream", f"{fork}:refs/pull/2/head")  # where GitHub keeps fork heads
    plane.git(repo, "push", "--quiet", "upstream", ":feature/2")  # the fork's branch is not in the base repository
    opened(plane, "rules", 2, fork, base, head_repository="stranger/rules")
    pending = decided(plane, repo, "pr-2", "pending_approval")
    assert pending["fork"] is True and "previews approve" in pending["reason"]
    assert "pr-2" not in envs(plane, repo)  # decided pending: the loop creates nothing for it
    kinds = [e["kind"] for e in plane.json("events", "-e", "pr-2", cwd=repo)]
    assert "preview.pending_approval" in kinds
    approve = plane.run("previews", "approve", "2", cwd=repo)
    assert f"approved at {fork[:12]}" in approve.stdout
    failed = wait_for(lambda: (s := status_of(plane, repo, "pr-2")) and s["latest_deployment"]
                      and s["latest_deployment"]["status"] == "FAILED" and s, timeout=60)
    assert "API_TOKEN" in failed["latest_deployment"]["error"]
    assert plane.json("variables", "list", "-e", "pr-2", cwd=repo)["secrets"] == []
    unknown = plane.run("previews", "approve", "404", cwd=repo, check=False)
    assert unknown.returncode == 3 and "no open pull request #404" in unknown.stderr

    # bots are off by default; drafts too, until ready for review
    bot = branch_commit(plane, repo, "dependabot/pip/x", "bump")
    opened(plane, "rules", 3, bot, base, branch="dependabot/pip/x", user="dependabot[bot]", user_type="Bot")
    assert "bots" in decided(plane, repo, "pr-3", "refused")["reason"]
    draft = branch_commit(plane, repo, "feature/4", "draft")
    opened(plane, "rules", 4, draft, base, draft=True)
    assert "draft" in decided(plane, repo, "pr-4", "refused")["reason"]
    assert not {"pr-3", "pr-4"} & envs(plane, repo)
    opened(plane, "rules", 4, draft, base, action="ready_for_review")
    succeeded(plane, repo, "pr-4", draft)
    # a branch no pattern matches
    other = branch_commit(plane, repo, "docs/readme", "docs")
    opened(plane, "rules", 5, other, base, branch="docs/readme")
    assert "matches none of" in decided(plane, repo, "pr-5", "refused")["reason"]


def test_branch_trigger_mode_without_github(plane, tmp_path):
    repo, _ = tiny_project(plane, tmp_path, "brt", extra='trigger = "branch"', branches='["*"]')
    plane.git(repo, "checkout", "--quiet", "-b", "feature/x")
    (repo / "VERSION").write_text("x\n")
    sha = plane.commit(repo, "feature x")
    pushed = plane.git(repo, "push", "branchyard", "feature/x")
    assert "preview feature-x" in pushed.stderr
    s = succeeded(plane, repo, "feature-x", sha)
    assert s["ephemeral"] is True and plane.get("brt-feature-x.localhost").status_code == 200
    assert [e["name"] for e in plane.json("environment", "list", "--ephemeral", cwd=repo)] == ["feature-x"]
    pids = {r["pid"] for r in s["replicas"]}
    ports = {r["port"] for r in s["replicas"]}
    deps = {d["id"] for d in plane.json("deployments", "-e", "feature-x", cwd=repo)}
    deleted = plane.git(repo, "push", "branchyard", ":feature/x")
    assert "preview feature-x will be destroyed" in deleted.stderr
    wait_for(lambda: "feature-x" not in envs(plane, repo), timeout=60)
    assert wait_for(lambda: not leaks(plane.home, plane.http_port, "brt", ["feature-x"], ports=ports, pids=pids,
                                      deployments=deps), timeout=15)

    plane.git(repo, "checkout", "--quiet", "-b", "feature/_")
    refused = plane.git(repo, "push", "branchyard", "HEAD:refs/heads/_", check=False)
    assert "no preview for branch '_'" in refused.stderr and "has no letters or digits" in refused.stderr
    assert envs(plane, repo) == set()


def test_a_branch_preview_honours_watch_patterns(plane, tmp_path):
    repo, _ = tiny_project(plane, tmp_path, "brw", extra='trigger = "branch"', branches='["*"]')
    (repo / "railway.toml").write_text('[build]\nwatchPatterns = ["/app/**"]\n\n' + RAILWAY)
    plane.git(repo, "checkout", "--quiet", "-b", "feature/w")
    (repo / "app").mkdir()
    (repo / "app" / "page.txt").write_text("one\n")
    first = plane.commit(repo, "a watched preview")
    assert "preview feature-w" in plane.git(repo, "push", "branchyard", "feature/w").stderr  # its first deploy deploys
    succeeded(plane, repo, "feature-w", first)

    (repo / "docs").mkdir()
    (repo / "docs" / "notes.md").write_text("only docs\n")
    docs = plane.commit(repo, "docs only")
    pushed = plane.git(repo, "push", "branchyard", "feature/w")
    assert ('no deploy: no changed file matches watchPatterns ["/app/**"] '
            f"(docs/notes.md changed since {first[:12]})") in pushed.stderr
    skipped = [e for e in plane.json("events", "-e", "feature-w", cwd=repo) if e["kind"] == "deploy.skipped"]
    assert [e["message"][:len(f"push of {docs[:12]}")] for e in skipped] == [f"push of {docs[:12]}"]

    (repo / "app" / "page.txt").write_text("two\n")
    app = plane.commit(repo, "an app change")
    plane.git(repo, "push", "branchyard", "feature/w")
    succeeded(plane, repo, "feature-w", app)
    # the preview loop did not deploy the skipped head behind the push's back either
    assert [d["commit"] for d in plane.json("deployments", "-e", "feature-w", cwd=repo)] == [app, first]
    plane.git(repo, "push", "branchyard", ":feature/w")
    wait_for(lambda: "feature-w" not in envs(plane, repo), timeout=60)


def test_janitor_cap_eviction_expiry_and_repair(plane, tmp_path):
    # maxPreviews with evict = "refuse": the newest is refused
    repo, base = tiny_project(plane, tmp_path, "capr", extra="maxPreviews = 1")
    a = branch_commit(plane, repo, "feature/1", "a")
    opened(plane, "capr", 1, a, base)
    succeeded(plane, repo, "pr-1")
    b = branch_commit(plane, repo, "feature/2", "b")
    opened(plane, "capr", 2, b, base)
    assert "maxPreviews = 1" in decided(plane, repo, "pr-2", "waiting")["reason"]  # in line (test_preview_capacity.py)
    assert envs(plane, repo) == {"pr-1"}
    # level-triggered: an environment removed behind its back comes back while the PR is open
    plane.run("environment", "delete", "pr-1", "--yes", cwd=repo)
    succeeded(plane, repo, "pr-1", a)

    # evict = "oldest": the oldest idle preview makes room
    repo2, base2 = tiny_project(plane, tmp_path, "cape", extra='maxPreviews = 1\nevict = "oldest"')
    a = branch_commit(plane, repo2, "feature/1", "a")
    opened(plane, "cape", 1, a, base2)
    succeeded(plane, repo2, "pr-1")
    b = branch_commit(plane, repo2, "feature/2", "b")
    opened(plane, "cape", 2, b, base2)
    succeeded(plane, repo2, "pr-2")
    wait_for(lambda: envs(plane, repo2) == {"pr-2"}, timeout=60)
    assert preview(plane, repo2, "pr-1")["decision"] == "evicted"

    # expireAfterDays: idle previews are destroyed, and come back with new activity
    repo3, base3 = tiny_project(plane, tmp_path, "expi", extra="expireAfterDays = 0.0001")  # 8.64 s
    a = branch_commit(plane, repo3, "feature/1", "a")
    opened(plane, "expi", 1, a, base3)
    succeeded(plane, repo3, "pr-1")
    decided(plane, repo3, "pr-1", "expired")
    wait_for(lambda: envs(plane, repo3) == set(), timeout=30)
    b = branch_commit(plane, repo3, "feature/1", "b")
    opened(plane, "expi", 1, b, base3, action="synchronize")
    succeeded(plane, repo3, "pr-1", b)


def test_storm_of_50_pull_requests_converges_with_nothing_leaked(plane, tmp_path):
    repo, base = tiny_project(plane, tmp_path, "storm")
    sha = branch_commit(plane, repo, "feature/storm", "storm")
    n = 50
    started = time.monotonic()
    for i in range(1, n + 1):
        opened(plane, "storm", i, sha, base, branch="feature/storm")
    wait_for(lambda: sum(1 for e in plane.json("environment", "list", "--ephemeral", cwd=repo)
                         if e["status"] == "SUCCESS") >= 3, timeout=120, interval=0.5)  # some are up, most building
    for i in range(1, n + 1):
        opened(plane, "storm", i, sha, base, branch="feature/storm", action="closed")
    wait_for(lambda: envs(plane, repo) == set(), timeout=300, interval=0.5)
    converged = time.monotonic() - started
    names = [f"pr-{i}" for i in range(1, n + 1)]
    try:
        wait_for(lambda: not leaks(plane.home, plane.http_port, "storm", names), timeout=30)
    except AssertionError:
        raise AssertionError(f"left 30 s after the storm's environments were gone: "
                             f"{leaks(plane.home, plane.http_port, 'storm', names)}") from None
    listed = plane.json("previews", "list", cwd=repo)
    assert sorted(p["number"] for p in listed) == list(range(1, n + 1)) and all(not p["open"] for p in listed)
    print(f"storm of {n}: converged in {converged:.1f}s")


def test_push_events_deploy_mapped_branches_from_the_upstream(plane, tmp_path):
    repo, base = tiny_project(plane, tmp_path, "pushy")
    sha = branch_commit(plane, repo, "develop", "staging build")
    r = deliver(plane.api_url, "push", push("refs/heads/develop", after=sha, before=base, repository="owner/pushy"),
                secret=SECRET)
    assert r.status_code == 202 and "queued" in r.json()["note"]
    s = succeeded(plane, repo, "staging", sha)
    assert s["current_deployment"]["trigger"] == "push" and plane.get("pushy-staging.localhost").status_code == 200
    other = branch_commit(plane, repo, "random", "unmapped")
    r = deliver(plane.api_url, "push", push("refs/heads/random", after=other, before=base, repository="owner/pushy"),
                secret=SECRET)
    assert r.status_code == 202
    ignored = wait_for(lambda: pushes(plane, repo, "push.ignored"), timeout=60)
    assert [e["message"] for e in ignored] == [
        f"push of refs/heads/random at {other[:12]}: branch 'random' is not mapped to an environment; stored, not deployed. "
        "Map it with `branchyard environment add random --branch random`, or in branchyard.toml `branch = \"random\"` "
        "under [environments.random]"]
    assert ignored[0]["actor"] == "github" and ignored[0]["environment"] is None
    assert {e["name"] for e in plane.json("environment", "list", cwd=repo)} == {"production", "staging"}  # from init
    missing = "c" * 40  # not in the upstream: refused, nothing deployed
    r = deliver(plane.api_url, "push", push("refs/heads/develop", after=missing, before=sha, repository="owner/pushy"),
                secret=SECRET)
    assert r.status_code == 202
    [refused] = wait_for(lambda: pushes(plane, repo, "push.refused"), timeout=60)
    assert refused["message"].startswith(f"push of refs/heads/develop at {missing[:12]}: refused: commit {missing[:12]} "
                                         "could not be fetched from the project's upstream"), refused["message"]
    assert plane.json("status", "-e", "staging", cwd=repo)["current_deployment"]["commit"] == sha
    assert [d["commit"] for d in plane.json("deployments", "-e", "staging", cwd=repo)] == [sha]


def pushes(plane, repo, kind: str) -> list[dict]:
    """The project's audit events of this kind (push deliveries that deployed nothing), oldest first."""
    return [e for e in reversed(plane.json("events", cwd=repo)) if e["kind"] == kind]


def test_sigkill_while_a_preview_builds_converges_after_restart(plane, tmp_path):
    from conftest import BRANCHYARD

    repo, base = tiny_project(plane, tmp_path, "kill")
    plane.run("server", "stop")
    armed = plane.env | {"BRANCHYARD_FAILPOINTS": "deploy.after_build"}
    subprocess.run([*BRANCHYARD, "server", "--detach"], env=armed, capture_output=True, text=True, timeout=120, check=True)
    plane.api_url = plane.json("server", "status")["api_url"]
    sha = branch_commit(plane, repo, "feature/1", "killed")
    opened(plane, "kill", 1, sha, base)
    wait_for(lambda: plane.run("server", "status", check=False).returncode != 0, timeout=60)  # it SIGKILLed itself
    plane.run("server", "--detach")
    plane.api_url = plane.json("server", "status")["api_url"]
    s = succeeded(plane, repo, "pr-1", sha)  # the interrupted deployment is resumed, not replaced
    assert plane.get("kill-pr-1.localhost").status_code == 200
    deps = plane.json("deployments", "-e", "pr-1", cwd=repo)
    assert [d["status"] for d in deps] == ["SUCCESS"] and s["current_deployment"]["id"] == deps[0]["id"]
    kinds = [e["kind"] for e in plane.json("events", "-e", "pr-1", cwd=repo)]
    assert "deploy.interrupted" in kinds and "deploy.resumed" in kinds
