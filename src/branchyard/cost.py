"""Cost you can see (issue 17), the pure part: a price table and the arithmetic of an environment's allocation.

Default prices are Railway's published per-unit usage rates:
- memory $10 / GB / month and vCPU $20 / vCPU / month — docs.railway.app/reference/pricing ("Memory - $10 / GB per
  month ($0.000231 / GB / minute) vCPU - $20 / vCPU per month ($0.000463 / vCPU / minute)"), read 2026-12-03;
- volume storage $0.15 / GB / month and egress $0.05 / GB — railway.com/pricing as transcribed on 2026-07-02 in
  api-evangelist/railway-app plans/railway-app-plans-pricing.yml (a secondary source; read 2026-12-03).
A month is 730 hours (8,760 h / 12), the figure Railway's per-minute rates round to.

The operator overrides any of them with BRANCHYARD_PRICES: the path of a TOML file (`memory_gb_month = 10` …) or
inline `memory_gb_month=10,vcpu_month=20,storage_gb_month=0.15,egress_gb=0.05`.

What is priced, per environment (`allocation` reads a deployment's snapshot): each app service (web, and Procfile
process types when the snapshot has them) as memory × replicas and cpu × replicas (a cron service's web: 0 replicas,
nothing runs between its runs, and the runs' own minutes are not priced); PostgreSQL's `memory` as RAM
and its `storage` as a volume; Redis's `memory` as RAM. A size that is not declared counts 0 with a note
("not sized"): that is what the backend reserves for it — no cgroup limit for an app, the shared server's settings
for PostgreSQL, `maxmemory 0` (unbounded) for Redis — so there is no allocation to price. Egress is in the table
for completeness; nothing measures it yet, so it is never counted. Figures are floats, rounded only when printed.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import BadInput

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
CURRENCY = "USD"
SETTING = "BRANCHYARD_PRICES"
PRICE_SOURCE = ("Railway's published rates (docs.railway.app/reference/pricing: memory, vCPU; railway.com/pricing "
                "via a 2026-07-02 transcription: volume, egress), read 2026-12-03")


@dataclass(frozen=True)
class Prices:
    """US dollars per unit; a month is HOURS_PER_MONTH hours."""

    memory_gb_month: float = 10.0
    vcpu_month: float = 20.0
    storage_gb_month: float = 0.15
    egress_gb: float = 0.05

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


PRICE_KEYS = tuple(f.name for f in fields(Prices))


def parse_prices(raw: str | None, *, setting: str = SETTING) -> Prices:
    """The price table from BRANCHYARD_PRICES (a TOML file's path, or inline `key=value,…`); the defaults for the
    keys not given. BadInput naming the setting, the key and the value on anything else."""
    text = (raw or "").strip()
    if not text:
        return Prices()
    if "=" in text:
        values: dict[str, Any] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, eq, value = part.partition("=")
            if not eq:
                raise BadInput(f"{setting}: expected key=value, got {part.strip()!r}")
            values[key.strip()] = value.strip()
        where = setting
    else:
        path = Path(text).expanduser()
        try:
            values = tomllib.loads(path.read_text())
        except OSError as err:
            raise BadInput(f"{setting}: cannot read the price file {text!r}: {err.strerror or err}") from None
        except tomllib.TOMLDecodeError as err:
            raise BadInput(f"{setting}: {text}: not valid TOML: {err}") from None
        where = f"{setting} ({text})"
    return _prices(values, where)


def _prices(values: Mapping[str, Any], where: str) -> Prices:
    out: dict[str, float] = {}
    for key, value in values.items():
        if key not in PRICE_KEYS:
            raise BadInput(f"{where}: unknown price {key!r} (expected {', '.join(PRICE_KEYS)})")
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise BadInput(f"{where}: {key} must be a number of dollars, 0 or more, got {value!r}")
        out[key] = number
    return Prices(**out)


# --- allocation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One service of an environment as it is priced: `replicas` processes of `memory_mb` and `cpu` each (an app),
    or one server with `memory_mb` of RAM and `storage_mb` of volume (PostgreSQL, Redis)."""

    name: str  # "web", "worker", "postgres", "redis"
    kind: str  # "app" | "postgres" | "redis"
    replicas: int = 1
    memory_mb: int | None = None
    cpu: float | None = None
    storage_mb: int | None = None
    cron: str | None = None  # a cron service's schedule: no replica runs between its runs


def allocation(snapshot: Mapping[str, Any], replicas_override: int | None = None,
               services_scale: Mapping[str, int] | None = None) -> list[Service]:
    """The services a deployment's configuration snapshot (EnvironmentConfig.to_dict(), as stored) allocates:
    web (× `scale web=N` when given), the Procfile's other process types under "processes" ({name: {command,
    replicas}}; × `scale NAME=N` when given), each replica sized as web's (`memory`, `cpu`: the limits they run with),
    PostgreSQL and Redis when the environment has them."""
    web = snapshot.get("web") or {}
    if web.get("cron_schedule"):  # a cron service: its start command runs on schedule, no replica in between
        out = [Service("web", "app", replicas=0, memory_mb=web.get("memory_mb"), cpu=web.get("cpu"),
                       cron=web["cron_schedule"])]
    else:
        out = [Service("web", "app", replicas=int(replicas_override or web.get("replicas") or 1),
                       memory_mb=web.get("memory_mb"), cpu=web.get("cpu"))]
    scaled = services_scale or {}
    for name, p in sorted((snapshot.get("processes") or {}).items()):
        out.append(Service(name, "app", replicas=int(scaled.get(name, (p or {}).get("replicas", 1))),
                           memory_mb=web.get("memory_mb"), cpu=web.get("cpu")))
    pg = snapshot.get("postgres")
    if pg:
        out.append(Service("postgres", "postgres", memory_mb=pg.get("memory_mb"), storage_mb=pg.get("storage_mb")))
    redis = snapshot.get("redis")
    if redis:
        out.append(Service("redis", "redis", memory_mb=redis.get("memory_mb")))
    return out


@dataclass(frozen=True)
class Rates:
    """An allocation per unit of time: GB of RAM, vCPUs, GB of volume (what one running second costs is these times
    the prices, over SECONDS_PER_MONTH)."""

    memory_gb: float = 0.0
    vcpu: float = 0.0
    storage_gb: float = 0.0


def rates(services: Iterable[Service]) -> Rates:
    """The whole allocation: RAM and vCPU summed over replicas, volume over servers (undeclared sizes count 0)."""
    mem = cpu = sto = 0.0
    for s in services:
        n = s.replicas if s.kind == "app" else 1
        mem += n * (s.memory_mb or 0) / 1024
        cpu += n * (s.cpu or 0.0) if s.kind == "app" else 0.0
        sto += (s.storage_mb or 0) / 1024
    return Rates(mem, cpu, sto)


@dataclass(frozen=True)
class Item:
    """One line of the breakdown: a service's resource, its quantity (GB, vCPUs) and its monthly cost."""

    service: str
    resource: str  # "memory" | "vcpu" | "storage"
    quantity: float  # GB of RAM or volume, vCPUs (over all replicas)
    unit_price: float  # dollars per unit per month
    monthly: float
    note: str | None = None  # "2 × 1 GB", "not sized: no memory declared"

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "resource": self.resource, "quantity": self.quantity,
                "unit_price": self.unit_price, "monthly": self.monthly, "note": self.note}


