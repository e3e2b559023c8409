"""What the Kubernetes e2e suites share (against the fake API: test_kubernetes_backend.py; against a real cluster:
test_kubernetes_cluster.py): the example app as a project with no promotion gates, and a pull request's lifecycle."""

from __future__ import annotations

import subprocess
from pathlib import Path

from webhooks import deliver, pull_request


def project_repo(plane, where: Path, project: str) -> Path:
    """The example app as `project`, matched to GitHub's owner/<project>, production promoted without approvals or
    smoke tests (the gates are not what these suites prove), a Procfile worker beside web; its develop branch pushed."""
    repo = plane.app_repo(where, "app", project=project)
    toml = repo / "branchyard.toml"
    text = toml.read_text().replace('repository = "owner/yoto-smart-stream"', f'repository = "owner/{project}"')
    toml.write_text(text.replace("approvals = 2\n", "").replace('smokeCommand = "python manage.py smoke"', "#"))
    (repo / "Procfile").write_text("worker: python -c 'import time; time.sleep(10**9)'\n")
    plane.commit(repo, "no promotion gates; a worker")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    push = plane.git(repo, "push", "branchyard", "develop")
    plane.push_log = push.stdout + push.stderr
    return repo


class PullRequest:
    """Pull request `number` from branch feature/mqtt, as GitHub would deliver it (an upstream bare repository
    stands in for GitHub); `open()` and `close()` send the signed deliveries."""

    def __init__(self, plane, repo: Path, project: str, secret: str, where: Path, number: int = 12) -> None:
        self.plane, self.number, self.secret = plane, number, secret
        upstream = where / "upstream.git"
        subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(upstream)], check=True, env=plane.env)
        plane.git(repo, "remote", "add", "upstream", str(upstream))
        plane.run("init", "--repo", str(upstream), cwd=repo)
        base = plane.git(repo, "rev-parse", "main").stdout.strip()
        plane.git(repo, "checkout", "--quiet", "-b", "feature/mqtt")
        (repo / "VERSION").write_text("pr\n")
        self.head = plane.commit(repo, "pr")
        plane.git(repo, "push", "--quiet", "upstream", "feature/mqtt")
        plane.git(repo, "checkout", "--quiet", "develop")
        self.event = {"head_ref": "feature/mqtt", "base_sha": base, "repository": f"owner/{project}"}

    def open(self) -> int:
        return deliver(self.plane.api_url, "pull_request", pull_request("opened", self.number, head_sha=self.head,
                                                                        **self.event), secret=self.secret).status_code

    def close(self) -> int:
        return deliver(self.plane.api_url, "pull_request", pull_request("closed", self.number, head_sha=self.head,
                                                                        merged=True, **self.event),
                       secret=self.secret).status_code
