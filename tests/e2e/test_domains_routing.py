"""Custom domains end to end, on a trivially fast app (python -m http.server) with real processes, Caddy and git:
`domain add` routes a host to the environment, a taken domain is refused naming its owner, `domain delete` and
deleting the environment stop the routing, domains declared in branchyard.toml follow the deployed files, and the
TLS `ask` endpoint of the real control plane answers yes exactly for the hosts the router serves; a preview torn down
when its pull request closes frees its domain."""

from __future__ import annotations

import httpx
import pytest
from conftest import wait_for, webhook_plane
from test_previews_rules import SECRET, branch_commit, envs, opened, succeeded, tiny_project

pytestmark = pytest.mark.integration

NAME = "shop"
TOML = """[project]
name = "shop"

[environments.production]
branch = "main"

[environments.staging]
branch = "develop"
{staging_domains}
"""

RAILWAY = """[deploy]
startCommand = "exec python3 -m http.server $PORT --bind 127.0.0.1"
healthcheckPath = "/health"
healthcheckTimeout = 30
drainingSeconds = 1
"""


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:  # GitHub deliveries too: previews open and close
        yield p


def ask(plane, domain: str | None) -> httpx.Response:
    """What Caddy's on-demand TLS asks the control plane before ordering a certificate (no token)."""
    params = {} if domain is None else {"domain": domain}
    return httpx.get(f"{plane.api_url}/internal/tls/ask", params=params, timeout=10, trust_env=False)


def served_by(plane, host: str) -> str | None:
    """Which environment the router sends `host` to (its X-Branchyard-Environment), None for the router's 404."""
    response = plane.get(host, "/health")
    if response.status_code == 404:
        assert "No branchyard environment at host" in response.text  # the router's own page, not an app's 404
        return None
    assert response.status_code == 200 and response.text == "ok\n", (host, response.status_code, response.text)
    return response.headers["X-Branchyard-Environment"]


def listed(plane, repo, env: str) -> list[dict]:
    return plane.json("domain", "list", "-e", env, cwd=repo)


