"""One background thread that does a listener's slow work (making spans, sending events) off the
queries' threads, from a bounded queue: when it is full, work is dropped and logged."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_SIZE = 10_000
"""Items waiting at most; more are dropped."""


class Background(Generic[T]):
    """Calls ``work(item)`` for each :meth:`put` item on a thread called ``name``."""

    def __init__(self, name: str, work: Callable[[T], None], size: int = QUEUE_SIZE) -> None:
        self._name = name
        self._work = work
        self._queue: queue.Queue[tuple[T] | threading.Event | None] = queue.Queue(maxsize=size)
        self._lock = threading.Lock()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Queue ``item`` without waiting; dropped (and counted, and logged now and then) when the queue is full."""
        try:
            self._queue.put_nowait((item,))
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("%s: %d items dropped so far: it does not keep up", self._name, dropped)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was queued before is done (at most ``timeout`` seconds); whether it was."""
        done = threading.Event()
        self._queue.put(done, timeout=timeout)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (waiting at most ``timeout`` seconds) and stop; idempotent."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            if isinstance(entry, threading.Event):
                entry.set()
                continue
            try:
                self._work(entry[0])
            except Exception:  # one bad item must not stop the thread
                log.exception("%s failed", self._name)
