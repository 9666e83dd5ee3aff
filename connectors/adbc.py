"""The shared base of ADBC sources: a connection pool, prepared scans, errors, cancel.

A concrete source (PostgreSQL, SQLite) supplies ``connect()``, ``describe()`` and its
capabilities; everything else is here. Each scan takes a connection of its own from a
small pool (opened lazily, at most ``options.pool_size`` kept idle, default 4) and
gives it back only when it read every row; a scan that failed, was cancelled or was
abandoned closes its connection instead.

A scan with a deadline (see :mod:`connectors.deadline`) connects with a timeout that ends
by then, has the source bound its own work to it (:meth:`AdbcConnector.bound`: PostgreSQL's
``statement_timeout``/``lock_timeout``, SQLite's busy timeout) and undone before its
connection goes back to the pool, and is prepared in a thread of its own that the caller
stops waiting for at the deadline.
"""

from __future__ import annotations

import re
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, TypeVar

import pyarrow as pa
from adbc_driver_manager.dbapi import Connection, Cursor

from connectors.base import SourceStream
from connectors.deadline import before, passed
from connectors.sqlbase import ReaderStream, TypedSqlConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, MeshgateError, QueryTimeoutError, SourceError, SourceUnavailableError

T = TypeVar("T")


class ConnectionPool:
    """Idle connections of one source, each used by one scan at a time (thread-safe)."""

    def __init__(self, connect: Callable[[float | None], Connection], max_idle: int) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._closed = False
        self._lock = threading.Lock()

    def acquire(self, deadline: float | None = None) -> tuple[Connection, bool]:
        """An idle connection (``True``: reused) or a new one (``False``, connected by ``deadline``)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(deadline), False

    def release(self, connection: Connection) -> None:
        """Keep a healthy connection for later scans (or close it when enough are idle)."""
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        discard(connection)

    def close(self) -> None:
        """Close the idle connections; connections released later are closed too."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            discard(connection)


def discard(connection: Connection, cursor: Cursor | None = None) -> None:
    """Close a cursor and its connection, ignoring errors (the connection may be dead)."""
    if cursor is not None:
        with suppress(Exception):
            cursor.close()
    with suppress(Exception):
        connection.close()


