"""[sanitize] in branchyard.toml and the pure plan of a sanitized refresh: exact specs, statements and messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard.data import plan_sanitize, refresh
from branchyard.errors import BadInput, SpecError
from branchyard.spec import Rule, SanitizeSpec, load_project

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"

HEAD = """\
[project]
name = "app"

"""

FULL = """\
[sanitize]
truncate = ["sessions", "password_resets", "sessions"]

[sanitize.tables.users]
id = "keep"
email = "mask_email"
name = "fake_name"
phone = "null"
note = "fixed:it's: redacted"
blank = "fixed:"
created_at = "Keep"

[sanitize.tables.streams]
url = "hash"
"""


def load(tmp_path: Path, text: str, **kwargs: object):
    (tmp_path / "branchyard.toml").write_text(HEAD + textwrap.dedent(text))
    return load_project(tmp_path, **kwargs)  # type: ignore[arg-type]


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    return str(err.value)


# --- the spec section ----------------------------------------------------------------------------------


def test_full_section(tmp_path: Path) -> None:
    spec = load(tmp_path, FULL)
    assert spec.warnings == ()
    assert spec.sanitize == SanitizeSpec(
        truncate=("sessions", "password_resets"),
        tables={
            "users": {
                "id": Rule("keep"),
                "email": Rule("mask_email"),
                "name": Rule("fake_name"),
                "phone": Rule("null"),
                "note": Rule("fixed", "it's: redacted"),
                "blank": Rule("fixed", ""),
                "created_at": Rule("keep"),
            },
            "streams": {"url": Rule("hash")},
        },
    )
    assert list(spec.sanitize.tables) == ["users", "streams"]  # file order is kept


def test_no_section_is_none_and_an_empty_one_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path, "").sanitize is None
    assert load(tmp_path, "[sanitize]\n").sanitize == SanitizeSpec(truncate=(), tables={})


def test_rule_names_in_any_case_and_inline_tables(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        [sanitize]
        tables.users = { email = "MASK-EMAIL", name = " fake_name ", note = "Fixed:As Written " }
    """,
    )
    assert spec.sanitize.tables == {"users": {"email": Rule("mask_email"), "name": Rule("fake_name"), "note": Rule("fixed", "As Written ")}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[sanitize.tables.users]\nid = "keep"\nemail = "scramble"\n',
            "branchyard.toml: sanitize.tables.users.email: expected one of keep, mask_email, fake_name, hash, null, "
            'fixed:<value>, got "scramble" (line 6)',
        ),
        (
            "[sanitize.tables.users]\nemail = 5\n",
            "branchyard.toml: sanitize.tables.users.email: expected one of keep, mask_email, fake_name, hash, null, "
            "fixed:<value>, got 5 (line 5)",
        ),
        (
            '[sanitize.tables.users]\nemail = "fixed:a\\u0000b"\n',
            'branchyard.toml: sanitize.tables.users.email: expected a fixed value without NUL characters, got "fixed:a\\u0000b" (line 5)',
        ),
        (
            '[sanitize.tables.Users]\nemail = "keep"\n',
            "branchyard.toml: sanitize.tables.Users: expected a table name of a-z, 0-9 and _ (at most 63, not starting "
            'with a digit), got "Users" (line 4)',
        ),
        (
            '[sanitize.tables.users]\n"e-mail" = "keep"\n',
            "branchyard.toml: sanitize.tables.users.e-mail: expected a column name of a-z, 0-9 and _ (at most 63, not "
            'starting with a digit), got "e-mail" (line 5)',
        ),
        (
            '[sanitize]\ntruncate = "sessions"\n',
            'branchyard.toml: sanitize.truncate: expected a list of table names, got "sessions" (line 5)',
        ),
        (
            '[sanitize]\ntruncate = ["sessions", "1st"]\n',
            "branchyard.toml: sanitize.truncate: expected a table name of a-z, 0-9 and _ (at most 63, not starting "
            'with a digit), got "1st" (line 5)',
        ),
        (
            '[sanitize]\ntruncate = ["sessions"]\n[sanitize.tables.sessions]\ntoken = "hash"\n',
            "branchyard.toml: sanitize.tables.sessions: table sessions is also in sanitize.truncate "
            "(a truncated table needs no rules) (line 6)",
        ),
        ("[sanitize]\ntables = 1\n", "branchyard.toml: sanitize.tables: expected a table, got 1 (line 5)"),
        ('[sanitize.tables]\nusers = "keep"\n', 'branchyard.toml: sanitize.tables.users: expected a table, got "keep" (line 5)'),
    ],
)
def test_section_errors(tmp_path: Path, text: str, message: str) -> None:
    assert error(tmp_path, text) == message


