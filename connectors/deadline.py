"""Deadlines: the instant by which a source query must be over.

A deadline is a ``time.monotonic()`` value, or ``None`` for no limit. The engine hands
the deadline of its statement to every source query (``SqlConnector.execute(...,
deadline=)``), and a connector makes it hold in two ways:

- the source itself gives up by then where it can (PostgreSQL ``statement_timeout`` and
  ``lock_timeout``, SQLite's busy timeout, a libpq ``connect_timeout``), each set to end
  *at or after* the deadline, so that a failure past the deadline always means "out of
  time";
- the gateway never waits on the source past it: blocking calls run in a thread of their
  own (:func:`before`), and a stream stops waiting at the deadline
  (:class:`~connectors.sqlbase.ReaderStream`), however stuck the source is (a server
  stopped with SIGSTOP answers neither queries nor cancel requests, yet its kernel keeps
  the TCP connection alive).

A source query that ends at its deadline raises :class:`~gateway.errors.QueryTimeoutError`
(:func:`expired`), which the Flight server reports as DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from connectors import threads
from meshcore.errors import QueryTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative); None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def passed(deadline: float | None) -> bool:
    """Whether ``deadline`` is behind us (never, without one)."""
    return deadline is not None and time.monotonic() >= deadline


def milliseconds_left(deadline: float) -> int:
    """Whole milliseconds left until ``deadline``, rounded up (at least 1: 0 means "no limit" to sources)."""
    return max(1, math.ceil((deadline - time.monotonic()) * 1000))


def expired(source: str) -> QueryTimeoutError:
    """The error of a source query that reached its deadline; ``source`` is ``domain/kind``.

    Locations stay out of the message (they are for the domain's owners only).

    >>> str(expired("sales/postgres"))
    "[sales/postgres] the source query did not finish before the query's deadline"
    """
    return QueryTimeoutError(f"[{source}] the source query did not finish before the query's deadline")


def before(deadline: float | None, work: Callable[[], T], *, abandon: Callable[[T], None], source: str) -> T:
    """``work()``, or :func:`expired` once ``deadline`` passes (no deadline: just ``work()``).

    ``work`` runs in a thread of its own, so that a source that does not answer cannot hold
    the caller. Given up on, it keeps running; if it then succeeds, ``abandon`` gets its
    result (for example a connection to close). A failure of ``work`` past the deadline is
    reported as :func:`expired` too: the source's own timeouts end at the deadline.
    """
    if deadline is None:
        return work()
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # handed to the caller, who raises it
            future.set_exception(error)

    threads.start(run, name=f"source-{source}")
    try:
        return future.result(timeout=remaining(deadline))
    except FutureTimeout:
        future.add_done_callback(lambda done: _abandon(done, abandon))
        raise expired(source) from None
    except Exception:
        if passed(deadline):
            raise expired(source) from None
        raise


def _abandon(done: Future[T], abandon: Callable[[T], None]) -> None:
    if done.exception() is not None:
        return
    try:
        abandon(done.result())
    except Exception:  # a clean-up in a thread nobody waits for: log, never raise
        log.exception("releasing the result of a source call that came after its deadline failed")


__all__ = ["before", "expired", "milliseconds_left", "passed", "remaining"]
