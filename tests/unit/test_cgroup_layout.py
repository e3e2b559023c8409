"""cgroups.py's pure parts (group names, limit files, OOM counters) and its detection on fake sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard.backends.local.cgroups import (
    Cgroups,
    ReplicaLimits,
    detect,
    group_name,
    home_tag,
    limit_writes,
    memory_text,
    oom_kills,
    oom_reason,
)
from branchyard.backends.ports import Placement


def test_home_tag_is_readable_and_differs_per_home():
    a, b = home_tag(Path("/var/lib/branchyard")), home_tag(Path("/tmp/pytest-1/branchyard"))
    assert a.startswith("branchyard-") and len(a) == len("branchyard-") + 10
    assert a != b and home_tag(Path("/var/lib/branchyard")) == a
    assert home_tag(Path("/srv/My Home!")).startswith("my-home-")


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        (Placement("yoto", "production", "web", 1), "branchyard/T/yoto/production/web.1.abc"),
        (Placement("yoto", "pr-12", "worker", 0, memory_mb=512), "branchyard/T/yoto/pr-12/worker.0.abc"),
        (Placement("yoto", "staging", "hook"), "branchyard/T/yoto/staging/hook.0.abc"),
    ],
)
def test_group_name(placement, expected):
    assert group_name("T", placement, "abc") == expected


@pytest.mark.parametrize("placement", [Placement("yoto", "production", "../x"), Placement("yoto", "..", "web"),
                                       Placement("a/b", "production", "web")])
def test_group_name_refuses_what_would_leave_its_directory(placement):
    with pytest.raises(ValueError):
        group_name("T", placement, "abc")


@pytest.mark.parametrize(
    ("version", "memory_mb", "cpu", "swap", "expected"),
    [
        (2, None, None, True, []),
        (1, None, None, True, []),
        (2, 512, None, True, [("memory", "memory.max", "536870912"), ("memory", "memory.swap.max", "0")]),
        (2, 512, None, False, [("memory", "memory.max", "536870912")]),
        (1, 64, None, True, [("memory", "memory.limit_in_bytes", "67108864"),
                             ("memory", "memory.memsw.limit_in_bytes", "67108864")]),
        (1, 64, None, False, [("memory", "memory.limit_in_bytes", "67108864")]),
        (2, None, 0.5, True, [("cpu", "cpu.max", "50000 100000")]),
        (2, None, 2, True, [("cpu", "cpu.max", "200000 100000")]),
        (1, None, 0.25, True, [("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "25000")]),
        (1, None, 0.001, True, [("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "1000")]),
        (1, 1024, 1, False, [("memory", "memory.limit_in_bytes", "1073741824"),
                             ("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "100000")]),
    ],
)
def test_limit_writes(version, memory_mb, cpu, swap, expected):
    assert limit_writes(version, memory_mb, cpu, swap_accounting=swap) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", 1),  # v1 memory.oom_control
        ("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n", 2),  # v2 memory.events
        ("oom_kill_disable 0\nunder_oom 0\n", 0),  # a kernel before 4.13
        ("", 0),
    ],
)
def test_oom_kills(text, expected):
    assert oom_kills(text) == expected


@pytest.mark.parametrize(("mb", "text"), [(512, "512 MB"), (64, "64 MB"), (1024, "1 GB"), (2048, "2 GB"), (1536, "1536 MB")])
def test_memory_text(mb, text):
    assert memory_text(mb) == text
    assert oom_reason(mb) == f"exceeded its {text} memory limit"


def _v1(root: Path, *, memsw: bool = True) -> Path:
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    if memsw:
        (root / "memory" / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    return root


def _v2(root: Path, controllers: str = "cpuset cpu io memory hugetlb pids") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "init.scope").mkdir()
    (root / "init.scope" / "memory.swap.max").write_text("max\n")
    return root


def test_detect_v1_where_memory_and_cpu_are_bound_to_v1(tmp_path):
    layout, why = detect(_v1(tmp_path / "cg"), euid=0)
    assert why is None and layout.version == 1 and layout.swap_accounting
    assert layout.roots == {"memory": tmp_path / "cg" / "memory", "cpu": tmp_path / "cg" / "cpu"}


def test_detect_v2_on_a_unified_host(tmp_path):
    layout, why = detect(_v2(tmp_path / "cg"), euid=0)
    assert why is None and layout.version == 2 and layout.swap_accounting
    assert layout.roots == {"memory": tmp_path / "cg", "cpu": tmp_path / "cg"}


def test_detect_v2_in_a_hybrid_unified_hierarchy(tmp_path):
    root = tmp_path / "cg"
    _v2(root / "unified")
    layout, why = detect(root, euid=0)
    assert layout.version == 2 and layout.roots["cpu"] == root / "unified"


def test_not_root_says_why(tmp_path):
    layout, why = detect(_v1(tmp_path / "cg"), euid=1000)
    assert layout is None
    assert why.startswith("not root: cgroups under ") and str(tmp_path / "cg" / "memory") in why


def test_no_controllers_says_which_exist(tmp_path):
    layout, why = detect(_v2(tmp_path / "cg", "cpuset io pids"), euid=0)
    assert layout is None
    assert why == (f"no memory and cpu cgroup controllers at {tmp_path / 'cg'} (cgroup v2 controllers: cpuset, io, pids; "
                   "no writable v1 memory and cpu hierarchies)")


def test_read_only_says_so(tmp_path):
    root = _v1(tmp_path / "cg")
    (root / "memory").chmod(0o555)
    try:
        import os
        if os.access(root / "memory", os.W_OK):
            pytest.skip("running as root: a mode bit does not stop root (a read-only mount does)")
        layout, why = detect(root, euid=0)
        assert layout is None and why == f"{root / 'memory'} is read-only (cgroup v1): no group can be created there"
    finally:
        (root / "memory").chmod(0o755)


def test_a_runtime_without_cgroups_places_nothing_and_says_why(tmp_path):
    limits = ReplicaLimits(Cgroups(tmp_path / "home", root=_v1(tmp_path / "cg"), euid=1000))
    assert not limits.enforced and limits.why_not.startswith("not root: ")
    assert limits.place(Placement("yoto", "staging", memory_mb=512)) == ("", None)
    with limits.task(Placement("yoto", "staging", "hook")) as task:
        assert task.prelude == ""
    assert task.oom is None


def test_prelude_joins_every_hierarchy_before_the_command(tmp_path):
    cg = Cgroups(tmp_path / "home", root=_v1(tmp_path / "cg"), euid=0)
    group = cg.create(Placement("yoto", "staging", "web", 0, memory_mb=256, cpu=0.5))
    base = f"branchyard/{cg.tag}/yoto/staging/"
    assert group.rel.startswith(base + "web.0.") and group.memory_mb == 256
    mem, cpu = tmp_path / "cg" / "memory" / group.rel, tmp_path / "cg" / "cpu" / group.rel
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(256 << 20)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert cg.prelude(group) == f"{{ echo $$ > {cpu}/cgroup.procs && echo $$ > {mem}/cgroup.procs; }} || exit 125"


def test_v2_delegates_memory_and_cpu_down_to_the_replica(tmp_path):
    root = _v2(tmp_path / "cg")
    cg = Cgroups(tmp_path / "home", root=root, euid=0)
    group = cg.create(Placement("yoto", "production", "web", 1, memory_mb=1024, cpu=1))
    leaf = root / group.rel
    assert (leaf / "memory.max").read_text() == str(1 << 30) and (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "cpu.max").read_text() == "100000 100000"
    for level in (root, root / "branchyard", root / "branchyard" / cg.tag, leaf.parent.parent, leaf.parent):
        assert (level / "cgroup.subtree_control").read_text() == "+memory +cpu", level
    assert not (leaf / "cgroup.subtree_control").exists()
    (leaf / "memory.events").write_text("oom 1\noom_kill 1\n")
    assert cg.oom_kills(group) == 1


# --- isolation.py: what status, check and the start log say ---------------------------------------------------

from branchyard import isolation  # noqa: E402
from branchyard.backends.ports import Isolation  # noqa: E402


@pytest.mark.parametrize(
    ("iso", "lines"),
    [
        (Isolation(limits=True, network=True),
         ["limits: enforced (memory and cpu of each replica in its own cgroup)",
          "network: enforced (each environment in its own network namespace)"]),
        (Isolation(limits=False, network=False, limits_why_not="not root: cgroups under /sys/fs/cgroup need root",
                   network_why_not="environments share the host network"),
         ["limits: not enforced (not root: cgroups under /sys/fs/cgroup need root)",
          "network: not enforced (environments share the host network)"]),
    ],
)
def test_isolation_lines(iso, lines):
    assert isolation.lines(isolation.to_json(iso)) == lines
    assert isolation.start_line(iso) == "isolation on this machine: " + "; ".join(lines)


def test_isolation_json_drops_a_why_not_of_what_is_enforced():
    assert isolation.to_json(Isolation(limits=True, network=False, limits_why_not="stale", network_why_not="x")) == {
        "limits": True, "network": False, "limits_why_not": None, "network_why_not": "x"}


@pytest.mark.parametrize(
    ("size", "storage_mb", "expected"),
    [
        (None, 1024, None),
        (100 << 20, None, None),
        (512 << 20, 1024, {"size_bytes": 512 << 20, "storage_mb": 1024, "percent": 50.0, "warning": None}),
        (int(819.1 * (1 << 20)), 1024, {"size_bytes": int(819.1 * (1 << 20)), "storage_mb": 1024, "percent": 80.0,
                                        "warning": "the database uses 80% of its 1 GB storage (819.1 MB); PostgreSQL "
                                                   "has no hard per-database quota: it keeps growing past it"}),
        (12 << 30, 10240, {"size_bytes": 12 << 30, "storage_mb": 10240, "percent": 120.0,
                           "warning": "the database uses 120% of its 10 GB storage (12.0 GB); PostgreSQL has no hard "
                                      "per-database quota: it keeps growing past it"}),
    ],
)
def test_database_storage_against_its_quota(size, storage_mb, expected):
    assert isolation.storage(size, storage_mb) == expected


def test_storage_line():
    row = isolation.storage(300 << 20, 512)
    assert isolation.storage_line(row) == "database: 300.0 MB of 512 MB storage (58.6%)"


@pytest.mark.parametrize(("memory_mb", "limit"), [(None, 50), (0, 50), (2048, 200), (4096, 200), (1024, 128),
                                                  (512, 64), (256, 32), (64, 10), (32, 10)])
def test_postgres_connection_limit_per_tier(memory_mb, limit):
    assert isolation.connection_limit(memory_mb) == limit


def test_a_runtime_that_is_not_root_says_why_in_status_lines(tmp_path):
    from branchyard.backends.local.runtime import LocalRuntime
    from branchyard.backends.local.tasks import TaskRecords

    runtime = LocalRuntime(TaskRecords(tmp_path / "tasks"),
                           cgroups=Cgroups(tmp_path / "home", root=_v1(tmp_path / "cg"), euid=1000))
    iso = runtime.isolation()
    assert iso.limits is False
    assert isolation.lines(isolation.to_json(iso))[0] == (
        f"limits: not enforced (not root: cgroups under {tmp_path / 'cg' / 'cpu'}, {tmp_path / 'cg' / 'memory'} need "
        "root (or a delegated subtree))")
    assert isolation.findings(isolation.to_json(iso))[0][0].startswith(
        "resource limits (memory, cpu) are not enforced on this machine: not root: ")
