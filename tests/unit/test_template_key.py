"""postgres.templateFiles: parsing, and the pure key that decides whether a new database may be a copy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from branchyard.data.templates import matching_files, spare_database, template_database, template_key
from branchyard.errors import BadInput, SpecError
from branchyard.spec import load_project


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


APP = {"migrations/versions/0001.py": "create table users", "migrations/env.py": "env", "manage.py": "seed()",
       "main.py": "app", "VERSION": "1"}


def key(root: Path, **over) -> str:
    args = dict(pre_deploy=("python manage.py migrate",), seed="python manage.py seed_data --test",
                dependencies="959b397a3820", variables={"ENVIRONMENT": "preview", "DATABASE_URL": "${{Postgres.DATABASE_URL}}"},
                secret_names=("YOTO_CLIENT_ID",), server="shared")
    return template_key(root, over.pop("globs", ("migrations", "manage.py")), **(args | over))


def test_the_key_follows_the_template_files_and_nothing_else(tmp_path):
    root = tree(tmp_path, APP)
    first = key(root)
    assert key(root) == first  # deterministic
    (root / "VERSION").write_text("2")
    (root / "main.py").write_text("changed app code")
    assert key(root) == first  # files outside templateFiles do not matter
    (root / "migrations" / "versions" / "0002.py").write_text("alter table users")
    assert key(root) != first  # a new migration: a new template
    again = key(root)
    (root / "manage.py").write_text("seed() # more rows")
    assert key(root) != again


@pytest.mark.parametrize("change", [
    {"pre_deploy": ("python manage.py migrate --fake",)},
    {"seed": "python manage.py seed_data --staging"},
    {"dependencies": "another-venv"},
    {"variables": {"ENVIRONMENT": "preview", "DATABASE_URL": "${{Postgres.DATABASE_URL}}", "SEED_SIZE": "9"}},
    {"secret_names": ("YOTO_CLIENT_ID", "OTHER")},
    {"server": "external"},
])
def test_the_key_follows_commands_dependencies_variables_and_server(tmp_path, change):
    root = tree(tmp_path, APP)
    assert key(root, **change) != key(root)


def test_a_pattern_matching_nothing_is_refused_naming_it(tmp_path):
    root = tree(tmp_path, APP)
    with pytest.raises(BadInput, match=r"postgres\.templateFiles: 'migratons' matches no file"):
        key(root, globs=("migratons", "manage.py"))


def test_globs_and_directories_match_files_without_caches(tmp_path):
    root = tree(tmp_path, APP | {"migrations/__pycache__/env.cpython-311.pyc": "x"})
    assert matching_files(root, ["migrations"]) == ["migrations/env.py", "migrations/versions/0001.py"]
    assert matching_files(root, ["migrations/**/*.py", "manage.py"]) == [
        "manage.py", "migrations/env.py", "migrations/versions/0001.py"]


def test_template_names_never_look_like_an_environment_database():
    name = template_database("yoto", "ab" * 32)
    assert name == "bytpl_abababababababab_yoto" and not name.startswith("by_")
    assert spare_database(name) == "bysp_abababababababab_yoto"
    long = template_database("p" * 60, "cd" * 32)
    assert len(long) == 63 and "cdcdcdcdcdcdcdcd" in long


def spec_with(tmp_path: Path, value: str) -> Path:
    (tmp_path / "branchyard.toml").write_text(textwrap.dedent(f"""
        [project]
        name = "app"
        [environments.production]
        branch = "main"
        [environments.pr]
        branches = ["feature/*"]
        [environments.pr.services.postgres]
        templateFiles = {value}
    """))
    return tmp_path


def test_template_files_parse_into_the_preview_database(tmp_path):
    spec = load_project(spec_with(tmp_path, '["migrations", "./manage.py"]'))
    assert spec.environment("pr-1").postgres.template_files == ("migrations", "manage.py")
    assert spec.environment("production").postgres is None


@pytest.mark.parametrize(("value", "message"), [
    ("[]", "a non-empty list of file patterns"),
    ('["../secrets"]', "no '..'"),
    ('["/etc/passwd"]', "no absolute paths"),
    ("3", "a list of strings"),
])
def test_bad_template_files_name_the_field(tmp_path, value, message):
    with pytest.raises(SpecError) as err:
        load_project(spec_with(tmp_path, value))
    assert "templateFiles" in str(err.value) and message in str(err.value)
