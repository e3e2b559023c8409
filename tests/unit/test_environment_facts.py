"""`_Facts.load`: what the environments list reads about all of a project's environments at once (issue 18's board
lists 50 previews and more), checked against the one-environment-at-a-time reads it replaced."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from branchyard.controller.environments import _Facts
from branchyard.store import models as m
from branchyard.store.db import Store

T0 = dt.datetime(2026, 12, 1, 12, 0, 0)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def deployment(s, env: m.Environment, minutes: int, status: str = m.SUCCESS) -> m.Deployment:
    d = m.Deployment(project_id=env.project_id, environment_id=env.id, status=status, commit_sha=f"{minutes:040d}",
                     trigger="push", created_at=T0 + dt.timedelta(minutes=minutes))
    s.add(d)
    s.flush()
    return d


def replica(s, d: m.Deployment, slot: int, state: str) -> m.Replica:
    r = m.Replica(deployment_id=d.id, environment_id=d.environment_id, slot=slot, pid=1000 + slot, start_time=1,
                  port=5000 + slot, log_path="/dev/null", state=state)
    s.add(r)
    s.flush()
    return r


def one_at_a_time(s, env: m.Environment) -> tuple:
    """The reads `_env_dict` made per environment before `_Facts` (the reference)."""
    latest = s.scalar(select(m.Deployment).where(m.Deployment.environment_id == env.id)
                      .order_by(m.Deployment.created_at.desc()))
    current = [r.id for r in s.scalars(select(m.Replica).where(m.Replica.deployment_id == env.current_deployment_id,
                                                                  m.Replica.state != m.REPLICA_STOPPED)
                                       .order_by(m.Replica.slot))] if env.current_deployment_id else []
    standby = [r.id for r in s.scalars(select(m.Replica).where(m.Replica.environment_id == env.id,
                                                                  m.Replica.state == m.REPLICA_STANDBY).order_by(m.Replica.slot))]
    domains = list(s.scalars(select(m.Domain.host).where(m.Domain.environment_id == env.id).order_by(m.Domain.host)))
    return latest.id if latest else None, current, standby, domains


def from_facts(facts: _Facts, env: m.Environment) -> tuple:
    latest = facts.latest.get(env.id)
    rows = facts.replicas.get(env.id, [])
    current = [r.id for r in rows if r.deployment_id == env.current_deployment_id]
    standby = [r.id for r in rows if r.state == m.REPLICA_STANDBY]
    return latest.id if latest else None, current, standby, facts.domains.get(env.id, [])


def test_facts_of_all_environments_equal_the_reads_one_at_a_time(store: Store) -> None:
    with store.session() as s:
        p = m.Project(name="shop", repo_path="/x")
        s.add(p)
        s.flush()
        prod, staging, fresh, pr = (m.Environment(project_id=p.id, name=n, ephemeral=n == "pr-7") for n in
                                    ("production", "staging", "fresh", "pr-7"))
        s.add_all([prod, staging, fresh, pr])
        s.flush()
        # production: an old deployment kept warm (standby), the current one (2 replicas, one stopped earlier), and a
        # newer one still building (the target): the newest is the target, not the current
        old = deployment(s, prod, 1, m.REMOVED)
        cur = deployment(s, prod, 2)
        building = deployment(s, prod, 3, m.BUILDING)
        prod.current_deployment_id, prod.target_deployment_id = cur.id, building.id
        replica(s, old, 0, m.REPLICA_STANDBY)
        replica(s, cur, 1, m.REPLICA_RUNNING)
        replica(s, cur, 0, m.REPLICA_RUNNING)
        replica(s, cur, 2, m.REPLICA_STOPPED)
        s.add_all([m.Domain(environment_id=prod.id, host=h, source="cli") for h in ("www.shop.test", "shop.test")])
        # staging: one deployment, one replica starting; pr-7: current, nothing else
        st = deployment(s, staging, 5)
        staging.current_deployment_id = st.id
        replica(s, st, 0, m.REPLICA_STARTING)
        pr.current_deployment_id = deployment(s, pr, 4).id
        s.flush()
        envs = [prod, staging, fresh, pr]

        facts = _Facts.load(s, envs)
        for env in envs:
            assert from_facts(facts, env) == one_at_a_time(s, env), env.name
        assert from_facts(facts, prod) == (building.id, [r.id for r in cur_replicas(s, cur)], [1], ["shop.test", "www.shop.test"])
        assert facts.deployments.keys() == {cur.id, building.id, st.id, pr.current_deployment_id}
        assert from_facts(facts, fresh) == (None, [], [], [])  # no deployment yet
        assert _Facts.load(s, []).latest == {}


def cur_replicas(s, d: m.Deployment) -> list[m.Replica]:
    return list(s.scalars(select(m.Replica).where(m.Replica.deployment_id == d.id, m.Replica.state != m.REPLICA_STOPPED)
                          .order_by(m.Replica.slot)))
