"""Environments' data services on this machine: the DataServers port over embedded PostgreSQL and redis-server.

Databases live on one shared PostgreSQL server under `<home>/postgres/shared`, on a server of their own
(`dedicated = true`: `<home>/postgres/<project>-<env>`), or on the operator's server (BRANCHYARD_POSTGRES_URL,
location "external", never started or revived by us). Every environment with Redis gets its own redis-server
under `<home>/redis/<project>/<env>`; its location is that directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ... import names
from ...settings import Settings
from ..ports import DataServer
from .postgres import Admin, LocalServer
from .redis import RedisServer

SHARED = "shared"
EXTERNAL = "external"
DEDICATED = "dedicated:"


class LocalDataServers:
    def __init__(self, settings: Settings) -> None:
        self._home = settings.home
        self._postgres_url = settings.postgres_url

    # --- PostgreSQL ---------------------------------------------------------------------------------

    def database(self, project: str, environment: str, settings: Mapping[str, Any],
                 location: str | None) -> tuple[Admin, str]:
        server, where = self._postgres_server(project, environment, settings, location)
        if server is None:
            return Admin(str(self._postgres_url)), where
        server.ensure_running()
        return Admin(server.admin_url()), where

    def _postgres_server(self, project: str, environment: str, settings: Mapping[str, Any],
                         location: str | None) -> tuple[LocalServer | None, str]:
        """(the local server holding the environment's database, its location); (None, "external") when the
        operator's server holds it."""
        if self._postgres_url or location == EXTERNAL:
            return None, EXTERNAL
        if settings.get("dedicated") or (location or "").startswith(DEDICATED):
            own = location[len(DEDICATED):] if location and location.startswith(DEDICATED) else f"{project}-{environment}"
            return (LocalServer(data_dir=self._home / "postgres" / own, memory_mb=settings.get("memory_mb")),
                    f"{DEDICATED}{own}")
        return LocalServer(data_dir=self._home / "postgres" / SHARED), SHARED

    # --- Redis --------------------------------------------------------------------------------------

    def cache(self, project: str, environment: str, settings: Mapping[str, Any],
              password: str | None) -> tuple[dict[str, str], str]:
        data_dir = names.safe_join(self._home / "redis", project, environment)
        server = RedisServer(data_dir=data_dir, password=password, maxmemory_mb=settings.get("memory_mb"),
                             persistence=bool(settings.get("persistence")))
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
            return RedisServer(data_dir=Path(server.key)).revive()
        return LocalServer(data_dir=Path(server.key)).revive()

    def destroy(self, kind: str, project: str, environment: str, location: str) -> None:
        if kind == "redis":
            RedisServer(data_dir=Path(location)).destroy()
            shutil.rmtree(location, ignore_errors=True)
        elif location.startswith(DEDICATED):
            LocalServer(data_dir=self._home / "postgres" / location[len(DEDICATED):]).destroy()

    def stop_all(self) -> None:
        for data_dir in sorted((self._home / "redis").glob("*/*")):
            if data_dir.is_dir():
                RedisServer(data_dir=data_dir).stop()
        for data_dir in sorted((self._home / "postgres").glob("*")):
            if (data_dir / "server.json").exists():
                LocalServer(data_dir=data_dir).stop()
