"""Sanitized copies: refresh a database (staging) from another (production) without personal data reaching it.

`plan_sanitize` is pure: the [sanitize] section of branchyard.toml and the columns of the copied database in,
the UPDATE/TRUNCATE statements out (psycopg.sql objects: identifiers and literals quoted by psycopg).

`refresh` runs the whole copy. Raw data only ever lives on the SOURCE's server (and in a 0600 dump file in
`workdir`, deleted as soon as it is restored):

    pg_dump source ──▶ scratch database by_scratch_<random> on the source's server
                       sanitize it in one transaction (as the scratch database's own role)
    pg_dump scratch ─▶ pg_restore into the target (one transaction: nothing changes if it fails)
    drop the scratch database and its role, delete both dump files (also on failure)

Hash-like rules are salted with a random salt made per refresh and never stored, so a dictionary of known
e-mail addresses cannot be hashed to find them in staging; within one refresh the same input gives the same
output, so joins and unique columns stay consistent. User triggers of the scratch database are switched off
while it is sanitized (an audit trigger must not copy the raw values it sees into another table) and put
back exactly as they were before it is dumped.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from branchyard.backends.local.postgres import Admin, Database, check_name
from branchyard.errors import BackendError, BadInput, BranchyardError
from branchyard.spec.model import Rule, SanitizeSpec

__all__ = ["SCRATCH_PREFIX", "drop_leftover_scratches", "plan_sanitize", "refresh"]

SCRATCH_PREFIX = "by_scratch_"
MASK_PREFIX = "user-"
MASK_DOMAIN = "@example.invalid"
NAME_PREFIX = "Person "
_TRIGGER_STATES = {"O": "ENABLE TRIGGER", "A": "ENABLE ALWAYS TRIGGER", "R": "ENABLE REPLICA TRIGGER"}


@dataclass(frozen=True)
class Step:
    """One statement of a sanitization and the table it changes."""

    action: str  # "truncate" or "update"
    table: str
    statement: sql.Composed


def plan_sanitize(spec: SanitizeSpec, columns: Mapping[str, Sequence[str]], *, salt: str) -> list[sql.Composed]:
    """The statements that sanitize a database whose tables have `columns` (TRUNCATEs first, then one UPDATE per table).

    Refuses (BadInput, naming the table or column) a rule for a missing table or column, a declared table with a
    column that has no rule, and a truncate of a missing table. Tables declared with "keep" only need no UPDATE.
    """
    return [step.statement for step in _steps(spec, columns, salt)]


def _steps(spec: SanitizeSpec, columns: Mapping[str, Sequence[str]], salt: str) -> list[Step]:
    if not isinstance(salt, str) or not salt:
        raise BadInput("sanitize: the salt must be a non-empty string")
    tables = ", ".join(sorted(columns)) or "none"
    steps: list[Step] = []
    for table in spec.truncate:
        if table not in columns:
            raise BadInput(f"sanitize.truncate: no such table {table} in the database (tables: {tables})")
        steps.append(Step("truncate", table, sql.SQL("TRUNCATE TABLE {} CASCADE").format(sql.Identifier(table))))
    for table, rules in spec.tables.items():
        if table not in columns:
            raise BadInput(f"sanitize.tables.{table}: no such table in the database (tables: {tables})")
        present = list(columns[table])
        for column in rules:
            if column not in present:
                raise BadInput(f"sanitize.tables.{table}.{column}: no such column in table {table} (columns: {', '.join(present)})")
        for column in present:
            if column not in rules:
                raise BadInput(f'sanitize.tables.{table}: column {column} has no rule (add {column} = "keep" if it holds no personal data)')
        assignments = [
            sql.SQL("{} = {}").format(sql.Identifier(column), _expression(table, column, rule, salt))
            for column, rule in rules.items()
            if rule.kind != "keep"
        ]
        if assignments:
            statement = sql.SQL("UPDATE {} SET {}").format(sql.Identifier(table), sql.SQL(", ").join(assignments))
            steps.append(Step("update", table, statement))
    return steps


def _expression(table: str, column: str, rule: Rule, salt: str) -> sql.Composable:
    """The new value of `column` under `rule` (NULL stays NULL for every rule but fixed)."""
    digest = sql.SQL("md5({}::text || {}::text)").format(sql.Literal(salt), sql.Identifier(column))
    if rule.kind == "mask_email":
        return sql.SQL("{} || left({}, 12) || {}").format(sql.Literal(MASK_PREFIX), digest, sql.Literal(MASK_DOMAIN))
    if rule.kind == "fake_name":
        return sql.SQL("{} || left({}, 8)").format(sql.Literal(NAME_PREFIX), digest)
    if rule.kind == "hash":
        return digest
    if rule.kind == "null":
        return sql.NULL
    if rule.kind == "fixed" and isinstance(rule.value, str):
        return sql.Literal(rule.value)
    raise BadInput(f"sanitize.tables.{table}.{column}: unknown rule {rule.kind!r}")


# ---------------------------------------------------------------------------------------------------
# Running a refresh


def refresh(
    source_admin: Admin,
    source_db: str,
    target_admin: Admin,
    target_db: str,
    target_owner: str,
    spec: SanitizeSpec,
    *,
    workdir: Path,
    log: Callable[[str], None],
    scratch_admin: Admin | None = None,
) -> dict[str, Any]:
    """Replace TARGET's content with a sanitized copy of SOURCE; raw data never enters the target's server.

    The raw copy is sanitized in a scratch database on `scratch_admin`'s server: the source's own by default; a
    server of the control plane's own when it cannot reach the source's (a Kubernetes namespace's PostgreSQL).

    Returns {"tables_sanitized": n, "rows_updated": {table: rows}, "tables_truncated": n,
    "tables_without_rules": [tables copied as they are]}. `log` gets progress lines, never data values.
    Whether the target may be refreshed at all (never production) is the caller's decision.
    """
    check_name(source_db, "database")
    check_name(target_db, "database")
    check_name(target_owner, "role")
    scratch_admin = scratch_admin or source_admin
    if source_db == target_db:
        raise BadInput(f"refusing to refresh database {target_db!r} from itself")
    workdir = Path(workdir)
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"cannot create {workdir}: {exc}") from exc
    salt = secrets.token_hex(16)
    scratch = SCRATCH_PREFIX + secrets.token_hex(8)
    raw_dump = workdir / f"{scratch}.source.dump"
    clean_dump = workdir / f"{scratch}.sanitized.dump"
    created = False
    where = "the source server" if scratch_admin is source_admin else "the control plane's scratch server"
    try:
        log(f"dumping {source_db}")
        source_admin.dump(source_db, raw_dump)
        log(f"restoring {source_db} into scratch database {scratch} on {where} ({_size(raw_dump)})")
        created = True
        scratch_db = scratch_admin.create_database(scratch, scratch)
        scratch_admin.restore(raw_dump, scratch, scratch)
        raw_dump.unlink()
        result = _sanitize_database(scratch_db, spec, salt, log)
        log(f"dumping the sanitized copy from {scratch}")
        scratch_admin.dump(scratch, clean_dump)
        log(f"restoring the sanitized copy into {target_db} ({_size(clean_dump)})")
        target_admin.restore(clean_dump, target_db, target_owner)
    finally:
        problems = _clean_up(scratch_admin, scratch if created else None, (raw_dump, clean_dump))
        for problem in problems:
            log(f"cleanup failed: {problem}")
    if problems:
        raise BackendError(f"{target_db} was refreshed from {source_db}, but cleaning up failed: {problems[0]}")
    log(f"refreshed {target_db} from {source_db}")
    return result


def drop_leftover_scratches(admin: Admin, log: Callable[[str], None]) -> list[str]:
    """Drop the scratch databases (and roles) a crashed refresh left behind; only call it when no refresh runs."""
    dropped = []
    for name in admin.databases():
        if name.startswith(SCRATCH_PREFIX):
            admin.drop_database(name, name)
            log(f"dropped leftover scratch database {name}")
            dropped.append(name)
    return dropped


def _sanitize_database(db: Database, spec: SanitizeSpec, salt: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Apply the plan to `db` in one transaction, connected as its owner; return the counts."""
    conninfo = make_conninfo("", host=db.host, port=str(db.port), user=db.user, password=db.password,
                             dbname=db.name, connect_timeout="10")  # fmt: skip
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise BackendError(f"cannot connect to scratch database {db.name}: {_primary(exc)}") from None
    with conn:
        try:
            columns, elsewhere = _read_tables(conn)
            triggers = _enabled_triggers(conn)
        except psycopg.Error as exc:
            raise BackendError(f"cannot read the tables of scratch database {db.name}: {_primary(exc)}") from None
        steps = _steps(spec, columns, salt)
        log(f"sanitizing: {len(steps)} statement(s) in one transaction")
        rows: dict[str, int] = {}
        truncated: list[str] = []
        with conn.transaction():
            _run(conn, "switching triggers off", [
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(t), sql.Identifier(name))
                for t, name, _ in triggers
            ])  # fmt: skip
            for step in steps:
                cursor = _run(conn, f"sanitizing table {step.table}", [step.statement])
                if step.action == "truncate":
                    truncated.append(step.table)
                else:
                    rows[step.table] = max(cursor.rowcount, 0) if cursor is not None else 0
            _run(conn, "restoring triggers", [
                sql.SQL("ALTER TABLE {} {} {}").format(sql.Identifier(t), sql.SQL(_TRIGGER_STATES[state]), sql.Identifier(name))
                for t, name, state in triggers
            ])  # fmt: skip
    for table in truncated:
        log(f"truncated {table}")
    for table, count in rows.items():
        log(f"sanitized {table}: {count} row(s)")
    covered = set(spec.tables) | set(spec.truncate)
    return {
        "tables_sanitized": len(rows),
        "rows_updated": rows,
        "tables_truncated": len(truncated),
        "tables_without_rules": sorted(t for t in columns if t not in covered) + elsewhere,
    }


