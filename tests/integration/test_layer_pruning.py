"""Deployer.prune_layers against a real store and real release directories: a layer goes once no kept release's
marker names it and no deployment in progress is making it (the deletion rule:
tests/unit/test_release_layers.py; a name of its own, as pytest imports test modules by basename)."""

from __future__ import annotations

import shutil
from typing import Any, cast

from conftest import new_home

from branchyard import settings as settings_mod
from branchyard.build import release
from branchyard.controller.deployer import Deployer
from branchyard.store import models as m
from branchyard.store.db import Store


def test_prune_layers_keeps_what_releases_use_and_builds_make() -> None:
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home)})
    store = Store(settings.state_db)
    none = cast(Any, None)  # prune_layers reads the settings and the store only
    deployer = Deployer(settings, store, data=none, replicas=none, backups=none, routes=none, guards=none,
                        locks=none, runtime=none, tasks=none)
    layers = settings.cache_dir / "layers"
    try:
        with store.session() as s:
            p = m.Project(name="app", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            env = m.Environment(project_id=p.id, name="production", production=True)
            s.add(env)
            s.flush()

            def deployment(dep_id: str, status: str, *, marker_venv: str | None) -> None:
                release_dir = settings.releases_dir / "app" / dep_id
                release_dir.mkdir(parents=True)
                if marker_venv is not None:
                    release.mark_release_complete(release_dir, {"deployment": dep_id, "venv": marker_venv})
                s.add(m.Deployment(id=dep_id, project_id=p.id, environment_id=env.id, status=status, commit_sha="c0ffee",
                                   trigger="push", release_dir=str(release_dir)))
                (layers / dep_id / "bin").mkdir(parents=True)

            deployment("serving", m.SUCCESS, marker_venv=str(layers / "serving"))
            deployment("building", m.BUILDING, marker_venv=None)  # its marker comes after the build
            deployment("failed", m.FAILED, marker_venv=None)
            deployment("promoted", m.SUCCESS, marker_venv=str(layers / "source"))  # a copy naming its source's layer
            (layers / "source" / "bin").mkdir(parents=True)
            (layers / "pruned" / "bin").mkdir(parents=True)  # its release was pruned: no marker names it
        removed = deployer.prune_layers()
        assert sorted(p.name for p in removed) == ["failed", "promoted", "pruned"]
        assert sorted(p.name for p in layers.iterdir()) == ["building", "serving", "source"]
    finally:
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def test_prune_virtualenvs_keeps_what_releases_name_and_waits_for_builds() -> None:
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home)})
    store = Store(settings.state_db)
    none = cast(Any, None)  # prune_virtualenvs reads the settings and the store only
    deployer = Deployer(settings, store, data=none, replicas=none, backups=none, routes=none, guards=none,
                        locks=none, runtime=none, tasks=none)
    venvs = settings.cache_dir / "venvs"
    for name in ("layered", "plain", "old", "older"):
        (venvs / name / "bin").mkdir(parents=True)
    try:
        with store.session() as s:
            p = m.Project(name="app", repo_path="/nonexistent")
            s.add(p)
            s.flush()
            env = m.Environment(project_id=p.id, name="production", production=True)
            s.add(env)
            s.flush()

            def deployment(dep_id: str, status: str, marker: dict[str, str] | None) -> None:
                release_dir = settings.releases_dir / "app" / dep_id
                release_dir.mkdir(parents=True)
                if marker is not None:
                    release.mark_release_complete(release_dir, {"deployment": dep_id, **marker})
                s.add(m.Deployment(id=dep_id, project_id=p.id, environment_id=env.id, status=status,
                                   commit_sha="c0ffee", trigger="push", release_dir=str(release_dir)))

            # A release with its own layer names the shared virtualenv as `dependencies`; one without, as `venv`.
            deployment("d1", m.SUCCESS, {"venv": str(settings.cache_dir / "layers" / "d1"),
                                         "dependencies": str(venvs / "layered")})
            deployment("d2", m.SUCCESS, {"venv": str(venvs / "plain")})
            deployment("d3", m.BUILDING, None)
        assert deployer.prune_virtualenvs() == []  # a build in progress: nothing this time
        assert sorted(p.name for p in venvs.iterdir()) == ["layered", "old", "older", "plain"]
        with store.session() as s:
            s.get(m.Deployment, "d3").status = m.FAILED
        removed = deployer.prune_virtualenvs()
        assert sorted(p.name for p in removed) == ["old", "older"]
        assert sorted(p.name for p in venvs.iterdir() if p.is_dir()) == ["layered", "plain"]
    finally:
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)
