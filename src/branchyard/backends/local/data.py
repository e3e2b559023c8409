"""Environments' data services on this machine: the DataServers port over embedded PostgreSQL and redis-server.

Databases live on one shared PostgreSQL server under `<home>/postgres/shared`, on a server of their own
(`dedicated = true`: `<home>/postgres/<project>-<env>`), or on the operator's server (BRANCHYARD_POSTGRES_URL,
location "external", never started or revived by us). Every environment with Redis gets its own redis-server
under `<home>/redis/<project>/<env>`; its location is that directory.

With network isolation (netns.py) an environment's processes run in a namespace of their own: its Redis also
binds the environment's host-side address, the local PostgreSQL servers listen on every IPv4 address with a
pg_hba line per environment (its role, its database, its /30 only), and the variables handed to the environment
(DATABASE_URL, PGHOST, REDIS_URL, REDISHOST …) name that address. The control plane's own admin connections stay
on loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ... import names
from ...settings import Settings
from ..ports import DataServer
from .netns import NetNs
from .postgres import Admin, Database, LocalServer
from .redis import RedisServer

SHARED = "shared"
EXTERNAL = "external"
DEDICATED = "dedicated:"


class EnvAdmin(Admin):
    """An environment's view of a local server under network isolation: each database it creates or adopts is
    allowed in pg_hba from the environment's own network only, and named to the environment at its host-side
    address."""

    def __init__(self, admin_url: str, server: LocalServer, key: str, network: str, host: str) -> None:
        super().__init__(admin_url)
        self._server, self._key, self._network, self._env_host = server, key, network, host

    def _wired(self, db: Database) -> Database:
        self._server.allow(f"{self._key}/{db.name}", db.name, db.user, self._network)
        return dataclasses.replace(db, host=self._env_host)

    def create_database(self, name: str, owner: str, *, password: str | None = None,
                        template: str | None = None) -> Database:
        return self._wired(super().create_database(name, owner, password=password, template=template))

    def adopt_database(self, spare: str, from_owner: str, name: str, owner: str, *,
                       password: str | None = None) -> Database | None:
        db = super().adopt_database(spare, from_owner, name, owner, password=password)
        return self._wired(db) if db is not None else None


class LocalDataServers:
    def __init__(self, settings: Settings, *, netns: NetNs | None = None) -> None:
        self._home = settings.home
        self._postgres_url = settings.postgres_url
        self._netns = netns  # None: everything on loopback

    # --- PostgreSQL ---------------------------------------------------------------------------------

    def database(self, project: str, environment: str, settings: Mapping[str, Any],
                 location: str | None) -> tuple[Admin, str]:
        server, where = self._postgres_server(project, environment, settings, location)
        if server is None:
            return Admin(str(self._postgres_url)), where
        server.ensure_running()
        if self._netns is not None and environment:  # "" : the controller's own work on templates
            net = self._netns.ensure(project, environment)
            return EnvAdmin(server.admin_url(), server, f"{project}/{environment}", str(net.network),
                            net.host_address), where
        return Admin(server.admin_url()), where

    def _postgres_server(self, project: str, environment: str, settings: Mapping[str, Any],
                         location: str | None) -> tuple[LocalServer | None, str]:
        """(the local server holding the environment's database, its location); (None, "external") when the
        operator's server holds it."""
        if self._postgres_url or location == EXTERNAL:
            return None, EXTERNAL
        if settings.get("dedicated") or (location or "").startswith(DEDICATED):
            own = location[len(DEDICATED):] if location and location.startswith(DEDICATED) else f"{project}-{environment}"
            return (LocalServer(data_dir=self._home / "postgres" / own, memory_mb=settings.get("memory_mb"),
                                listen_all=self._netns is not None), f"{DEDICATED}{own}")
        return LocalServer(data_dir=self._home / "postgres" / SHARED, listen_all=self._netns is not None), SHARED

    # --- Redis --------------------------------------------------------------------------------------

    def cache(self, project: str, environment: str, settings: Mapping[str, Any],
              password: str | None) -> tuple[dict[str, str], str]:
        data_dir = names.safe_join(self._home / "redis", project, environment)
        net = self._netns.ensure(project, environment) if self._netns is not None else None
        server = RedisServer(data_dir=data_dir, password=password, maxmemory_mb=settings.get("memory_mb"),
                             persistence=bool(settings.get("persistence")),
                             also_bind=net.host_address if net is not None else None)
        return server.ensure_running().variables(), str(data_dir)

    # --- servers we run -----------------------------------------------------------------------------

    def server_of(self, kind: str, project: str, environment: str, settings: Mapping[str, Any],
                  location: str | None) -> DataServer | None:
        if kind == "redis":
            return DataServer("redis", location, "the environment's redis-server") if location else None
        if kind != "postgres":
            return None
        server, where = self._postgres_server(project, environment, settings, location)
        if server is None:
            return None  # the operator's server: not ours to restart
        what = "the shared PostgreSQL server" if where == SHARED else "the environment's own PostgreSQL server"
        return DataServer("postgres", str(server.data_dir), what)

    def revive(self, server: DataServer) -> int | None:
        if server.kind == "redis":
            key = Path(server.key)
            if self._netns is not None and key.is_dir() and RedisServer(data_dir=key).pid() is None:  # its address first (a reboot)
                self._netns.ensure(key.parent.name, key.name)
            return RedisServer(data_dir=key).revive()
        return LocalServer(data_dir=Path(server.key)).revive()

    def destroy(self, kind: str, project: str, environment: str, location: str) -> None:
        if kind == "redis":
            RedisServer(data_dir=Path(location)).destroy()
            shutil.rmtree(location, ignore_errors=True)
        elif location.startswith(DEDICATED):
            LocalServer(data_dir=self._home / "postgres" / location[len(DEDICATED):]).destroy()
        elif location == SHARED:
            LocalServer(data_dir=self._home / "postgres" / SHARED).disallow(f"{project}/{environment}/")

    def scratch(self) -> contextlib.AbstractContextManager[Admin | None]:
        """The source's own server: the control plane reaches every local one."""
        return contextlib.nullcontext(None)

    def stop_all(self) -> None:
        for data_dir in sorted((self._home / "redis").glob("*/*")):
            if data_dir.is_dir():
                RedisServer(data_dir=data_dir).stop()
        for data_dir in sorted((self._home / "postgres").glob("*")):
            if (data_dir / "server.json").exists():
                LocalServer(data_dir=data_dir).stop()
        if self._netns is not None:  # after every process in them is stopped: made again on demand
            self._netns.teardown()
