"""What the machine enforces (issue 17), said the same way at start, in `status` and in `check` (pure).

`Isolation` comes from the runtime (backends/ports.py; duck-typed here, a pure module): resource limits (cgroups)
and network isolation (a namespace per environment), each with why not. Where it is not enforced, branchyard says
so — never silently. Also here: an environment's database size against its postgres `storage`, warned at 80 %
(PostgreSQL has no hard per-database quota: nothing stops a database at 100 %; the default alert fires at 90 %,
spec/alerts.py).
"""

from __future__ import annotations

from typing import Any

STORAGE_WARN_PERCENT = 80.0
CONNECTIONS_DEFAULT = 50  # without `memory`: half of PostgreSQL's default max_connections (100) on a shared server
MB_PER_CONNECTION = 8  # a backend's own memory (~3-4 MB) plus one work_mem (4 MB by default)
CONNECTIONS_MIN, CONNECTIONS_MAX = 10, 200


def connection_limit(memory_mb: int | None) -> int:
    """The environment's role's CONNECTION LIMIT from its postgres `memory`: one connection per MB_PER_CONNECTION MB,
    between CONNECTIONS_MIN and CONNECTIONS_MAX (the seed's tiers: 2 GB → 200, 1 GB → 128, 512 MB → 64); without
    `memory`, CONNECTIONS_DEFAULT."""
    if not memory_mb:
        return CONNECTIONS_DEFAULT
    return max(CONNECTIONS_MIN, min(CONNECTIONS_MAX, int(memory_mb) // MB_PER_CONNECTION))


def to_json(iso: Any) -> dict[str, Any]:
    """status's and check's `isolation` object: {limits, network, limits_why_not, network_why_not}, and `by` when a
    cluster enforces them (issue 19: "kubernetes")."""
    out = {"limits": iso.limits, "network": iso.network, "limits_why_not": None if iso.limits else iso.limits_why_not,
           "network_why_not": None if iso.network else iso.network_why_not}
    if getattr(iso, "by", None):
        out["by"] = iso.by
    return out


_WHAT = {"limits": ("limits", "memory and cpu of each replica in its own cgroup"),
         "network": ("network", "each environment in its own network namespace")}
_BY_KUBERNETES = {"limits": "each environment's ResourceQuota and LimitRange, requests = limits per container",
                  "network": "each environment's namespace and NetworkPolicies, where the cluster's network plugin "
                             "enforces them"}


def lines(iso: dict[str, Any]) -> list[str]:
    """`limits: enforced (…)` / `limits: not enforced (not root: …)`, then the same for network (status)."""
    out = []
    for key in ("limits", "network"):
        if key not in iso:
            continue
        label, how = _WHAT[key]
        if iso.get("by") == "kubernetes":
            how = _BY_KUBERNETES[key]
        out.append(f"{label}: enforced ({how})" if iso[key]
                   else f"{label}: not enforced ({iso.get(f'{key}_why_not') or 'not supported here'})")
    return out


def start_line(iso: Any) -> str:
    """The one line logged when the control plane starts."""
    where = "of environments (Kubernetes)" if getattr(iso, "by", None) == "kubernetes" else "on this machine"
    return f"isolation {where}: " + "; ".join(lines(to_json(iso)))


def findings(iso: dict[str, Any] | None) -> list[tuple[str, str]]:
    """`check`'s (message, fix) for each half this machine does not enforce."""
    if not iso:
        return []
    out = []
    if not iso.get("limits", True):
        out.append((f"resource limits (memory, cpu) are not enforced on this machine: {iso.get('limits_why_not')}; "
                    "one environment can starve the others",
                    "run the control plane as root on a host with the memory and cpu cgroup controllers "
                    "(v2, or v1), or give it a delegated cgroup subtree"))
    if not iso.get("network", True):
        out.append((f"environments are not network-isolated on this machine: {iso.get('network_why_not')}",
                    "run the control plane as root (it needs CAP_NET_ADMIN for a namespace per environment)"))
    return out


def storage(size_bytes: float | None, storage_mb: int | None) -> dict[str, Any] | None:
    """The database's size against its `storage` (None without a size or a storage): percent, and a warning from
    STORAGE_WARN_PERCENT on."""
    if size_bytes is None or not storage_mb:
        return None
    percent = round(100.0 * size_bytes / (storage_mb * 1024 * 1024), 1)
    warning = None
    if percent >= STORAGE_WARN_PERCENT:
        warning = (f"the database uses {percent:g}% of its {_mb(storage_mb)} storage ({_size(size_bytes)}); PostgreSQL "
                   "has no hard per-database quota: it keeps growing past it")
    return {"size_bytes": int(size_bytes), "storage_mb": storage_mb, "percent": percent, "warning": warning}


def storage_line(row: dict[str, Any]) -> str:
    """`database: 812 MB of 1 GB storage (79.3%)` for status."""
    return f"database: {_size(row['size_bytes'])} of {_mb(row['storage_mb'])} storage ({row['percent']:g}%)"


def storage_findings(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """`check`'s warnings for environments whose database is at STORAGE_WARN_PERCENT of its storage or more."""
    return [(f"{row['environment']}: {row['warning']}",
             f"raise [environments.{row['environment']}.services.postgres] storage, or delete data "
             "(`branchyard metrics` shows postgres_database_bytes)")
            for row in rows if row.get("warning")]


def _mb(mb: int) -> str:
    return f"{mb // 1024} GB" if mb >= 1024 and mb % 1024 == 0 else f"{mb} MB"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"
