"""Leak check for environments that should be gone: processes, listening ports, databases and roles,
Caddy routes, directories. Returns what is left, as readable strings (empty: nothing leaked)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from branchyard.backends.local import netns
from branchyard.backends.local.caddy import Router
from branchyard.backends.local.postgres import Admin, LocalServer
from branchyard.names import database_name


def _listening(text: str) -> set[int]:
    ports = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this machine (IPv4 and IPv6), in the host's network namespace and in every
    environment's (network isolation, issue 17: /proc/net/tcp shows only the reader's namespace)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            ports |= _listening(Path(table).read_text())
        except OSError:
            continue
    spaces = sorted(p.name for p in Path("/run/netns").glob(f"{netns.NS_PREFIX}*")) if Path("/run/netns").is_dir() else []
    ip = netns.tool("ip")
    for space in spaces if ip else []:
        done = subprocess.run([ip, "netns", "exec", space, "cat", "/proc/net/tcp", "/proc/net/tcp6"],
                              capture_output=True, text=True)
        ports |= _listening(done.stdout)
    return ports


def _environ(pid: str) -> bytes:  # readable for our own processes (and all of them as root)
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _in_home(pid: str, home: Path) -> bool:
    """Whether the process works in `home` (a release, a hook's directory): another plane's environment of the same
    name (tests run in parallel) is not this one's leak."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(home.resolve())
    except OSError:
        return False


def processes_of(home: Path, project: str, env: str) -> list[int]:
    """Live processes started for one environment of the plane at `home` (their environment names the project and
    the environment, and they work in the plane's home)."""
    marker = f"BRANCHYARD_ENVIRONMENT_NAME={env}\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        data = _environ(proc.name)
        if marker in data and f"BRANCHYARD_PROJECT_NAME={project}\0".encode() in data and _in_home(proc.name, home):
            try:
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.append(int(proc.name))
    return found


def leaks(home: Path, http_port: int, project: str, envs: list[str], *, ports: set[int] = frozenset(),
          pids: set[int] = frozenset(), deployments: set[str] = frozenset()) -> list[str]:
    """What is left of `envs` (already deleted environments) of `project` in the plane at `home`."""
    left: list[str] = []
    for pid in pids:
        if os.path.exists(f"/proc/{pid}"):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                left.append(f"process {pid} still running")
    still = listening_ports() & set(ports)
    left += [f"port {p} still listening" for p in sorted(still)]
    shared = home / "postgres" / "shared"
    if (shared / "server.json").exists():
        admin = Admin(LocalServer(data_dir=shared).admin_url())
        databases, roles = set(admin.databases()), set(admin.roles())
        for env in envs:
            name = database_name(project, env)
            if name in databases:
                left.append(f"database {name}")
            if name in roles:
                left.append(f"role {name}")
    router = Router(home=home / "caddy", http_port=http_port, admin_port=0)
    hosts = {r.host for r in router.routes()}
    for env in envs:
        host = f"{project}-{env}.localhost"
        if host in hosts:
            left.append(f"Caddy route {host}")
        for path in (home / "logs" / project / env, home / "redis" / project / env,
                     home / "postgres" / f"{project}-{env}"):
            if path.exists():
                left.append(f"directory {path}")
        for pid in processes_of(home, project, env):
            left.append(f"process {pid} of {env}")
        digest = netns.env_hash(home, project, env)
        if Path(f"/run/netns/{netns.NS_PREFIX}{digest}").exists():
            left.append(f"network namespace {netns.NS_PREFIX}{digest} of {env}")
        if Path(f"/sys/class/net/{netns.HOST_IF_PREFIX}{digest}").exists():
            left.append(f"veth {netns.HOST_IF_PREFIX}{digest} of {env}")
    releases = home / "releases" / project
    if releases.is_dir():
        left += [f"release {releases / d}" for d in sorted(deployments) if (releases / d).exists()]
        left += [f"half-made directory {p}" for p in releases.glob(".incoming-*")]
        left += [f"half-made directory {p}" for p in releases.glob(".spec-*")]
    return left
