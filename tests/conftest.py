"""Shared fixtures: a real control plane in a temporary BRANCHYARD_HOME, app repositories, HTTP via the router."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "yoto-smart-stream"
BRANCHYARD = [sys.executable, "-m", "branchyard.cli.main"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def processes_mentioning(text: str, *, cwd: bool = True) -> list[int]:
    """Live (non-zombie) processes whose command line (or, with `cwd`, working directory) mentions `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            where = os.readlink(proc / "cwd") if cwd else ""
        except OSError:
            continue
        if (text in cmdline or (cwd and where.startswith(text))) and state != "Z":
            found.append(int(proc.name))
    return found


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; return that, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Plane:
    """A running control plane in its own home, driven through the real CLI."""

    home: Path
    http_port: int
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*BRANCHYARD, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and done.returncode != 0:
            raise AssertionError(f"branchyard {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def json(self, *args: str, cwd: Path | None = None):
        return json.loads(self.run(*args, "--json", cwd=cwd).stdout)

    def add_user(self, name: str, role: str) -> Plane:
        """A new user (added by the machine's admin) and this plane as seen by them: their token in BRANCHYARD_TOKEN,
        for the CLI and for git pushes to the local path (the hook uses it)."""
        token = self.json("users", "add", name, "--role", role)["token"]
        return self.as_user(token)

    def as_user(self, token: str) -> Plane:
        """The same control plane, driven with `token` (BRANCHYARD_TOKEN)."""
        return dataclasses.replace(self, env=self.env | {"BRANCHYARD_TOKEN": token})

    def git(self, repo: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(["git", *args], cwd=repo, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def get(self, host: str, path: str = "/health", **kw) -> httpx.Response:
        """A GET through the router (Caddy) for a virtual host."""
        return self.request("GET", host, path, **kw)

    def request(self, method: str, host: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, f"http://127.0.0.1:{self.http_port}{path}", headers={"Host": host}, timeout=10,
                             trust_env=False, **kw)

    def app_repo(self, tmp: Path, name: str, *, project: str | None = None) -> Path:
        """A fresh git repo holding the example app, registered as project `project or name`."""
        repo = tmp / name
        shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
        if project:
            toml = repo / "branchyard.toml"
            toml.write_text(toml.read_text().replace('name = "yoto"', f'name = "{project}"', 1))
        self.git(repo, "init", "--quiet", "--initial-branch=main")
        self.commit(repo, "initial")
        self.run("init", cwd=repo)
        # The seed's config references secrets: every environment gets its own.
        for env, dsn in (("production", "SENTRY_DSN"), ("staging", "SENTRY_DSN_STAGING")):
            self.run("variables", "set", "--secret", "--skip-deploys", "-e", env, f"YOTO_CLIENT_ID={env}-client-id",
                     f"YOTO_CLIENT_SECRET={env}-client-secret-value", f"{dsn}=https://{env}-key@sentry.example.invalid/1",
                     cwd=repo)
        return repo

    def commit(self, repo: Path, message: str) -> str:
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
        return self.git(repo, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory) -> Path:
    """One virtualenv cache per test process: the example's dependencies are installed once in each. Not one for
    all xdist workers: a control plane's housekeeping removes the cached virtualenvs its own releases do not use, and
    a plane of the other worker would lose the one it is deploying (BRANCHYARD_CACHE_DIR belongs to one home)."""
    return tmp_path_factory.mktemp("venv-cache")


def new_home() -> Path:
    """A BRANCHYARD_HOME in a fresh directory under /tmp (not pytest's 0700 tree: as root, PostgreSQL runs as an
    unprivileged user that must be able to reach its data directory)."""
    return Path(tempfile.mkdtemp(prefix="branchyard-test-")) / "home"


def stop_plane(plane: Plane) -> None:
    """Stop everything the plane started, check that nothing of it still runs, remove its home."""
    plane.run("server", "stop", "--all", check=False)
    deadline = time.monotonic() + 15
    while processes_mentioning(str(plane.home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_mentioning(str(plane.home))
    shutil.rmtree(plane.home.parent, ignore_errors=True)
    assert not left, f"processes left running after `server stop --all`: {left}"


def start_plane(home: Path, cache: Path, *, http_port: int | None = None, extra_env: dict[str, str] | None = None) -> Plane:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")}
    plane = Plane(home=home, http_port=http_port or free_port())
    plane.env = env | GIT_ENV | {
        "BRANCHYARD_HOME": str(home),
        "BRANCHYARD_HTTP_PORT": str(plane.http_port),
        "BRANCHYARD_DOMAIN": "localhost",
        "BRANCHYARD_CACHE_DIR": str(cache),
        "HOME": str(home.parent),  # keep the user's ~/.gitconfig and ~/.branchyard out of it
    } | (extra_env or {})
    plane.run("server", "--detach", timeout=120)
    return plane


@contextlib.contextmanager
def webhook_plane(cache: Path, secret: str) -> Iterator[Plane]:
    """A plane in a new home whose server takes GitHub deliveries signed with `secret`; `api_url` is set on it."""
    p = start_plane(new_home(), cache, extra_env={"BRANCHYARD_GITHUB_WEBHOOK_SECRET": secret})
    try:
        p.api_url = p.json("server", "status")["api_url"]
        yield p
    finally:
        stop_plane(p)


@pytest.fixture(scope="module")
def plane(tmp_path_factory, venv_cache):
    """A control plane for a test module; everything it started is stopped afterwards."""
    p = start_plane(new_home(), venv_cache)
    try:
        yield p
    finally:
        stop_plane(p)


@pytest.fixture()
def kube_fake(monkeypatch):
    """A fake Kubernetes API server (tests/fakes/kube_api.py) for one test; no proxy between it and its clients
    (lightkube trusts the environment's proxies, as kubectl does)."""
    from fakes.kube_api import FakeKube

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeKube() as fake:
        yield fake
