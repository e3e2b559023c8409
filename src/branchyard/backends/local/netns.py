"""Network isolation on the local backend: each environment's processes in a network namespace of their own (issue 17).

Per environment (of one control plane home) a namespace `by-<hash>` and a veth pair `byh<hash>` (host side) /
`byn<hash>` (inside), a /30 from the pool (BRANCHYARD_NETWORK_POOL, default 10.231.0.0/16): `.1` on the host side,
`.2` inside, the namespace's default route via `.1`. Replicas bind 0.0.0.0:$PORT inside (or 127.0.0.1:$PORT: a
rule inside the namespace, `inner_ruleset`, sends connections to `.2` to its loopback) and the router dials
`<.2>:<port>`; the environment's Redis and PostgreSQL listen on `.1` (and loopback, for the control plane), and
the environment's DATABASE_URL/REDIS_URL name `.1`.

Nothing is stored: the kernel is the record. A namespace and its veth are found again by name after a control plane
restart (`ensure` is idempotent); the block is first tried at hash(name) in the pool and probed linearly past blocks
any interface of the machine already uses (so two homes on one machine never share one), under a machine-wide lock.

One nftables table per home, `inet branchyard_<hash of home>` (`ruleset`, pure): packets from a branchyard veth may
reach the host only at that veth's own address (`fib daddr . iif type local`, no per-environment rule), so staging
cannot open production's Redis or PostgreSQL, or anything else the host listens on; nothing is forwarded into a
branchyard veth but replies, so neither another environment nor the internet reaches a replica around the router;
environments reach the world through masquerade. Both need net.ipv4.ip_forward = 1, which `NetNs.setup` sets.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import BackendError, BadInput

log = logging.getLogger("branchyard.netns")

DEFAULT_POOL = "10.231.0.0/16"
NS_PREFIX = "by-"
HOST_IF_PREFIX = "byh"
NS_IF_PREFIX = "byn"
BLOCK_PREFIX = 30  # a /30 per environment: .1 host side, .2 inside
LOCK_FILE = Path("/run/branchyard-netns.lock")  # machine-wide: every home allocates from the same interfaces
IP_TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------- pure


@dataclass(frozen=True)
class EnvNet:
    """One environment's network: its namespace, veth pair and /30."""

    namespace: str  # "by-0123456789"
    host_if: str  # "byh0123456789"
    ns_if: str  # "byn0123456789"
    network: ipaddress.IPv4Network  # 10.231.x.y/30

    @property
    def host_address(self) -> str:
        """Where the environment's processes reach the host (its Redis and PostgreSQL listen here)."""
        return str(self.network.network_address + 1)

    @property
    def address(self) -> str:
        """The environment's own address inside its namespace (the router dials its replicas here)."""
        return str(self.network.network_address + 2)


def parse_pool(raw: str) -> ipaddress.IPv4Network:
    """BRANCHYARD_NETWORK_POOL: an IPv4 network of at least one /30 (BadInput naming the setting otherwise)."""
    try:
        pool = ipaddress.IPv4Network(raw.strip(), strict=True)
    except ValueError as exc:
        raise BadInput(f"BRANCHYARD_NETWORK_POOL: expected an IPv4 network such as {DEFAULT_POOL}, got {raw!r} ({exc})") from None
    if pool.prefixlen > BLOCK_PREFIX:
        raise BadInput(f"BRANCHYARD_NETWORK_POOL: {raw!r} is smaller than one /{BLOCK_PREFIX}")
    return pool


def env_hash(home: Path | str, project: str, environment: str) -> str:
    """10 hex digits naming one environment of one home (interface names have at most 15 characters)."""
    return hashlib.sha256(f"{home}\0{project}\0{environment}".encode()).hexdigest()[:10]


def home_hash(home: Path | str) -> str:
    return hashlib.sha256(str(home).encode()).hexdigest()[:10]


def table_name(home: Path | str) -> str:
    """The home's nftables table (inet family): one per control plane home, so parallel homes never clash."""
    return f"branchyard_{home_hash(home)}"