def test_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "branchyard.toml").write_text('sanitize = "yes"\n' + HEAD)
    with pytest.raises(SpecError) as err:
        load_project(tmp_path)
    assert str(err.value) == 'branchyard.toml: sanitize: expected a table, got "yes" (line 1)'


def test_unknown_keys_are_warnings_with_a_suggestion(tmp_path: Path) -> None:
    text = '[sanitize]\ntruncat = ["sessions"]\nfoo = 1\n[sanitize.tabels.users]\nemail = "hash"\n'
    spec = load(tmp_path, text)
    assert spec.warnings == (
        'branchyard.toml: sanitize.truncat: unknown key (did you mean "truncate"?)',
        "branchyard.toml: sanitize.foo: unknown key",
        'branchyard.toml: sanitize.tabels: unknown key (did you mean "tables"?)',
    )
    assert spec.sanitize == SanitizeSpec()
    with pytest.raises(SpecError) as err:
        load(tmp_path, text, strict=True)
    assert str(err.value) == 'branchyard.toml: sanitize.truncat: unknown key (did you mean "truncate"?)'


def test_a_misspelt_section_is_an_unknown_section(tmp_path: Path) -> None:
    spec = load(tmp_path, '[sanitise.tables.users]\nemail = "hash"\n')
    assert spec.warnings == ("branchyard.toml: unknown section [sanitise] (did you mean [sanitize]?)",)
    assert spec.sanitize is None


def test_the_example_covers_its_personal_data() -> None:
    spec = load_project(EXAMPLE)
    assert spec.warnings == ()
    assert spec.sanitize == SanitizeSpec(
        truncate=(),
        tables={
            "users": {"id": Rule("keep"), "email": Rule("mask_email"), "name": Rule("fake_name"), "created_at": Rule("keep")},
            "streams": {
                "id": Rule("keep"), "user_id": Rule("keep"), "title": Rule("keep"), "url": Rule("hash"),
                "created_at": Rule("keep"),
            },
        },
    )  # fmt: skip
    # The example's schema (migrations/versions/0001_initial.py) fits it.
    columns = {
        "users": ["id", "email", "name", "created_at"],
        "streams": ["id", "user_id", "title", "url", "created_at"],
        "cards": ["id", "stream_id", "title", "icon"],
        "alembic_version": ["version_num"],
    }
    assert len(plan_sanitize(spec.sanitize, columns, salt="s")) == 2


# --- plan_sanitize --------------------------------------------------------------------------------------

COLUMNS = {
    "users": ["id", "email", "name", "created_at"],
    "streams": ["id", "user_id", "url"],
    "sessions": ["id", "token"],
    "password_resets": ["id"],
}


def spec_of(tables: dict[str, dict[str, Rule]], truncate: tuple[str, ...] = ()) -> SanitizeSpec:
    return SanitizeSpec(truncate=truncate, tables=tables)


def sql_of(spec: SanitizeSpec, columns: dict[str, list[str]] = COLUMNS, salt: str = "s4lt") -> list[str]:
    return [statement.as_string(None) for statement in plan_sanitize(spec, columns, salt=salt)]


def covered(**rules: Rule) -> dict[str, Rule]:
    """Rules for users: "keep" for every column not given."""
    return {column: rules.get(column, Rule("keep")) for column in COLUMNS["users"]}


@pytest.mark.parametrize(
    ("rule", "expression"),
    [
        (Rule("mask_email"), """'user-' || left(md5('s4lt'::text || "email"::text), 12) || '@example.invalid'"""),
        (Rule("fake_name"), """'Person ' || left(md5('s4lt'::text || "email"::text), 8)"""),
        (Rule("hash"), """md5('s4lt'::text || "email"::text)"""),
        (Rule("null"), "NULL"),
        (Rule("fixed", "nobody@example.invalid"), "'nobody@example.invalid'"),
        (Rule("fixed", "it's"), "'it''s'"),
        (Rule("fixed", ""), "''"),
        (Rule("fixed", "back\\slash"), " E'back\\\\slash'"),
    ],
)
def test_each_rule(rule: Rule, expression: str) -> None:
    assert sql_of(spec_of({"users": covered(email=rule)})) == [f'UPDATE "users" SET "email" = {expression}']


