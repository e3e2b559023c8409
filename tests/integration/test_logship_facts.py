"""What the log shipper asks the store (EnvFacts, a real SQLite store): retention by tier, and which deployments
will never write a log line again."""

from __future__ import annotations

import shutil

import pytest
from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.controller.logship import EnvFacts
from branchyard.errors import NotFound
from branchyard.store import models as m
from branchyard.store.db import Store

pytestmark = pytest.mark.integration


@pytest.fixture
def store():
    home = new_home()
    st = Store(settings_mod.load({"BRANCHYARD_HOME": str(home)}).state_db)
    try:
        yield st
    finally:
        st.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def test_retention_by_tier_and_finished_deployments(store):
    with store.session() as s:
        p = m.Project(name="shop", repo_path="/nonexistent")
        s.add(p)
        s.flush()
        prod = m.Environment(project_id=p.id, name="production", production=True)
        staging = m.Environment(project_id=p.id, name="staging")
        preview = m.Environment(project_id=p.id, name="pr-7", ephemeral=True)
        s.add_all([prod, staging, preview])
        s.flush()

        def dep(id_: str, status: str) -> None:
            s.add(m.Deployment(id=id_, project_id=p.id, environment_id=staging.id, status=status, commit_sha="c",
                               trigger="push"))

        for id_, status in (("removed", m.REMOVED), ("failed", m.FAILED), ("crashed", m.CRASHED),
                            ("skipped", m.SKIPPED), ("success", m.SUCCESS), ("building", m.BUILDING),
                            ("standby", m.REMOVED), ("target", m.FAILED)):
            dep(id_, status)
        s.flush()
        staging.current_deployment_id, staging.target_deployment_id = "success", "target"
        s.add(m.Replica(deployment_id="standby", environment_id=staging.id, slot=0, pid=1, start_time=1, port=1,
                        log_path="/x", state=m.REPLICA_STANDBY))
        s.add(m.Replica(deployment_id="removed", environment_id=staging.id, slot=0, pid=2, start_time=1, port=2,
                        log_path="/y", state=m.REPLICA_STOPPED))
    facts = EnvFacts(store, data=None)  # type: ignore[arg-type]  # the redactor is not asked here
    assert [facts.retention("shop", e) for e in ("production", "staging", "pr-7")] == [14 * 86400.0, 7 * 86400.0, None]
    assert facts.finished("shop", "staging") == {"removed", "failed", "crashed", "skipped"}
    with pytest.raises(NotFound):
        facts.retention("shop", "gone")
