"""Network isolation's pure parts: the address pool arithmetic, the names, the nftables ruleset, pg_hba lines, why not."""

from __future__ import annotations

import ipaddress

import pytest

from branchyard import settings
from branchyard.backends.local import netns
from branchyard.backends.local.postgres import render_hba
from branchyard.backends.local.redis import render_config
from branchyard.errors import BackendError, BadInput

POOL = ipaddress.IPv4Network("10.231.0.0/16")
N = ipaddress.IPv4Network


@pytest.mark.parametrize(("pool", "index", "block"), [
    ("10.231.0.0/16", 0, "10.231.0.0/30"),
    ("10.231.0.0/16", 1, "10.231.0.4/30"),
    ("10.231.0.0/16", 64, "10.231.1.0/30"),
    ("10.231.0.0/16", 16383, "10.231.255.252/30"),
    ("192.168.7.0/24", 63, "192.168.7.252/30"),
    ("192.168.7.8/30", 0, "192.168.7.8/30"),
])
def test_block(pool, index, block):
    assert netns.block(N(pool), index) == N(block)


@pytest.mark.parametrize(("pool", "count"), [("10.231.0.0/16", 16384), ("192.168.7.0/24", 64), ("10.0.0.0/30", 1)])
def test_blocks(pool, count):
    assert netns.blocks(N(pool)) == count


def test_block_outside_the_pool_is_refused():
    with pytest.raises(BadInput, match="outside 10.231.0.0/16"):
        netns.block(POOL, 16384)


@pytest.mark.parametrize(("pool", "digest", "taken", "chosen"), [
    ("10.0.0.0/28", "0", [], "10.0.0.0/30"),  # hash position 0
    ("10.0.0.0/28", "2", [], "10.0.0.8/30"),  # position 2 of 4
    ("10.0.0.0/28", "6", [], "10.0.0.8/30"),  # wraps: 6 % 4
    ("10.0.0.0/28", "2", ["10.0.0.9/30"], "10.0.0.12/30"),  # taken by an interface: the next one
    ("10.0.0.0/28", "3", ["10.0.0.13/30"], "10.0.0.0/30"),  # the last taken: wraps to the first
    ("10.0.0.0/28", "0", ["10.0.0.0/29"], "10.0.0.8/30"),  # a wider network covers two blocks
    ("10.0.0.0/28", "0", ["192.168.1.1/24", "10.0.0.0/8"], None),  # a network over the whole pool: full
    ("10.0.0.0/28", "0", ["10.0.0.1/30", "10.0.0.5/30", "10.0.0.9/30", "10.0.0.13/30"], None),
])
def test_choose_block(pool, digest, taken, chosen):
    taken_nets = [ipaddress.IPv4Interface(t).network for t in taken]
    if chosen is None:
        with pytest.raises(BackendError, match="is full"):
            netns.choose_block(N(pool), digest, taken_nets)
    else:
        assert netns.choose_block(N(pool), digest, taken_nets) == N(chosen)


def test_environment_network_names_and_addresses():
    digest = netns.env_hash("/srv/branchyard", "yoto", "production")
    net = netns.names_for(digest, N("10.231.4.8/30"))
    assert (net.namespace, net.host_if, net.ns_if) == (f"by-{digest}", f"byh{digest}", f"byn{digest}")
    assert len(digest) == 10 and len(net.host_if) <= 15 and len(net.ns_if) <= 15  # IFNAMSIZ
    assert (net.host_address, net.address) == ("10.231.4.9", "10.231.4.10")
    # each of home, project and environment makes another network; the same three always the same one
    assert len({netns.env_hash(h, p, e) for h, p, e in [("/a", "p", "e"), ("/b", "p", "e"), ("/a", "q", "e"),
                                                         ("/a", "p", "f")]}) == 4
    assert netns.env_hash("/a", "p", "e") == netns.env_hash("/a", "p", "e")
    assert netns.env_hash("/a", "pe", "x") != netns.env_hash("/a", "p", "ex")  # no ambiguous joins
    assert netns.table_name("/srv/branchyard") == f"branchyard_{netns.home_hash('/srv/branchyard')}"


