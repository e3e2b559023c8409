"""The `branchyard` remote's rules (git_rules.py) with real git and a real control plane: who pushes (a member,
a viewer, the admin) over a local path and over HTTP, what a refusal prints on the `remote:` line, and that a
refused push changes nothing (no deployment, the ref where it was)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def remote_head(plane, repo, branch):
    listed = plane.git(repo, "ls-remote", "branchyard", f"refs/heads/{branch}").stdout.split()
    return listed[0] if listed else None


def commits(plane, repo, env):
    return [(d["commit"], d["actor"]) for d in plane.json("deployments", "-e", env, cwd=repo)]


def refusals(plane, repo, env):
    return [(e["actor"], e["message"]) for e in plane.json("events", "-e", env, cwd=repo) if e["kind"] == "push.refused"]


def test_members_admins_force_pushes_and_productions_commit_on_a_local_remote(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="rules")
    v1 = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")  # the machine's admin: production runs v1
    alice = plane.add_user("alice", "member")

    # --- a member's push to main (production, protected) is refused, saying why; nothing is deployed or moved
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    (repo / "VERSION").write_text("2\n")
    v2 = plane.commit(repo, "v2")
    refused = alice.git(repo, "push", "branchyard", "HEAD:main", check=False)
    assert refused.returncode != 0
    assert ("remote: branchyard: refs/heads/main: pushing main: permission 'deploy' in protected environment "
            "production needs role admin; alice is member: reach production through `branchyard promote`, or ask an "
            "admin") in refused.stderr, refused.stderr
    assert "pre-receive hook declined" in refused.stderr
    # …nor through another branch whose own branchyard.toml says production deploys it
    plane.git(repo, "checkout", "--quiet", "-b", "sneaky")
    toml = repo / "branchyard.toml"
    toml.write_text(toml.read_text().replace('[environments.production]\nbranch = "main"',
                                             '[environments.production]\nbranch = "sneaky"', 1))
    plane.commit(repo, "production deploys sneaky")
    sneaky = alice.git(repo, "push", "branchyard", "sneaky", check=False)
    assert sneaky.returncode != 0
    assert ("remote: branchyard: refs/heads/sneaky: pushing sneaky: permission 'deploy' in protected environment "
            "production needs role admin; alice is member") in sneaky.stderr, sneaky.stderr
    plane.git(repo, "checkout", "--quiet", "develop")
    assert remote_head(plane, repo, "main") == v1 and remote_head(plane, repo, "sneaky") is None
    assert commits(plane, repo, "production") == [(v1, "admin")]
    assert [actor for actor, _ in refusals(plane, repo, "production")] == ["alice", "alice"]

    # --- develop (staging, not protected): the member's push deploys, and the deployment is the member's
    alice.git(repo, "push", "branchyard", "develop")
    assert commits(plane, repo, "staging") == [(v2, "alice")]

    # --- rewriting develop: refused for the member, and for the admin while the spec does not allow force pushes
    plane.git(repo, "commit", "--quiet", "--amend", "-m", "v2, rewritten")
    for who, says in ((alice, "only an admin may force it"), (plane, "forcing it needs")):
        forced = who.git(repo, "push", "--force", "branchyard", "develop", check=False)
        assert forced.returncode != 0
        assert (f"remote: branchyard: refs/heads/develop: non-fast-forward push to develop (staging's branch) is "
                f"refused: it would drop {v2[:12]}") in forced.stderr, forced.stderr
        assert says in forced.stderr and "[github.protection.develop] allow_force_push = true" in forced.stderr
    assert remote_head(plane, repo, "develop") == v2
    assert commits(plane, repo, "staging") == [(v2, "alice")]
    assert sorted(actor for actor, _ in refusals(plane, repo, "staging")) == ["admin", "alice"]

    # --- production runs develop's v2 (the admin's `up`); a push to main without it would drop it: refused,
    # naming the commit and its deployment; the admin overrides with `-o force`
    plane.git(repo, "reset", "--quiet", "--hard", v2)
    plane.run("up", "-e", "production", cwd=repo)
    up = plane.json("status", "-e", "production", cwd=repo)["current_deployment"]
    assert up["commit"] == v2
    plane.git(repo, "checkout", "--quiet", "main")
    (repo / "HOTFIX").write_text("1\n")
    hotfix = plane.commit(repo, "a hotfix on main, without v2")
    dropped = plane.git(repo, "push", "branchyard", "main", check=False)
    assert dropped.returncode != 0
    assert (f"remote: branchyard: refs/heads/main: pushing main: {hotfix[:12]} does not contain {v2[:12]}, which "
            f"production runs (deployment {up['id'][:8]}, by up): merge it first (`git merge {v2[:12]}`) and push "
            "again; or override with `git push -o force branchyard main`") in dropped.stderr, dropped.stderr
    assert remote_head(plane, repo, "main") == v1
    assert [c for c, _ in commits(plane, repo, "production")] == [v2, v1]

    plane.git(repo, "push", "-o", "force", "branchyard", "main")
    assert remote_head(plane, repo, "main") == hotfix
    assert plane.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == hotfix
    assert commits(plane, repo, "production") == [(hotfix, "admin"), (v2, "admin"), (v1, "admin")]


def test_over_http_a_member_cannot_push_main_and_a_viewer_only_clones(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="webrules")
    v1 = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main:docs")  # a branch no environment deploys: stored, not deployed
    api = plane.json("server", "status")["api_url"]
    member = plane.add_user("mona", "member").env["BRANCHYARD_TOKEN"]
    viewer = plane.add_user("vic", "viewer").env["BRANCHYARD_TOKEN"]

    def url(name, token):  # the token as the Basic password; git runs with the admin's environment, no token in it
        return f"{api.replace('://', f'://{name}:{token}@')}/git/webrules.git"

    # the member's push over HTTP reaches the hook as the member (not as the machine's admin), and is refused
    refused = plane.git(repo, "push", url("mona", member), "main", check=False)
    assert refused.returncode != 0
    assert ("remote: branchyard: refs/heads/main: pushing main: permission 'deploy' in protected environment "
            "production needs role admin; mona is member") in refused.stderr, refused.stderr
    assert [actor for actor, _ in refusals(plane, repo, "production")] == ["mona"]

    # the viewer's push is refused by git over HTTP itself (403), before any pack is sent: the hook never runs
    pushed = plane.git(repo, "push", url("vic", viewer), "main", check=False)
    assert pushed.returncode != 0 and "403" in pushed.stderr, pushed.stderr
    assert "remote:" not in pushed.stderr
    assert [actor for actor, _ in refusals(plane, repo, "production")] == ["mona"]
    assert plane.json("deployments", "-e", "production", cwd=repo) == []
    assert remote_head(plane, repo, "main") is None

    # …and the viewer clones
    clone = tmp_path / "clone"
    plane.git(tmp_path, "clone", "--quiet", "--branch", "docs", url("vic", viewer), str(clone))
    assert plane.git(clone, "rev-parse", "HEAD").stdout.strip() == v1
