"""Scheduled backups: daily when the spec says so, kept 6 days (Railway's retention), on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
from types import SimpleNamespace

import pytest
from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.backends.local.data import LocalDataServers
from branchyard.controller.backups import Backups
from branchyard.controller.dataplane import DataPlane
from branchyard.store import models as m
from branchyard.store.db import Store


@pytest.fixture
def data():
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home)})
    store = Store(settings.state_db)
    plane = DataPlane(settings, store, LocalDataServers(settings))
    try:
        yield store, plane, home
    finally:
        plane.stop_all()
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def test_daily_backups_are_taken_once_a_day_and_kept_six_days(data):
    store, plane, home = data
    with store.session() as s:
        p = m.Project(name="sched", repo_path="/nonexistent")
        s.add(p)
        s.flush()
        s.add(m.Environment(project_id=p.id, name="production", production=True))
    cfg = SimpleNamespace(postgres=SimpleNamespace(name="Postgres", memory_mb=None, dedicated=False, backups="daily",
                                                   persistence=None), redis=None)
    plane.provision("sched", "production", cfg)
    backups = Backups(store, plane, home / "backups")
    t0 = dt.datetime(2026, 11, 1, 3, 0)

    backups.scheduled(t0)
    backups.scheduled(t0 + dt.timedelta(hours=23))  # not yet a day
    assert [b["kind"] for b in backups.list("sched", "production")] == ["scheduled"]

    with store.session() as s:  # pretend the first one was taken at t0
        for b in s.query(m.Backup):
            b.created_at = t0
    backups.scheduled(t0 + dt.timedelta(days=1))
    assert len(backups.list("sched", "production")) == 2

    with store.session() as s:
        newest = max(s.query(m.Backup), key=lambda b: b.created_at)
        newest.created_at = t0 + dt.timedelta(days=1)
    first_path = home / "backups" / "sched" / "production"
    assert len(list(first_path.glob("*.dump"))) == 2
    backups.scheduled(t0 + dt.timedelta(days=6, hours=12))  # the t0 backup is now older than 6 days, the next is not
    kept = backups.list("sched", "production")
    assert len(kept) == 2 and all(b["created_at"] != t0.isoformat() + "Z" for b in kept)
    assert len(list(first_path.glob("*.dump"))) == 2  # the pruned file is gone, a new one was taken
