"""Real cgroups under the local runtime: a replica past its memory limit is OOM-killed and says which limit, a CPU-bound
one gets about its quota, every process it forks is inside its group, and the group is gone once it stops.

Skipped (with the reason) where this machine cannot enforce limits: not root, or no memory/cpu controllers."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from branchyard.backends.local import cgroups as cgroups_module
from branchyard.backends.local.cgroups import Cgroups
from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords
from branchyard.backends.ports import Placement
from branchyard.errors import DeployFailed
from tests.conftest import processes_mentioning, wait_for

ENV = {"PATH": os.environ["PATH"]}
PY = sys.executable


@pytest.fixture
def runtime(tmp_path):
    cgroups = Cgroups(tmp_path / "home")
    if not cgroups.available:
        print(f"cgroups unavailable: {cgroups.why_not}")
        pytest.skip(f"cgroups unavailable: {cgroups.why_not}")
    rt = LocalRuntime(TaskRecords(tmp_path / "tasks"), cgroups=cgroups)
    yield rt
    leftover = list(rt.limits._groups.values())
    for group in leftover:  # a failed test's replica: killed with its group, then the test says so
        cgroups.remove(group)
    assert leftover == []
    assert rt.limits.sweep() == []  # every group of the test was removed when its process ended
    for root in {str(p) for p in cgroups.layout.roots.values()}:
        assert not (Path(root) / "branchyard" / cgroups.tag).exists()


def _script(where: Path, name: str, *lines: str) -> Path:
    (where / name).write_text("\n".join(lines) + "\n")
    return where / name


def _dirs(rt: LocalRuntime, h) -> list[Path]:
    group = rt.limits._groups[(h.pid, h.start_time)]
    return [root / group.rel for root in sorted(set(rt.limits.cgroups.layout.roots.values()))]


def test_a_replica_allocating_past_its_memory_limit_is_killed_and_says_which_limit(runtime, tmp_path):
    app = f"{PY} {_script(tmp_path, 'alloc.py', 'import time', 'b = bytearray(200 << 20)', 'time.sleep(60)')}"
    h = runtime.spawn(app, cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "pr-1", "web", 0, memory_mb=64))
    dirs = _dirs(runtime, h)
    assert all(d.is_dir() for d in dirs)
    wait_for(lambda: not runtime.is_alive(h), timeout=30, interval=0.05)
    assert runtime.exit_code(h) == -9
    assert runtime.exit_reason(h) == "exceeded its 64 MB memory limit"
    assert not any(d.exists() for d in dirs)  # read, then removed, when it was found dead


def test_a_replica_under_its_limit_has_no_reason(runtime, tmp_path):
    h = runtime.spawn(f"{PY} {_script(tmp_path, 'small.py', 'import sys', 'b = bytearray(8 << 20)', 'sys.exit(3)')}", cwd=tmp_path, env=ENV,
                      log_path=tmp_path / "web.0.log", port=1, placement=Placement("yoto", "pr-1", memory_mb=64))
    wait_for(lambda: not runtime.is_alive(h), timeout=30, interval=0.05)
    assert (runtime.exit_code(h), runtime.exit_reason(h)) == (3, None)


def test_the_oom_reason_reaches_a_failed_health_check(runtime, tmp_path):
    app = f"{PY} {_script(tmp_path, 'alloc.py', 'import time', 'time.sleep(0.3)', 'b = bytearray(200 << 20)', 'time.sleep(60)')}"
    h = runtime.spawn(app, cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "pr-1", memory_mb=64))
    res = runtime.wait_healthy(h, "/health", timeout=30)
    assert (res.ok, res.detail) == (False, "exceeded its 64 MB memory limit (killed, exit -9)")


def test_a_cpu_bound_replica_gets_about_its_quota(runtime, tmp_path):
    h = runtime.spawn(f"{PY} -c 'while True: pass'", cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "pr-1", cpu=0.25))
    try:
        first = wait_for(lambda: (u := runtime.usage(h)) and u.cpu_seconds > 0.05 and (time.monotonic(), u.cpu_seconds))
        time.sleep(2.0)
        last = runtime.usage(h)
        share = (last.cpu_seconds - first[1]) / (time.monotonic() - first[0])
        assert 0.1 < share < 0.45, share  # throttled to ~0.25 of a CPU (unthrottled it would be ~1.0)
        assert runtime.is_alive(h)  # throttled, never killed
    finally:
        runtime.stop(h, grace=1)


def test_every_process_a_replica_forks_is_in_its_group_and_all_go_with_it(runtime, tmp_path):
    token = f"cgroup-escape-{os.getpid()}"
    # one child stays in the group, one makes a session of its own (out of the process group, not the cgroup)
    app = f"sleep 301 & setsid {PY} -c 'import time; time.sleep(302)' {token} & wait"
    h = runtime.spawn(app, cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "pr-1", memory_mb=128, cpu=1))
    dirs = _dirs(runtime, h)
    members = wait_for(lambda: len(pids := runtime.limits.cgroups.pids(runtime.limits._groups[(h.pid, h.start_time)])) >= 3
                       and pids)
    assert h.pid in members
    assert wait_for(lambda: processes_mentioning(token, cwd=False))
    runtime.stop(h, grace=1)
    assert not any(d.exists() for d in dirs)
    assert processes_mentioning(token, cwd=False) == []


def test_a_replica_without_limits_is_still_placed(runtime, tmp_path):
    h = runtime.spawn("sleep 300", cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "production", "web", 2))
    dirs = _dirs(runtime, h)
    mem = next(d for d in dirs if "memory" in str(d))
    assert str(h.pid) in wait_for(lambda: (mem / "cgroup.procs").read_text().split())
    runtime.stop(h, grace=1)
    assert not any(d.exists() for d in dirs)


def test_a_hook_past_its_memory_limit_fails_the_deploy_saying_so(runtime, tmp_path):
    lines: list[str] = []
    with pytest.raises(DeployFailed) as err:
        runtime.run_hook(f"{PY} {_script(tmp_path, 'alloc.py', 'b = bytearray(200 << 20)')}", cwd=tmp_path, env=ENV,
                         out=lines.append, timeout=60,
                         placement=Placement("yoto", "pr-1", "hook", memory_mb=64))
    assert "exceeded its 64 MB memory limit (killed); the previous deployment keeps serving" in str(err.value)


def test_a_check_runs_in_a_group_with_the_limits(runtime, tmp_path):
    code, out = runtime.run_check(["/bin/sh", "-c", "cat /proc/self/cgroup"], cwd=tmp_path, env=ENV, timeout=30,
                                  placement=Placement("yoto", "pr-1", "check", memory_mb=64))
    assert code == 0
    assert f"branchyard/{runtime.limits.cgroups.tag}/yoto/pr-1/check.0." in out


def test_leftover_empty_groups_of_dead_replicas_are_swept_at_start(runtime, tmp_path, monkeypatch):
    cg = runtime.limits.cgroups
    left = cg.create(Placement("yoto", "pr-2", "web", 0, memory_mb=64))  # as a crashed control plane would leave it
    LocalRuntime(TaskRecords(tmp_path / "tasks2"), cgroups=cg)
    # young: it may be another process's (of the same home) for a replica about to join it
    assert all((root / left.rel).is_dir() for root in cg.layout.roots.values())
    monkeypatch.setattr(cgroups_module, "FRESH", 0.0)
    LocalRuntime(TaskRecords(tmp_path / "tasks3"), cgroups=cg)
    assert not any((root / left.rel).exists() for root in cg.layout.roots.values())


def test_a_replica_of_an_earlier_control_plane_is_found_in_its_group_and_its_oom_kill_known(runtime, tmp_path):
    """A restarted control plane (a new runtime, same home) adopts a live replica: its group is found from
    /proc/<pid>/cgroup, so an OOM kill after the restart is still named."""
    (tmp_path / "eat.py").write_text("import time\nwhile True:\n    time.sleep(0.05)\n"
                                     "    import os\n    if os.path.exists('go'):\n        b = bytearray(200 << 20)\n")
    h = runtime.spawn(f"{PY} eat.py", cwd=tmp_path, env=ENV, log_path=tmp_path / "web.0.log", port=1,
                      placement=Placement("yoto", "pr-1", "web", 0, memory_mb=64))
    # joined every hierarchy (memory, then cpu: the shell writes one after the other before it execs the app)
    wait_for(lambda: all(str(h.pid) in (d / "cgroup.procs").read_text().split() for d in _dirs(runtime, h)))
    later = LocalRuntime(TaskRecords(tmp_path / "tasks-later"), cgroups=runtime.limits.cgroups)
    adopted = later.adopt(h.pid, h.start_time, h.port, h.log_path)
    assert adopted is not None and later.limits._groups[(h.pid, h.start_time)].memory_mb == 64
    (tmp_path / "go").touch()
    wait_for(lambda: not later.is_alive(adopted), timeout=30, interval=0.05)
    assert later.exit_reason(adopted) == "exceeded its 64 MB memory limit"
    runtime.is_alive(h)  # the first runtime (its child) reaps it; its group is already gone
    runtime.limits._groups.pop((h.pid, h.start_time), None)
