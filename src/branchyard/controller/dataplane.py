"""Each environment's own PostgreSQL database, Redis server, variables and secrets.

Databases live on one shared local PostgreSQL server (or, with `dedicated = true`, a server of their
own; or on an operator's server given by BRANCHYARD_POSTGRES_URL), each with its own role that no
other environment's role can connect as. Every environment with Redis gets its own `redis-server`.
Connection details and secrets are stored encrypted; they leave only as resolved variables for the
environment's own processes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .. import names
from ..errors import BadInput, NotFound
from ..secrets import Redactor, SecretBox
from ..settings import Settings
from ..store import models as m
from ..store.db import Store

DEFAULT_NAMES = {"postgres": "Postgres", "redis": "Redis"}
PLUGINS = {"postgresql": "postgres", "postgres": "postgres", "redis": "redis"}
_KEY = __import__("re").compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass
class Provisioned:
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # "Postgres" → DATABASE_URL, PGHOST, …
    new_database: bool = False  # created just now: the seed command runs once


def _settings(decl) -> dict:  # noqa: ANN001 - PostgresConfig | RedisConfig
    """What of a service's spec shapes its server: memory, persistence, a dedicated server."""
    keys = ("memory_mb", "persistence", "dedicated", "backups")
    return {k: getattr(decl, k) for k in keys if getattr(decl, k, None) is not None}


def database_name(project: str, env_name: str) -> str:
    """`by_<project>_<env>`: one database and one role per environment (identifier-safe)."""
    return f"by_{project}_{env_name}".replace("-", "_")[:63]