def _run(conn: psycopg.Connection, what: str, statements: list[sql.Composed]) -> psycopg.Cursor | None:
    """Execute statements; an error becomes a BackendError with PostgreSQL's primary message only.

    Its detail is left out on purpose: for a constraint violation it shows the failing row, raw data included.
    """
    cursor = None
    for statement in statements:
        try:
            cursor = conn.execute(statement)
        except psycopg.Error as exc:
            raise BackendError(f"{what} failed: {_primary(exc)} (nothing was copied)") from None
    return cursor


def _read_tables(conn: psycopg.Connection) -> tuple[dict[str, list[str]], list[str]]:
    """Tables of schema public → their columns in order; and the tables of other schemas (schema.table)."""
    columns: dict[str, list[str]] = {}
    for table, column in conn.execute(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum"
    ):
        columns.setdefault(table, [])
        if column is not None:
            columns[table].append(column)
    elsewhere = [f"{schema}.{table}" for schema, table in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('public', 'pg_catalog', 'information_schema') "
        r"AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1, 2"
    )]  # fmt: skip
    return columns, elsewhere


def _enabled_triggers(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(table, trigger, state) of the enabled user triggers on the tables of schema public."""
    return [(t, name, state) for t, name, state in conn.execute(
        "SELECT c.relname, t.tgname, t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND NOT t.tgisinternal AND t.tgenabled <> 'D' ORDER BY 1, 2"
    ) if state in _TRIGGER_STATES]  # fmt: skip


def _clean_up(admin: Admin, scratch: str | None, files: Sequence[Path]) -> list[str]:
    """Drop the scratch database and its role, delete the dump files; return what could not be done."""
    problems = []
    if scratch is not None:
        try:
            admin.drop_database(scratch, scratch)
        except BranchyardError as exc:
            problems.append(f"cannot drop scratch database {scratch}: {exc}")
    for path in files:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"cannot delete {path}: {exc.strerror}")
    return problems


def _primary(exc: psycopg.Error) -> str:
    """PostgreSQL's primary message (never its detail, which may quote a row), else the first line."""
    diag = getattr(exc, "diag", None)
    if diag is not None and diag.message_primary:
        return diag.message_primary
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _size(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "size unknown"
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.1f} kB"
