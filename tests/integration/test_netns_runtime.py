"""LocalRuntime with and without network isolation: where a replica runs and is reached, hooks in its namespace,
`forget` deleting the namespace (real processes, real namespaces as root)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from branchyard.backends.local import netns
from branchyard.backends.local.runtime import LocalRuntime
from branchyard.backends.local.tasks import TaskRecords
from branchyard.backends.ports import Placement

pytestmark = pytest.mark.integration

# binds loopback only, as many start commands do: reached at the namespace's address all the same
APP = ("import http.server, os\n"
       "class H(http.server.BaseHTTPRequestHandler):\n"
       "    def do_GET(self):\n"
       "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
       "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n")


def start(runtime: LocalRuntime, tmp_path: Path, placement: Placement | None):
    (tmp_path / "app.py").write_text(APP)
    port = runtime.free_port()
    h = runtime.spawn(f"{sys.executable} app.py", cwd=tmp_path, env={"PORT": str(port), "PATH": os.environ["PATH"]},
                      log_path=tmp_path / "web.0.log", port=port, placement=placement)
    return h


def test_without_isolation_a_replica_runs_on_loopback(tmp_path):
    runtime = LocalRuntime(TaskRecords(tmp_path / "tasks"), network_why_not="not root: …")
    assert (runtime.isolation().network, runtime.isolation().network_why_not) == (False, "not root: …")
    h = start(runtime, tmp_path, Placement("p", "production"))
    try:
        assert h.host == "127.0.0.1"
        assert runtime.wait_healthy(h, "/", timeout=30).ok
    finally:
        runtime.stop(h, grace=2)


@pytest.mark.skipif(os.geteuid() != 0 or netns.tool("ip") is None or netns.tool("nft") is None,
                    reason="network isolation needs root, ip and nft")
def test_with_isolation_a_replica_and_its_hooks_run_in_the_environments_namespace(tmp_path):
    network, why = netns.from_settings(tmp_path / "home", "auto", netns.DEFAULT_POOL)
    assert why is None
    runtime = LocalRuntime(TaskRecords(tmp_path / "tasks"), netns=network)
    placement = Placement("p", "staging")
    try:
        assert runtime.isolation().network and runtime.isolation().network_why_not is None
        h = start(runtime, tmp_path, placement)
        try:
            net = network.find("p", "staging")
            assert network.release_if_unused() is False  # a namespace of the home exists: its table stays
            assert network.table in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
            assert h.host == net.address and ipaddress.ip_address(h.host) in ipaddress.ip_network(netns.DEFAULT_POOL)
            assert runtime.wait_healthy(h, "/", timeout=30).ok  # bound to 127.0.0.1 inside, reached at .2
            assert runtime.probe(h.port, "/", timeout=5, host=h.host).ok
            assert not runtime.probe(h.port, "/", timeout=5).ok  # nothing of it on the host's loopback
            again = runtime.adopt(h.pid, h.start_time, h.port, h.log_path, h.host)
            assert again == h
        finally:
            runtime.stop(h, grace=2)
        lines: list[str] = []
        runtime.run_hook("ip -4 -o addr show scope global", cwd=tmp_path, env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
                         out=lines.append, timeout=30, placement=placement)
        assert any(f"{net.address}/30" in line for line in lines), lines  # the hook saw its namespace's network
        runtime.forget("p", "staging")
        assert not Path(f"/run/netns/{net.namespace}").exists() and not Path(f"/sys/class/net/{net.host_if}").exists()
    finally:
        network.teardown()