class DataPlane:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.box = SecretBox(settings.home / "secret.key")

    # --- variables & secrets ------------------------------------------------------------------------

    def _env(self, s, project: str, env_name: str) -> m.Environment:  # noqa: ANN001 - Session
        return self.store.environment(s, self.store.project(s, project), env_name)

    def set_variables(self, project: str, env_name: str, pairs: dict[str, str], *, secret: bool) -> list[str]:
        """Set variables (secrets encrypted). The environment is created if the spec will declare it later."""
        for key in pairs:
            if not _KEY.match(key):
                raise BadInput(f"variables: invalid name {key!r} (letters, digits and _; not starting with a digit)")
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = s.scalar(select(m.Environment).where(m.Environment.project_id == p.id, m.Environment.name == env_name))
            if env is None:
                env = m.Environment(project_id=p.id, name=names.environment_name(env_name), production=env_name == "production")
                s.add(env)
                s.flush()
            for key, value in pairs.items():
                row = s.scalar(select(m.Variable).where(m.Variable.environment_id == env.id, m.Variable.key == key))
                if row is None:
                    row = m.Variable(environment_id=env.id, key=key)
                    s.add(row)
                row.secret = secret
                row.value = self.box.encrypt(value) if secret else value
                row.updated_at = m.utcnow()
            kind = "secrets" if secret else "variables"
            self.store.record(s, project, f"{kind}.set", f"{kind} set: {', '.join(sorted(pairs))}", environment=env_name)
        return sorted(pairs)

    def delete_variable(self, project: str, env_name: str, key: str) -> None:
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            row = s.scalar(select(m.Variable).where(m.Variable.environment_id == env.id, m.Variable.key == key))
            if row is None:
                raise NotFound(f"variable {key!r} is not set in environment {env_name!r}")
            s.delete(row)
            self.store.record(s, project, "variables.deleted", f"variable deleted: {key}", environment=env_name)

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

    def redactor(self, env_id: int) -> Redactor:
        """Masks every secret value and service password of one environment."""
        _, secrets = self.stored_variables(env_id)
        values = list(secrets.values())
        for space in self.service_variables(env_id).values():
            values += [v for k, v in space.items() if "PASSWORD" in k]
        return Redactor(values)

    def service_variables(self, env_id: int) -> dict[str, dict[str, str]]:
        """Namespace → variables of the environment's provisioned services."""
        with self.store.session() as s:
            rows = s.scalars(select(m.Service).where(m.Service.environment_id == env_id)).all()
        return {r.name: json.loads(self.box.decrypt(r.connection)) for r in rows if r.connection}

    # --- provisioning ---------------------------------------------------------------------------------

    def provision(self, project: str, env_name: str, cfg) -> Provisioned:  # noqa: ANN001 - EnvironmentConfig
        """Make sure the environment's declared (and `add --plugin`-ed) services exist and run."""
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
            space, created = self._ensure(project, env_name, env_id, kind, name, decl)
            out.namespaces[name] = space
            out.new_database = out.new_database or (kind == "postgres" and created)
        return out

    def add_plugin(self, project: str, env_name: str, plugin: str) -> dict[str, str]:
        """`branchyard add --plugin postgresql|redis -e ENV`."""
        kind = PLUGINS.get(plugin.lower())
        if kind is None:
            raise BadInput(f"add: unknown plugin {plugin!r} (known: postgresql, redis)")
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            env_id = env.id
        space, _ = self._ensure(project, env_name, env_id, kind, DEFAULT_NAMES[kind], None, source="plugin")
        return {k: ("••••••" if "PASSWORD" in k or k.endswith("_URL") else v) for k, v in space.items()}

    def _ensure(self, project: str, env_name: str, env_id: int, kind: str, name: str | None, decl, *,  # noqa: ANN001
                source: str = "spec") -> tuple[dict[str, str], bool]:
        """Create or adopt one service; `name` None keeps the recorded namespace."""
        with self.store.session() as s:
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env_id, m.Service.kind == kind))
            known = json.loads(self.box.decrypt(row.connection)) if row is not None and row.connection else None
            location = row.location if row is not None else None
            settings = _settings(decl) if decl is not None else json.loads(row.settings or "{}") if row is not None else {}
        if kind == "postgres":
            space, location = self._ensure_postgres(project, env_name, settings, known, location)
        else:
            space, location = self._ensure_redis(project, env_name, settings, known)
        with self.store.session() as s:
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env_id, m.Service.kind == kind))
            created = row is None
            if created:
                row = m.Service(environment_id=env_id, kind=kind, name=name or DEFAULT_NAMES[kind], source=source, location=location)
                s.add(row)
                self.store.record(s, project, f"{kind}.created", f"{kind} provisioned for {env_name}", environment=env_name)
            row.name, row.location, row.connection = name or row.name, location, self.box.encrypt(json.dumps(space))
            row.settings = json.dumps(settings)
        return space, created

    def _pg_admin(self, project: str, env_name: str, settings: dict, location: str | None):  # noqa: ANN202
        """The server an environment's database lives on: external, dedicated, or the shared local one."""
        from ..backends.local.postgres import Admin, LocalServer

        if self.settings.postgres_url:
            return Admin(self.settings.postgres_url), "external"
        if settings.get("dedicated") or (location or "").startswith("dedicated:"):
            key = f"dedicated:{project}-{env_name}"
            server = LocalServer(data_dir=self.settings.home / "postgres" / f"{project}-{env_name}",
                                 memory_mb=settings.get("memory_mb"))
        else:
            key = "shared"
            server = LocalServer(data_dir=self.settings.home / "postgres" / "shared")
        server.ensure_running()
        return Admin(server.admin_url()), key

    def _ensure_postgres(self, project: str, env_name: str, settings: dict, known, location):  # noqa: ANN001, ANN202
        admin, location = self._pg_admin(project, env_name, settings, location)
        name = database_name(project, env_name)
        db = admin.create_database(name, name, password=(known or {}).get("PGPASSWORD"))
        return db.variables(), location

    def _ensure_redis(self, project: str, env_name: str, settings: dict, known):  # noqa: ANN001, ANN202
        from ..backends.local.redis import RedisServer

        data_dir = names.safe_join(self.settings.home / "redis", project, env_name)
        server = RedisServer(
            data_dir=data_dir,
            password=(known or {}).get("REDISPASSWORD"),
            maxmemory_mb=settings.get("memory_mb"),
            persistence=bool(settings.get("persistence")),
        )
        return server.ensure_running().variables(), str(data_dir)

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

    def admin_for(self, project: str, env_name: str):  # noqa: ANN201 - postgres.Admin
        """The admin connection to the server holding the environment's database; NotFound if it has none."""
        with self.store.session() as s:
            env = self._env(s, project, env_name)
            row = s.scalar(select(m.Service).where(m.Service.environment_id == env.id, m.Service.kind == "postgres"))
            if row is None:
                raise NotFound(f"environment {env_name!r} has no PostgreSQL database")
            settings, location = json.loads(row.settings or "{}"), row.location
        admin, _ = self._pg_admin(project, env_name, settings, location)
        return admin

    def backed_up_environments(self) -> list[tuple[str, str, dict]]:
        """(project, environment, postgres settings) of every environment with a database."""
        with self.store.session() as s:
            return [(p.name, e.name, json.loads(r.settings or "{}")) for p, e, r in s.execute(
                select(m.Project, m.Environment, m.Service).join(m.Environment, m.Environment.project_id == m.Project.id)
                .join(m.Service, m.Service.environment_id == m.Environment.id).where(m.Service.kind == "postgres"))]

    def stop_all(self) -> None:
        """Stop every Redis and every local PostgreSQL server of this home (their data stays)."""
        from ..backends.local.postgres import LocalServer
        from ..backends.local.redis import RedisServer

        for data_dir in sorted((self.settings.home / "redis").glob("*/*")):
            if data_dir.is_dir():
                RedisServer(data_dir=data_dir).stop()
        for data_dir in sorted((self.settings.home / "postgres").glob("*")):
            if (data_dir / "server.json").exists():
                LocalServer(data_dir=data_dir).stop()

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
                name = database_name(project, env_name)
                admin.drop_database(name, name)
                if location.startswith("dedicated:"):
                    from ..backends.local.postgres import LocalServer

                    LocalServer(data_dir=self.settings.home / "postgres" / f"{project}-{env_name}").destroy()
                done.append(f"database {name} dropped")
            else:
                from ..backends.local.redis import RedisServer

                RedisServer(data_dir=Path(location)).destroy()
                shutil.rmtree(location, ignore_errors=True)
                done.append("redis stopped and deleted")
        return done
