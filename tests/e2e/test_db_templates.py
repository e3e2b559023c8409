"""postgres.templateFiles on the example app: the first preview's migrated and seeded database becomes a
template; the next previews' databases are copies of it (no preDeployCommand, no seedCommand), owned by
their own roles; changing a template file builds a new template; closing previews leaves no database."""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from conftest import BRANCHYARD, wait_for, webhook_plane
from leaks import leaks
from test_previews import github_project, pr_commit
from webhooks import deliver, pull_request

from branchyard.backends.local.postgres import Admin, LocalServer

pytestmark = pytest.mark.integration

SECRET = "test-webhook-secret-templates"


@pytest.fixture(scope="module")
def plane(venv_cache):
    with webhook_plane(venv_cache, SECRET) as p:
        yield p


def open_pr(plane, repo, number: int, sha: str, base: str, project: str) -> None:
    r = deliver(plane.api_url, "pull_request", pull_request("opened", number, head_sha=sha, base_sha=base,
                                                              head_ref=f"feature/t{number}", repository=f"owner/{project}"),
                secret=SECRET)
    assert r.status_code == 202, r.text

    def serving() -> bool:
        try:
            r = plane.get(f"{project}-pr-{number}.localhost")
            return r.status_code == 200 and r.json().get("commit") == sha
        except Exception:
            return False

    wait_for(serving, timeout=240, interval=0.2)


def build_log(plane, repo, env: str) -> str:
    return plane.run("logs", "--build", "-n", "500", "-e", env, cwd=repo).stdout


