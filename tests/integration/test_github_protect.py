"""`branchyard github protect [--apply] [--json]`: render from the project files, apply against the fake GitHub API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import BRANCHYARD, EXAMPLE
from fakes.github_api import FakeGitHub

REPO = "owner/yoto-smart-stream"
TOKEN = "ghp_protectTestToken987"


@pytest.fixture()
def fake():
    with FakeGitHub(token=TOKEN) as f:
        yield f


@pytest.fixture()
def app(tmp_path):
    root = tmp_path / "app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    return root


def run(app, *args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")}
    base |= {"BRANCHYARD_HOME": str(app.parent / "home"), "HOME": str(app.parent)}
    return subprocess.run([*BRANCHYARD, "github", "protect", *args], cwd=app, env=base | env, capture_output=True,
                          text=True, timeout=60)


def test_render_needs_no_server_and_no_token(app):
    done = run(app, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["repository"], out["applied"]) == (REPO, False)
    assert [(b["branch"], b["required_approvals"], b["required_checks"], b["allow_force_push"]) for b in out["branches"]] == [
        ("main", 2, ["branchyard/staging"], False), ("develop", 1, ["branchyard/preview"], False)]
    assert out["branches"][0]["request"]["path"] == f"/repos/{REPO}/branches/main/protection"
    human = run(app)
    assert human.returncode == 0 and "main" in human.stdout and "rendered only" in human.stdout


def test_apply_puts_the_rendered_bodies(app, fake):
    rendered = json.loads(run(app, "--json").stdout)
    done = run(app, "--apply", BRANCHYARD_GITHUB_TOKEN=TOKEN, BRANCHYARD_GITHUB_API_URL=fake.url)
    assert done.returncode == 0, done.stderr
    assert f"branch protection applied on {REPO}: main, develop" in done.stdout
    assert fake.protections == {(REPO, b["branch"]): b["request"]["body"] for b in rendered["branches"]}
    assert fake.protections[(REPO, "main")]["required_pull_request_reviews"]["required_approving_review_count"] == 2
    assert fake.protections[(REPO, "main")]["allow_force_pushes"] is False
    assert fake.refused() == []
    assert TOKEN not in done.stdout + done.stderr


def test_apply_without_a_token_or_a_repository_changes_nothing(app, fake):
    done = run(app, "--apply", BRANCHYARD_GITHUB_API_URL=fake.url)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: BRANCHYARD_GITHUB_TOKEN is not set: `github protect --apply` needs a token "
                                   f"with administration access to {REPO} (nothing was changed)")
    toml = app / "branchyard.toml"
    toml.write_text(toml.read_text().replace('[github]\nrepository = "owner/yoto-smart-stream"\n', ""))
    done = run(app, "--apply", BRANCHYARD_GITHUB_TOKEN=TOKEN, BRANCHYARD_GITHUB_API_URL=fake.url)
    assert done.returncode == 2
    assert done.stderr.strip() == ('error: branchyard.toml: github.repository: not set; add [github] repository = '
                                   '"owner/name" to apply branch protection (nothing was changed)')
    assert fake.received == []


def test_a_refused_token_and_a_bad_value_are_one_line_errors(app, fake):
    done = run(app, "--apply", BRANCHYARD_GITHUB_TOKEN="ghp_wrong", BRANCHYARD_GITHUB_API_URL=fake.url)
    assert done.returncode == 5
    assert done.stderr.strip() == (f"error: main: GitHub API PUT /repos/{REPO}/branches/main/protection: 401 Bad credentials; "
                                   "nothing was changed")
    toml = app / "branchyard.toml"
    toml.write_text(toml.read_text() + "\n[github.protection.main]\nrequired_approvals = 10\n")
    done = run(app, "--apply", BRANCHYARD_GITHUB_TOKEN=TOKEN, BRANCHYARD_GITHUB_API_URL=fake.url)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: branchyard.toml: github.protection.main.required_approvals: expected a "
                                          "whole number from 0 to 6 (GitHub's limit), got 10 (line ")
    assert fake.protections == {}
