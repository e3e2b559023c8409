"""A PostgreSQL server and an environment's Redis killed with kill -9 come back by the reconciler, and the app
reconnects to them without being restarted."""

from __future__ import annotations

import json
import os
import signal

import pytest
from conftest import alive, processes_mentioning, wait_for

pytestmark = pytest.mark.integration


def test_a_killed_postgres_and_redis_are_revived_and_the_app_reconnects(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="revive")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")  # staging: the shared PostgreSQL server and its own Redis
    host = "revive-staging.localhost"
    assert plane.get(host).json()["status"] == "ok"
    replicas = [r["pid"] for r in plane.json("status", "-e", "staging", cwd=repo)["replicas"]]

    # The pids as the data plane records them: server.json of the PostgreSQL server and of the Redis.
    pg_state = plane.home / "postgres" / "shared" / "server.json"
    redis_state = plane.home / "redis" / "revive" / "staging" / "server.json"
    postmaster = json.loads(pg_state.read_text())["pid"]
    redis_server = json.loads(redis_state.read_text())["pid"]
    assert alive(postmaster) and alive(redis_server)
    os.kill(postmaster, signal.SIGKILL)
    os.kill(redis_server, signal.SIGKILL)

    expected = {
        f"Postgres: the shared PostgreSQL server was found dead (pid {postmaster}) and restarted",
        f"Redis: the environment's redis-server was found dead (pid {redis_server}) and restarted",
    }

    def revived() -> bool:
        events = plane.json("events", "-e", "staging", cwd=repo)
        return expected <= {e["message"] for e in events if e["kind"] == "service.revived"}

    wait_for(revived, timeout=90, interval=0.5)

    def healthy() -> dict | None:
        response = plane.get(host)
        body = response.json() if response.status_code == 200 else {}
        return body if (body.get("database"), body.get("redis")) == ("ok", "ok") else None

    assert wait_for(healthy, timeout=30, interval=0.2)["status"] == "ok"
    # The same app processes reconnected: nothing was redeployed or restarted for it.
    assert [r["pid"] for r in plane.json("status", "-e", "staging", cwd=repo)["replicas"]] == replicas

    new_postmaster = json.loads(pg_state.read_text())["pid"]
    new_redis = json.loads(redis_state.read_text())["pid"]
    assert new_postmaster != postmaster and new_redis != redis_server
    pgdata = plane.home / "postgres" / "shared" / "pgdata"
    assert processes_mentioning(str(pgdata), cwd=False) == [new_postmaster]  # exactly one postmaster for the data dir
    assert processes_mentioning(str(redis_state.parent)) == [new_redis]  # it runs in its data directory