def test_whole_plan_truncates_first_then_one_update_per_table_in_file_order() -> None:
    spec = spec_of(
        {
            "streams": {"id": Rule("keep"), "user_id": Rule("keep"), "url": Rule("hash")},
            "users": covered(email=Rule("mask_email"), name=Rule("fake_name")),
        },
        truncate=("sessions", "password_resets"),
    )
    assert sql_of(spec) == [
        'TRUNCATE TABLE "sessions" CASCADE',
        'TRUNCATE TABLE "password_resets" CASCADE',
        """UPDATE "streams" SET "url" = md5('s4lt'::text || "url"::text)""",
        """UPDATE "users" SET "email" = 'user-' || left(md5('s4lt'::text || "email"::text), 12) || '@example.invalid', """
        """"name" = 'Person ' || left(md5('s4lt'::text || "name"::text), 8)""",
    ]


def test_a_table_kept_whole_needs_no_statement() -> None:
    assert sql_of(spec_of({"users": covered()})) == []
    assert sql_of(SanitizeSpec()) == []


def test_the_salt_is_quoted() -> None:
    spec = spec_of({"users": covered(email=Rule("hash"))})
    assert sql_of(spec, salt="a'b") == ["""UPDATE "users" SET "email" = md5('a''b'::text || "email"::text)"""]


@pytest.mark.parametrize(
    ("spec", "columns", "message"),
    [
        (
            spec_of({"users": {**covered(), "emial": Rule("mask_email")}}),
            COLUMNS,
            "sanitize.tables.users.emial: no such column in table users (columns: id, email, name, created_at)",
        ),
        (
            spec_of({"users": covered()}),
            {**COLUMNS, "users": [*COLUMNS["users"], "phone"]},
            'sanitize.tables.users: column phone has no rule (add phone = "keep" if it holds no personal data)',
        ),
        (
            spec_of({"users": {"id": Rule("keep")}}),
            COLUMNS,
            'sanitize.tables.users: column email has no rule (add email = "keep" if it holds no personal data)',
        ),
        (
            spec_of({"accounts": {"id": Rule("keep")}}),
            COLUMNS,
            "sanitize.tables.accounts: no such table in the database (tables: password_resets, sessions, streams, users)",
        ),
        (
            spec_of({}, truncate=("session",)),
            COLUMNS,
            "sanitize.truncate: no such table session in the database (tables: password_resets, sessions, streams, users)",
        ),
        (
            spec_of({}, truncate=("sessions",)),
            {},
            "sanitize.truncate: no such table sessions in the database (tables: none)",
        ),
        (
            spec_of({"users": covered(email=Rule("scramble"))}),
            COLUMNS,
            "sanitize.tables.users.email: unknown rule 'scramble'",
        ),
    ],
)
def test_refusals(spec: SanitizeSpec, columns: dict[str, list[str]], message: str) -> None:
    with pytest.raises(BadInput) as err:
        plan_sanitize(spec, columns, salt="s4lt")
    assert str(err.value) == message


def test_a_salt_is_required() -> None:
    with pytest.raises(BadInput) as err:
        plan_sanitize(SanitizeSpec(), COLUMNS, salt="")
    assert str(err.value) == "sanitize: the salt must be a non-empty string"


# --- refresh's own refusals (before anything is touched) --------------------------------------------


class Untouchable:
    def __getattr__(self, name: str):
        raise AssertionError(f"refresh used the admin ({name}) before refusing")


@pytest.mark.parametrize(
    ("source", "target", "owner", "message"),
    [
        ("staging", "staging", "staging", "refusing to refresh database 'staging' from itself"),
        (
            "production",
            "Staging",
            "staging",
            "invalid PostgreSQL database name 'Staging': use 1-63 of a-z, 0-9, _ (not starting with a digit)",
        ),
        ("production", "staging", "pg_staging", "PostgreSQL role name 'pg_staging' is reserved"),
    ],
)
def test_refresh_refuses_before_touching_anything(tmp_path: Path, source: str, target: str, owner: str, message: str) -> None:
    with pytest.raises(BadInput) as err:
        refresh(Untouchable(), source, Untouchable(), target, owner, SanitizeSpec(), workdir=tmp_path / "work",  # type: ignore[arg-type]
                log=lambda line: None)  # fmt: skip
    assert str(err.value) == message
    assert not (tmp_path / "work").exists()
