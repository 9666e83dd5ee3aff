"""Short background work (a source query's reading thread, an interrupt) on reused daemon threads.

Every source query used to start a thread of its own. On the 2-core machines Meshgate is
measured on, that was a visible part of a point lookup's cost: creating a thread, its Python
thread state and its first frame stack (a fresh mapping, unmapped again when the thread ends,
which makes the kernel flush the other cores' address translations). :func:`start` hands the
work to an idle thread of the pool instead, and starts a new one only when none is idle, so
the pool never limits how many run at once (a source query's reader may wait as long as its
consumer does; a bounded pool could starve another source of the same query). A thread idle
for :data:`IDLE_SECONDS` ends. Threads are daemons, as the ones they replace were.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

IDLE_SECONDS = 30.0
"""How long a thread waits for more work before it ends."""

_Task = tuple[Callable[..., object], tuple[Any, ...], str]


class _Worker:
    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()

    def give(self, task: _Task) -> None:
        self._tasks.put(task)

    def run(self) -> None:
        thread = threading.current_thread()
        while True:
            try:
                task = self._tasks.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if self._pool.retire(self):
                    return
                task = self._tasks.get()  # taken off the idle list just now: its task is on the way
            target, args, name = task
            thread.name = name
            try:
                target(*args)
            except BaseException:  # the work's own failure; the thread serves on
                log.exception("background work %r failed", name)
            # An idle thread must not keep the work's objects alive (a connector collected
            # unclosed closes its connections only once nothing refers to it).
            del task, target, args
            thread.name = "meshgate-idle"
            self._pool.idle(self)


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # the most recently idle last: it is reused first

    def start(self, target: Callable[..., object], args: tuple[Any, ...], name: str) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
            worker.give((target, args, name))
            threading.Thread(target=worker.run, name=name, daemon=True).start()
        else:
            worker.give((target, args, name))

    def idle(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def retire(self, worker: _Worker) -> bool:
        """Whether ``worker``, idle for long, may end (False: it was just handed work)."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    @property
    def idle_threads(self) -> int:
        with self._lock:
            return len(self._idle)


_POOL = _Pool()


def start(target: Callable[..., object], *args: Any, name: str) -> None:
    """Run ``target(*args)`` on a pooled daemon thread called ``name`` (a new one if none is idle)."""
    _POOL.start(target, args, name)


def offer(into: queue.Queue[Any], item: object, stopped: Callable[[], bool], poll: float = 0.1) -> bool:
    """Put ``item`` into the bounded queue ``into``, waiting for room; False, unqueued, once ``stopped()``
    (looked at every ``poll`` seconds while the queue is full)."""
    while not stopped():
        try:
            into.put(item, timeout=poll)
            return True
        except queue.Full:
            continue
    return False


def idle_threads() -> int:
    """Threads of the pool waiting for work (tests)."""
    return _POOL.idle_threads


__all__ = ["IDLE_SECONDS", "idle_threads", "offer", "start"]
