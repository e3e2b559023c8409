"""One lock per environment: a deployment's worker, an operation (`down`, `scale`…) and a reconcile pass
never act on the same environment at once."""

from __future__ import annotations

import threading


class EnvLocks:
    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, project: str, env: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((project, env), threading.Lock())


class Held:
    """An environment's lock, already acquired, released by leaving the `with` block (or handed to a worker)."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def release(self) -> None:
        self.lock.release()
