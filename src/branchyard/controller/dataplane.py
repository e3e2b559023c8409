"""Each environment's own PostgreSQL database, Redis server, variables and secrets.

Where the servers live is the backend's business (the DataServers port; locally: one shared PostgreSQL server,
a server of its own with `dedicated = true`, or an operator's server given by BRANCHYARD_POSTGRES_URL; a
redis-server per environment). Here: which services an environment has, one database and one role per
environment (no other environment's role can connect as it), template copies, and the records. Connection
details and secrets are stored encrypted; they leave only as resolved variables for the environment's own
processes. A server that dies (kill -9, the OOM killer) is restarted by the reconciler's next pass
(`revive_dead`), and the apps' connection pools reconnect to the same address."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import isolation, names
from ..access import SYSTEM, Actor
from ..backends.ports import DatabaseAdmin, DataServer, DataServers
from ..data import templates
from ..errors import BadInput, BranchyardError, NotFound
from ..secrets import Redactor, SecretBox
from ..settings import Settings
from ..spec.model import EnvironmentConfig, PostgresConfig, RedisConfig
from ..store import models as m
from ..store.db import Store
from ..variables import environment_variables

DEFAULT_NAMES = {"postgres": "Postgres", "redis": "Redis"}
PLUGINS = {"postgresql": "postgres", "postgres": "postgres", "redis": "redis"}
_KEY = __import__("re").compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
log = logging.getLogger("branchyard.data")


class _Exists(Exception):
    """The environment's database exists already: it is adopted as it is, not cloned."""


@dataclass
class Provisioned:
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # "Postgres" → DATABASE_URL, PGHOST, …
    new_database: bool = False  # created just now: the seed command runs once
    cloned_from: str | None = None  # the template database the new database is a copy of (hooks already ran)


@dataclass(frozen=True)
class Revival:
    """One environment's service whose server `revive_dead` found dead, and what became of it."""

    project: str
    environment: str
    service: str  # its namespace: "Postgres", "Redis"
    message: str  # "Postgres: the shared PostgreSQL server was found dead (pid 4242) and restarted"
    ok: bool = True  # False: the restart failed, and is tried again later

    @property
    def event(self) -> str:
        return "service.revived" if self.ok else "service.revive_failed"


REVIVE_BACKOFF_MAX = 60.0  # seconds between attempts to restart a server that keeps failing to start


def _settings(decl: PostgresConfig | RedisConfig) -> dict[str, Any]:
    """What of a service's spec shapes its server: memory, persistence, a dedicated server."""
    keys = ("memory_mb", "persistence", "dedicated", "backups")
    return {k: getattr(decl, k) for k in keys if getattr(decl, k, None) is not None}


