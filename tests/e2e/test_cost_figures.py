"""`branchyard cost` on a real control plane (issue 17): the example app deployed to production (main), staging
(develop) and a pull request's preview (pr-7, through a signed GitHub delivery), priced with the default table;
measured cost grows while an environment runs and not while it sleeps (`branchyard down`).

(The interval rules of measured cost — restarts, lost events, hours of sleep — are driven by an injected clock in
tests/integration/test_cost_usage.py; here real time is enough: the figure read adds the time since the last
advance while the environment runs.)"""

from __future__ import annotations

import json

import pytest
from conftest import wait_for, webhook_plane
from test_previews import SECRET, github_project, pr_commit, send
from webhooks import pull_request

pytestmark = pytest.mark.integration

# The hand computation of tests/unit/test_cost.py (examples/yoto-smart-stream/branchyard.toml; $10 / GB of RAM,
# $20 / vCPU, $0.15 / GB of volume, a month):
HAND = {
    "production": 2 * 1 * 10 + 2 * 1 * 20 + 2 * 10 + 10 * 0.15 + 0.5 * 10,  # web 2 × (1 GB, 1 vCPU), pg 2 GB/10 GB, redis 512 MB
    "staging": 0.5 * 10 + 0.5 * 20 + 1 * 10 + 5 * 0.15 + 0.25 * 10,  # web 512 MB/0.5 vCPU, pg 1 GB/5 GB, redis 256 MB
    "pr-7": 0.5 * 10 + 0.5 * 20 + 0.5 * 10 + 1 * 0.15,  # web 512 MB/0.5 vCPU, pg 512 MB/1 GB, no Redis
}


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:
        yield p


def test_cost_json_prices_the_three_tiers_and_measures_running_time_only(plane, tmp_path):
    repo = github_project(plane, tmp_path, "cst")
    base = plane.git(repo, "rev-parse", "main").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.commit(repo, "develop")
    plane.git(repo, "push", "branchyard", "develop")
    plane.git(repo, "checkout", "--quiet", "main")
    head = pr_commit(plane, repo, "feature/cost", "v1")
    opened = send(plane, "pull_request", pull_request("opened", 7, head_sha=head, head_ref="feature/cost", base_sha=base,
                                                      repository="owner/cst"))
    assert opened.status_code == 202

    def live(env: str) -> bool:
        return plane.json("status", "-e", env, cwd=repo).get("status") == "SUCCESS"

    for env in HAND:
        wait_for(lambda env=env: live(env), timeout=300, interval=0.5)

    report = plane.json("cost", "--json", cwd=repo)
    assert set(report) == {"project", "currency", "hours_per_month", "prices", "environments"}
    assert (report["project"], report["currency"], report["hours_per_month"]) == ("cst", "USD", 730)
    assert report["prices"] == {"memory_gb_month": 10.0, "vcpu_month": 20.0, "storage_gb_month": 0.15, "egress_gb": 0.05}
    envs = {e["environment"]: e for e in report["environments"]}
    assert set(envs) == set(HAND)
    for name, total in HAND.items():
        assert envs[name]["monthly"]["total"] == pytest.approx(total), name
        assert envs[name]["state"] == "RUNNING"
    assert envs["pr-7"]["preview"] is True
    assert envs["production"]["allocation"] == "web 2×1 GB/1 vCPU · postgres 2 GB/10 GB · redis 512 MB"

    every = " ".join(plane.run("cost", cwd=repo).stdout.replace("│", " ").split())  # cells wrap at 80 columns
    assert all(f in every for f in ("production", "staging", "pr-7", "$86.50", "$28.25", "$20.15", "RUNNING")), every
    one = plane.json("cost", "-e", "production", "--json", cwd=repo)
    assert [e["environment"] for e in one["environments"]] == ["production"]
    table = plane.run("cost", "-e", "production", cwd=repo).stdout
    assert "$86.50" in table and "2 × 1 GB" in table and "730 h" in table

    previews = {p["environment"]: p for p in plane.json("previews", "list", "--json", cwd=repo)}
    assert previews["pr-7"]["monthly_cost"] == pytest.approx(HAND["pr-7"])
    assert "$20.15" in plane.run("previews", "list", cwd=repo).stdout

    # `check`'s live rule reads the same figures: no environment here is projected above production's $86.50
    report = json.loads(plane.run("check", "--json", cwd=repo, check=False).stdout)
    assert "cost-over-production" in report["checked"]
    assert [f for f in report["findings"] if f["rule"] == "cost-over-production"] == []

    def measured(env: str) -> dict:
        return plane.json("cost", "-e", env, "--json", cwd=repo)["environments"][0]["measured"]

    # running: the figure grows (the read adds the time since the last advance)
    first = measured("production")
    grown = wait_for(lambda: (m := measured("production"))["total"] > first["total"] and m, timeout=30, interval=0.5)
    assert grown["running_seconds"] > first["running_seconds"]

    # sleeping: `down` stops the clock for staging, counted up to the event
    plane.run("down", "-e", "staging", cwd=repo)
    asleep = measured("staging")
    assert plane.json("cost", "-e", "staging", "--json", cwd=repo)["environments"][0]["state"] == "SLEEPING"
    # while production's cost grew again (time passed), staging's did not
    mark = measured("production")["total"]
    wait_for(lambda: measured("production")["total"] > mark, timeout=30, interval=0.5)
    later = measured("staging")
    assert (later["total"], later["running_seconds"]) == (asleep["total"], asleep["running_seconds"])
    assert later["since"] == asleep["since"] and later["since"].startswith("20")

    refused = plane.run("cost", "-e", "nope", cwd=repo, check=False)
    assert refused.returncode != 0 and "nope" in refused.stderr
