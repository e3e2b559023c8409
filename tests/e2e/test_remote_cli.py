"""The CLI and git from another machine: a control plane in a temporary home, and a "laptop" — its own HOME and
XDG_CONFIG_HOME, a BRANCHYARD_HOME without the plane's server.json — that reaches it only through the API's HTTP
address: login, init, git push over HTTP (deploys, streams), status, logs, variables, run, connect (through the
control plane's tunnel), rollback, promote, and the bad input (missing or wrong token, an over-limit body, a burst of
wrong tokens, logout, unknown contexts).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import BRANCHYARD, EXAMPLE, GIT_ENV, Plane, new_home, processes_mentioning, start_plane, stop_plane

from branchyard import errors
from branchyard.cli import websocket
from branchyard.cli.client import Client
from branchyard.cli.contexts import Target
from branchyard.cli.project_cmd import credential_helper

pytestmark = pytest.mark.integration

PROMOTION = '[environments.production.promotion]\nfrom = "staging"'


class Laptop:
    """The CLI and git with no access to the plane's home; every output is kept to check no token leaked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "xdg"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRANCHYARD_", "XDG_", "GIT_"))}
        self.env = env | GIT_ENV | {
            "HOME": str(root),
            "XDG_CONFIG_HOME": str(self.config),
            "BRANCHYARD_HOME": str(root / "no-control-plane-here"),
            "GIT_TERMINAL_PROMPT": "0",  # a 401 fails at once instead of waiting on a prompt
        }
        self.outputs: list[str] = []

    def by(self, *args: str, cwd: Path | None = None, check: bool = True, input: str | None = None,
           env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([*BRANCHYARD, *args], cwd=cwd, env=env or self.env, capture_output=True, text=True,
                              input=input, timeout=timeout)
        self.outputs += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(f"branchyard {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, *args: str, cwd: Path | None = None):
        return json.loads(self.by(*args, "--json", cwd=cwd).stdout)

    def git(self, repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["git", *args], cwd=repo, env=self.env, capture_output=True, text=True, timeout=600)
        self.outputs += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def commit(self, repo: Path, message: str) -> str:
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.git(repo, "rev-parse", "HEAD").stdout.strip()


def post(url: str, body: bytes, headers: dict[str, str], *, source: str | None = None) -> tuple[int, dict, dict]:
    """One POST with http.client (the CLI's own client, which a reset would break), from `source` if given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def tunnels_opened(laptop: Laptop, repo: Path) -> list[tuple[str, str]]:
    """(actor, message) of production's `tunnel.opened` events, oldest first."""
    events = laptop.json("events", "-e", "production", cwd=repo)
    return [(e["actor"], e["message"]) for e in reversed(events) if e["kind"] == "tunnel.opened"]


PUBLIC_URL = "https://deploy.example.test"


@pytest.fixture(scope="module")
def plane(venv_cache):
    """A control plane that knows its public URL (the edge in front of it is another part's)."""
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_PUBLIC_URL": PUBLIC_URL})
    try:
        yield p
    finally:
        stop_plane(p)


def test_the_cli_and_git_push_from_another_machine(plane: Plane, tmp_path: Path) -> None:
    server = plane.json("server", "status")
    assert server["public_url"] == PUBLIC_URL
    api = server["api_url"]  # the edge (TLS, the public host) is not part of this test: its loopback address
    token = (plane.home / "token").read_text().strip()  # what the operator hands the developer
    laptop = Laptop(tmp_path / "laptop")
    laptop.root.mkdir()
    contexts = laptop.config / "branchyard" / "contexts.json"

    # --- login: a wrong token is refused in one line and nothing is saved; the right one is stored 0600
    wrong = laptop.by("login", api, "--token-stdin", input="not-the-token\n", check=False)
    assert wrong.returncode == 5 and wrong.stderr.strip().splitlines() == [
        f"error: login: the control plane at {api} refused the token (missing or wrong API token); nothing saved"]
    assert not contexts.exists()
    done = laptop.by("login", api, "--token-stdin", "--name", "plane", input=token + "\n")
    assert "logged in" in done.stdout and "as admin (admin)" in done.stdout
    assert stat.S_IMODE(contexts.stat().st_mode) == 0o600
    assert [c["name"] for c in laptop.json("context", "list") if c["active"]] == ["plane"]

    # --- init: the `branchyard` remote is the HTTP git URL, authenticated by the credential helper
    repo = laptop.root / "app"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    toml = (repo / "branchyard.toml").read_text()  # promotion without approvals or smoke tests
    start = toml.index("[environments.production.promotion]")
    (repo / "branchyard.toml").write_text(toml[:start] + PROMOTION + toml[toml.index("\n\n", start):])
    laptop.git(repo, "init", "--quiet", "--initial-branch=main")
    laptop.commit(repo, "v1")
    laptop.by("init", cwd=repo)
    git_url = f"{api}/git/yoto.git"
    assert laptop.git(repo, "remote", "get-url", "branchyard").stdout.strip() == git_url
    assert laptop.git(repo, "config", "--get-all", f"credential.{api}.helper").stdout.splitlines() == [
        "", credential_helper()]
    for env_name, dsn in (("production", "SENTRY_DSN"), ("staging", "SENTRY_DSN_STAGING")):
        laptop.by("variables", "set", "--secret", "--skip-deploys", "-e", env_name, f"YOTO_CLIENT_ID={env_name}-id",
                  f"YOTO_CLIENT_SECRET={env_name}-secret-value", f"{dsn}=https://{env_name}@sentry.example.invalid/1",
                  cwd=repo)

    # --- a push without a token, or with a wrong one, is refused by git's 401 and changes nothing
    for url in (git_url, git_url.replace("://", "://someone:wrong-token@")):
        refused = laptop.git(repo, "-c", "credential.helper=", "push", url, "main", check=False)
        # git's ordinary reaction to the 401: ask for credentials (no terminal here), or report them refused
        assert refused.returncode != 0, refused.stderr
        assert "could not read Username" in refused.stderr or "Authentication failed" in refused.stderr, refused.stderr
    unauthenticated = httpx.get(f"{git_url}/info/refs?service=git-receive-pack", trust_env=False)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == 'Basic realm="branchyard"'
    assert laptop.json("deployments", "-e", "production", cwd=repo) == []
    assert laptop.git(repo, "ls-remote", "branchyard").stdout.strip() == ""  # fetch works, and nothing was pushed

    # --- git push over HTTP: deploys, streams the deploy lines as `remote:`, exits 0 on SUCCESS
    v1 = laptop.git(repo, "rev-parse", "HEAD").stdout.strip()
    # while it runs, no process on the machine (git, the helper, http-backend, the hook) has the token in its argv
    pushing = subprocess.Popen(["git", "push", "branchyard", "main"], cwd=repo, env=laptop.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen_in_argv = []
    while pushing.poll() is None:
        seen_in_argv += processes_mentioning(token, cwd=False)
        time.sleep(0.05)
    out, err = pushing.communicate()
    laptop.outputs += [out, err]
    pushed = subprocess.CompletedProcess(pushing.args, pushing.returncode, out, err)
    assert pushed.returncode == 0 and not seen_in_argv, (seen_in_argv, err)
    assert "remote: -----> deployment SUCCESS" in pushed.stderr, pushed.stderr
    assert plane.get("yoto.localhost").json()["commit"] == v1
    state = laptop.json("status", "-e", "production", cwd=repo)
    assert state["status"] == "SUCCESS" and state["current_deployment"]["commit"] == v1
    assert "deployment SUCCESS" in laptop.by("logs", "-e", "production", "--build", cwd=repo).stdout

    # --- clone over HTTP from a fresh directory (the helper answers for any repository of this URL)
    clone = laptop.root / "clone"
    helper = f"credential.{api}.helper={credential_helper()}"
    laptop.git(laptop.root, "-c", helper, "clone", "--quiet", git_url, str(clone))
    assert laptop.git(clone, "rev-parse", "HEAD").stdout.strip() == v1

    # --- a pack over git's 1 MiB post buffer goes chunked (no Content-Length) and streams through; a branch no
    # environment maps to is stored without a deployment
    laptop.git(repo, "checkout", "--quiet", "-b", "big-blob")
    (repo / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    big_sha = laptop.commit(repo, "a big blob")
    laptop.git(repo, "push", "branchyard", "big-blob")
    assert laptop.git(repo, "ls-remote", "branchyard", "big-blob").stdout.split()[0] == big_sha
    laptop.by("link", "yoto", "-e", "staging", cwd=clone)  # link, like init, sets the remote and its helper
    assert laptop.git(clone, "remote", "get-url", "branchyard").stdout.strip() == git_url
    laptop.git(clone, "fetch", "--quiet", "branchyard", "big-blob")
    assert laptop.git(clone, "rev-parse", "FETCH_HEAD").stdout.strip() == big_sha
    laptop.git(repo, "checkout", "--quiet", "main")
    assert len(laptop.json("deployments", "-e", "production", cwd=repo)) == 1

    # --- variables: set (redeploys), list
    laptop.by("variables", "set", "GREETING=hello-from-afar", "-e", "production", cwd=repo)
    listed = laptop.json("variables", "list", "-e", "production", cwd=repo)
    assert listed["variables"]["GREETING"] == "hello-from-afar"
    assert "production-secret-value" not in json.dumps(listed)  # secrets stay masked

    # --- run executes on the control plane's machine and streams; its exit code is ours
    ran = laptop.by("run", "-e", "production", "--", "python", "-c",
                    "import os, sys; print('greeting', os.environ['GREETING']); sys.exit(3)", cwd=repo, check=False)
    assert ran.returncode == 3 and "greeting hello-from-afar" in ran.stdout

    # --- connect: psql and redis-cli here, through the control plane's tunnel (a WebSocket per connection), stdin
    # theirs. The laptop is this machine, so the servers' own addresses would answer too: the events prove the way.
    asked = laptop.by("connect", "postgres", "-e", "production", cwd=repo, input="select 40 + 2 as answer;\n")
    assert asked.stdout.split() == ["answer", "--------", "42", "(1", "row)"], asked.stdout
    assert laptop.by("connect", "redis", "-e", "production", cwd=repo, input="PING\n").stdout == "PONG\n"
    assert tunnels_opened(laptop, repo) == [("admin", "admin opened a tunnel to production's postgres"),
                                            ("admin", "admin opened a tunnel to production's redis")]
    # a token without `shell` is refused in one line, by the connection route and by the tunnel's handshake alike
    viewer = laptop.json("users", "add", "quinn", "--role", "viewer")["token"]
    refused = laptop.by("connect", "postgres", "-e", "production", cwd=repo, check=False,
                        env=laptop.env | {"BRANCHYARD_URL": api, "BRANCHYARD_TOKEN": viewer})
    route = "/api/projects/yoto/environments/production/connection/postgres"
    needs = "permission 'shell' in protected environment production needs role admin; quinn is viewer"
    assert refused.returncode == 5 and refused.stderr.splitlines() == [f"error: POST {route}: {needs}"], refused.stderr
    with pytest.raises(errors.Forbidden) as handshake:
        asyncio.run(websocket.connect(Client(Target("quinn", api, viewer)).websocket_endpoint(f"{route}/tunnel")))
    assert str(handshake.value) == f"WEBSOCKET {route}/tunnel: {needs}"
    assert len(tunnels_opened(laptop, repo)) == 2
    local_only = laptop.by("server", "status", check=False)
    assert local_only.returncode == 2 and "runs on the control plane's own machine" in local_only.stderr

    # --- a second push, then rollback to the first
    (repo / "VERSION").write_text("v2\n")
    v2 = laptop.commit(repo, "v2")
    laptop.git(repo, "push", "branchyard", "main")
    assert plane.get("yoto.localhost").json()["commit"] == v2
    laptop.by("rollback", "-e", "production", cwd=repo)
    assert laptop.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == v1

    # --- staging from develop, promoted to production
    laptop.git(repo, "checkout", "--quiet", "-b", "develop")
    (repo / "VERSION").write_text("v3\n")
    v3 = laptop.commit(repo, "v3 on develop")
    laptop.git(repo, "push", "branchyard", "develop")
    laptop.by("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo)
    assert laptop.json("status", "-e", "production", cwd=repo)["current_deployment"]["commit"] == v3

    # --- a push whose deployment FAILS exits non-zero, its failure streamed
    railway = repo / "railway.toml"
    railway.write_text(railway.read_text().replace('preDeployCommand = "python manage.py migrate"',
                                                   "preDeployCommand = \"python -c 'raise SystemExit(7)'\""))
    laptop.commit(repo, "a pre-deploy command that fails")
    failed = laptop.git(repo, "push", "branchyard", "develop", check=False)
    assert failed.returncode != 0 and "remote:" in failed.stderr and "FAILED" in failed.stderr, failed.stderr

    # --- an over-limit body gets a 413 the client reads (no reset), and nothing is created
    big = b"{" + b" " * (6 * 1024 * 1024) + b"}"
    status, _, body = post(f"{api}/api/projects", big, {"Authorization": f"Bearer {token}",
                                                        "Content-Type": "application/json"})
    assert (status, body["error"]) == (413, "PayloadTooLarge") and "over the limit" in body["detail"]
    status, _, body = post(f"{api}/webhooks/github", big, {"Content-Type": "application/json"})
    assert status == 413

    # --- a burst of wrong tokens from one address gets 429; another address with the right token is unaffected
    answers = [post(f"{api}/api/projects", b"{}", {"Authorization": f"Bearer wrong-{i}"}, source="127.0.0.2")[0]
               for i in range(12)]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    status, headers, _ = post(f"{git_url}/git-receive-pack", b"", {
        "Authorization": "Basic " + base64.b64encode(b"x:" + token.encode()).decode()}, source="127.0.0.2")
    assert status == 429 and int(headers["retry-after"]) > 0
    assert laptop.json("status", "-e", "production", cwd=repo)["status"] == "SUCCESS"  # from 127.0.0.1

    # --- BRANCHYARD_URL + BRANCHYARD_TOKEN (CI) come before the stored context
    ci = laptop.env | {"BRANCHYARD_URL": api, "BRANCHYARD_TOKEN": "wrong"}
    assert laptop.by("status", "-e", "production", cwd=repo, env=ci, check=False).returncode == 5
    refused = laptop.by("variables", "set", "INTRUDER=1", "-e", "production", cwd=repo, env=ci, check=False)
    assert refused.returncode == 5 and refused.stderr.strip() == "error: missing or wrong API token"
    assert "INTRUDER" not in laptop.json("variables", "list", "-e", "production", cwd=repo)["variables"]

    # --- context use of an unknown name, logout
    unknown = laptop.by("context", "use", "nope", check=False)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "error: context use: no context 'nope' (known: local, plane)"
    laptop.by("logout")
    assert json.loads(contexts.read_text())["contexts"] == {}
    gone = laptop.by("status", "-e", "production", cwd=repo, check=False)  # now the machine's own: there is none
    assert gone.returncode == 6 and "control plane is not running" in gone.stderr
    ci = laptop.env | {"BRANCHYARD_URL": api, "BRANCHYARD_TOKEN": token}
    assert laptop.by("status", "-e", "production", "--json", cwd=repo, env=ci).returncode == 0

    # --- the token never shows: outputs, git config, the plane's log
    assert not [out for out in laptop.outputs if token in out]
    assert token not in (repo / ".git" / "config").read_text()
    assert token not in (plane.home / "logs" / "server.log").read_text()
