"""The state database upgraded by Alembic from each older schema revision, with data in it.

For each revision r: a database is migrated to r (as a control plane of that version left it), rows valid for that
schema are inserted, then `Store` opens it (which upgrades it to head, as a new control plane does at start). Every
row must survive with its values, the columns added after r must hold their defaults, and the upgraded schema must be
the one the models describe.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from branchyard.store import db
from branchyard.store import models as m

T0 = dt.datetime(2024, 5, 1, 10, 0, 0, 123456)
T1 = dt.datetime(2024, 5, 2, 11, 30, 0)
DEP_OK = "6f1c2a90-0000-4000-8000-000000000001"
DEP_FAILED = "6f1c2a90-0000-4000-8000-000000000002"
PROMOTION = "9a0c3311-0000-4000-8000-000000000003"
BACKUP = "b4c4c0de-0000-4000-8000-000000000004"

# The revision that created each table, and the revision that added each column to a table older than it.
TABLE_SINCE = {
    "projects": "0001", "environments": "0001", "deployments": "0001", "replicas": "0001", "events": "0001",
    "services": "0004", "variables": "0004", "backups": "0005", "webhook_deliveries": "0006", "previews": "0006",
    "promotions": "0007", "approvals": "0007", "database_templates": "0008", "domains": "0011", "users": "0012",
    "api_tokens": "0012", "metric_samples": "0014", "alerts": "0015", "uptime_checks": "0015",
    "environment_usage": "0017", "cron_runs": "0018",
}
COLUMN_SINCE = {
    ("projects", "domain"): "0002",
    ("environments", "replicas_override"): "0003",
    ("replicas", "restart_after"): "0003",
    ("replicas", "last_exit"): "0003",
    ("projects", "github_repository"): "0006",
    ("projects", "webhook_secret"): "0006",
    ("projects", "preview_policy"): "0006",
    ("environments", "target_deployment_id"): "0009",
    ("deployments", "work"): "0009",
    ("deployments", "attempts"): "0009",
    ("deployments", "retry_at"): "0009",
    ("environments", "branch_pinned"): "0010",
    ("environments", "protected"): "0012",
    ("events", "actor_id"): "0012",
    ("deployments", "actor"): "0012",
    ("promotions", "requested_by_id"): "0012",
    ("promotions", "confirmed_by"): "0012",
    ("promotions", "confirmed_at"): "0012",
    ("promotions", "start_after"): "0012",
    ("approvals", "user_id"): "0012",
    ("replicas", "health_failures"): "0013",
    ("replicas", "health_checked_at"): "0013",
    ("replicas", "health_detail"): "0013",
    ("deployments", "tests_status"): "0016",
    ("deployments", "tests_detail"): "0016",
    ("deployments", "tests_at"): "0016",
    ("environments", "slept_at"): "0019",
    ("environments", "sleep_kind"): "0019",
    ("replicas", "host"): "0020",
    ("replicas", "service"): "0021",
    ("environments", "services_scale"): "0021",
    ("previews", "unwatched_sha"): "0022",
}
# Columns whose upgrade fills in a value computed from the row (not NULL): the fixture holds that value.
# 0009: an environment wants what it runs (no deployment of the fixture is unfinished); a deployment's work
# follows its trigger (push, and `up` without a config snapshot, are builds); nothing was attempted yet.
# 0010: no branch was set by the user before (an older `environment add --branch` was overwritten by the next deploy).
# 0012: production environments are protected (the spec's default), the others not.
# 0013: no replica has failed a liveness check yet.
# 0016: a deployment that finished before post-deploy tests existed was never tested: `skipped`.
# 0020: a replica started before network isolation runs on loopback; 0021: every replica before Procfile services was
# a web replica.
COMPUTED_ON_UPGRADE = {("environments", "target_deployment_id"), ("deployments", "work"), ("deployments", "attempts"),
                       ("environments", "branch_pinned"), ("environments", "protected"), ("replicas", "health_failures"),
                       ("deployments", "tests_status"), ("replicas", "host"),
                       ("replicas", "service")}

# Representative rows, every column given (values a control plane writes: None where it may, flags both ways).
ROWS: dict[str, list[dict]] = {
    "metric_samples": [
        dict(id=1, project="yoto", environment="production", name="replica_memory_bytes", service="web",
             replica="production.web.0", resolution=10, ts=1714557600, value=52428800.0),
        dict(id=2, project="yoto", environment="production", name="http_requests_per_second", service="", replica="",
             resolution=3600, ts=1714554000, value=0.25),
    ],
    "projects": [
        dict(id=1, name="yoto", repo_path="/srv/branchyard/repos/yoto.git", upstream="https://***@github.com/o/yoto.git",
             created_at=T0, domain="example.test", github_repository="owner/yoto", webhook_secret="gAAAAB-encrypted",
             preview_policy='{"branches": ["feature/*"], "max_previews": 2}'),
        dict(id=2, name="bare", repo_path="/srv/branchyard/repos/bare.git", upstream=None, created_at=T1, domain=None,
             github_repository=None, webhook_secret=None, preview_policy=None),
    ],
    "environments": [
        dict(id=1, project_id=1, name="production", branch="main", ephemeral=False, production=True, state="ACTIVE",
             current_deployment_id=DEP_OK, created_at=T0, replicas_override=3, target_deployment_id=DEP_OK,
             branch_pinned=False, protected=True, slept_at=None, sleep_kind=None,
             services_scale='{"worker": 2}'),
        dict(id=2, project_id=1, name="staging", branch="develop", ephemeral=False, production=False, state="SLEEPING",
             current_deployment_id=None, created_at=T0, replicas_override=None, target_deployment_id=None,
             branch_pinned=False, protected=False, slept_at=T1, sleep_kind="idle", services_scale=None),
        dict(id=3, project_id=1, name="pr-7", branch="feature/x", ephemeral=True, production=False, state="ACTIVE",
             current_deployment_id=None, created_at=T1, replicas_override=None, target_deployment_id=None,
             branch_pinned=False, protected=False, slept_at=None, sleep_kind=None, services_scale=None),
        dict(id=4, project_id=2, name="production", branch="main", ephemeral=False, production=True, state="ACTIVE",
             current_deployment_id=None, created_at=T1, replicas_override=None, target_deployment_id=None,
             branch_pinned=False, protected=True, slept_at=None, sleep_kind=None, services_scale=None),
    ],
    "deployments": [
        dict(id=DEP_OK, project_id=1, environment_id=1, status="SUCCESS", commit_sha="a" * 40, branch="main",
             trigger="push", release_dir="/srv/branchyard/releases/yoto/" + DEP_OK, log_path="/srv/logs/deploy.log",
             error=None, config_json='{"web": {"replicas": 2}}', variables_json="gAAAAB-snapshot", created_at=T0,
             finished_at=T1, work="build", attempts=0, retry_at=None, actor="alice", tests_status="skipped",
             tests_detail=None, tests_at=None),
        dict(id=DEP_FAILED, project_id=1, environment_id=2, status="FAILED", commit_sha="b" * 40, branch=None,
             trigger="up", release_dir=None, log_path=None, error="preDeployCommand exited 3", config_json=None,
             variables_json=None, created_at=T1, finished_at=None, work="build", attempts=0, retry_at=None, actor=None,
             tests_status="skipped", tests_detail=None, tests_at=None),
    ],
    "replicas": [
        dict(id=1, deployment_id=DEP_OK, environment_id=1, slot=0, pid=4242, start_time=987654, port=40001,
             log_path="/srv/logs/web.0.log", state="RUNNING", restarts=2, started_at=T0, restart_after=1714557600.5,
             last_exit="exited (code -9); restart 2/10 in 2s", health_failures=0, health_checked_at=1714557601.25,
             health_detail="GET /health: timed out after 2s", host="127.0.0.1", service="web"),
        dict(id=2, deployment_id=DEP_OK, environment_id=1, slot=1, pid=4243, start_time=987655, port=40002,
             log_path="/srv/logs/web.1.log", state="STARTING", restarts=0, started_at=T1, restart_after=None,
             last_exit=None, health_failures=0, health_checked_at=None, health_detail=None, host="127.0.0.1", service="web"),
    ],
    "events": [
        dict(id=1, at=T0, project="yoto", environment="production", deployment_id=DEP_OK, kind="deploy.succeeded",
             actor="system", message="aaaaaaaaaaaa is live", actor_id=None),
        dict(id=2, at=T1, project="yoto", environment=None, deployment_id=None, kind="project.created", actor="cli",
             message="project yoto created — “quoted” ✓", actor_id=2),
    ],
    "services": [
        dict(id=1, environment_id=1, kind="postgres", name="Postgres", source="spec", location="dedicated",
             connection="gAAAAB-conn", settings='{"memory_mb": 2048, "dedicated": true}', seeded=True, created_at=T0),
        dict(id=2, environment_id=2, kind="redis", name="Redis", source="plugin", location="/srv/redis/yoto/staging",
             connection=None, settings=None, seeded=False, created_at=T1),
    ],
    "variables": [
        dict(id=1, environment_id=1, key="LOG_LEVEL", value="warning", secret=False, updated_at=T0),
        dict(id=2, environment_id=1, key="API_TOKEN", value="gAAAAB-secret", secret=True, updated_at=T1),
    ],
    "backups": [
        dict(id=BACKUP, project="yoto", environment="production", kind="final", path="/srv/backups/p.dump",
             sha256="c" * 64, size=123456789, created_at=T0),
    ],
    "webhook_deliveries": [
        dict(id="delivery-1", event="push", project="yoto", state="pending", payload='{"ref": "refs/heads/main"}',
             note=None, received_at=T0),
        dict(id="delivery-2", event="pull_request", project=None, state="done", payload=None, note="nothing to close",
             received_at=T1),
    ],
    "previews": [
        dict(id=1, project_id=1, environment="pr-7", kind="pr", number=7, branch="feature/x", head_sha="d" * 40,
             base_sha="a" * 40, head_repo="stranger/yoto", fork=True, bot=False, draft=False, author="octocat",
             open=True, approved_sha="d" * 40, decision="waiting", reason="waiting for a free slot",
             last_activity_at=T1, created_at=T0, unwatched_sha=None),
        dict(id=2, project_id=1, environment="feature-y", kind="branch", number=None, branch="feature/y",
             head_sha="e" * 40, base_sha=None, head_repo=None, fork=False, bot=True, draft=True, author=None,
             open=False, approved_sha=None, decision=None, reason=None, last_activity_at=T0, created_at=T0,
             unwatched_sha="e" * 40),
    ],
    "promotions": [
        dict(id=PROMOTION, project="yoto", source="staging", target="production", source_deployment_id=DEP_FAILED,
             commit_sha="b" * 40, previous_deployment_id=DEP_OK, target_deployment_id=None, rollback_deployment_id=None,
             state="PENDING_APPROVAL", requested_by="dana", plan_json='{"gates": []}', error=None, created_at=T0,
             finished_at=None, requested_by_id=None, confirmed_by="dana", confirmed_at=T1, start_after=T1),
    ],
    "approvals": [
        dict(id=1, promotion_id=PROMOTION, approver="alice", at=T1, user_id=2),
    ],
    "database_templates": [
        dict(id=1, project_id=1, key="f" * 64, database="bytpl_ffffffffffffffff_yoto", location="shared",
             source_environment="pr-7", created_at=T0, last_used_at=T1),
    ],
    "domains": [
        dict(id=1, environment_id=1, host="www.example.com", source="cli", cert_state="issued", cert_not_after=T1,
             cert_error=None, cert_checked_at=T1, created_at=T0),
        dict(id=2, environment_id=2, host="staging.example.com", source="spec", cert_state="failed",
             cert_not_after=None, cert_error="acme: urn:ietf:params:acme:error:rejectedIdentifier", cert_checked_at=T0,
             created_at=T1),
    ],
    "users": [
        dict(id=1, name="admin", role="admin", created_by="system", created_at=T0, removed_at=None),
        dict(id=2, name="alice", role="member", created_by="admin", created_at=T1, removed_at=T1),
    ],
    "api_tokens": [
        dict(id="0a1b2c3d", user_id=1, name="bootstrap", token_hash="9" * 64, created_at=T0, expires_at=None,
             revoked_at=None, last_used_at=T1),
        dict(id="4e5f6a7b", user_id=2, name="laptop", token_hash="8" * 64, created_at=T1, expires_at=T1,
             revoked_at=T1, last_used_at=None),
    ],
    "alerts": [
        dict(id=1, environment_id=1, rule="down", state="firing", since=1714557600.5, fired_at=1714557660.5,
             clear_since=None, resolved_at=None, value=1.0, threshold=None),
        dict(id=2, environment_id=1, rule="http_5xx_rate", state="resolved", since=1714557600.0, fired_at=1714557900.0,
             clear_since=1714558000.0, resolved_at=1714558000.0, value=0.01, threshold=0.05),
    ],
    "uptime_checks": [
        dict(id=1, environment_id=1, at=1714557600.5, ok=True, status=200, error=None, duration_ms=3.25),
        dict(id=2, environment_id=1, at=1714557630.5, ok=False, status=None, error="timed out after 5s", duration_ms=5000.0),
    ],
    "environment_usage": [
        dict(environment_id=1, counted_until=1714557600.5, running=True, memory_gb=2.5, vcpu=2.0,
             storage_gb=10.0, running_seconds=3600.0,
             memory_gb_seconds=7200.0, vcpu_seconds=3600.0, storage_gb_seconds=36000.0),
    ],
    "cron_runs": [
        dict(id=1, environment_id=1, deployment_id=DEP_OK, scheduled_for=1714557600.0, started_at=1714557600.2,
             finished_at=1714557601.0, exit_code=0, status="succeeded", detail=None, log_path="/logs/cron.1.log",
             log_lines=2, log_tail='["done", "bye"]', pid=4242, start_time=123456),
        dict(id=2, environment_id=1, deployment_id=DEP_OK, scheduled_for=1714557660.0, started_at=None,
             finished_at=None, exit_code=None, status="skipped", detail="the previous run is still running",
             log_path=None, log_lines=None, log_tail=None, pid=None, start_time=None),
    ],
}


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", db._MIGRATIONS)
    return cfg


REVISIONS = sorted(rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions())
HEAD = ScriptDirectory.from_config(_config()).get_current_head()


def _engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(engine, "connect", db._sqlite_pragmas)  # as the Store connects: foreign keys on
    return engine


def migrate_to(path: Path, revision: str) -> None:
    """A database at `revision`, made the way a control plane of that version made it."""
    engine = _engine(path)
    cfg = _config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    engine.dispose()


def expected_at(revision: str) -> dict[str, list[dict]]:
    """The rows valid for the schema at `revision`: its tables, without the columns added after it."""
    return {
        table: [{k: v for k, v in row.items() if COLUMN_SINCE.get((table, k), "0000") <= revision} for row in rows]
        for table, rows in ROWS.items()
        if TABLE_SINCE[table] <= revision
    }


def read_all(path: Path) -> dict[str, list[dict]]:
    engine = _engine(path)
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        found = {name: [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
                 for name, t in meta.tables.items() if name != "alembic_version"}
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    return found | {"alembic_version": version}


# What Alembic's autogenerate finds between the models and the migrated schema, on a new database too: the migrations
# create three indexes the models do not declare, and `Mapped[float]` is a Double where 0003 said Float (the same
# REAL in SQLite). Anything else — a column a model has and no migration adds — is a missing migration.
KNOWN_DRIFT = {
    ("remove_index", "backups", "ix_backups_env"),
    ("remove_index", "deployments", "ix_deployments_env"),
    ("remove_index", "promotions", "ix_promotions_project"),
    ("modify_type", "replicas", "restart_after"),
    ("modify_type", "deployments", "retry_at"),
}


def schema_drift(conn: sa.Connection) -> set[tuple[str, str, str]]:
    found = set()
    for diff in compare_metadata(MigrationContext.configure(conn), m.Base.metadata):
        for op in diff if isinstance(diff, list) else [diff]:
            if op[0].endswith("_index"):
                found.add((op[0], op[1].table.name, op[1].name))
            elif op[0].startswith("modify_"):
                found.add((op[0], op[2], op[3]))
            else:  # add/remove table or column
                found.add((op[0], str(op[-1] if op[0].endswith("_table") else op[2]), repr(op)))
    return found


def test_a_new_database_has_only_the_known_drift(tmp_path: Path) -> None:
    store = db.Store(tmp_path / "state.db")
    try:
        with store.engine.connect() as conn:
            assert schema_drift(conn) == KNOWN_DRIFT
    finally:
        store.close()


def test_the_fixture_covers_every_table_and_column_of_the_head_schema() -> None:
    """A new migration must come with rows here: the revisions and the models agree with TABLE_SINCE/ROWS."""
    assert REVISIONS == [f"{i:04d}" for i in range(1, 23)] and HEAD == REVISIONS[-1]
    assert set(TABLE_SINCE) == set(ROWS) == set(m.Base.metadata.tables)
    for name, table in m.Base.metadata.tables.items():
        assert {tuple(sorted(row)) for row in ROWS[name]} == {tuple(sorted(c.name for c in table.columns))}, name


@pytest.mark.parametrize("revision", REVISIONS)
def test_rows_survive_the_upgrade_to_head(tmp_path: Path, revision: str) -> None:
    path = tmp_path / "state.db"
    migrate_to(path, revision)
    rows = expected_at(revision)
    engine = _engine(path)
    meta = sa.MetaData()
    meta.reflect(engine)
    # the rows fit the schema at `revision` exactly: every column it has, none it does not have yet
    assert set(meta.tables) - {"alembic_version"} == set(rows)
    with engine.begin() as conn:
        for table, table_rows in rows.items():
            assert {c.name for c in meta.tables[table].columns} == set(table_rows[0]), table
            conn.execute(meta.tables[table].insert(), table_rows)
    engine.dispose()

    store = db.Store(path)  # what a new control plane does at start: upgrade to head
    try:
        after = read_all(path)
        assert after.pop("alembic_version") == [HEAD]
        head = expected_at(HEAD)
        assert set(after) == set(head)
        for table, head_rows in head.items():
            # rows of tables that existed keep every value; columns added since hold their default (NULL) or
            # the value their upgrade computes; tables created since are empty
            want = [{k: row[k] if k in row else head_row[k] if (table, k) in COMPUTED_ON_UPGRADE else None
                     for k in head_row} for row, head_row in zip(rows[table], head_rows)] if table in rows else []
            assert after[table] == want, table

        with store.engine.connect() as conn:  # the upgraded schema is the one the models describe
            assert schema_drift(conn) == KNOWN_DRIFT

        with store.session() as s:  # and the ORM reads the old rows and writes new ones
            project = store.project(s, "yoto")
            assert (project.repo_path, project.created_at) == ("/srv/branchyard/repos/yoto.git", T0)
            env = store.environment(s, project, "production")
            assert (env.production, env.current_deployment_id) == (True, DEP_OK)
            dep = store.deployment(s, DEP_OK[:8], env)
            assert (dep.status, dep.finished_at, dep.variables_json) == ("SUCCESS", T1, "gAAAAB-snapshot")
            project.domain = "new.example.test"
            store.record(s, "yoto", "store.upgraded", f"from {revision}")
            s.add(m.Preview(project_id=project.id, environment="pr-99", kind="pr", number=99, head_sha="9" * 40))
        with store.session() as s:
            assert s.scalar(sa.select(m.Project.domain).where(m.Project.name == "yoto")) == "new.example.test"
            assert s.scalar(sa.select(m.Event.message).where(m.Event.kind == "store.upgraded")) == f"from {revision}"
            assert s.scalar(sa.select(m.Preview.decision).where(m.Preview.environment == "pr-99")) is None
    finally:
        store.close()