def names_for(digest: str, network: ipaddress.IPv4Network) -> EnvNet:
    return EnvNet(f"{NS_PREFIX}{digest}", f"{HOST_IF_PREFIX}{digest}", f"{NS_IF_PREFIX}{digest}", network)


def blocks(pool: ipaddress.IPv4Network) -> int:
    """How many /30 blocks the pool holds."""
    return 2 ** (BLOCK_PREFIX - pool.prefixlen)


def block(pool: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    """The pool's `index`-th /30."""
    if not 0 <= index < blocks(pool):
        raise BadInput(f"block {index} is outside {pool} ({blocks(pool)} blocks of /{BLOCK_PREFIX})")
    return ipaddress.IPv4Network((int(pool.network_address) + index * 2 ** (32 - BLOCK_PREFIX), BLOCK_PREFIX))


def choose_block(pool: ipaddress.IPv4Network, digest: str, taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first /30 of the pool, from hash position `digest` on (wrapping), that overlaps no network in `taken`
    (the machine's interfaces' networks); BackendError when the pool is full."""
    taken = [t for t in taken if t.overlaps(pool)]
    count = blocks(pool)
    start = int(digest, 16) % count
    for step in range(count):
        candidate = block(pool, (start + step) % count)
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise BackendError(f"network isolation: the pool {pool} is full ({count} environments); widen BRANCHYARD_NETWORK_POOL")


def ruleset(table: str, pool: ipaddress.IPv4Network) -> str:
    """The nft script (for `nft -f`) that (re)creates the home's table: what isolates every branchyard veth.

    input: from a branchyard veth only to that veth's own address, or replies; forward: nothing into a branchyard
    veth but replies (no other environment, no outside host reaches a replica around the router); postrouting:
    what an environment sends elsewhere is masqueraded — only forwarded packets: the host's own connections to an
    environment's host-side address (the control plane's, `run`) keep that address as their source, which pg_hba
    lets in as the environment's network."""
    veth = f'"{HOST_IF_PREFIX}*"'
    return "\n".join([
        f"table inet {table}",  # created if missing, so the delete below never fails
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    iifname {veth} ct state established,related accept",
        f"    iifname {veth} fib daddr . iif type local accept",
        f"    iifname {veth} meta l4proto tcp reject with tcp reset",
        f"    iifname {veth} reject",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
        f"    oifname {veth} ct state established,related accept",
        f"    oifname {veth} meta l4proto tcp reject with tcp reset",
        f"    oifname {veth} reject",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    iifname {veth} oifname != {veth} ip saddr {pool} masquerade",  # forwarded out (not the host's own)
        "  }",
        "}",
        "",
    ])


def inner_ruleset(net: EnvNet) -> str:
    """The nft script run inside the environment's namespace: connections to its address go to its loopback, so an
    app that binds 127.0.0.1:$PORT (as many start commands do) is reached like one that binds 0.0.0.0 (needs
    route_localnet on its veth). Only the host's side of the veth can send there: what the host's rules allow."""
    return "\n".join([
        "table ip branchyard {",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        f'    iifname "{net.ns_if}" ip daddr {net.address} meta l4proto tcp dnat to 127.0.0.1',
        "  }",
        "}",
        "",
    ])


def tool(name: str) -> str | None:
    """Where `ip`/`nft` are (root's sbin directories are often off a service's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = Path(directory) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def why_not(mode: str, *, euid: int, ip: str | None, nft: str | None) -> str | None:
    """Why environments cannot have namespaces of their own here (None: they can), said once at start and in
    `status`/`check` (pure)."""
    if mode == "off":
        return "BRANCHYARD_NETWORK_ISOLATION=off: environments share the host network"
    if euid != 0:
        return "not root: network namespaces need root; environments share the host network"
    missing = [name for name, path in (("ip", ip), ("nft", nft)) if path is None]
    if missing:
        debian = {"ip": "iproute2", "nft": "nftables"}
        return (f"no {' and no '.join(missing)} command (Debian: apt-get install {' '.join(debian[m] for m in missing)}); "
                "environments share the host network")
    return None


# --------------------------------------------------------------------------------------------- the machine


class NetNs:
    """Namespaces, veths and the nftables table of one home on this machine (root, `ip` and `nft` needed)."""

    def __init__(self, home: Path, pool: ipaddress.IPv4Network, *, ip: str, nft: str) -> None:
        self.home = Path(home)
        self.pool = pool
        self.ip = ip
        self.nft = nft
        self.table = table_name(self.home)
        self.records = self.home / "netns"  # one file per namespace of this home (project/env): what teardown deletes
        self._known: dict[str, EnvNet] = {}
        self._guard = threading.Lock()
        self._ready = False

    # -- the home's rules --------------------------------------------------------------------------

    def setup(self) -> None:
        """The home's nft table and ip_forward = 1 (idempotent; at start, and before the first namespace)."""
        with self._guard:
            if self._ready:
                return
            self._nft_apply(ruleset(self.table, self.pool))
            forward = Path("/proc/sys/net/ipv4/ip_forward")
            try:
                if forward.read_text().strip() != "1":
                    forward.write_text("1\n")
                    log.warning("network isolation: set net.ipv4.ip_forward = 1 (environments reach the world through NAT)")
            except OSError as exc:
                raise BackendError(f"network isolation: cannot set {forward} to 1: {exc.strerror}") from None
            self._ready = True

    def teardown(self) -> None:
        """Delete every namespace this home made and its nft table (`server stop --all`; made again on demand).
        Namespaces of other homes are never touched."""
        for record in sorted(self.records.glob("*")) if self.records.is_dir() else []:
            self._delete(names_for(record.name, block(self.pool, 0)))
            record.unlink(missing_ok=True)
        self._known.clear()
        with self._guard:
            self._nft_apply(f"table inet {self.table}\ndelete table inet {self.table}\n")
            self._ready = False

    def release_if_unused(self) -> bool:
        """A start that failed: the home's nft table goes if no namespace of the home exists (none of its apps relies
        on it; a restart's running apps keep theirs). Whether it went."""
        if self.records.is_dir() and any(self.records.iterdir()):
            return False
        self.teardown()
        return True

    # -- environments ------------------------------------------------------------------------------

    def name_of(self, project: str, environment: str) -> str:
        return f"{NS_PREFIX}{env_hash(self.home, project, environment)}"

    def ensure(self, project: str, environment: str) -> EnvNet:
        """The environment's namespace, veth and addresses, created if missing, found again if present."""
        self.setup()
        digest = env_hash(self.home, project, environment)
        known = self._known.get(digest)
        if known is not None and self._present(known):
            return known
        with _machine_lock():
            net = self._adopt(digest) or self._create(digest)
        try:
            self.records.mkdir(parents=True, exist_ok=True)
            (self.records / digest).write_text(f"{project}/{environment}\n")
        except OSError as exc:
            raise BackendError(f"network isolation: cannot record {net.namespace} in {self.records}: {exc.strerror}") from None
        self._known[digest] = net
        return net

    def find(self, project: str, environment: str) -> EnvNet | None:
        """The environment's network if it exists (nothing created)."""
        digest = env_hash(self.home, project, environment)
        known = self._known.get(digest)
        if known is not None and self._present(known):
            return known
        return self._adopt(digest)

    def delete(self, project: str, environment: str) -> bool:
        """Delete the environment's namespace and veth pair (its processes are stopped first); whether one existed."""
        digest = env_hash(self.home, project, environment)
        net = self._known.pop(digest, None) or self._adopt(digest) or names_for(digest, block(self.pool, 0))
        existed = Path(f"/run/netns/{net.namespace}").exists() or Path(f"/sys/class/net/{net.host_if}").exists()
        self._delete(net)
        (self.records / digest).unlink(missing_ok=True)
        return existed

    def exec_prefix(self, net: EnvNet) -> list[str]:
        """The argv prefix that runs a command inside the environment's namespace (`ip netns exec` execs: the pid
        Popen sees is the command's own)."""
        return [self.ip, "netns", "exec", net.namespace]

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _present(net: EnvNet) -> bool:
        return Path(f"/run/netns/{net.namespace}").exists() and Path(f"/sys/class/net/{net.host_if}").exists()

    def _adopt(self, digest: str) -> EnvNet | None:
        """The environment's network as the kernel has it, or None (a half-made one is deleted)."""
        probe = names_for(digest, block(self.pool, 0))
        ns_there = Path(f"/run/netns/{probe.namespace}").exists()
        if_there = Path(f"/sys/class/net/{probe.host_if}").exists()
        if not ns_there and not if_there:
            return None
        if ns_there and if_there:
            for address in self._addresses(probe.host_if):
                if address.network.prefixlen == BLOCK_PREFIX and address.network.subnet_of(self.pool) \
                        and address.ip == address.network.network_address + 1:
                    return names_for(digest, address.network)
        log.warning("network isolation: %s was half made; making it again", probe.namespace)
        self._delete(probe)
        return None

    def _create(self, digest: str) -> EnvNet:
        taken = [a.network for a in self._all_addresses()]
        net = names_for(digest, choose_block(self.pool, digest, taken))
        prefix = f"/{BLOCK_PREFIX}"
        steps = [
            ["netns", "add", net.namespace],
            ["link", "add", net.host_if, "type", "veth", "peer", "name", net.ns_if, "netns", net.namespace],
            ["addr", "add", net.host_address + prefix, "dev", net.host_if],
            ["link", "set", net.host_if, "up"],
            ["-n", net.namespace, "link", "set", "lo", "up"],
            ["-n", net.namespace, "addr", "add", net.address + prefix, "dev", net.ns_if],
            ["-n", net.namespace, "link", "set", net.ns_if, "up"],
            ["-n", net.namespace, "route", "add", "default", "via", net.host_address],
        ]
        localnet = f"/proc/sys/net/ipv4/conf/{net.ns_if}/route_localnet"
        try:
            for step in steps:
                self._ip(step)
            self._ip(["netns", "exec", net.namespace, "/bin/sh", "-c", f"echo 1 > {localnet}"])
            _run([*self.exec_prefix(net), self.nft, "-f", "-"], check=True, what=f"nft -f in {net.namespace}",
                 stdin=inner_ruleset(net))
        except BackendError:
            self._delete(net)
            raise
        log.info("network isolation: %s %s ↔ %s/%d", net.namespace, net.host_address, net.address, BLOCK_PREFIX)
        return net

    def _delete(self, net: EnvNet) -> None:
        if Path(f"/run/netns/{net.namespace}").exists():
            self._ip(["netns", "delete", net.namespace], check=False)
        if Path(f"/sys/class/net/{net.host_if}").exists():  # gone with its peer, unless the peer never moved in
            self._ip(["link", "delete", net.host_if], check=False)

    def _addresses(self, interface: str) -> list[ipaddress.IPv4Interface]:
        out = self._ip(["-j", "-4", "addr", "show", "dev", interface], check=False)
        return _parse_addresses(out)

    def _all_addresses(self) -> list[ipaddress.IPv4Interface]:
        return _parse_addresses(self._ip(["-j", "-4", "addr", "show"]))

    def _ip(self, args: list[str], *, check: bool = True) -> str:
        return _run([self.ip, *args], check=check, what="ip " + " ".join(args))

    def _nft_apply(self, script: str) -> None:
        _run([self.nft, "-f", "-"], check=True, what=f"nft -f (table inet {self.table})", stdin=script)


def _parse_addresses(out: str) -> list[ipaddress.IPv4Interface]:
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return []
    found = []
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return found


def _run(argv: list[str], *, check: bool, what: str, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"network isolation: `{what}` could not run: {exc}") from None
    if check and proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BackendError(f"network isolation: `{what}` failed: {last}")
    return proc.stdout


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialises block choice and creation between the homes (control planes, tests) of this machine."""
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def from_settings(home: Path, mode: str, pool: str) -> tuple[NetNs | None, str | None]:
    """(the home's NetNs, None) when environments get namespaces here; (None, why not) otherwise."""
    ip, nft = tool("ip"), tool("nft")
    reason = why_not(mode, euid=os.geteuid(), ip=ip, nft=nft)
    if reason is not None or ip is None or nft is None:
        return None, reason
    return NetNs(home, parse_pool(pool), ip=ip, nft=nft), None
