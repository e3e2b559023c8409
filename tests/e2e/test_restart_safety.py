"""The control plane SIGKILLed at named points of a deploy, scale or down: on restart it converges."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from conftest import BRANCHYARD, alive, new_home, start_plane, stop_plane, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(venv_cache):
    """A control plane of its own: these tests kill and restart it."""
    p = start_plane(new_home(), venv_cache)
    try:
        yield p
    finally:
        stop_plane(p)


def app_processes(home: Path) -> set[int]:
    """The process groups running out of this home's release directories (the app replicas): a replica leads a group
    of its own, which also holds the workers it forks (the example's WORKERS uvicorn workers)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cwd = os.readlink(proc / "cwd")
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if cwd.startswith(str(home / "releases")) and stat[0] != "Z":
                found.add(int(stat[2]))  # its process group
    return found


def restart_with(plane, failpoint: str | None) -> None:
    """Restart the control plane, with one failpoint armed (it SIGKILLs itself there) or none."""
    plane.run("server", "stop")
    env = {k: v for k, v in plane.env.items() if k != "BRANCHYARD_FAILPOINTS"}
    if failpoint:
        env["BRANCHYARD_FAILPOINTS"] = failpoint
    done = subprocess.run([*BRANCHYARD, "server", "--detach"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def wait_dead(plane) -> None:
    wait_for(lambda: plane.run("server", "status", check=False).returncode != 0)


class Load:
    """GETs through the router, one after another in a thread, for as long as it runs: what every request got."""

    def __init__(self, plane, host: str) -> None:
        self.plane, self.host = plane, host
        self.seen: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.plane.http_port}", headers={"Host": self.host},
                          timeout=10, trust_env=False) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/health")
                    self.seen.append((r.status_code, r.json().get("commit") if r.status_code == 200 else None))
                except httpx.HTTPError as err:
                    self.seen.append((0, type(err).__name__))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


HOOK = """import os, pathlib, sys, time
marker = pathlib.Path(os.environ["HOOK_MARKER"])
if not marker.exists():  # the first run: record who it is, then take long enough to be cut off
    marker.write_text(str(os.getpid()))
    time.sleep(600)
print("migrated")
"""


@pytest.mark.parametrize("point", ["deploy.during_build", "deploy.during_hook", "deploy.after_build",
                                   "deploy.after_health", "deploy.after_switch"])
def test_sigkill_during_a_production_deploy_resumes_it(fresh, tmp_path, point):
    """Killed at any step of a production deploy, the control plane resumes it on restart: production ends
    SUCCESS on the new release, in the same deployment, with no second copy of any process, and the old
    release answers every request meanwhile."""
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="ks")
    v1 = plane.git(repo, "rev-parse", "HEAD").stdout.strip()
    plane.git(repo, "push", "branchyard", "main")
    # v2: a build step that runs on every build (not a cached install) and a hook that is slow the first time
    marker = tmp_path / "hook-ran"
    (repo / "hook.py").write_text(HOOK)
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text()
                       .replace('buildCommand = "pip install -r requirements.txt"',
                                'buildCommand = "pip install -r requirements.txt && python -c \'print(2)\'"')
                       .replace('preDeployCommand = "python manage.py migrate"',
                                'preDeployCommand = ["python hook.py", "python manage.py migrate"]'))
    plane.run("variables", "set", "--skip-deploys", "-e", "production", f"HOOK_MARKER={marker}", cwd=repo)
    if point != "deploy.during_hook":
        marker.write_text("")  # the hook is quick unless it is the point under test
    v2 = plane.commit(repo, "v2")
    restart_with(plane, point)
    with Load(plane, "ks.localhost") as load:
        push = plane.git(repo, "push", "branchyard", "main", check=False)
        assert push.returncode != 0  # the control plane died under the push
        wait_dead(plane)
        before_restart = len(load.seen)
        if point == "deploy.during_hook":
            hook_pid = int(wait_for(lambda: marker.exists() and marker.read_text()))
            assert alive(hook_pid)  # the hook outlived the control plane that started it
        restart_with(plane, None)
        deps = wait_for(lambda: (lambda d: d if d[0]["status"] == "SUCCESS" else None)(
            plane.json("deployments", "-e", "production", cwd=repo)), timeout=180)
        status = wait_for(lambda: (lambda s: s if len(s["replicas"]) == 2 and all(r["state"] == "RUNNING" for r in s["replicas"])
                                   else None)(plane.json("status", "-e", "production", cwd=repo)))
        wait_for(lambda: {commit for _, commit in load.seen[-5:]} == {v2} and len(load.seen) > before_restart + 5)
    assert [(d["commit"], d["status"]) for d in deps[:2]] == [(v2, "SUCCESS"), (v1, "REMOVED")]  # the same deployment
    assert status["current_deployment"]["commit"] == v2
    # the old release served every request until the switch; nothing failed, ever
    assert load.seen and all(code == 200 for code, _ in load.seen), [s for s in load.seen if s[0] != 200][:5]
    assert {commit for _, commit in load.seen} == {v1, v2}
    if point != "deploy.after_switch":
        assert {commit for _, commit in load.seen[:before_restart]} == {v1}
    # exactly the serving deployment's two replicas run: no copy left by the interrupted attempt
    wait_for(lambda: app_processes(plane.home) == {r["pid"] for r in status["replicas"]})
    if point == "deploy.during_hook":
        assert not alive(hook_pid)  # the cut-off hook was stopped before the deployment resumed
    events = [e["kind"] for e in plane.json("events", "-e", "production", cwd=repo)]
    if point != "deploy.after_switch":
        assert "deploy.interrupted" in events and "deploy.resumed" in events
    releases = list((plane.home / "releases" / "ks").iterdir())
    assert releases and all((p / ".branchyard-release.json").exists() for p in releases)  # none half-written