def test_custom_domains_route_refuse_free_and_gate_certificates(plane, tmp_path):
    repo = tmp_path / NAME
    repo.mkdir()
    (repo / "branchyard.toml").write_text(TOML.format(staging_domains='domains = ["staging.shop.test"]'))
    (repo / "railway.toml").write_text(RAILWAY)
    (repo / "health").write_text("ok\n")
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    plane.git(repo, "push", "branchyard", "main")
    succeeded(plane, repo, "production")
    plane.git(repo, "push", "branchyard", "main:develop")
    succeeded(plane, repo, "staging")

    # declared in branchyard.toml: attached by staging's deploy, routed to staging
    [spec_domain] = listed(plane, repo, "staging")
    assert {k: spec_domain[k] for k in ("host", "source", "certificate", "certificate_state")} == {
        "host": "staging.shop.test", "source": "spec", "certificate": "pending", "certificate_state": "pending"}
    assert served_by(plane, "staging.shop.test") == "staging"
    assert listed(plane, repo, "production") == []

    # domain add: routed to production at once (mixed case and a trailing dot are the same name)
    assert served_by(plane, "www.shop.test") is None
    added = plane.run("domain", "add", "WWW.Shop.Test.", "-e", "production", cwd=repo)
    assert f"www.shop.test added to production: http://www.shop.test:{plane.http_port}" in added.stdout
    assert served_by(plane, "www.shop.test") == "production"
    assert served_by(plane, "shop.localhost") == "production"  # the generated host still serves
    assert [d["host"] for d in listed(plane, repo, "production")] == ["www.shop.test"]
    status = plane.run("status", "-e", "production", cwd=repo).stdout
    assert "domains: www.shop.test" in status
    assert plane.json("status", "-e", "production", cwd=repo)["domains"] == ["www.shop.test"]
    listing = plane.run("domain", "list", "-e", "production", cwd=repo).stdout
    assert "www.shop.test" in listing and "pending" in listing and "domain add" in listing

    # the ask endpoint: 200 for served hosts (generated and custom), 404 for anything else, and nothing more said
    for host in ("www.shop.test", "WWW.SHOP.TEST.", "staging.shop.test", "shop.localhost", "shop-staging.localhost"):
        answer = ask(plane, host)
        assert (answer.status_code, answer.content) == (200, b""), host
    for host in ("evil.test", "shop.test", "x.www.shop.test", "shop-pr-1.localhost", "*.shop.test", "127.0.0.1", "", None):
        answer = ask(plane, host)
        assert (answer.status_code, answer.content) == (404, b""), host

    # taken: refused naming its owner, nothing changed
    taken = plane.run("domain", "add", "www.shop.test", "-e", "staging", cwd=repo, check=False)
    assert taken.returncode == 4, taken.stderr
    assert taken.stderr.strip() == "error: www.shop.test is already a domain of project shop, environment production"
    generated = plane.run("domain", "add", "shop-staging.localhost", "-e", "production", cwd=repo, check=False)
    assert generated.returncode == 2 and generated.stderr.count("\n") == 1, generated.stderr
    assert "localhost names only ever reach this machine itself" in generated.stderr
    # bad names: one line, exit 2, nothing stored
    for bad, why in (("*.shop.test", "wildcard domains are not supported"),
                     ("bücher.test", "internationalised names are given in punycode: xn--bcher-kva.test"),
                     ("10.0.0.1", "an IP address is not a domain"),
                     ("https://www.shop.test/", "give a bare host name")):
        done = plane.run("domain", "add", bad, "-e", "staging", cwd=repo, check=False)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and why in done.stderr, (bad, done.stderr)
    assert [d["host"] for d in listed(plane, repo, "staging")] == ["staging.shop.test"]
    # a spec-declared domain is removed from the spec, not by hand
    by_hand = plane.run("domain", "delete", "staging.shop.test", "-e", "staging", cwd=repo, check=False)
    assert by_hand.returncode == 2 and "declared in branchyard.toml (environments.staging.domains)" in by_hand.stderr
    unknown = plane.run("domain", "delete", "nope.shop.test", "-e", "production", cwd=repo, check=False)
    assert unknown.returncode == 3
    assert unknown.stderr.strip() == ("error: nope.shop.test is not a domain of project shop, environment production "
                                      "(its domains: www.shop.test)")

    # declared in the files while another environment holds it: that deployment fails naming the owner, before
    # anything is built; staging keeps its domains and keeps serving its previous deployment
    (repo / "branchyard.toml").write_text(TOML.format(staging_domains='domains = ["staging.shop.test", "www.shop.test"]'))
    plane.commit(repo, "staging wants production's domain")
    push = plane.git(repo, "push", "branchyard", "HEAD:develop", check=False)
    assert push.returncode != 0
    owner = ("branchyard.toml: environments.staging.domains: www.shop.test is already a domain of project shop, "
             "environment production")
    assert owner in push.stdout + push.stderr
    latest = plane.json("deployments", "-e", "staging", cwd=repo)[0]
    assert latest["status"] == "FAILED" and owner in latest["error"]
    assert [d["host"] for d in listed(plane, repo, "staging")] == ["staging.shop.test"]
    assert served_by(plane, "staging.shop.test") == "staging" and served_by(plane, "www.shop.test") == "production"

    # domain delete: the host falls back to the router's not-found page, and no certificate may be ordered for it
    plane.run("domain", "delete", "www.shop.test", "-e", "production", cwd=repo)
    assert served_by(plane, "www.shop.test") is None
    assert ask(plane, "www.shop.test").status_code == 404
    assert listed(plane, repo, "production") == []

    # removed from branchyard.toml: detached by staging's next deploy
    (repo / "branchyard.toml").write_text(TOML.format(staging_domains=""))
    sha = plane.commit(repo, "staging.shop.test is no longer staging's")
    plane.git(repo, "push", "branchyard", "HEAD:develop")
    succeeded(plane, repo, "staging", sha)
    assert listed(plane, repo, "staging") == []
    assert served_by(plane, "staging.shop.test") is None
    assert ask(plane, "staging.shop.test").status_code == 404

    # deleting the environment frees its domains: no route, no certificate, and another environment may take them
    plane.run("domain", "add", "qa.shop.test", "-e", "staging", cwd=repo)
    assert served_by(plane, "qa.shop.test") == "staging"
    plane.run("environment", "delete", "staging", "--yes", cwd=repo)
    assert served_by(plane, "qa.shop.test") is None
    assert ask(plane, "qa.shop.test").status_code == 404
    assert ask(plane, "shop-staging.localhost").status_code == 404  # its generated host is gone as well
    plane.run("domain", "add", "qa.shop.test", "-e", "production", cwd=repo)
    assert served_by(plane, "qa.shop.test") == "production"
    events = [e["message"] for e in plane.json("events", cwd=repo) if e["kind"].startswith("domain.")]
    assert "domain staging.shop.test added (declared in branchyard.toml)" in events
    assert "domain staging.shop.test removed (no longer in branchyard.toml)" in events
    assert "www.shop.test added to production" in events and "www.shop.test deleted from production" in events


def test_a_preview_torn_down_with_its_pull_request_frees_its_domain(plane, tmp_path):
    repo, base = tiny_project(plane, tmp_path, "pv")
    sha = branch_commit(plane, repo, "feature/1", "one")
    opened(plane, "pv", 1, sha, base)
    succeeded(plane, repo, "pr-1", sha)
    plane.run("domain", "add", "demo.pv.test", "-e", "pr-1", cwd=repo)
    assert served_by(plane, "demo.pv.test") == "pr-1"
    assert ask(plane, "demo.pv.test").status_code == 200 and ask(plane, "pv-pr-1.localhost").status_code == 200

    opened(plane, "pv", 1, sha, base, action="closed")  # the pull request closes: its preview is torn down
    wait_for(lambda: "pr-1" not in envs(plane, repo), timeout=120)
    assert served_by(plane, "demo.pv.test") is None
    assert ask(plane, "demo.pv.test").status_code == 404 and ask(plane, "pv-pr-1.localhost").status_code == 404
    plane.run("domain", "add", "demo.pv.test", "-e", "staging", cwd=repo)  # free for another environment
    assert [d["host"] for d in listed(plane, repo, "staging")] == ["demo.pv.test"]