@dataclass(frozen=True)
class Monthly:
    items: tuple[Item, ...]

    @property
    def total(self) -> float:
        return sum(i.monthly for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "items": [i.to_dict() for i in self.items]}


def _size(mb: int) -> str:
    return f"{mb / 1024:g} GB" if mb % 1024 == 0 else f"{mb} MB"


def monthly(services: Iterable[Service], prices: Prices) -> Monthly:
    """The projected monthly cost of an allocation, per service and resource (730 hours a month)."""
    items: list[Item] = []
    for s in services:
        if s.kind == "app" and s.cron:
            why = f'cron service ("{s.cron}"): no replica runs between its runs; run time is not priced'
            items.append(Item(s.name, "memory", 0.0, prices.memory_gb_month, 0.0, why))
            items.append(Item(s.name, "vcpu", 0.0, prices.vcpu_month, 0.0, why))
            continue
        if s.kind == "app":
            n = s.replicas
            if s.memory_mb:
                gb = n * s.memory_mb / 1024
                items.append(Item(s.name, "memory", gb, prices.memory_gb_month, gb * prices.memory_gb_month,
                                  f"{n} × {_size(s.memory_mb)}"))
            else:
                items.append(Item(s.name, "memory", 0.0, prices.memory_gb_month, 0.0, "not sized: no memory declared"))
            if s.cpu:
                v = n * s.cpu
                items.append(Item(s.name, "vcpu", v, prices.vcpu_month, v * prices.vcpu_month, f"{n} × {s.cpu:g} vCPU"))
            else:
                items.append(Item(s.name, "vcpu", 0.0, prices.vcpu_month, 0.0, "not sized: no cpu declared"))
            continue
        if s.memory_mb:
            gb = s.memory_mb / 1024
            items.append(Item(s.name, "memory", gb, prices.memory_gb_month, gb * prices.memory_gb_month, _size(s.memory_mb)))
        else:
            why = "maxmemory 0 (unbounded)" if s.kind == "redis" else "the server's own settings"
            items.append(Item(s.name, "memory", 0.0, prices.memory_gb_month, 0.0, f"not sized: no memory declared ({why})"))
        if s.kind == "postgres":
            if s.storage_mb:
                gb = s.storage_mb / 1024
                items.append(Item(s.name, "storage", gb, prices.storage_gb_month, gb * prices.storage_gb_month,
                                  _size(s.storage_mb)))
            else:
                items.append(Item(s.name, "storage", 0.0, prices.storage_gb_month, 0.0, "not sized: no storage declared"))
    return Monthly(tuple(items))


