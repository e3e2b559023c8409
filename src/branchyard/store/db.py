"""SQLite through SQLAlchemy 2, schema managed by Alembic; one Store per control plane."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..access import SYSTEM, Actor
from ..errors import NotFound
from .models import Deployment, Environment, Event, Project

_MIGRATIONS = str(Path(__file__).parent / "migrations")
_RECORDED = "branchyard.recorded_events"  # Session.info key: events recorded in this session, not yet committed

log = logging.getLogger("branchyard.store")


@dataclass(frozen=True)
class RecordedEvent:
    """An audit event as committed, handed to Store.listeners (a plain copy, safe in any thread)."""

    id: int
    project: str
    kind: str
    message: str
    environment: str | None
    deployment_id: str | None
    actor: str
    at: dt.datetime
    actor_id: int | None = None


EventListener = Callable[[RecordedEvent], None]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # DB-API objects: untyped by SQLAlchemy
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to Alembic's head (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", _MIGRATIONS)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class Store:
    """Opens the state database, migrates it, and hands out short-lived sessions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(self.engine, "connect", _sqlite_pragmas)
        migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_lock = threading.RLock()  # SQLite has one writer; serialise ours to avoid busy errors
        # Called with every event recorded by `record`, once its session has committed, outside the write lock.
        # A listener must return quickly (hand work to a thread) and its exceptions are logged, never raised.
        self.listeners: list[EventListener] = []

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error; then committed events go to the listeners."""
        with self.write_lock, self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise
            recorded = [snapshot(e) for e in s.info.pop(_RECORDED, [])]
        for item in recorded:
            self._notify(item)

    def _notify(self, event: RecordedEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not fail the operation that recorded the event
                log.exception("event listener %r failed on %s", listener, event.kind)

    def close(self) -> None:
        self.engine.dispose()

    # --- look-ups that raise NotFound with a useful message -------------------------------------

    def project(self, s: Session, name: str) -> Project:
        project = s.scalar(select(Project).where(Project.name == name))
        if project is None:
            known = ", ".join(s.scalars(select(Project.name).order_by(Project.name))) or "none"
            raise NotFound(f"unknown project {name!r} (known: {known}); run `branchyard init` in the app's repository")
        return project

    def environment(self, s: Session, project: Project, name: str) -> Environment:
        env = self.find_environment(s, project, name)
        if env is None:
            known = ", ".join(
                s.scalars(select(Environment.name).where(Environment.project_id == project.id).order_by(Environment.name))
            )
            raise NotFound(f"unknown environment {name!r} in project {project.name!r} (known: {known or 'none'})")
        return env

    @staticmethod
    def find_environment(s: Session, project: Project, name: str) -> Environment | None:
        """The project's environment `name`, or None (see `environment` for the one that raises NotFound)."""
        return s.scalar(select(Environment).where(Environment.project_id == project.id, Environment.name == name))

    @staticmethod
    def current_deployment(s: Session, env: Environment) -> Deployment | None:
        """The deployment the environment runs now, if any."""
        return s.get(Deployment, env.current_deployment_id) if env.current_deployment_id else None

    def deployment(self, s: Session, deployment_id: str, env: Environment | None = None) -> Deployment:
        """Find a deployment by full id or unique prefix (≥ 6 characters), optionally within one environment."""
        query = select(Deployment)
        if env is not None:
            query = query.where(Deployment.environment_id == env.id)
        if len(deployment_id) >= 6:
            matches = list(s.scalars(query.where(Deployment.id.startswith(deployment_id))).all())
        else:
            matches = []
        if len(matches) == 1:
            return matches[0]
        where = f" in environment {env.name!r}" if env is not None else ""
        if len(matches) > 1:
            raise NotFound(f"deployment id {deployment_id!r} is ambiguous{where}; give more characters")
        raise NotFound(f"unknown deployment {deployment_id!r}{where}")

    def record(
        self,
        s: Session,
        project: str,
        kind: str,
        message: str,
        *,
        environment: str | None = None,
        deployment_id: str | None = None,
        actor: Actor | str = SYSTEM,
    ) -> None:
        """Append an audit event; the listeners get it after the session commits. `actor` is who did it: an
        authenticated user (name and id recorded), or a part of the platform named by a string or an Actor."""
        who = actor if isinstance(actor, Actor) else Actor(actor)
        event = Event(
            project=project,
            environment=environment,
            deployment_id=deployment_id,
            kind=kind,
            actor=who.name,
            actor_id=who.user_id,
            message=message,
        )
        s.add(event)
        s.info.setdefault(_RECORDED, []).append(event)


def snapshot(event: Event) -> RecordedEvent:
    """A committed Event row as a RecordedEvent."""
    return RecordedEvent(
        id=event.id, project=event.project, kind=event.kind, message=event.message, environment=event.environment,
        deployment_id=event.deployment_id, actor=event.actor, at=event.at, actor_id=event.actor_id,
    )  # fmt: skip
