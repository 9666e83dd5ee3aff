"""The shared base of ADBC sources: a connection pool, prepared scans, errors, cancel.

A concrete source (PostgreSQL, SQLite) supplies ``connect()``, ``describe()`` and its
capabilities; everything else is here. Each scan takes a connection of its own from a
small pool (opened lazily, at most ``options.pool_size`` kept idle, default 4) and
gives it back only when it read every row; a scan that failed, was cancelled or was
abandoned closes its connection instead.

Prepared statements are reused: each pooled connection keeps, by SQL text, the cursors of
up to :data:`KEPT_STATEMENTS` statements it ran to the end (:class:`KeptStatements`), and a
scan of the same SQL on that connection executes the kept cursor with its own parameters
instead of preparing again (PostgreSQL: a lookup takes two round trips instead of four).
A kept statement whose connection turns out to be gone (the server restarted, the backend
was killed) fails when it is executed rather than when it is prepared: the scan then
retries once on a freshly prepared connection, before any row was read
(:meth:`AdbcScan.start`). A connection lent through :meth:`AdbcConnector.checkout` (a range
of a split read) closes the statements it kept. A connector turns reuse off with
:attr:`AdbcConnector.reuses_statements`.

A scan with a deadline (see :mod:`connectors.deadline`) connects with a timeout that ends
by then, has the source bound its own work to it (:meth:`AdbcConnector.bound`: PostgreSQL's
``statement_timeout``/``lock_timeout``, SQLite's busy timeout) and undone before its
connection goes back to the pool, and is prepared in a thread of its own that the caller
stops waiting for at the deadline.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from itertools import chain
from typing import Any, NamedTuple, TypeVar

import pyarrow as pa
from adbc_driver_manager.dbapi import Connection, Cursor
from cachetools import TTLCache

from connectors.base import STATS_SECONDS, SourceStream
from connectors.deadline import before, passed
from connectors.sqlbase import ReaderStream, TypedSqlConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, MeshgateError, QueryTimeoutError, SourceError, SourceUnavailableError

log = logging.getLogger(__name__)

_SUBQUERY = re.compile(r"(?<!FROM )(?<!JOIN )\(\s*SELECT\b", re.IGNORECASE)
"""A subquery other than a derived table: one a source may run once per row (:meth:`AdbcConnector.per_row`)."""

T = TypeVar("T")

KEPT_STATEMENTS = 16
"""Prepared statements a pooled connection keeps for reuse (the least recently used is closed first)."""


class KeptStatements:
    """The prepared cursors one connection keeps, by SQL text, least recently used first.

    Held by whoever holds the connection (the pool while it is idle, a scan while it runs),
    never by the connection itself: a connection that held its own cursors could not be
    closed when it is collected.
    """

    def __init__(self, size: int = KEPT_STATEMENTS) -> None:
        self._size = size
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cursors)

    def take(self, sql: str) -> Cursor | None:
        """The cursor prepared for ``sql``, if kept; it is no longer kept until :meth:`keep` puts it back."""
        return self._cursors.pop(sql, None)

    def keep(self, sql: str, cursor: Cursor) -> None:
        """Keep ``cursor``, prepared for ``sql`` and read to its end, as the most recently used."""
        replaced = self._cursors.pop(sql, None)
        self._cursors[sql] = cursor
        if replaced is not None and replaced is not cursor:
            replaced.close()
        while len(self._cursors) > self._size:
            _, oldest = self._cursors.popitem(last=False)
            oldest.close()

    def close(self) -> None:
        """Close every kept cursor (ignoring errors: the connection may be dead)."""
        cursors = list(self._cursors.values())
        self._cursors.clear()
        for cursor in cursors:
            with suppress(Exception):
                cursor.close()


class ConnectionPool:
    """Idle connections of one source with the statements each keeps; each connection serves
    one scan at a time (thread-safe).

    A pool collected without :meth:`close` still closes its connections properly: the kept
    statements first, which the driver requires and a collected connection cannot do itself.
    """

    def __init__(self, connect: Callable[[float | None], Connection], max_idle: int) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._kept: dict[Connection, KeptStatements] = {}  # of the idle connections that keep any
        self._closed = False
        self._lock = threading.Lock()
        self._collected = weakref.finalize(self, _close_idle, self._idle, self._kept)
        self._collected.atexit = False

    def acquire(self, deadline: float | None = None) -> tuple[Connection, bool, KeptStatements]:
        """An idle connection (``True``: reused) or a new one (``False``, connected by ``deadline``),
        with the statements it keeps (the caller's until :meth:`release`)."""
        with self._lock:
            if self._idle:
                connection = self._idle.pop()
                return connection, True, self._kept.pop(connection, None) or KeptStatements()
        return self._connect(deadline), False, KeptStatements()

    def release(self, connection: Connection, kept: KeptStatements | None = None) -> None:
        """Keep a healthy connection and its statements for later scans (or close them when enough are idle)."""
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                if kept:
                    self._kept[connection] = kept
                return
        discard(connection, kept=kept)

    def close(self) -> None:
        """Close the idle connections and their statements; connections released later are closed too."""
        with self._lock:
            self._closed = True
            idle, kept = self._idle[:], dict(self._kept)
            self._idle.clear()
            self._kept.clear()
        _close_idle(idle, kept)


def _close_idle(idle: list[Connection], kept: dict[Connection, KeptStatements]) -> None:
    for connection in idle:
        discard(connection, kept=kept.get(connection))


class Prepared(NamedTuple):
    """A pooled connection with a statement prepared on ``cursor`` (``reused``: a kept one)."""

    connection: Connection
    cursor: Cursor
    kept: KeptStatements
    reused: bool


def discard(connection: Connection, cursor: Cursor | None = None, kept: KeptStatements | None = None) -> None:
    """Close a cursor, a connection's kept statements and the connection, ignoring errors (it may be dead)."""
    if cursor is not None:
        with suppress(Exception):
            cursor.close()
    if kept is not None:
        kept.close()
    with suppress(Exception):
        connection.close()


class AdbcConnector(TypedSqlConnector):
    """A SQL source reached through an ADBC DB-API driver."""

    reuses_statements = True
    """Whether scans reuse the statements a pooled connection prepared before (see the module doc).
    A driver whose statements carry per-scan state that cannot be reset turns it off."""

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        pool_size = config.options.get("pool_size", 4)
        if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 0:
            raise ConfigError(f"domain {domain!r}: connector option pool_size must be an integer >= 0")
        self._pool = ConnectionPool(self._open, pool_size)
        self._per_row: TTLCache[str, bool] = TTLCache(maxsize=1024, ttl=STATS_SECONDS)  # by SQL (per_row)
        self._per_row_lock = threading.Lock()

    def per_row(self, sql: str) -> bool:
        """Whether the source would run a costly subquery of ``sql`` once for each row around it
        (:meth:`runs_per_row`), which the federated route never does: DataFusion turns subqueries
        into joins. True also when the source cannot tell (an error, no answer in time).

        Only SQL with a subquery other than a derived table is asked; the answer is kept
        :data:`~connectors.base.STATS_SECONDS` by the text (not the ones it could not tell).
        """
        if not _SUBQUERY.search(sql):
            return False
        with self._per_row_lock:
            known = self._per_row.get(sql)
        if known is not None:
            return known
        try:
            answer = self.runs_per_row(sql)
        except Exception as error:  # the federated route meets (and reports) what stopped the question
            log.info("[%s/%s] could not see the plan of a query: %s", self.domain, self.kind, error)
            return True
        if answer is None:
            return True
        with self._per_row_lock:
            self._per_row[sql] = answer
        return answer

    def runs_per_row(self, sql: str) -> bool | None:
        """Whether the source's plan of ``sql`` runs a costly subquery once per row around it (None:
        it cannot tell now). The default: it never does."""
        return False

    @abstractmethod
    def connect(self, deadline: float | None = None) -> Connection:
        """Open a new connection, set up for scans (autocommit, read-only where possible).

        With a ``deadline``, give up connecting at or soon after it.
        """

    def configure(self, cursor: Cursor) -> None:
        """Set statement options on a new cursor (batch sizes); a kept cursor keeps them."""

    def bound(self, connection: Connection, deadline: float) -> None:
        """Have the source end, at or after ``deadline``, whatever runs next on ``connection``
        (a query, or its wait for a lock). Undone by :meth:`unbound`."""

    def unbound(self, connection: Connection) -> None:
        """Undo :meth:`bound` before ``connection`` goes back to the pool (nothing leaks to the next query)."""

    def lost_connection(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection itself is gone (retry on a new one)."""
        return False

    def current(self, connection: Connection) -> bool:
        """Whether a pooled ``connection`` still reaches the source as it is now (else it is replaced)."""
        return True

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
        """Prepare ``sql`` now (errors raise here, by ``deadline``; a kept statement is not prepared again);
        run and stream it when iterated."""
        return self._stream(sql, schema, deadline, None)

    binds_parameters = True

    def execute_bound(
        self, sql: str, schema: pa.Schema, parameters: pa.RecordBatch, deadline: float | None = None
    ) -> SourceStream:
        """:meth:`execute` with one row of ``parameters`` bound (the driver types them from Arrow)."""
        return self._stream(sql, schema, deadline, parameters)

    def _stream(
        self, sql: str, schema: pa.Schema, deadline: float | None, parameters: pa.RecordBatch | None
    ) -> SourceStream:
        prepared = before(
            deadline,
            lambda: self.prepared(sql, deadline),
            abandon=lambda prepared: discard(prepared.connection, prepared.cursor, prepared.kept),
            source=self.source,
        )
        scan = AdbcScan(
            self,
            prepared.connection,
            prepared.cursor,
            sql,
            bound=deadline is not None,
            parameters=parameters,
            kept=prepared.kept,
            retry=(lambda: self.prepared(sql, deadline, reuse=False)) if prepared.reused else None,
        )
        return ReaderStream(schema, scan, deadline, self.source)

    @property
    def source(self) -> str:
        """``domain/kind``: how deadline errors name this source (without its location)."""
        return f"{self.domain}/{self.kind}"

    def run(self, action: Callable[[Cursor], T]) -> T:
        """Run ``action`` on a pooled cursor (for metadata queries), mapping errors.

        The connection keeps its kept statements.
        """
        connection, cursor, result, kept = self._lease(lambda connection, _: self._new_cursor(connection, action), None)
        try:
            cursor.close()
        except Exception:
            discard(connection, kept=kept)
        else:
            self._pool.release(connection, kept)
        return result

    def fetch(self, sql: str) -> pa.Table:
        """All rows of a (small) metadata query."""

        def fetch_all(cursor: Cursor) -> pa.Table:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()

        return self.run(fetch_all)

    def give_back(self, connection: Connection, kept: KeptStatements | None = None) -> None:
        """Return a healthy, unbound connection (outside any transaction) to the pool, with the statements it keeps."""
        self._pool.release(connection, kept)

    def close(self) -> None:
        self._pool.close()

    def checkout(self, action: Callable[[Cursor], T], deadline: float | None = None) -> tuple[Connection, Cursor, T]:
        """A pooled connection and a new cursor on which ``action`` succeeded (bound to ``deadline``, if any).

        A stale pooled connection (the server restarted) is dropped and the action
        retried, ending with a fresh connection at the latest. The connection's kept
        statements are closed: it comes back through :meth:`give_back` without them.
        """

        def new_cursor(connection: Connection, kept: KeptStatements) -> tuple[Cursor, T]:
            kept.close()
            return self._new_cursor(connection, action)

        connection, cursor, result, _ = self._lease(new_cursor, deadline)
        return connection, cursor, result

    def prepared(self, sql: str, deadline: float | None = None, reuse: bool = True) -> Prepared:
        """A pooled connection with ``sql`` prepared on it (bound to ``deadline``, if any).

        With ``reuse`` (and :attr:`reuses_statements`), a cursor the connection kept for ``sql``
        is taken as it is: not checked with the server (see :meth:`AdbcScan.start`). Otherwise
        ``sql`` is prepared on a new cursor, and stale pooled connections are replaced as in
        :meth:`checkout`.
        """

        def statement(connection: Connection, kept: KeptStatements) -> tuple[Cursor, bool]:
            if reuse and self.reuses_statements:
                cursor = kept.take(sql)
                if cursor is not None:
                    return cursor, True
            cursor, _ = self._new_cursor(connection, lambda cursor: cursor.adbc_prepare(sql))
            return cursor, False

        connection, cursor, reused, kept = self._lease(statement, deadline)
        return Prepared(connection, cursor, kept, reused)

    def keep(self, kept: KeptStatements, sql: str, cursor: Cursor) -> None:
        """Keep ``cursor`` (``sql`` prepared, its result read to the end) in ``kept`` for reuse, or close it."""
        if self.reuses_statements:
            kept.keep(sql, cursor)
        else:
            cursor.close()

    def _new_cursor(self, connection: Connection, action: Callable[[Cursor], T]) -> tuple[Cursor, T]:
        """A new cursor on ``connection`` on which ``action`` succeeded (else the cursor is closed)."""
        cursor = connection.cursor()
        try:
            self.configure(cursor)
            return cursor, action(cursor)
        except Exception:
            with suppress(Exception):
                cursor.close()
            raise

    def _lease(
        self, step: Callable[[Connection, KeptStatements], tuple[Cursor, T]], deadline: float | None
    ) -> tuple[Connection, Cursor, T, KeptStatements]:
        """A pooled connection (bound to ``deadline``, if any) on which ``step`` gave a cursor, and its kept statements.

        A reused connection that turns out to be lost, or no longer reaches the source as it is now
        (:meth:`current`), is dropped and ``step`` retried on another, ending with a fresh connection
        at the latest; any other failure closes it and raises.
        """
        while True:
            connection, reused, kept = self._pool.acquire(deadline)
            if reused and not self.current(connection):
                discard(connection, kept=kept)
                continue
            try:
                if deadline is not None:
                    self.bound(connection, deadline)
                cursor, result = step(connection, kept)
            except Exception as exc:
                discard(connection, kept=kept)
                if reused and self.lost_connection(exc):
                    continue
                raise self.error(exc) from exc
            return connection, cursor, result, kept

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
    """One prepared statement on its own connection (a :class:`SourceScan`).

    ``kept``: the statements the connection keeps, which the cursor joins when the scan reads
    every row. ``retry``: given when the cursor is a kept one (not prepared for this scan), how
    to prepare the statement on another connection should the kept one's be lost.
    """

    def __init__(
        self,
        connector: AdbcConnector,
        connection: Connection,
        cursor: Cursor,
        sql: str,
        bound: bool,
        parameters: pa.RecordBatch | None = None,
        kept: KeptStatements | None = None,
        retry: Callable[[], Prepared] | None = None,
    ) -> None:
        self._connector = connector
        self._parameters = parameters  # one row bound to the statement's placeholders
        self._connection = connection
        self._cursor = cursor
        self._kept = kept if kept is not None else KeptStatements()
        self._sql = sql
        self._bound = bound  # the connection carries the scan's deadline until unbound
        self._retry = retry
        self._reader: Any = None
        self._started = False
        self._lock = threading.Lock()  # interrupt() against start() replacing a lost connection
        self._interrupted = False
        self._closed = False  # the connection was discarded (a kept statement's, lost)

    def start(self) -> Iterator[pa.RecordBatch]:
        """Run the statement, up to its first batch.

        A kept statement whose connection is lost (the failure shows here, not at preparation)
        is retried once, prepared on another connection: nothing was read from it yet.
        """
        self._started = True
        try:
            batches = self._run()
        except Exception as exc:
            if self._retry is None or not self._connector.lost_connection(exc):
                raise
            with self._lock:
                if self._interrupted:
                    raise
                self._closed = True  # never cancel a closed cursor (interrupt, finish)
                discard(self._connection, self._cursor, self._kept)
            again = self._retry()
            with self._lock:
                if self._interrupted:
                    discard(again.connection, again.cursor, again.kept)
                    raise
                self._connection, self._cursor, self._kept = again.connection, again.cursor, again.kept
                self._closed = False
            batches = self._run()
        return map(self._connector.received, batches)

    def _run(self) -> Iterator[pa.RecordBatch]:
        self._cursor.execute(self._sql, self._parameters)
        self._reader = self._cursor.fetch_record_batch()
        batches = iter(self._reader)
        first = next(batches, None)
        return iter(()) if first is None else chain((first,), batches)

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            if not self._closed:
                self._cursor.adbc_cancel()

    def finish(self, complete: bool) -> None:
        if complete:
            try:
                self._reader.close()  # the result is done with; the prepared statement stays
                if self._bound:
                    self._connector.unbound(self._connection)
                self._connector.keep(self._kept, self._sql, self._cursor)
            except Exception:
                discard(self._connection, self._cursor, self._kept)
            else:
                self._connector.give_back(self._connection, self._kept)
            return
        if self._started and not self._closed:
            with suppress(Exception):  # stop a half-read result before closing (else closing drains it)
                self._cursor.adbc_cancel()
        discard(self._connection, self._cursor, self._kept)

    def error(self, exc: Exception) -> SourceError:
        return self._connector.error(exc)


__all__ = ["KEPT_STATEMENTS", "AdbcConnector", "AdbcScan", "ConnectionPool", "KeptStatements", "Prepared", "discard"]