def summary(services: Iterable[Service]) -> str:
    """One line for a table: "web 2×1 GB/1 vCPU · postgres 2 GB/10 GB · redis 512 MB"."""
    parts = []
    for s in services:
        if s.kind == "app" and s.cron:
            parts.append(f"{s.name} cron {s.cron}")
        elif s.kind == "app":
            mem = _size(s.memory_mb) if s.memory_mb else "?"
            cpu = f"{s.cpu:g} vCPU" if s.cpu else "? vCPU"
            parts.append(f"{s.name} {s.replicas}×{mem}/{cpu}")
        elif s.kind == "postgres":
            parts.append(f"postgres {_size(s.memory_mb) if s.memory_mb else '?'}/{_size(s.storage_mb) if s.storage_mb else '?'}")
        else:
            parts.append(f"{s.name} {_size(s.memory_mb) if s.memory_mb else '?'}")
    return " · ".join(parts)


# --- measured ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What an environment used while running: seconds, and GB-seconds / vCPU-seconds of its allocation."""

    running_seconds: float = 0.0
    memory_gb_seconds: float = 0.0
    vcpu_seconds: float = 0.0
    storage_gb_seconds: float = 0.0

    def plus(self, r: Rates, seconds: float) -> Usage:
        """This usage and `seconds` more of running at `r`."""
        return Usage(self.running_seconds + seconds, self.memory_gb_seconds + r.memory_gb * seconds,
                     self.vcpu_seconds + r.vcpu * seconds, self.storage_gb_seconds + r.storage_gb * seconds)

    def dollars(self, prices: Prices) -> float:
        return (self.memory_gb_seconds * prices.memory_gb_month + self.vcpu_seconds * prices.vcpu_month
                + self.storage_gb_seconds * prices.storage_gb_month) / SECONDS_PER_MONTH


def advance(usage: Usage, *, was_running: bool, running: bool, since: float, now: float, r: Rates,
            transition: bool = False) -> Usage:
    """Usage after the interval [since, now], at `r` (the allocation in force since `since`).

    Housekeeping's ticks (level-triggered) count an interval only when the environment ran at both ends: a gap
    while the control plane was down counts if it ran before and after; a stop or a start between two ticks is
    not counted (at most one housekeeping interval lost per change). A `transition` — an event saying the
    environment changed just now (`down`, a deployment went live, `scale`) — counts the interval when it ran at
    its start: it ran until that event."""
    if now <= since or not was_running or not (running or transition):
        return usage
    return usage.plus(r, now - since)


def money(value: float) -> str:
    """$12.35 (the one place figures are rounded)."""
    return f"${value:,.2f}"
