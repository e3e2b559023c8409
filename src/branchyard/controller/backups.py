"""Backups of environments' databases: on demand, scheduled (daily, kept 6 days as on Railway), before
production migrations, and a final one when production is deleted. Restores are checked against the
recorded sha256 and never cross environments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from .. import names
from ..access import SYSTEM, Actor
from ..data.dumps import sha256_of, write_dump
from ..errors import BadInput, NotFound
from ..names import database_name
from ..store import models as m
from ..store.db import Store
from .dataplane import DataPlane

DAILY_KEEP = dt.timedelta(days=6)
DAILY_EVERY = dt.timedelta(days=1)


class Backups:
    def __init__(self, store: Store, data: DataPlane, root: Path, *, cluster_takes_daily: bool = False) -> None:
        self.store = store
        self.data = data
        self.root = root
        # a cluster backend (Kubernetes): each environment's own CronJob dumps its database daily and uploads it
        # (`receive`); the control plane only prunes them
        self.cluster_takes_daily = cluster_takes_daily

    def create(self, project: str, env_name: str, *, kind: str = "manual", actor: Actor = SYSTEM) -> dict:
        """pg_dump the environment's database into BRANCHYARD_HOME/backups; record its sha256."""
        admin = self.data.admin_for(project, env_name)
        with self.store.session() as s:
            backup = m.Backup(project=project, environment=env_name, kind=kind, path="", sha256="", size=0)
            s.add(backup)
            s.flush()
            backup_id = backup.id
        path = names.safe_join(self.root, project, env_name, f"{backup_id}.dump")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            digest = admin.dump(database_name(project, env_name), path)
        except BaseException:
            with self.store.session() as s:
                s.delete(s.get(m.Backup, backup_id))
            raise
        with self.store.session() as s:
            backup = s.get(m.Backup, backup_id)
            backup.path, backup.sha256, backup.size = str(path), digest, path.stat().st_size
            self.store.record(s, project, "backup.created", f"{kind} backup {backup_id} ({backup.size} bytes)", environment=env_name,
                              actor=actor)
            return _backup_dict(backup)

    def receive(self, project: str, env_name: str, body: Iterable[bytes] | BinaryIO, *, kind: str = "scheduled",
                actor: Actor = SYSTEM) -> dict:
        """Record a dump made elsewhere (a Kubernetes environment's backup job uploads it): written as `create`
        writes its own, sha256 and size computed while writing, listed only once complete. BadInput for a body that
        is not a pg_dump custom-format file (restore would fail on it, days later); NotFound for an unknown
        environment. Whatever `body` raises (a size limit, a client gone) removes the row and the partial file."""
        with self.store.session() as s:
            self.store.environment(s, self.store.project(s, project), env_name)
            backup = m.Backup(project=project, environment=env_name, kind=kind, path="", sha256="", size=0)
            s.add(backup)
            s.flush()
            backup_id = backup.id
        path = names.safe_join(self.root, project, env_name, f"{backup_id}.dump")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest, size = write_dump(path, _chunks(body))
        except BaseException:
            path.unlink(missing_ok=True)
            with self.store.session() as s:
                s.delete(s.get(m.Backup, backup_id))
            raise
        with self.store.session() as s:
            backup = s.get(m.Backup, backup_id)
            backup.path, backup.sha256, backup.size = str(path), digest, size
            self.store.record(s, project, "backup.created", f"{kind} backup {backup_id} uploaded ({size} bytes)",
                              environment=env_name, actor=actor)
            return _backup_dict(backup)

    def list(self, project: str, env_name: str) -> list[dict]:
        with self.store.session() as s:
            rows = s.scalars(select(m.Backup).where(m.Backup.project == project, m.Backup.environment == env_name,
                                                    m.Backup.sha256 != "").order_by(m.Backup.created_at.desc()))
            return [_backup_dict(b) for b in rows]

    def restore(self, project: str, env_name: str, backup_id: str, *, actor: Actor = SYSTEM) -> dict:
        """Replace the environment's database with one of ITS OWN backups, after checking the file's sha256."""
        with self.store.session() as s:
            matches = s.scalars(select(m.Backup).where(m.Backup.project == project, m.Backup.id.startswith(backup_id))).all()
            if len(backup_id) < 6 or len(matches) != 1:
                raise NotFound(f"unknown backup {backup_id!r} in project {project!r}")
            backup = matches[0]
            if backup.environment != env_name:
                raise BadInput(
                    f"backup {backup.id} is of environment {backup.environment!r}, not {env_name!r}: restoring it would copy "
                    f"{backup.environment}'s data into {env_name}"
                    + (" — use `branchyard db refresh` to copy it sanitized" if backup.environment == "production" else "")
                )
            path, expected = Path(backup.path), backup.sha256
        if not path.exists() or sha256_of(path) != expected:
            raise BadInput(f"backup {backup_id}: the file {path} is missing or does not match its recorded sha256")
        name = database_name(project, env_name)
        self.data.admin_for(project, env_name).restore(path, name, name)
        with self.store.session() as s:
            self.store.record(s, project, "backup.restored", f"backup {backup.id} restored", environment=env_name, actor=actor)
        return _backup_dict(backup)

    def scheduled(self, now: dt.datetime) -> None:
        """Daily backups for environments whose spec says `backups = "daily"`; prune those past retention."""
        for project, env_name, settings in self.data.backed_up_environments():
            if settings.get("backups") != "daily":
                continue
            with self.store.session() as s:
                last = s.scalar(select(m.Backup.created_at).where(
                    m.Backup.project == project, m.Backup.environment == env_name, m.Backup.kind == "scheduled",
                    m.Backup.sha256 != "").order_by(m.Backup.created_at.desc()))
                old = s.scalars(select(m.Backup).where(
                    m.Backup.project == project, m.Backup.environment == env_name, m.Backup.kind == "scheduled",
                    m.Backup.created_at < now - DAILY_KEEP)).all()
                for b in old:
                    Path(b.path).unlink(missing_ok=True)
                    s.delete(b)
            if (last is None or now - last >= DAILY_EVERY) and not self.cluster_takes_daily:
                self.create(project, env_name, kind="scheduled")


def _chunks(body: Iterable[bytes] | BinaryIO) -> Iterable[bytes]:
    """The body as chunks: a file-like object is read 1 MiB at a time."""
    if hasattr(body, "read"):
        return iter(lambda: body.read(1 << 20), b"")
    return body


def _backup_dict(b: m.Backup) -> dict:
    return {"id": b.id, "project": b.project, "environment": b.environment, "kind": b.kind, "sha256": b.sha256,
            "size": b.size, "created_at": b.created_at.isoformat() + "Z"}