def test_sigkill_while_a_rollback_re_adopts_standby_replicas_converges(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="kw")
    (repo / "railway.toml").write_text((repo / "railway.toml").read_text() + "overlapSeconds = 60\ndrainingSeconds = 2\n")
    v1 = plane.commit(repo, "keep the previous deployment warm")
    restart_with(plane, "deploy.after_adopt")
    plane.git(repo, "push", "branchyard", "main")
    v2 = plane.commit(repo, "v2")
    plane.git(repo, "push", "branchyard", "main")  # v1's replicas on standby
    v2_pids = {r["pid"] for r in plane.json("status", "-e", "production", cwd=repo)["replicas"]}
    assert len(app_processes(plane.home)) == 4
    done = plane.run("rollback", "-e", "production", cwd=repo, check=False)
    assert done.returncode != 0  # killed right after taking v1's replicas back, before the switch
    wait_dead(plane)
    assert {plane.get("kw.localhost").json()["commit"] for _ in range(5)} == {v2}  # v2 kept serving

    restart_with(plane, None)  # the rollback was recorded as what production should run: it is resumed
    deployments = wait_for(lambda: (lambda d: d if d[0]["status"] == "SUCCESS" else None)(
        plane.json("deployments", "-e", "production", cwd=repo)))
    assert deployments[0]["trigger"] == "rollback" and deployments[0]["commit"] == v1
    status = wait_for(lambda: (lambda s: s if len(s["replicas"]) == 2 and all(r["state"] == "RUNNING" for r in s["replicas"])
                               else None)(plane.json("status", "-e", "production", cwd=repo)))
    assert status["current_deployment"]["commit"] == v1
    assert {plane.get("kw.localhost").json()["commit"] for _ in range(5)} == {v1}
    # no orphans: the replicas the interrupted attempt took back were stopped; v2's drained after the switch
    serving = {r["pid"] for r in status["replicas"]}
    wait_for(lambda: app_processes(plane.home) - {r["pid"] for r in plane.json("status", "-e", "production",
                                                                            cwd=repo)["standby"]} == serving)
    assert not serving & v2_pids


def test_a_restart_ends_every_standby_window(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="kr")
    (repo / "railway.toml").write_text((repo / "railway.toml").read_text() + "overlapSeconds = 600\n")
    plane.commit(repo, "keep the previous deployment warm")
    plane.git(repo, "push", "branchyard", "main")
    plane.commit(repo, "v2")
    plane.git(repo, "push", "branchyard", "main")
    status = plane.json("status", "-e", "production", cwd=repo)
    assert len(status["standby"]) == 2
    restart_with(plane, None)
    # the windows were in the old control plane's memory: the new one drains the standby replicas
    wait_for(lambda: app_processes(plane.home) == {r["pid"] for r in status["replicas"]}, timeout=30)
    assert plane.json("status", "-e", "production", cwd=repo)["standby"] == []


def test_sigkill_during_down_converges_to_sleeping(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="kd")
    plane.git(repo, "push", "branchyard", "main")
    restart_with(plane, "down.after_route")
    done = plane.run("down", "-e", "production", cwd=repo, check=False)
    assert done.returncode != 0
    wait_dead(plane)
    restart_with(plane, None)
    wait_for(lambda: not app_processes(plane.home))
    assert plane.json("status", "-e", "production", cwd=repo)["status"] == "SLEEPING"
    assert plane.get("kd.localhost").status_code == 503


def test_sigkill_during_scale_converges_to_the_new_count(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="kc")
    plane.git(repo, "push", "branchyard", "main")
    restart_with(plane, "scale.after_health")
    done = plane.run("scale", "web=3", "-e", "production", cwd=repo, check=False)
    assert done.returncode != 0
    wait_dead(plane)
    restart_with(plane, None)
    status = wait_for(lambda: (lambda s: s if len(s["replicas"]) == 3 and all(r["state"] == "RUNNING" for r in s["replicas"]) else None)(
        plane.json("status", "-e", "production", cwd=repo)))
    wait_for(lambda: app_processes(plane.home) == {r["pid"] for r in status["replicas"]})
    seen = {plane.get("kc.localhost").json()["replica"] for _ in range(30)}
    assert len(seen) == 3


