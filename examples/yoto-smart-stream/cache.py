"""Redis as a cache (redis-py). REDIS_URL comes Railway style: `redis://default:pass@host:port`.

redis-py is imported and the client created on first use (it connects lazily too): nothing happens at
import time, and an app without REDIS_URL never loads redis-py. A cache that fails is a cache miss,
never an error for the caller.
"""

from __future__ import annotations

import json
import logging
import threading

log = logging.getLogger("yoto.cache")

TIMEOUT = 1.0  # seconds, connect and read: /health must answer within the platform's 2 s probe

_lock = threading.Lock()
_clients: dict = {}  # url → redis.Redis


def client(url: str):
    """The redis.Redis for `url` (ValueError if redis-py cannot parse it; the message does not echo it)."""
    with _lock:
        c = _clients.get(url)
        if c is None:
            import redis

            c = redis.Redis.from_url(
                url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, decode_responses=True, health_check_interval=30
            )
            _clients[url] = c
        return c


def ping(url: str) -> None:
    """Raise if Redis does not answer PING."""
    client(url).ping()


def get_json(url: str | None, key: str):
    """The cached value, or None when caching is off, the key is absent or Redis fails."""
    if not url:
        return None
    try:
        raw = client(url).get(key)
        return json.loads(raw) if raw is not None else None
    except Exception as exc:  # noqa: BLE001 - Redis errors, a bad URL, a bad cached value
        log.warning("cache read failed: %s", type(exc).__name__)
        return None


def set_json(url: str | None, key: str, value, ttl: float) -> None:
    if not url:
        return
    try:
        client(url).set(key, json.dumps(value), px=int(ttl * 1000))
    except Exception as exc:  # noqa: BLE001 - Redis errors, a bad URL, a bad cached value
        log.warning("cache write failed: %s", type(exc).__name__)


def delete(url: str | None, *keys: str) -> None:
    if not url or not keys:
        return
    try:
        client(url).delete(*keys)
    except Exception as exc:  # noqa: BLE001 - Redis errors, a bad URL, a bad cached value
        log.warning("cache invalidation failed: %s", type(exc).__name__)


def close_all() -> None:
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for c in clients:
        c.close()