class DataPlane:
    def __init__(self, settings: Settings, store: Store, servers: DataServers) -> None:
        self.settings = settings
        self.store = store
        self.servers = servers
        self.box = SecretBox(settings.home / "secret.key")
        self._templates = threading.Lock()  # making, cloning and dropping templates: one at a time
        self._revive_retry: dict[str, tuple[float, float]] = {}  # server key → (next attempt, delay) after a failed restart

    # --- variables & secrets ------------------------------------------------------------------------

    def _env(self, s: Session, project: str, env_name: str) -> m.Environment:
        return self.store.environment(s, self.store.project(s, project), env_name)

    def set_variables(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool,
                      actor: Actor = SYSTEM) -> list[str]:
        """Set variables (secrets encrypted). The environment is created if the spec will declare it later."""
        for key in pairs:
            if not _KEY.match(key):
                raise BadInput(f"variables: invalid name {key!r} (letters, digits and _; not starting with a digit)")
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.find_environment(s, p, env_name)
            if env is None:  # as `environment add NAME` would (the project files usually declared it at `init`)
                env = m.Environment(project_id=p.id, name=names.environment_name(env_name), production=env_name == "production",
                                    protected=env_name == "production")
                s.add(env)
                s.flush()
                self.store.record(s, project, "environment.created", f"environment {env_name} created by `variables set`",
                                  environment=env_name, actor=actor)
            for key, value in pairs.items():
                row = s.scalar(select(m.Variable).where(m.Variable.environment_id == env.id, m.Variable.key == key))
                if row is None:
                    row = m.Variable(environment_id=env.id, key=key)
                    s.add(row)
                row.secret = secret
                row.value = self.box.encrypt(value) if secret else value
                row.updated_at = m.utcnow()
            kind = "secrets" if secret else "variables"
            self.store.record(s, project, f"{kind}.set", f"{kind} set: {', '.join(sorted(pairs))}", environment=env_name,
                              actor=actor)
        return sorted(pairs)

    def delete_variable(self, project: str, env_name: str, key: str, *, actor: Actor = SYSTEM) -> None:
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            row = s.scalar(select(m.Variable).where(m.Variable.environment_id == env.id, m.Variable.key == key))
            if row is None:
                raise NotFound(f"variable {key!r} is not set in environment {env_name!r}")
            s.delete(row)
            self.store.record(s, project, "variables.deleted", f"variable deleted: {key}", environment=env_name, actor=actor)

    def stored_variables(self, env_id: int) -> tuple[dict[str, str], dict[str, str]]:
        """(plain variables, secrets) set with the CLI, decrypted."""
        plain, secret = {}, {}
        with self.store.session() as s:
            for row in s.scalars(select(m.Variable).where(m.Variable.environment_id == env_id)):
                if row.secret:
                    secret[row.key] = self.box.decrypt(row.value)
                else:
                    plain[row.key] = row.value
        return plain, secret

    def layered_variables(self, env_id: int, cfg: EnvironmentConfig | None) -> tuple[dict[str, str], dict[str, Mapping[str, str]]]:
        """The environment's raw variables (its services' attached ones, the spec's, `variables set`, secrets) and the
        namespaces they resolve in: the one layering every reader uses (see variables.environment_variables)."""
        plain, secrets = self.stored_variables(env_id)
        return environment_variables(cfg.variables if cfg is not None else {}, plain, secrets,
                                     self.service_variables(env_id), self.attached_services(env_id, cfg))

    def attached_services(self, env_id: int | None, cfg: EnvironmentConfig | None) -> dict[str, str]:
        """Kind → namespace of the services the environment has (provisioned, or declared by `cfg` and provisioned at
        its deploy): what `attached_variables` wires into its app."""
        kinds: dict[str, str] = {}
        if env_id is not None:
            with self.store.session() as s:
                kinds = {r.kind: r.name for r in s.scalars(select(m.Service).where(m.Service.environment_id == env_id))}
        for kind, decl in (("postgres", cfg.postgres if cfg else None), ("redis", cfg.redis if cfg else None)):
            if decl is not None:
                kinds[kind] = decl.name  # a deploy provisions it under the spec's name
        return kinds

    def redactor(self, env_id: int) -> Redactor:
        """Masks every secret value and service password of one environment."""
        _, secrets = self.stored_variables(env_id)
        values = list(secrets.values())
        for space in self.service_variables(env_id).values():
            values += [v for k, v in space.items() if "PASSWORD" in k]
        return Redactor(values)

    def service_names(self, env_id: int) -> dict[str, str]:
        """Kind (postgres, redis) → namespace of the environment's provisioned services (`add --plugin`'s too)."""
        with self.store.session() as s:
            return {r.kind: r.name for r in s.scalars(select(m.Service).where(m.Service.environment_id == env_id))}

    def service_variables(self, env_id: int) -> dict[str, dict[str, str]]:
        """Namespace → variables of the environment's provisioned services."""
        with self.store.session() as s:
            rows = s.scalars(select(m.Service).where(m.Service.environment_id == env_id)).all()
        return {r.name: json.loads(self.box.decrypt(r.connection)) for r in rows if r.connection}

    # --- provisioning ---------------------------------------------------------------------------------

    def provision(self, project: str, env_name: str, cfg: EnvironmentConfig, *, template_key: str | None = None) -> Provisioned:
        """Make sure the environment's declared (and `add --plugin`-ed) services exist and run.

        With `template_key`, a database created now is cloned from that key's template when there is one."""
        out = Provisioned()
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            env_id = env.id
            plugins = {r.kind: r.name for r in s.scalars(select(m.Service).where(m.Service.environment_id == env_id))}
        wanted: dict[str, tuple[str, object | None]] = {}
        if cfg is not None and cfg.postgres is not None:
            wanted["postgres"] = (cfg.postgres.name, cfg.postgres)
        if cfg is not None and cfg.redis is not None:
            wanted["redis"] = (cfg.redis.name, cfg.redis)
        for kind, name in plugins.items():
            wanted.setdefault(kind, (name, None))
        for kind, (name, decl) in wanted.items():
            template = self._template_for(project, template_key) if kind == "postgres" and template_key else None
            space, created, cloned = self._ensure(project, env_name, env_id, kind, name, decl, template=template)
            out.namespaces[name] = space
            if kind == "postgres" and created:
                out.new_database, out.cloned_from = True, cloned
        return out

    def add_plugin(self, project: str, env_name: str, plugin: str) -> dict[str, str]:
        """`branchyard add --plugin postgresql|redis -e ENV`."""
        kind = PLUGINS.get(plugin.lower())
        if kind is None:
            raise BadInput(f"add: unknown plugin {plugin!r} (known: postgresql, redis)")
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            env_id = env.id
        space, _, _ = self._ensure(project, env_name, env_id, kind, DEFAULT_NAMES[kind], None, source="plugin")
        return {k: ("••••••" if "PASSWORD" in k or k.endswith("_URL") else v) for k, v in space.items()}

    def _ensure(self, project: str, env_name: str, env_id: int, kind: str, name: str | None,
                decl: PostgresConfig | RedisConfig | None, *,
                source: str = "spec", template: tuple[str, str] | None = None) -> tuple[dict[str, str], bool, str | None]:
        """Create or adopt one service; `name` None keeps the recorded namespace. `template` (database,
        location) is what a database created now is cloned from; a clone that fails falls back to an empty one.
        (variables, whether the service is new, the template the database is a copy of or None)."""
        with self.store.session() as s:
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env_id, m.Service.kind == kind))
            known = json.loads(self.box.decrypt(row.connection)) if row is not None and row.connection else None
            location = row.location if row is not None else None
            settings = _settings(decl) if decl is not None else json.loads(row.settings or "{}") if row is not None else {}
        if kind == "postgres":
            if known is not None:
                template = None  # the database exists: never re-cloned
            space, location, cloned = self._ensure_postgres(project, env_name, settings, known, location, template)
        else:
            (space, location), cloned = self._ensure_redis(project, env_name, settings, known), None
        with self.store.session() as s:
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env_id, m.Service.kind == kind))
            created = row is None
            if created:
                row = m.Service(environment_id=env_id, kind=kind, name=name or DEFAULT_NAMES[kind], source=source, location=location)
                s.add(row)
                self.store.record(s, project, f"{kind}.created", f"{kind} provisioned for {env_name}", environment=env_name)
            row.name, row.location, row.connection = name or row.name, location, self.box.encrypt(json.dumps(space))
            row.settings = json.dumps(settings)
        return space, created, cloned

    def _pg_admin(self, project: str, env_name: str, settings: dict[str, Any], location: str | None) -> tuple[DatabaseAdmin, str]:
        """The server an environment's database lives on (external, dedicated, or the shared local one), running."""
        return self.servers.database(project, env_name, settings, location)

    def _ensure_postgres(self, project: str, env_name: str, settings: dict[str, Any], known: dict[str, str] | None,
                         location: str | None, template: tuple[str, str] | None = None,
                         ) -> tuple[dict[str, str], str, str | None]:
        admin, location = self._pg_admin(project, env_name, settings, location)
        name = names.database_name(project, env_name)
        password = (known or {}).get("PGPASSWORD")
        if template is not None and template[1] == location:
            try:
                with self._templates:
                    db = admin.adopt_database(templates.spare_database(template[0]), template[0], name, name,
                                              password=password)  # None if the database exists, or no spare
                    if db is None and name in admin.databases():
                        raise _Exists
                    if db is None:  # no spare ready: copy the template now
                        db = admin.create_database(name, name, password=password, template=template[0])
                self._refill_spare(project, template[0], location)
                self._limit_connections(admin, project, env_name, settings)
                return db.variables(), location, template[0]
            except _Exists:  # made by an earlier attempt that was not recorded: never taken for a copy
                pass
            except BranchyardError as err:  # dropped by hand, or busy: an empty database, and the hooks run on it
                log.warning("%s/%s: cannot clone template %s (%s); creating an empty database", project, env_name,
                            template[0], err)
                self._forget_template(project, template[0])
                admin.drop_database(name, name)
        db = admin.create_database(name, name, password=password)
        self._limit_connections(admin, project, env_name, settings)
        return db.variables(), location, None

    @staticmethod
    def _limit_connections(admin: DatabaseAdmin, project: str, env_name: str, settings: dict[str, Any]) -> None:
        """The role's CONNECTION LIMIT from the postgres `memory` (isolation.connection_limit); a server that refuses
        it (an operator's, without the right) leaves the role as it was, said in the log."""
        try:
            admin.limit_connections(names.database_name(project, env_name), isolation.connection_limit(settings.get("memory_mb")))
        except BranchyardError as err:
            log.warning("%s/%s: no connection limit on the database's role: %s", project, env_name, err)

    def _ensure_redis(self, project: str, env_name: str, settings: dict[str, Any], known: dict[str, str] | None,
                      ) -> tuple[dict[str, str], str]:
        return self.servers.cache(project, env_name, settings, (known or {}).get("REDISPASSWORD"))

    # --- templates (postgres.templateFiles) ------------------------------------------------------------

    def _template_for(self, project: str, key: str) -> tuple[str, str] | None:
        """(database, location) of the project's template for `key`, marked used; None when there is none."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            row = s.scalar(select(m.DatabaseTemplate).where(m.DatabaseTemplate.project_id == p.id,
                                                            m.DatabaseTemplate.key == key))
            if row is None:
                return None
            row.last_used_at = m.utcnow()
            return row.database, row.location

    def _forget_template(self, project: str, database: str) -> None:
        with self.store.session() as s:
            p = self.store.project(s, project)
            for row in s.scalars(select(m.DatabaseTemplate).where(m.DatabaseTemplate.project_id == p.id,
                                                                  m.DatabaseTemplate.database == database)):
                s.delete(row)

    def save_template(self, project: str, env_name: str, key: str) -> str | None:
        """Keep a copy of the environment's database (its hooks just ran on it, nothing else is connected)
        as the template for `key`; drop the project's least recently used templates beyond KEPT_PER_PROJECT.
        The template's name, or None when the project already has one for this key."""
        settings, location = self._postgres_of(project, env_name)
        if location.startswith("dedicated:"):
            return None  # a server of its own: nothing else could ever clone from it
        admin, _ = self._pg_admin(project, env_name, settings, location)
        name = templates.template_database(project, key)
        with self._templates:
            if self._template_for(project, key) is not None:
                return None
            if name in admin.databases():  # left by a control plane killed while keeping it: half made, start over
                admin.drop_database(name, name)
            admin.create_database(name, name, template=names.database_name(project, env_name))
            admin.seal_template(name)
            with self.store.session() as s:
                p = self.store.project(s, project)
                s.add(m.DatabaseTemplate(project_id=p.id, key=key, database=name, location=location,
                                         source_environment=env_name))
                s.flush()
                rows = s.scalars(select(m.DatabaseTemplate).where(m.DatabaseTemplate.project_id == p.id)
                                 .order_by(m.DatabaseTemplate.last_used_at.desc(), m.DatabaseTemplate.id.desc())).all()
                stale = [(r.database, r.location) for r in rows[templates.KEPT_PER_PROJECT:]]
                for r in rows[templates.KEPT_PER_PROJECT:]:
                    s.delete(r)
            for database, where in stale:
                self._drop_template(project, database, where)
        self._refill_spare(project, name, location)
        return name

    def list_templates(self, project: str) -> list[dict]:
        """The project's database templates, most recently used first (`branchyard db templates`)."""
        with self.store.session() as s:
            p = self.store.project(s, project)
            rows = s.scalars(select(m.DatabaseTemplate).where(m.DatabaseTemplate.project_id == p.id)
                             .order_by(m.DatabaseTemplate.last_used_at.desc(), m.DatabaseTemplate.id.desc())).all()
            return [{"key": r.key, "database": r.database, "server": r.location, "made_by": r.source_environment,
                     "created_at": r.created_at.isoformat() + "Z", "last_used_at": r.last_used_at.isoformat() + "Z"}
                    for r in rows]

    def drop_templates(self, project: str, key: str | None) -> list[str]:
        """Drop the template whose key starts with `key` (all of the project's with None), its spare copy
        included; the next new database with that key runs preDeployCommand and seedCommand again.
        The databases dropped; NotFound when `key` matches none, BadInput when it matches several."""
        with self._templates:
            with self.store.session() as s:
                p = self.store.project(s, project)
                rows = s.scalars(select(m.DatabaseTemplate).where(m.DatabaseTemplate.project_id == p.id)).all()
                if key is not None:
                    rows = [r for r in rows if r.key.startswith(key)]
                    if not rows:
                        raise NotFound(f"db templates drop: no template of project {project!r} has a key starting "
                                       f"with {key!r} (see `branchyard db templates`)")
                    if len(rows) > 1:
                        raise BadInput(f"db templates drop: key {key!r} matches {len(rows)} templates; give more of it")
                gone = [(r.database, r.location) for r in rows]
                for r in rows:
                    s.delete(r)
            for database, location in gone:
                self._drop_template(project, database, location)
        return [database for database, _ in gone]

    def _refill_spare(self, project: str, template: str, location: str) -> None:
        """Copy the template's next spare in the background (the next new database is then only a rename)."""
        def copy() -> None:
            try:
                with self._templates:
                    if self._template_row(project, template) is None:
                        return  # dropped meanwhile
                    admin, _ = self._pg_admin(project, "", {}, location)
                    admin.copy_database(template, templates.spare_database(template))
            except BranchyardError as err:
                log.warning("%s: no spare copy of template %s: %s", project, template, err)

        threading.Thread(target=copy, name=f"spare-{template}", daemon=True).start()

    def _template_row(self, project: str, database: str) -> int | None:
        with self.store.session() as s:
            p = self.store.project(s, project)
            return s.scalar(select(m.DatabaseTemplate.id).where(m.DatabaseTemplate.project_id == p.id,
                                                                m.DatabaseTemplate.database == database))

    def _drop_template(self, project: str, database: str, location: str) -> None:
        try:
            admin, _ = self._pg_admin(project, "", {}, location)
            admin.drop_copy(templates.spare_database(database))
            admin.drop_database(database, database)
        except BranchyardError as err:
            log.warning("%s: template database %s not dropped: %s", project, database, err)

    def mark_seeded(self, project: str, env_name: str) -> None:
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env.id, m.Service.kind == "postgres"))
            if row is not None:
                row.seeded = True

    def needs_seed(self, env_id: int) -> bool:
        with self.store.session() as s:
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env_id, m.Service.kind == "postgres"))
            return row is not None and not row.seeded

    def ensure_running(self) -> None:
        """After a restart: every environment's PostgreSQL server and Redis runs again (adopted if alive)."""
        with self.store.session() as s:
            rows = [(p.name, e.name, e.id, r.kind) for p, e, r in s.execute(
                select(m.Project, m.Environment, m.Service).join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Service, m.Service.environment_id == m.Environment.id))]
        for project, env_name, env_id, kind in rows:
            self._ensure(project, env_name, env_id, kind, None, None)

    def revive_dead(self) -> list[Revival]:
        """Restart every local PostgreSQL server and Redis of an environment that died without being stopped
        (kill -9, OOM killer, a client's SHUTDOWN): one Revival per environment's service on it (the shared
        server serves several). Cheap while all live — pid files and /proc, no connection — as the reconciler
        calls it every second. A restart that fails is tried again after 1, 2, 4 … 60 s."""
        with self.store.session() as s:
            rows = s.execute(
                select(m.Project.name, m.Environment.name, m.Service.kind, m.Service.name, m.Service.location,
                       m.Service.settings)
                .join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Service, m.Service.environment_id == m.Environment.id)
                .order_by(m.Project.name, m.Environment.name, m.Service.kind)).all()
        servers: dict[str, tuple[DataServer, list[tuple[str, str, str]]]] = {}  # server key → server, its users
        for project, env_name, kind, name, location, settings in rows:
            try:
                server = self.servers.server_of(kind, project, env_name, json.loads(settings or "{}"), location)
            except BranchyardError as err:  # settings it could never have started with: nothing to revive
                log.warning("%s/%s: %s", project, env_name, err)
                continue
            if server is not None:
                servers.setdefault(server.key, (server, []))[1].append((project, env_name, name))
        out: list[Revival] = []
        now = time.monotonic()
        for key, (server, users) in servers.items():
            what = server.description
            next_at, delay = self._revive_retry.get(key, (0.0, 0.0))
            if now < next_at:
                continue
            try:
                dead = self.servers.revive(server)
            except BranchyardError as err:
                delay = min(max(delay * 2, 1.0), REVIVE_BACKOFF_MAX)
                self._revive_retry[key] = (now + delay, delay)
                log.warning("%s in %s could not be revived: %s", what, key, err)
                out += [Revival(p, e, n, f"{n}: {what} could not be revived: {err} (next try in {delay:g}s)", ok=False)
                        for p, e, n in users]
                continue
            self._revive_retry.pop(key, None)
            if dead is not None:
                log.warning("%s in %s was found dead (pid %d) and restarted", what, key, dead)
                out += [Revival(p, e, n, f"{n}: {what} was found dead (pid {dead}) and restarted") for p, e, n in users]
        return out

    def admin_for(self, project: str, env_name: str) -> DatabaseAdmin:
        """The admin connection to the server holding the environment's database; NotFound if it has none."""
        admin, _ = self._pg_admin(project, env_name, *self._postgres_of(project, env_name))
        return admin

    def _postgres_of(self, project: str, env_name: str) -> tuple[dict, str]:
        """(settings, location) of the environment's database; NotFound if it has none."""
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env.id, m.Service.kind == "postgres"))
            if row is None:
                raise NotFound(f"environment {env_name!r} has no PostgreSQL database")
            return json.loads(row.settings or "{}"), row.location

    def backed_up_environments(self) -> list[tuple[str, str, dict]]:
        """(project, environment, postgres settings) of every environment with a database."""
        with self.store.session() as s:
            return [(p.name, e.name, json.loads(r.settings or "{}")) for p, e, r in s.execute(
                select(m.Project, m.Environment, m.Service).join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Service, m.Service.environment_id == m.Environment.id).where(m.Service.kind == "postgres"))]

    def stop_all(self) -> None:
        """Stop every Redis and every local PostgreSQL server of this home (their data stays)."""
        self.servers.stop_all()

    def scratch_server(self) -> AbstractContextManager[DatabaseAdmin | None]:
        """Where a sanitized refresh sanitizes (DataServers.scratch): None for the source's own server."""
        return self.servers.scratch()

    # --- teardown -------------------------------------------------------------------------------------

    def destroy(self, project: str, env_name: str) -> list[str]:
        """Drop the environment's database and role, stop and delete its Redis and data directories."""
        done = []
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            rows = [(r.kind, r.location) for r in s.scalars(select(m.Service).where(m.Service.environment_id == env.id))]
        for kind, location in rows:
            if kind == "postgres":
                admin, _ = self._pg_admin(project, env_name, {}, location)
                name = names.database_name(project, env_name)
                admin.drop_database(name, name)
                self.servers.destroy(kind, project, env_name, location)
                done.append(f"database {name} dropped")
            else:
                self.servers.destroy(kind, project, env_name, location)
                done.append("redis stopped and deleted")
        return done