class AdbcConnector(TypedSqlConnector):
    """A SQL source reached through an ADBC DB-API driver."""

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        pool_size = config.options.get("pool_size", 4)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 0:
            raise ConfigError(f"domain {domain!r}: connector option pool_size must be an integer >= 0")
        self._pool = ConnectionPool(self._open, pool_size)

    @abstractmethod
    def connect(self, deadline: float | None = None) -> Connection:
        """Open a new connection, set up for scans (autocommit, read-only where possible).

        With a ``deadline``, give up connecting at or soon after it.
        """

    def configure(self, cursor: Cursor) -> None:
        """Set statement options on a new cursor (batch sizes)."""

    def bound(self, connection: Connection, deadline: float) -> None:
        """Have the source end, at or after ``deadline``, whatever runs next on ``connection``
        (a query, or its wait for a lock). Undone by :meth:`unbound`."""

    def unbound(self, connection: Connection) -> None:
        """Undo :meth:`bound` before ``connection`` goes back to the pool (nothing leaks to the next query)."""

    def lost_connection(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection itself is gone (retry on a new one)."""
        return False

    def received(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A batch as the driver returned it, with values it misrepresents put right.

        Runs before the batch is conformed to the product's types; raises
        :class:`~connectors.sqlbase.ConversionError` for values it cannot put right.
        """
        return batch

    def message(self, exc: BaseException) -> str:
        """The source's own message for ``exc``, on one line and without the query text."""
        text = re.split(r"\n\s*(?:Query was|query):", str(exc), maxsplit=1)[0]
        text = _STATUS_PREFIX.sub("", text)
        return " ".join(text.split()) or type(exc).__name__

    def error(self, exc: BaseException) -> SourceError:
        """The gateway error for ``exc``, naming domain and source."""
        if isinstance(exc, SourceError):
            return exc
        kind = SourceUnavailableError if self.lost_connection(exc) else SourceError
        return kind(self.domain, self.label, self.message(exc))

    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Prepare ``sql`` now (errors raise here, by ``deadline``); run and stream it when iterated."""

        def prepare() -> tuple[Connection, Cursor]:
            connection, cursor, _ = self.checkout(lambda cursor: cursor.adbc_prepare(sql), deadline)
            return connection, cursor

        connection, cursor = before(deadline, prepare, abandon=lambda pair: discard(*pair), source=self.source)
        scan = AdbcScan(self, connection, cursor, sql, bound=deadline is not None)
        return ReaderStream(schema, scan, deadline, self.source)

    binds_parameters = True

    def execute_bound(
        self, sql: str, schema: pa.Schema, parameters: pa.RecordBatch, deadline: float | None = None
    ) -> SourceStream:
        """:meth:`execute` with one row of ``parameters`` bound (the driver types them from Arrow)."""

        def prepare() -> tuple[Connection, Cursor]:
            connection, cursor, _ = self.checkout(lambda cursor: cursor.adbc_prepare(sql), deadline)
            return connection, cursor

        connection, cursor = before(deadline, prepare, abandon=lambda pair: discard(*pair), source=self.source)
        scan = AdbcScan(self, connection, cursor, sql, bound=deadline is not None, parameters=parameters)
        return ReaderStream(schema, scan, deadline, self.source)

    @property
    def source(self) -> str:
        """``domain/kind``: how deadline errors name this source (without its location)."""
        return f"{self.domain}/{self.kind}"

    def run(self, action: Callable[[Cursor], T]) -> T:
        """Run ``action`` on a pooled cursor (for metadata queries), mapping errors."""
        connection, cursor, result = self.checkout(action)
        try:
            cursor.close()
        except Exception:
            discard(connection)
        else:
            self._pool.release(connection)
        return result

    def fetch(self, sql: str) -> pa.Table:
        """All rows of a (small) metadata query."""

        def fetch_all(cursor: Cursor) -> pa.Table:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()

        return self.run(fetch_all)

    def give_back(self, connection: Connection) -> None:
        """Return a healthy, unbound connection (outside any transaction) to the pool."""
        self._pool.release(connection)

    def close(self) -> None:
        self._pool.close()

    def checkout(self, action: Callable[[Cursor], T], deadline: float | None = None) -> tuple[Connection, Cursor, T]:
        """A pooled connection and cursor on which ``action`` succeeded (bound to ``deadline``, if any).

        A stale pooled connection (the server restarted) is dropped and the action
        retried, ending with a fresh connection at the latest.
        """
        while True:
            connection, reused = self._pool.acquire(deadline)
            cursor: Cursor | None = None
            try:
                if deadline is not None:
                    self.bound(connection, deadline)
                cursor = connection.cursor()
                self.configure(cursor)
                return connection, cursor, action(cursor)
            except Exception as exc:
                discard(connection, cursor)
                if reused and self.lost_connection(exc):
                    continue
                raise self.error(exc) from exc

    def _open(self, deadline: float | None) -> Connection:
        try:
            return self.connect(deadline)
        except MeshgateError:
            raise
        except Exception as exc:
            if passed(deadline):
                raise QueryTimeoutError(f"[{self.source}] cannot connect before the query's deadline") from exc
            raise SourceUnavailableError(self.domain, self.label, f"cannot connect: {self.message(exc)}") from exc


_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")


class AdbcScan:
    """One prepared statement on its own connection (a :class:`SourceScan`)."""

    def __init__(
        self,
        connector: AdbcConnector,
        connection: Connection,
        cursor: Cursor,
        sql: str,
        bound: bool,
        parameters: pa.RecordBatch | None = None,
    ) -> None:
        self._connector = connector
        self._parameters = parameters  # one row bound to the statement's placeholders
        self._connection = connection
        self._cursor = cursor
        self._sql = sql
        self._bound = bound  # the connection carries the scan's deadline until unbound
        self._started = False

    def start(self) -> Iterator[pa.RecordBatch]:
        self._started = True
        self._cursor.execute(self._sql, self._parameters)
        reader: Any = self._cursor.fetch_record_batch()
        return map(self._connector.received, reader)

    def interrupt(self) -> None:
        self._cursor.adbc_cancel()

    def finish(self, complete: bool) -> None:
        if complete:
            try:
                self._cursor.close()
                if self._bound:
                    self._connector.unbound(self._connection)
            except Exception:
                discard(self._connection)
            else:
                self._connector.give_back(self._connection)
            return
        if self._started:
            with suppress(Exception):  # stop a half-read result before closing (else closing drains it)
                self._cursor.adbc_cancel()
        discard(self._connection, self._cursor)

    def error(self, exc: Exception) -> SourceError:
        return self._connector.error(exc)


__all__ = ["AdbcConnector", "AdbcScan", "ConnectionPool"]
