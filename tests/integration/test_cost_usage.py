"""Measured cost (controller/costs.py) over a real store, time driven by an injected clock: it grows while the
environment runs, not while it sleeps (`down` counted to the second through its event), a control plane restart
in between loses nothing, and `report` prices the example app's snapshots like the hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from branchyard import cost
from branchyard.controller.costs import Costs
from branchyard.spec import load_project
from branchyard.store import models as m
from branchyard.store.db import Store

APP = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
T0 = 1_800_000_000.0
HOUR = 3600.0
# production's allocation (examples/yoto-smart-stream/branchyard.toml): RAM 2 × 1 GB (web) + 2 GB (postgres) +
# 0.5 GB (redis) = 4.5 GB; vCPU 2 × 1 = 2; volume 10 GB. One hour of it, at $10 / $20 / $0.15 a 730-hour month:
PRODUCTION_HOUR = (4.5 * 10 + 2 * 20 + 10 * 0.15) / 730


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    spec = load_project(APP)
    with store.session() as s:
        p = m.Project(name="yoto", repo_path="/r")
        s.add(p)
        s.flush()
        for name in ("production", "staging", "pr-7"):
            env = m.Environment(project_id=p.id, name=name, production=name == "production", ephemeral=name == "pr-7")
            s.add(env)
            s.flush()
            d = m.Deployment(project_id=p.id, environment_id=env.id, status=m.SUCCESS, commit_sha="a" * 40,
                             trigger="push", config_json=json.dumps(spec.environment(name).to_dict()))
            s.add(d)
            s.flush()
            env.current_deployment_id = env.target_deployment_id = d.id
    clock = Clock()
    costs = Costs(store, cost.Prices(), clock=clock)
    store.listeners.append(costs.notify)
    try:
        yield store, costs, clock
    finally:
        store.close()


def measured(costs: Costs, env: str) -> dict:
    return costs.report("yoto", env)["environments"][0]["measured"]


def down(store: Store, env_name: str) -> None:
    """What `Environments.down` writes (state, the deployment's status, the event)."""
    with store.session() as s:
        env = store.environment(s, store.project(s, "yoto"), env_name)
        env.state = m.ENV_SLEEPING
        s.get(m.Deployment, env.current_deployment_id).status = m.SLEEPING
        store.record(s, "yoto", "environment.down", f"{env_name} stopped (sleeping)", environment=env_name)


def wake(store: Store, env_name: str) -> None:
    """What a wake's deployment going live writes (the same release again: SUCCESS, ACTIVE, deploy.succeeded)."""
    with store.session() as s:
        env = store.environment(s, store.project(s, "yoto"), env_name)
        env.state = m.ENV_ACTIVE
        s.get(m.Deployment, env.current_deployment_id).status = m.SUCCESS
        store.record(s, "yoto", "deploy.succeeded", f"{env_name} is live", environment=env_name,
                     deployment_id=env.current_deployment_id)


def test_measured_cost_grows_while_running_and_not_while_sleeping(world) -> None:
    store, costs, clock = world
    costs.tick()  # the first tick starts counting
    assert measured(costs, "production")["total"] == 0

    clock.now = T0 + HOUR  # read between ticks: the hour so far is counted
    assert measured(costs, "production")["total"] == pytest.approx(PRODUCTION_HOUR)
    costs.tick()
    assert measured(costs, "production")["running_seconds"] == pytest.approx(HOUR)

    clock.now = T0 + 1.5 * HOUR  # `down` half an hour after that tick: counted to the second by its event
    down(store, "production")
    at_down = measured(costs, "production")
    assert at_down["total"] == pytest.approx(1.5 * PRODUCTION_HOUR)
    assert at_down["counted_until"] == T0 + 1.5 * HOUR

    clock.now = T0 + 5 * HOUR  # asleep: ticks and reads add nothing
    costs.tick()
    asleep = measured(costs, "production")
    assert asleep["counted_until"] == T0 + 5 * HOUR  # the tick ran …
    assert asleep["total"] == at_down["total"] and asleep["running_seconds"] == pytest.approx(1.5 * HOUR)  # … at no cost

    clock.now = T0 + 6 * HOUR  # `up`: running again from its deployment's switch
    wake(store, "production")
    clock.now = T0 + 7 * HOUR
    costs.tick()
    assert measured(costs, "production")["running_seconds"] == pytest.approx(2.5 * HOUR)
    assert measured(costs, "production")["total"] == pytest.approx(2.5 * PRODUCTION_HOUR)
    # staging ran all along: 7 hours of 1.75 GB of RAM (web 0.5, postgres 1, redis 0.25), 0.5 vCPU, 5 GB of volume
    staging_hour = (1.75 * 10 + 0.5 * 20 + 5 * 0.15) / 730
    assert measured(costs, "staging")["total"] == pytest.approx(7 * staging_hour)


def test_a_control_plane_restart_loses_nothing_of_an_environment_that_ran_through_it(world) -> None:
    store, costs, clock = world
    costs.tick()
    clock.now = T0 + 600
    costs.tick()
    # the control plane is down for two hours; the app's processes kept running (they outlive it)
    clock.now = T0 + 600 + 2 * HOUR
    restarted = Costs(store, cost.Prices(), clock=clock)
    restarted.tick()
    assert measured(restarted, "production")["running_seconds"] == pytest.approx(600 + 2 * HOUR)


def test_a_stop_between_two_ticks_without_its_event_is_not_counted(world) -> None:
    store, costs, clock = world
    costs.tick()
    store.listeners.remove(costs.notify)  # the event is lost (a crash right after the commit)
    clock.now = T0 + 1800
    down(store, "staging")
    clock.now = T0 + 3600
    costs.tick()
    assert measured(costs, "staging")["running_seconds"] == 0  # conservative: at most one tick's worth is lost
    assert measured(costs, "production")["running_seconds"] == pytest.approx(3600)


def test_the_report_prices_each_tier_like_the_hand_computation(world) -> None:
    _store, costs, _clock = world
    report = costs.report("yoto")
    assert report["currency"] == "USD" and report["hours_per_month"] == 730
    assert report["prices"] == {"memory_gb_month": 10.0, "vcpu_month": 20.0, "storage_gb_month": 0.15, "egress_gb": 0.05}
    totals = {e["environment"]: e["monthly"]["total"] for e in report["environments"]}
    assert totals == {"production": pytest.approx(86.5), "staging": pytest.approx(28.25), "pr-7": pytest.approx(20.15)}
    prod = report["environments"][0]
    assert prod["allocation"] == "web 2×1 GB/1 vCPU · postgres 2 GB/10 GB · redis 512 MB"
    assert prod["state"] == "RUNNING" and prod["preview"] is False
    assert costs.monthly_totals("yoto")["pr-7"] == pytest.approx(20.15)
    assert costs.monthly_totals("nope") == {}
