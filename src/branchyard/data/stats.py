"""What an environment's data services hold, for metrics: its PostgreSQL database's size and connections, its
Redis's memory and keys. Reached with the environment's own credentials (the variables its app gets), so it works
for any backend whose services the control plane can reach; each call is short and bounded by `timeout`."""

from __future__ import annotations

import psycopg
import redis

from ..errors import BackendError

_PG_QUERY = ("SELECT pg_database_size(current_database()), "
             "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid())")


def postgres_stats(url: str, *, timeout: float = 3.0) -> tuple[int, int]:
    """(database bytes, connections other than this one) of the database `url` names."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True,
                             options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
            size, connections = conn.execute(_PG_QUERY).fetchone()  # type: ignore[misc]
    except psycopg.Error as exc:
        raise BackendError(f"PostgreSQL statistics: {type(exc).__name__}") from None  # its text may hold the URL
    return int(size), int(connections)


def redis_stats(url: str, *, timeout: float = 3.0) -> tuple[int, int]:
    """(used_memory bytes, keys in the selected database) of the Redis `url` names."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        memory = client.info("memory")["used_memory"]
        keys = client.dbsize()
    except redis.RedisError as exc:
        raise BackendError(f"Redis statistics: {type(exc).__name__}") from None
    finally:
        client.close()
    return int(memory), int(keys)