def test_a_newer_push_supersedes_one_still_building(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="sup")
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace(
        'buildCommand = "pip install -r requirements.txt"', 'buildCommand = "pip install -r requirements.txt && sleep 3"'))
    plane.commit(repo, "slow build")
    plane.git(repo, "push", "branchyard", "main")
    plane.commit(repo, "v2")
    older = subprocess.Popen(["git", "push", "branchyard", "main"], cwd=repo, env=plane.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: plane.json("deployments", "-e", "production", cwd=repo)[0]["status"] == "BUILDING")
    v3 = plane.commit(repo, "v3")
    newer = plane.git(repo, "push", "--force", "branchyard", "main:main", check=False)
    out, _ = older.communicate(timeout=120)
    deps = plane.json("deployments", "-e", "production", cwd=repo)
    assert [d["status"] for d in deps[:2]] == ["SUCCESS", "SKIPPED"], out + newer.stderr
    assert "superseded by newer deployment" in deps[1]["error"]
    assert older.returncode != 0 and "skipped" in out
    assert plane.get("sup.localhost").json()["commit"] == v3


def test_a_second_operation_on_a_busy_environment_is_refused(fresh, tmp_path):
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="busy")
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text() + "drainingSeconds = 1\n")
    plane.commit(repo, "drain fast")
    plane.git(repo, "push", "branchyard", "main")
    first = subprocess.Popen([*BRANCHYARD, "redeploy", "-e", "production"], cwd=repo, env=plane.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: plane.json("deployments", "-e", "production", cwd=repo)[0]["status"] == "DEPLOYING", interval=0.02)
    second = plane.run("redeploy", "-e", "production", cwd=repo, check=False)
    assert second.returncode == 4 and "is busy" in second.stderr
    assert first.wait(timeout=120) == 0
    assert [d["status"] for d in plane.json("deployments", "-e", "production", cwd=repo)][:2] == ["SUCCESS", "REMOVED"]


def test_rollback_to_a_release_no_longer_retained_is_refused(tmp_path, venv_cache):
    plane = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_RELEASES_RETAINED": "2"})
    try:
        repo = plane.app_repo(tmp_path, "app", project="ret")
        for i in range(3):
            plane.commit(repo, f"v{i}")
            plane.git(repo, "push", "branchyard", "main")
        deps = plane.json("deployments", "-e", "production", cwd=repo)
        assert [d["can_rollback"] for d in deps] == [True, True, False]
        done = plane.run("redeploy", deps[2]["id"], "-e", "production", cwd=repo, check=False)
        assert done.returncode == 3 and "is not retained (branchyard keeps the last 2 per environment)" in done.stderr
        assert plane.json("deployments", "-e", "production", cwd=repo) == deps  # nothing changed
        plane.run("rollback", "-e", "production", cwd=repo)  # the previous one is still retained
        assert plane.json("deployments", "-e", "production", cwd=repo)[0]["trigger"] == "rollback"
    finally:
        stop_plane(plane)


def test_a_promotion_cut_off_mid_deploy_is_driven_again(fresh, tmp_path):
    """The control plane dies while promoting staging's release to production: on restart the promotion's
    deployment is resumed, post-deploy verification runs, the promotion ends SUCCESS."""
    plane = fresh
    repo = plane.app_repo(tmp_path, "app", project="kp")
    toml = repo / "branchyard.toml"
    body = toml.read_text()
    start = body.index("[environments.production.promotion]")
    end = body.index("\n\n", start)
    toml.write_text(body[:start] + '[environments.production.promotion]\nfrom = "staging"\nsmokeCommand = '
                    '"python manage.py smoke"' + body[end:])
    plane.commit(repo, "no approvals needed")
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    sha = plane.commit(repo, "v2 on develop")
    plane.git(repo, "push", "branchyard", "develop")
    restart_with(plane, "deploy.after_build")
    done = plane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo, check=False)
    assert done.returncode != 0  # the control plane died under it
    wait_dead(plane)
    restart_with(plane, None)
    events = wait_for(lambda: (lambda ev: ev if any(e["kind"] == "promotion.succeeded" for e in ev) else None)(
        plane.json("events", "-e", "production", cwd=repo)), timeout=180)
    kinds = [e["kind"] for e in events]
    assert "promotion.resumed" in kinds and "deploy.resumed" in kinds and "promotion.failed" not in kinds
    status = plane.json("status", "-e", "production", cwd=repo)
    assert status["current_deployment"]["commit"] == sha and status["current_deployment"]["trigger"] == "promote"
    assert [d["status"] for d in plane.json("deployments", "-e", "production", cwd=repo)][:2] == ["SUCCESS", "REMOVED"]
