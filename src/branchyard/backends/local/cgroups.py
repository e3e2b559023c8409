"""Resource limits on the local backend: a cgroup per replica, with its `memory` and `cpu` from the spec (issue 17).

Where: `<hierarchy>/branchyard/<home tag>/<project>/<env>/<service>.<slot>.<id>` — the home tag (the home's name and a
hash of its path) keeps two control planes with different homes (parallel tests) out of each other's groups; the
trailing id keeps a replica's group its own while an old and a new deployment both run their slot 0 (the overlap of a
zero-downtime switch). cgroup v2 when the unified hierarchy has the memory and cpu controllers (a normal systemd host:
/sys/fs/cgroup itself); otherwise v1 when its memory and cpu hierarchies are writable; otherwise none, and `why_not`
says why (said once at start, and in `status`/`check`).

Placement is race-free: the replica's shell writes its own pid into the group before it execs the command
(`prelude`), so every process the app forks is inside from its first instruction. A group is removed (its leftover
processes killed, then rmdir) when its replica is stopped or found dead; what the kernel counted there (OOM kills) is
read first, so `exit_reason` can still say "exceeded its 512 MB memory limit" afterwards.

Limits: memory.max + memory.swap.max = 0 (v2), memory.limit_in_bytes + memory.memsw.limit_in_bytes (v1, when swap
accounting exists): the replica cannot swap past its limit. cpu.max "quota 100000" (v2), cpu.cfs_quota_us with a
100 ms cfs_period_us (v1): CPU is throttled, never killed. No limit given: a group without limits (still accounted).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..ports import Placement

ROOT = Path("/sys/fs/cgroup")
TOP = "branchyard"
PERIOD_US = 100_000  # 100 ms, the kernel's default CFS period
MIN_QUOTA_US = 1_000  # the kernel refuses a smaller cfs quota
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_KILL_WAIT = 5.0
FRESH = 10.0  # seconds: a sweep leaves younger empty groups alone (their process may be about to join)


# --------------------------------------------------------------------------------------------- pure parts


def home_tag(home: Path) -> str:
    """A group name of the home: its own name (readable in `systemd-cgls`) and 10 hex of its path's hash."""
    path = str(Path(home).absolute())
    name = re.sub(r"[^a-z0-9-]+", "-", Path(path).name.lower()).strip("-")[:24] or "home"
    return f"{name}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def group_name(tag: str, placement: Placement, unique: str) -> str:
    """`branchyard/<tag>/<project>/<env>/<service>.<slot>.<unique>`, relative to a hierarchy's root."""
    if not _SERVICE.match(placement.service):
        raise ValueError(f"service {placement.service!r} cannot name a cgroup")
    for part in (placement.project, placement.environment):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"{part!r} cannot name a cgroup")
    return f"{TOP}/{tag}/{placement.project}/{placement.environment}/{placement.service}.{placement.slot}.{unique}"


def limit_writes(version: int, memory_mb: int | None, cpu: float | None, *, swap_accounting: bool = True
                 ) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write into a new group, in order; [] without limits.

    v1 needs memory.limit_in_bytes before memory.memsw.limit_in_bytes (memsw may never be below it)."""
    out: list[tuple[str, str, str]] = []
    if memory_mb is not None:
        size = str(int(memory_mb) * 1024 * 1024)
        if version == 2:
            out += [("memory", "memory.max", size)]
            if swap_accounting:
                out += [("memory", "memory.swap.max", "0")]
        else:
            out += [("memory", "memory.limit_in_bytes", size)]
            if swap_accounting:
                out += [("memory", "memory.memsw.limit_in_bytes", size)]
    if cpu is not None:
        quota = max(MIN_QUOTA_US, round(float(cpu) * PERIOD_US))
        if version == 2:
            out += [("cpu", "cpu.max", f"{quota} {PERIOD_US}")]
        else:
            out += [("cpu", "cpu.cfs_period_us", str(PERIOD_US)), ("cpu", "cpu.cfs_quota_us", str(quota))]
    return out


def oom_kills(text: str) -> int:
    """The `oom_kill N` line of v1's memory.oom_control or v2's memory.events; 0 when absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def memory_text(memory_mb: int) -> str:
    """512 → "512 MB", 2048 → "2 GB" (how the spec is usually written)."""
    return f"{memory_mb // 1024} GB" if memory_mb >= 1024 and memory_mb % 1024 == 0 else f"{memory_mb} MB"