def sql(plane, repo, env: str, query: str) -> str:
    done = subprocess.run([*BRANCHYARD, "connect", "postgres", "-e", env], cwd=repo, env=plane.env, input=query,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def select_rows(plane, repo, env: str, query: str) -> list[list[str]]:
    """The rows of one SELECT through `connect postgres` (psql's aligned table, parsed; every cell a string)."""
    lines = sql(plane, repo, env, query).splitlines()
    sep = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+(\+-+)*", line))
    end, count = next((i, int(m[1])) for i, line in enumerate(lines) if (m := re.fullmatch(r"\((\d+) rows?\)", line)))
    found = [[cell.strip() for cell in line.split("|")] for line in lines[sep + 1:end]]
    assert len(found) == count, lines
    return found


def admin(plane) -> Admin:
    return Admin(LocalServer(data_dir=plane.home / "postgres" / "shared").admin_url())


def test_preview_databases_are_copies_of_a_template_until_its_files_change(plane, tmp_path):
    project = "tpl"
    repo = github_project(plane, tmp_path, project)
    base = plane.git(repo, "rev-parse", "main").stdout.strip()

    first = pr_commit(plane, repo, "feature/t1", "one")
    open_pr(plane, repo, 1, first, base, project)
    log1 = build_log(plane, repo, "pr-1")
    assert "preDeployCommand: python manage.py migrate" in log1 and "seedCommand (new database)" in log1
    assert "kept this new database as template bytpl_" in log1

    second = pr_commit(plane, repo, "feature/t2", "two")  # VERSION changed: not a template file
    open_pr(plane, repo, 2, second, base, project)
    log2 = build_log(plane, repo, "pr-2")
    assert "cloned from template bytpl_" in log2
    assert "preDeployCommand:" not in log2 and "seedCommand (new database)" not in log2
    # the copy holds the seed data and the schema, and everything in it belongs to pr-2's own role
    assert select_rows(plane, repo, "pr-2", "select count(*) from users;\n") == [["5"]]
    assert select_rows(plane, repo, "pr-2", "select version_num from alembic_version;\n") == [["0001"]]
    assert select_rows(plane, repo, "pr-2", "select distinct tableowner from pg_tables where schemaname = 'public';\n") == [
        ["by_tpl_pr_2"]]
    # pr-2 writes to its copy; pr-1 and the template do not see it
    sql(plane, repo, "pr-2", "insert into users (email, name) values ('only@pr2.test', 'Only PR2');\n")
    assert select_rows(plane, repo, "pr-2", "select count(*) from users where email = 'only@pr2.test';\n") == [["1"]]
    assert select_rows(plane, repo, "pr-1", "select count(*) from users where email = 'only@pr2.test';\n") == [["0"]]
    assert select_rows(plane, repo, "pr-1", "select count(*) from users;\n") == [["5"]]

    # a migration file changes: the key changes, the hooks run again and a second template is kept
    plane.git(repo, "checkout", "--quiet", "-b", "feature/t3")
    migration = repo / "migrations" / "versions" / "0001_initial.py"
    migration.write_text(migration.read_text() + "\n# touched\n")
    third = plane.commit(repo, "touch the migration")
    plane.git(repo, "push", "--quiet", "--force", "upstream", "feature/t3")
    plane.git(repo, "checkout", "--quiet", "main")
    open_pr(plane, repo, 3, third, base, project)
    log3 = build_log(plane, repo, "pr-3")
    assert "preDeployCommand: python manage.py migrate" in log3 and "kept this new database as template" in log3

    databases = admin(plane).databases()
    assert len([d for d in databases if d.startswith("bytpl_") and d.endswith("_tpl")]) == 2

    for number, sha in ((1, first), (2, second), (3, third)):
        r = deliver(plane.api_url, "pull_request", pull_request("closed", number, head_sha=sha, base_sha=base,
                                                                  head_ref=f"feature/t{number}",
                                                                  repository=f"owner/{project}"), secret=SECRET)
        assert r.status_code == 202
    wait_for(lambda: not plane.json("environment", "list", "--ephemeral", cwd=repo), timeout=90, interval=0.3)
    assert leaks(plane.home, plane.http_port, project, ["pr-1", "pr-2", "pr-3"]) == []
    roles = admin(plane).roles()
    assert not [r for r in roles if r.startswith("by_tpl_pr_")]
    # the templates stay for the next previews; their roles cannot log in and nobody can connect to them
    with psycopg.connect(LocalServer(data_dir=plane.home / "postgres" / "shared").admin_url()) as conn:
        rows = conn.execute("select datname, datallowconn from pg_database where datname like 'bytpl_%'").fetchall()
        assert rows and not any(allow for _, allow in rows)
        logins = conn.execute("select rolcanlogin from pg_roles where rolname like 'bytpl_%'").fetchall()
        assert logins and not any(can for (can,) in logins)

    # `db templates` lists both (newest use first); `db templates drop` refuses bad input, then drops them
    listed = plane.json("db", "templates", cwd=repo)
    assert [t["made_by"] for t in listed] == ["pr-3", "pr-1"]
    assert all(t["database"] == f"bytpl_{t['key'][:16]}_{project}" for t in listed)
    for args, code, message in (((), 2, "give a KEY"), (("abc", "--all"), 2, "give a KEY"),
                                (("not-hex",), 2, "is not a template key"), (("0" * 64,), 3, "no template")):
        bad = plane.run("db", "templates", "drop", *args, cwd=repo, check=False)
        assert bad.returncode == code and message in bad.stderr, (args, bad.stderr)
    assert len(plane.json("db", "templates", cwd=repo)) == 2  # nothing changed by the refusals
    one = plane.json("db", "templates", "drop", listed[1]["key"][:8], cwd=repo)
    assert one == {"dropped": [listed[1]["database"]]}
    plane.run("db", "templates", "drop", "--all", cwd=repo)
    assert plane.json("db", "templates", cwd=repo) == []
    left = [d for d in admin(plane).databases() if d.startswith(("bytpl_", "bysp_")) and d.endswith("_tpl")]
    assert left == []
    assert not [r for r in admin(plane).roles() if r.startswith("bytpl_") and r.endswith("_tpl")]
