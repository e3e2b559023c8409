"""Deployer.prune_layers and prune_virtualenvs against a real store and real release directories: a layer goes once
no kept release's marker names it and no deployment in progress is making it; a shared virtualenv once no kept
release names it, and only while no build runs (the deletion rules: tests/unit/test_release_layers.py; a name of its
own, as pytest imports test modules by basename)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any, cast

import pytest
from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.build import release
from branchyard.controller.deployer import Deployer
from branchyard.store import models as m
from branchyard.store.db import Store


@pytest.fixture
def plane() -> Iterator[tuple[settings_mod.Settings, Store, Deployer, m.Project, m.Environment]]:
    """Settings, a store holding project `app` with its production environment, and a Deployer over them (the pruning
    reads only the settings and the store)."""
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home)})
    store = Store(settings.state_db)
    none = cast(Any, None)
    deployer = Deployer(settings, store, data=none, replicas=none, backups=none, routes=none, guards=none,
                        locks=none, runtime=none, tasks=none)
    try:
        with store.session() as s:
            p = m.Project(name="app", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            env = m.Environment(project_id=p.id, name="production", production=True)
            s.add(env)
            s.flush()
            s.expunge_all()
        yield settings, store, deployer, p, env
    finally:
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def add_deployment(plane, dep_id: str, status: str, marker: dict[str, str] | None) -> None:
    """A deployment of production with its release directory, and that release's marker when `marker` is given."""
    settings, store, _, p, env = plane
    release_dir = settings.releases_dir / "app" / dep_id
    release_dir.mkdir(parents=True)
    if marker is not None:
        release.mark_release_complete(release_dir, {"deployment": dep_id, **marker})
    with store.session() as s:
        s.add(m.Deployment(id=dep_id, project_id=p.id, environment_id=env.id, status=status, commit_sha="c0ffee",
                           trigger="push", release_dir=str(release_dir)))


def test_prune_layers_keeps_what_releases_use_and_builds_make(plane) -> None:
    settings, _, deployer, _, _ = plane
    layers = settings.cache_dir / "layers"
    for dep_id, status, venv in (("serving", m.SUCCESS, "serving"),
                                 ("building", m.BUILDING, None),  # its marker comes after the build
                                 ("failed", m.FAILED, None),
                                 ("promoted", m.SUCCESS, "source")):  # a copy naming its source's layer
        add_deployment(plane, dep_id, status, None if venv is None else {"venv": str(layers / venv)})
        (layers / dep_id / "bin").mkdir(parents=True)
    (layers / "source" / "bin").mkdir(parents=True)
    (layers / "pruned" / "bin").mkdir(parents=True)  # its release was pruned: no marker names it
    removed = deployer.prune_layers()
    assert sorted(p.name for p in removed) == ["failed", "promoted", "pruned"]
    assert sorted(p.name for p in layers.iterdir()) == ["building", "serving", "source"]


def test_prune_virtualenvs_keeps_what_releases_name_and_waits_for_builds(plane) -> None:
    settings, store, deployer, _, _ = plane
    venvs = settings.cache_dir / "venvs"
    for name in ("layered", "plain", "old", "older"):
        (venvs / name / "bin").mkdir(parents=True)
    # A release with its own layer names the shared virtualenv as `dependencies`; one without, as `venv`.
    add_deployment(plane, "d1", m.SUCCESS, {"venv": str(settings.cache_dir / "layers" / "d1"),
                                            "dependencies": str(venvs / "layered")})
    add_deployment(plane, "d2", m.SUCCESS, {"venv": str(venvs / "plain")})
    add_deployment(plane, "d3", m.BUILDING, None)
    assert deployer.prune_virtualenvs() == []  # a build in progress: nothing this time
    assert sorted(p.name for p in venvs.iterdir()) == ["layered", "old", "older", "plain"]
    with store.session() as s:
        s.get(m.Deployment, "d3").status = m.FAILED
    removed = deployer.prune_virtualenvs()
    assert sorted(p.name for p in removed) == ["old", "older"]
    assert sorted(p.name for p in venvs.iterdir() if p.is_dir()) == ["layered", "plain"]
