"""Daily backups on a cluster backend (issue 19): the environment's own CronJob dumps and uploads them
(`Backups.receive`); the control plane never takes one itself there (it has no route to the database from every
place it may run), and prunes the uploaded ones after six days as it does its own."""

from __future__ import annotations

import datetime as dt
import shutil
from types import SimpleNamespace

import pytest
from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.backends.kubernetes.data import ClusterDataServers
from branchyard.controller.backups import Backups
from branchyard.controller.dataplane import DataPlane
from branchyard.store import models as m
from branchyard.store.db import Store


@pytest.fixture()
def world():
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home), "BRANCHYARD_BACKEND": "kubernetes"})
    store = Store(settings.state_db)
    plane = DataPlane(settings, store, ClusterDataServers(settings))
    with store.session() as s:
        p = m.Project(name="kube", repo_path="/nonexistent")
        s.add(p)
        s.flush()
        s.add(m.Environment(project_id=p.id, name="production", production=True))
    cfg = SimpleNamespace(postgres=SimpleNamespace(name="Postgres", memory_mb=None, dedicated=False, backups="daily",
                                                   persistence=None), redis=None)
    provisioned = plane.provision("kube", "production", cfg)
    try:
        yield store, plane, home, provisioned
    finally:
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def test_the_database_is_named_where_the_cluster_runs_it(world):
    _, _, _, provisioned = world
    pg = provisioned.namespaces["Postgres"]
    assert pg["PGHOST"] == "postgres.branchyard-kube-production" and pg["PGUSER"] == pg["PGDATABASE"] == "by_kube_production"
    assert len(pg["PGPASSWORD"]) >= 24 and provisioned.new_database


def test_uploaded_daily_backups_are_kept_six_days_and_none_is_taken_here(world):
    store, plane, home, _ = world
    backups = Backups(store, plane, home / "backups", cluster_takes_daily=True)
    t0 = dt.datetime(2026, 11, 1, 3, 0)
    backups.scheduled(t0)  # the CronJob's turn: nothing dumped by the control plane (it would raise: no dumps here)
    assert backups.list("kube", "production") == []
    done = backups.receive("kube", "production", [b"PGDMP", b"\x01rest of a dump"])
    assert done["kind"] == "scheduled" and done["size"] == len(b"PGDMP\x01rest of a dump")
    with store.session() as s:
        for b in s.query(m.Backup):
            b.created_at = t0
    backups.scheduled(t0 + dt.timedelta(days=6, hours=1))
    assert backups.list("kube", "production") == []
    assert not list((home / "backups" / "kube" / "production").glob("*.dump"))
