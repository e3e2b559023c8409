"""One background thread that handles queued items in order: what GitHub feedback and the promotion pull requests
share. Store listeners must return at once, so they only `put`; the thread does the (retried, slow) GitHub calls."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("branchyard.github")


class Worker(Generic[T]):
    """`put` never blocks (False when the queue is full: the caller says what it dropped); `wait_idle` until all that
    was put is handled; `stop` finishes what is queued (up to a timeout), then ends the thread. `stopping` is set from
    the start of `stop`: handlers end their retries early on it."""

    def __init__(self, name: str, handle: Callable[[T], None], *, describe: Callable[[T], str],
                 after: Callable[[T], None] | None = None, max_queue: int = 1000) -> None:
        self.name = name
        self.handle = handle
        self.describe = describe  # for the log line when handling an item crashes
        self.after = after  # runs after each item, handled or crashed (e.g. a cursor saved)
        self.stopping = threading.Event()
        self._queue: queue.Queue[tuple[T] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._busy = 0

    def put(self, item: T) -> bool:
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait((item,))
        except queue.Full:
            self._done()
            return False
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.wait_idle(timeout)
        self.stopping.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def wait_idle(self, timeout: float) -> bool:
        """True once everything put has been handled."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            boxed = self._queue.get()
            if boxed is None:
                return
            item = boxed[0]
            try:
                self.handle(item)
            except Exception:  # a bug here must not kill the thread: later items still get handled
                log.exception("%s crashed on %s", self.name, self.describe(item))
            finally:
                if self.after is not None:
                    self.after(item)
                self._done()
