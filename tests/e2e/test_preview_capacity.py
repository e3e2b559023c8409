"""maxPreviews with evict = "refuse": pull requests wait in line and get their preview, in the order refused, when a
slot frees — without a new delivery; and an upstream whose URL holds a password, failing to fetch, never shows
it. Real processes, Caddy and git, on the trivially fast app of test_previews_rules."""

from __future__ import annotations

import http.server
import threading

import pytest
from conftest import wait_for, webhook_plane
from test_previews_rules import SECRET, branch_commit, decided, envs, opened, preview, succeeded, tiny_project
from webhooks import deliver, push

pytestmark = pytest.mark.integration

PASSWORD = "upstream-pa55word-never-shown"


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:
        yield p


def kinds(plane, repo, env):
    return [e["kind"] for e in plane.json("events", "-e", env, cwd=repo)]


def test_previews_refused_for_capacity_are_admitted_in_order_when_a_slot_frees(plane, tmp_path):
    repo, base = tiny_project(plane, tmp_path, "capq", extra="maxPreviews = 1")
    a = branch_commit(plane, repo, "feature/1", "a")
    opened(plane, "capq", 1, a, base)
    succeeded(plane, repo, "pr-1", a)
    c = branch_commit(plane, repo, "feature/3", "c")
    opened(plane, "capq", 3, c, base)  # refused for capacity first…
    third = decided(plane, repo, "pr-3", "waiting")
    assert 'maxPreviews = 1 previews already run (evict = "refuse")' in third["reason"]
    assert third["waiting_position"] == 1
    b = branch_commit(plane, repo, "feature/2", "b")
    opened(plane, "capq", 2, b, base)  # …then this one: it waits behind pr-3 although its number is lower
    assert decided(plane, repo, "pr-2", "waiting")["waiting_position"] == 2
    bot = branch_commit(plane, repo, "dependabot/pip/x", "bump")
    opened(plane, "capq", 4, bot, base, branch="dependabot/pip/x", user="dependabot[bot]", user_type="Bot")
    assert "bots" in decided(plane, repo, "pr-4", "refused")["reason"]  # a policy refusal: never in line
    assert "waiting_position" not in preview(plane, repo, "pr-4")
    listed = " ".join(plane.run("previews", "list", cwd=repo).stdout.replace("│", " ").split())  # cells wrap at 80
    assert "waiting" in listed and "#1 in line; waiting for a free slot: maxPreviews = 1" in listed
    assert "preview.waiting" in kinds(plane, repo, "pr-3")
    # a new head while waiting keeps the place in line
    b2 = branch_commit(plane, repo, "feature/2", "b2")
    synced = opened(plane, "capq", 2, b2, base, branch="feature/2", action="synchronize")
    assert synced.json()["note"] == f"pr-2: synchronize at {b2[:12]}"
    # decided with the delivery (no loop pass needed): the new head is recorded and the place in line kept
    waiting = preview(plane, repo, "pr-2")
    assert (waiting["head_sha"], waiting["decision"], waiting["waiting_position"]) == (b2, "waiting", 2)
    assert envs(plane, repo) == {"pr-1"}

    # pr-1 closes: the first refused (pr-3) gets the slot, with no delivery about pr-3
    opened(plane, "capq", 1, a, base, action="closed")
    succeeded(plane, repo, "pr-3", c)
    assert "preview.admitted" in kinds(plane, repo, "pr-3")
    wait_for(lambda: envs(plane, repo) == {"pr-3"}, timeout=60)
    assert preview(plane, repo, "pr-2")["decision"] == "waiting"
    assert preview(plane, repo, "pr-2")["waiting_position"] == 1
    assert plane.get("capq-pr-3.localhost").status_code == 200

    # pr-3 closes: pr-2 is admitted at its newest head; the bot's pull request stays refused
    opened(plane, "capq", 3, c, base, action="closed")
    succeeded(plane, repo, "pr-2", b2)
    wait_for(lambda: envs(plane, repo) == {"pr-2"}, timeout=60)
    assert preview(plane, repo, "pr-4")["decision"] == "refused"
    assert "waiting_position" not in preview(plane, repo, "pr-2")


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Looks like a "dumb" HTTP git remote with corrupt objects: git's own errors then quote the URL as given."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"not a git object")

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_an_upstream_password_never_shows_when_the_fetch_fails(plane, tmp_path):
    from branchyard.cli.client import Client
    from branchyard.settings import load

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://deploy:{PASSWORD}@127.0.0.1:{server.server_address[1]}/owner/creds.git"
        repo, base = tiny_project(plane, tmp_path, "creds")
        outputs = [plane.run("init", "--repo", url, cwd=repo)]  # the upstream is now the failing server
        plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "production", "API_TOKEN=production-token-1",
                  cwd=repo)
        plane.git(repo, "push", "branchyard", "main")  # main's spec is known (it has a preview template)
        succeeded(plane, repo, "production")
        head = branch_commit(plane, repo, "feature/9", "only-upstream")  # a commit the project does not have
        opened(plane, "creds", 9, head, base)
        refused = decided(plane, repo, "pr-9", "refused")
        assert refused["reason"].startswith(f"commit {head[:12]} could not be fetched from the project's upstream "
                                            f"http://***@127.0.0.1:{server.server_address[1]}/owner/creds.git")
        r = deliver(plane.api_url, "push", push("refs/heads/develop", after=head, repository="owner/creds"),
                    secret=SECRET)
        assert r.status_code == 202, r.text
        # the push delivery is acted on in the background: its refusal is the event that proves it was
        [pushed] = wait_for(lambda: [e for e in plane.json("events", cwd=repo) if e["kind"] == "push.refused"],
                            timeout=60)
        assert pushed["message"].startswith(
            f"push of refs/heads/develop at {head[:12]}: refused: commit {head[:12]} could not be fetched from the "
            f"project's upstream http://***@127.0.0.1:{server.server_address[1]}/owner/creds.git"), pushed["message"]
        for args in (("previews", "list"), ("previews", "list", "--json"), ("events", "--json"), ("events",),
                     ("environment", "list", "--json"), ("status", "-e", "production"), ("link", "creds")):
            outputs.append(plane.run(*args, cwd=repo, check=False))
        text = "".join(o.stdout + o.stderr for o in outputs)
        assert "could not be fetched" in text and PASSWORD not in text
        client = Client(load(plane.env))
        answers = repr(client.get("/api/projects")) + repr(client.get("/api/projects/creds"))
        assert PASSWORD not in answers and "http://***@127.0.0.1" in answers
        for path in plane.home.rglob("*"):  # logs, deploy logs, Caddy's files; the state database must keep the URL
            if path.is_file() and not path.name.startswith("state.db"):
                assert PASSWORD.encode() not in path.read_bytes(), path
    finally:
        server.shutdown()
        server.server_close()