def test_ruleset_text():
    assert netns.ruleset("branchyard_0123456789", N("10.231.0.0/16")) == """\
table inet branchyard_0123456789
delete table inet branchyard_0123456789
table inet branchyard_0123456789 {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "byh*" ct state established,related accept
    iifname "byh*" fib daddr . iif type local accept
    iifname "byh*" meta l4proto tcp reject with tcp reset
    iifname "byh*" reject
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    oifname "byh*" ct state established,related accept
    oifname "byh*" meta l4proto tcp reject with tcp reset
    oifname "byh*" reject
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    iifname "byh*" oifname != "byh*" ip saddr 10.231.0.0/16 masquerade
  }
}
"""


def test_inner_ruleset_text():
    net = netns.names_for("0123456789", N("10.231.4.8/30"))
    assert netns.inner_ruleset(net) == """\
table ip branchyard {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "byn0123456789" ip daddr 10.231.4.10 meta l4proto tcp dnat to 127.0.0.1
  }
}
"""


@pytest.mark.parametrize(("mode", "euid", "ip", "nft", "why"), [
    ("auto", 0, "/usr/sbin/ip", "/usr/sbin/nft", None),
    ("off", 0, "/usr/sbin/ip", "/usr/sbin/nft", "BRANCHYARD_NETWORK_ISOLATION=off: environments share the host network"),
    ("auto", 1000, "/usr/sbin/ip", "/usr/sbin/nft", "not root: network namespaces need root; environments share the host network"),
    ("auto", 0, "/usr/sbin/ip", None,
     "no nft command (Debian: apt-get install nftables); environments share the host network"),
    ("auto", 0, None, None,
     "no ip and no nft command (Debian: apt-get install iproute2 nftables); environments share the host network"),
])
def test_why_not(mode, euid, ip, nft, why):
    assert netns.why_not(mode, euid=euid, ip=ip, nft=nft) == why


@pytest.mark.parametrize(("raw", "pool", "error"), [
    (None, "10.231.0.0/16", None),
    ("172.30.0.0/20", "172.30.0.0/20", None),
    ("10.0.0.0/30", "10.0.0.0/30", None),
    ("10.0.0.0/31", None, "smaller than one /30"),
    ("10.0.0.1/16", None, "has host bits set"),
    ("fd00::/64", None, "expected an IPv4 network"),
])
def test_pool_setting(raw, pool, error):
    env = {"BRANCHYARD_HOME": "/tmp/x"} | ({"BRANCHYARD_NETWORK_POOL": raw} if raw else {})
    if error:
        with pytest.raises(BadInput, match=f"BRANCHYARD_NETWORK_POOL: .*{error}"):
            settings.load(env)
    else:
        assert settings.load(env).network_pool == pool
        assert netns.parse_pool(pool) == N(pool)


@pytest.mark.parametrize(("raw", "mode"), [(None, "auto"), ("off", "off"), ("AUTO", "auto"), ("on", None)])
def test_isolation_setting(raw, mode):
    env = {"BRANCHYARD_HOME": "/tmp/x"} | ({"BRANCHYARD_NETWORK_ISOLATION": raw} if raw else {})
    if mode is None:
        with pytest.raises(BadInput, match="BRANCHYARD_NETWORK_ISOLATION: expected one of auto, off"):
            settings.load(env)
    else:
        assert settings.load(env).network_isolation == mode


def test_pg_hba_lines():
    rules = {"yoto/staging": ["by_yoto_staging", "by_yoto_staging", "10.231.0.4/30"],
             "yoto/production": ["by_yoto_production", "by_yoto_production", "10.231.0.0/30"]}
    assert render_hba(rules) == [
        "host by_yoto_production by_yoto_production 10.231.0.0/30 scram-sha-256",
        "host by_yoto_staging by_yoto_staging 10.231.0.4/30 scram-sha-256",
    ]
    assert render_hba({}) == []


@pytest.mark.parametrize(("also", "line"), [(None, "bind 127.0.0.1"), ("10.231.0.1", "bind 127.0.0.1 10.231.0.1")])
def test_redis_binds_the_environment_address_too(tmp_path, also, line):
    conf = render_config(port=6400, password="pw", data_dir=tmp_path, pid_file=tmp_path / "p", maxmemory_mb=None,
                         persistence=False, also_bind=also)
    assert conf.splitlines()[1] == line