def oom_reason(memory_mb: int | None) -> str:
    return f"exceeded its {memory_text(memory_mb)} memory limit" if memory_mb else "was killed for lack of memory"


# --------------------------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Layout:
    """Where groups go: v2, one root; v1, a root per controller ("memory", "cpu")."""

    version: int
    roots: dict[str, Path]  # controller → the hierarchy's root (v2: the same path for both)
    swap_accounting: bool


def _rdonly(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return True


def detect(root: Path = ROOT, *, euid: int | None = None) -> tuple[Layout | None, str | None]:
    """The layout to use, or None and why not ("not root: …", "… is read-only", "no memory and cpu controllers …")."""
    euid = os.geteuid() if euid is None else euid
    unified = root if (root / "cgroup.controllers").exists() else root / "unified"
    v2_controllers: set[str] = set()
    with contextlib.suppress(OSError):
        v2_controllers = set((unified / "cgroup.controllers").read_text().split())
    if {"memory", "cpu"} <= v2_controllers:
        layout = Layout(2, {"memory": unified, "cpu": unified},
                        swap_accounting=(unified / "memory.swap.max").exists() or _any_child_has(unified, "memory.swap.max"))
    elif (root / "memory" / "memory.limit_in_bytes").exists() and (root / "cpu" / "cpu.cfs_quota_us").exists():
        layout = Layout(1, {"memory": root / "memory", "cpu": root / "cpu"},
                        swap_accounting=(root / "memory" / "memory.memsw.limit_in_bytes").exists())
    else:
        have = ", ".join(sorted(v2_controllers)) or "none"
        return None, (f"no memory and cpu cgroup controllers at {root} (cgroup v2 controllers: {have}; "
                      "no writable v1 memory and cpu hierarchies)")
    where = sorted({str(p) for p in layout.roots.values()})
    if euid != 0:
        return None, f"not root: cgroups under {', '.join(where)} need root (or a delegated subtree)"
    for p in layout.roots.values():
        if _rdonly(p) or not os.access(p, os.W_OK):
            return None, f"{p} is read-only (cgroup v{layout.version}): no group can be created there"
    return layout, None


def _any_child_has(unified: Path, name: str) -> bool:
    """memory.swap.max exists in non-root groups only: look at one child (the root itself has none)."""
    try:
        return any((child / name).exists() for child in unified.iterdir() if child.is_dir())
    except OSError:
        return False


# --------------------------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Group:
    """One replica's cgroup: its path relative to the hierarchies' roots and its memory limit (for the OOM message)."""

    rel: str
    memory_mb: int | None


class Cgroups:
    """Creates, joins, reads and removes this home's replica groups (thread-safe: one lock for mkdir/rmdir)."""

    def __init__(self, home: Path, *, root: Path = ROOT, euid: int | None = None) -> None:
        self.layout, self.why_not = detect(root, euid=euid)
        self.tag = home_tag(home)
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.layout is not None

    def _dirs(self, rel: str) -> list[Path]:
        assert self.layout is not None
        return sorted({root / rel for root in self.layout.roots.values()})

    def create(self, placement: Placement) -> Group | None:
        """A new group for one replica with its limits; None when cgroups are unavailable (OSError if one cannot be
        made: the caller says so)."""
        if self.layout is None:
            return None
        group = Group(rel=group_name(self.tag, placement, secrets.token_hex(3)), memory_mb=placement.memory_mb)
        try:
            with self._lock:
                for d in self._dirs(group.rel):
                    if self.layout.version == 2:
                        self._enable_v2(d.parent)
                    d.mkdir(parents=True)
            for controller, name, value in limit_writes(self.layout.version, placement.memory_mb, placement.cpu,
                                                        swap_accounting=self.layout.swap_accounting):
                (self.layout.roots[controller] / group.rel / name).write_text(value)
        except OSError:
            self.remove(group)  # half made: not left behind
            raise
        return group

    def _enable_v2(self, parent: Path) -> None:
        """Delegate memory and cpu down to `parent` (each level's subtree_control, from the root)."""
        assert self.layout is not None
        root = self.layout.roots["memory"]
        chain = [root, *reversed([p for p in parent.parents if root in p.parents]), parent] if parent != root else [root]
        for level in chain:  # a few µs each; not cached, since an emptied <env> group is removed and made again
            level.mkdir(exist_ok=True)
            (level / "cgroup.subtree_control").write_text("+memory +cpu")

    def prelude(self, group: Group) -> str:
        """Shell text that moves the shell itself into the group before the command runs (exit 125 if it cannot)."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self._dirs(group.rel))
        return f"{{ {joins}; }} || exit 125"

    def oom_kills(self, group: Group) -> int:
        """How many processes the kernel's OOM killer took in the group (0 when it is gone)."""
        assert self.layout is not None
        name = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        try:
            return oom_kills((self.layout.roots["memory"] / group.rel / name).read_text())
        except OSError:
            return 0

    def pids(self, group: Group) -> list[int]:
        assert self.layout is not None
        found: set[int] = set()
        for d in self._dirs(group.rel):
            with contextlib.suppress(OSError):
                found |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        return sorted(found)

    def remove(self, group: Group) -> bool:
        """Kill what is left in the group (its processes are the replica's), then remove it and its empty parents.
        False when it could not be removed (still busy)."""
        if self.layout is None:
            return True
        deadline = time.monotonic() + _KILL_WAIT
        while (left := self.pids(group)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        ok = True
        with self._lock:
            for d in self._dirs(group.rel):
                ok = _rmdir(d) and ok
                for parent in list(d.parents)[:3]:  # <env>, <project>, then the home tag: gone once empty
                    if not _rmdir(parent):
                        break
        return ok

    def group_of(self, pid: int) -> Group | None:
        """The group of a live process of ours (adopted after a restart), from /proc/<pid>/cgroup."""
        if self.layout is None:
            return None
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return None
        want = "" if self.layout.version == 2 else "memory"
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if (controllers == want or want in controllers.split(",")) and path.startswith(f"/{TOP}/{self.tag}/"):
                return Group(rel=path.lstrip("/"), memory_mb=self._limit_mb(path.lstrip("/")))
        return None

    def _limit_mb(self, rel: str) -> int | None:
        assert self.layout is not None
        name = "memory.max" if self.layout.version == 2 else "memory.limit_in_bytes"
        try:
            raw = (self.layout.roots["memory"] / rel / name).read_text().strip()
        except OSError:
            return None
        if not raw.isdigit() or int(raw) >= 1 << 60:  # "max" / v1's "unlimited" (a huge number)
            return None
        return int(raw) // (1024 * 1024)

    def sweep(self, keep: set[str]) -> list[str]:
        """Remove this home's empty groups (dead replicas' leftovers) except `keep`; the relative paths removed."""
        if self.layout is None:
            return []
        removed = []
        with self._lock:
            for root in sorted(set(self.layout.roots.values())):
                base = root / TOP / self.tag
                if not base.is_dir():
                    continue
                for leaf in sorted(base.glob("*/*/*"), reverse=True):
                    rel = str(leaf.relative_to(root))
                    if not leaf.is_dir() or rel in keep:
                        continue
                    try:  # young: maybe made by another process of this home (`server stop`) for a replica starting now
                        if (leaf / "cgroup.procs").read_text().strip() or time.time() - leaf.stat().st_ctime < FRESH:
                            continue
                    except OSError:
                        continue
                    if _rmdir(leaf):
                        removed.append(rel)
                for d in [*sorted(base.glob("*/*/"), reverse=True), *sorted(base.glob("*/")), base]:
                    if d.is_dir():
                        _rmdir(d)
        return sorted(set(removed))


def _rmdir(d: Path) -> bool:
    """Remove an empty group; False when it is busy (a process, a child group) or cannot be removed."""
    try:
        os.rmdir(d)
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY, ENOTEMPTY; anything else leaves it for the next sweep rather than failing a stop
        return False
    return True


# --------------------------------------------------------------------------------------------- the runtime's side


@dataclass
class Task:
    prelude: str
    oom: str | None = None


class ReplicaLimits:
    """The local runtime's use of cgroups: a group per process it starts, what the kernel recorded there when the
    process is found dead (an OOM kill → "exceeded its 512 MB memory limit"), the group removed then."""

    SWEEP_EVERY = 60.0  # seconds between sweeps of leftover empty groups (also once at construction)
    _MAX_REASONS = 4096

    def __init__(self, cgroups: Cgroups | None) -> None:
        self.cgroups = cgroups
        self._lock = threading.Lock()
        self._groups: dict[tuple[int, int], Group] = {}  # (pid, start time) → its group
        self._pending: set[str] = set()  # made, its process not started yet: never swept
        self._reasons: dict[tuple[int, int], str] = {}
        self._unplaced: set[tuple[int, int]] = set()  # live processes found in no group of ours
        self._swept = 0.0
        self.sweep()

    @property
    def enforced(self) -> bool:
        return self.cgroups is not None and self.cgroups.available

    @property
    def why_not(self) -> str | None:
        if self.cgroups is None:
            return "this runtime was built without cgroups"
        return self.cgroups.why_not

    def place(self, placement: Placement | None) -> tuple[str, Group | None]:
        """A new group for `placement` and the shell prelude that joins it ("", None: not placed)."""
        if placement is None or not self.enforced:
            return "", None
        assert self.cgroups is not None
        try:
            group = self.cgroups.create(placement)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the cgroup of {placement.service}.{placement.slot}: "
                          f"{exc.strerror or exc}") from None
        if group is None:
            return "", None
        with self._lock:
            self._pending.add(group.rel)
        return self.cgroups.prelude(group), group

    def placed(self, key: tuple[int, int] | None, group: Group | None) -> None:
        """The process `key` runs in `group` (None: it did not start — the group goes)."""
        if group is None:
            return
        with self._lock:
            self._pending.discard(group.rel)
            if key is not None:
                self._groups[key] = group
        if key is None and self.cgroups is not None:
            self.cgroups.remove(group)

    def adopted(self, key: tuple[int, int]) -> None:
        """A live replica, maybe of an earlier control plane: find its group (once; cheap when known)."""
        if not self.enforced or key in self._groups or key in self._unplaced:
            return
        assert self.cgroups is not None
        group = self.cgroups.group_of(key[0])
        with self._lock:
            if group is not None:
                self._groups[key] = group
            else:  # started before limits were enforced here, or elsewhere: not looked up again
                if len(self._unplaced) >= self._MAX_REASONS:
                    self._unplaced.clear()
                self._unplaced.add(key)

    def finished(self, key: tuple[int, int]) -> None:
        """The process `key` is gone: remember an OOM kill in its group, then remove the group."""
        with self._lock:  # read under the lock: a concurrent `reason(key)` waits for it instead of missing it
            group = self._groups.pop(key, None)
            if group is not None and self.cgroups is not None and self.cgroups.oom_kills(group):
                if len(self._reasons) >= self._MAX_REASONS:
                    self._reasons.pop(next(iter(self._reasons)))
                self._reasons[key] = oom_reason(group.memory_mb)
        if group is not None and self.cgroups is not None:
            self.cgroups.remove(group)
        if time.monotonic() - self._swept > self.SWEEP_EVERY:
            self.sweep()

    @contextlib.contextmanager
    def task(self, placement: Placement | None) -> Iterator[Task]:
        """A group for a one-shot command (a hook, a check) while the block runs: `task.prelude` joins it; afterwards
        `task.oom` says whether the OOM killer took something there, and the group is gone."""
        prelude, group = self.place(placement)
        task = Task(prelude)
        try:
            yield task
        finally:
            if group is not None and self.cgroups is not None:
                with self._lock:
                    self._pending.discard(group.rel)
                task.oom = oom_reason(group.memory_mb) if self.cgroups.oom_kills(group) else None
                self.cgroups.remove(group)

    def reason(self, key: tuple[int, int]) -> str | None:
        with self._lock:
            return self._reasons.get(key)

    def sweep(self) -> list[str]:
        """Remove empty groups of this home that no live process of ours holds (dead replicas' leftovers)."""
        self._swept = time.monotonic()
        if not self.enforced:
            return []
        assert self.cgroups is not None
        with self._lock:
            keep = {g.rel for g in self._groups.values()} | set(self._pending)
        try:
            return self.cgroups.sweep(keep)
        except OSError:
            return []
