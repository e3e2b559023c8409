"""Network isolation (issue 17): each environment's processes in a network namespace of their own.

From a staging process, production's replica, Redis and PostgreSQL ports are refused at the TCP level (not a wrong
password), while staging's own PostgreSQL and Redis work; from a namespace standing in for the internet (its own
veth to the host, routed) no replica port answers, only the router's, which serves both environments. Deleting an
environment deletes its namespace and veth; `server stop --all` the rest and the home's nftables table."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import new_home, start_plane, stop_plane

from branchyard.backends.local import netns

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or netns.tool("ip") is None or netns.tool("nft") is None,
                       reason="network isolation needs root, ip and nft"),
]

IP = netns.tool("ip") or "ip"
OUTSIDE = "10.233.77"  # the stand-in internet's /30 (outside the default pool)

# Run inside a namespace: connect to each "host:port" given; print one JSON object: address → "connected",
# "refused", "unreachable" or "timeout".
PROBE = textwrap.dedent("""
    import errno, json, socket, sys
    out = {}
    for target in sys.argv[1:]:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            out[target] = "connected"
        except ConnectionRefusedError:
            out[target] = "refused"
        except socket.timeout:
            out[target] = "timeout"
        except OSError as exc:
            out[target] = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else str(exc)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def iso(tmp_path_factory, venv_cache):
    plane = start_plane(new_home(), venv_cache)
    home = plane.home
    try:
        yield plane
    finally:
        stop_plane(plane)
    # nothing of the home's networks is left: namespaces, veths, its nftables table
    left = [f"/run/netns/{n}" for n in os.listdir("/run/netns")] if os.path.isdir("/run/netns") else []
    ours = [p for p in left if any(p.endswith(netns.env_hash(home, "niso", e)) for e in ("production", "staging"))]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert not ours and netns.table_name(home) not in tables, (ours, tables)


def in_namespace(namespace: str, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IP, "netns", "exec", namespace, sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=60)


def probe_from(namespace: str, targets: list[str]) -> dict[str, str]:
    done = in_namespace(namespace, PROBE, *targets)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def variable(plane, repo: Path, env: str, name: str) -> str:
    return plane.run("run", "-e", env, "--", "sh", "-c", f"echo ${name}", cwd=repo).stdout.strip()


def hostport(url: str) -> str:
    return url.rsplit("@", 1)[1].split("/", 1)[0]


def test_environments_are_isolated_from_each_other_and_from_outside(iso, tmp_path):
    plane = iso
    repo = plane.app_repo(tmp_path, "app", project="niso")
    plane.git(repo, "push", "branchyard", "main")
    plane.git(repo, "checkout", "--quiet", "-b", "develop")
    plane.git(repo, "push", "branchyard", "develop")
    hosts = {"production": "niso.localhost", "staging": "niso-staging.localhost"}
    for env, host in hosts.items():
        assert plane.get(host).json()["environment"] == env  # the router serves both

    replicas, urls = {}, {}
    for env in hosts:
        status = plane.json("status", "-e", env, cwd=repo)
        replicas[env] = [f"{r['host']}:{r['port']}" for r in status["replicas"]]
        urls[env] = {name: variable(plane, repo, env, name) for name in ("DATABASE_URL", "REDIS_URL")}
    namespace = {env: f"by-{netns.env_hash(plane.home, 'niso', env)}" for env in hosts}
    assert all(not r.startswith("127.0.0.1:") for rs in replicas.values() for r in rs), replicas
    # each environment's services are named at its own host-side address, not loopback
    for env in hosts:
        host_side = str(ipaddress.IPv4Address(replicas[env][0].rsplit(":", 1)[0]) - 1)  # .1 of its /30; replicas .2
        assert {hostport(u).rsplit(":", 1)[0] for u in urls[env].values()} == {host_side}

    # from a staging process: production's replica, Redis and PostgreSQL are refused (no TCP connection at all)
    production = [*replicas["production"], hostport(urls["production"]["REDIS_URL"]),
                  hostport(urls["production"]["DATABASE_URL"])]
    got = probe_from(namespace["staging"], production)
    assert set(got.values()) <= {"refused", "unreachable", "timeout"}, got
    # … while staging's own PostgreSQL and Redis work from there
    own = in_namespace(namespace["staging"], textwrap.dedent("""
        import sys, psycopg, redis
        with psycopg.connect(sys.argv[1], connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert redis.Redis.from_url(sys.argv[2], socket_timeout=5).ping()
        print("ok")
    """), urls["staging"]["DATABASE_URL"], urls["staging"]["REDIS_URL"])
    assert own.stdout.strip() == "ok", own.stderr
    # production's role is refused on staging's own address too (pg_hba: each role from its own network only)
    prod_on_staging_address = urls["production"]["DATABASE_URL"].replace(
        hostport(urls["production"]["DATABASE_URL"]), hostport(urls["staging"]["DATABASE_URL"]))
    refused = in_namespace(namespace["staging"], "import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=5)",
                           prod_on_staging_address)
    assert refused.returncode != 0 and "pg_hba.conf" in refused.stderr, refused.stderr

    # from outside the machine's loopback: only the router answers
    outside = f"bytest{os.getpid() % 100000}"
    host_if, peer = f"bto{os.getpid() % 100000}", f"bti{os.getpid() % 100000}"
    steps = [["netns", "add", outside],
             ["link", "add", host_if, "type", "veth", "peer", "name", peer, "netns", outside],
             ["addr", "add", f"{OUTSIDE}.1/30", "dev", host_if], ["link", "set", host_if, "up"],
             ["-n", outside, "link", "set", "lo", "up"], ["-n", outside, "addr", "add", f"{OUTSIDE}.2/30", "dev", peer],
             ["-n", outside, "link", "set", peer, "up"], ["-n", outside, "route", "add", "default", "via", f"{OUTSIDE}.1"]]
    try:
        for step in steps:
            subprocess.run([IP, *step], check=True, capture_output=True)
        every_replica = replicas["production"] + replicas["staging"]
        # the replicas' addresses, and their ports on the host's own address: nothing
        on_host = [f"{OUTSIDE}.1:{r.rsplit(':', 1)[1]}" for r in every_replica]
        got = probe_from(outside, every_replica + on_host)
        assert set(got.values()) <= {"refused", "unreachable", "timeout"}, got
        router = in_namespace(outside, textwrap.dedent("""
            import sys, httpx
            for host in sys.argv[2:]:
                r = httpx.get(f"http://{sys.argv[1]}/health", headers={"Host": host}, timeout=10, trust_env=False)
                print(r.status_code, r.json()["environment"])
        """), f"{OUTSIDE}.1:{plane.http_port}", *hosts.values())
        assert router.stdout.split("\n")[:2] == ["200 production", "200 staging"], router.stderr
    finally:
        subprocess.run([IP, "netns", "delete", outside], capture_output=True)
        subprocess.run([IP, "link", "delete", host_if], capture_output=True)

    # deleting an environment deletes its namespace and veth
    assert Path(f"/run/netns/{namespace['staging']}").exists()
    plane.run("environment", "delete", "staging", "--yes", cwd=repo)
    assert not Path(f"/run/netns/{namespace['staging']}").exists()
    assert not Path(f"/sys/class/net/byh{namespace['staging'][3:]}").exists()
    assert plane.get(hosts["production"]).json()["environment"] == "production"
