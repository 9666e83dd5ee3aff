"""Reads of one table split into ranges, each on a connection of its own, merged into one stream.

A connector that splits a big table's read (PostgreSQL in ``ctid`` page ranges,
:mod:`connectors.ctid`; SQLite in ``rowid`` ranges, :mod:`connectors.rowid`) opens one
:class:`Part` per range, each in a read transaction that sees the same state of the table, and
hands them to :class:`PartitionedScan`. It reads the ranges concurrently, one thread each, into
one small queue that :class:`~connectors.sqlbase.ReaderStream` drains like any other scan
(cancel, deadline, errors, conversion). A range's connection goes back to the pool (its read
transaction rolled back) only when the range was read whole and never interrupted; otherwise
it is closed.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
from adbc_driver_manager.dbapi import Connection, Cursor
from sqlglot import exp

from connectors import threads
from connectors.adbc import discard
from connectors.base import ScanSpec
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from connectors.adbc import AdbcConnector

MAX_PARTITIONS = 32
"""The most ranges one scan may be split into (``max_partitions``): a domain's file, which its
owner may change over the network, must not make one query open thousands of threads and connections."""
BOUND_ROWS = 1_000_000
"""A scan's limit of at least so many rows does not keep it from being split (:meth:`TableScans.remember`)."""
_POLL = 0.1  # seconds between looks at a stop while waiting on the queue
_REMEMBERED_SCANS = 256


class TableScans:
    """The scans of whole tables (no limit, or a bound) a connector may split, by their SQL, the last 256.

    ``scan_sql`` turns a :class:`~connectors.base.ScanSpec` into SQL, and ``execute`` later gets
    only that SQL: the connector remembers the spec in between.
    """

    def __init__(self, max_partitions: int, queries: bool = False) -> None:
        self.max_partitions = max_partitions
        self.queries = queries  # derived queries that may be split on one of their tables (SourceObject.split)
        self._specs: OrderedDict[str, ScanSpec] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, sql: str, spec: ScanSpec) -> str:
        """Remember ``spec`` as the scan ``sql`` runs, if it reads a whole table that may be split; returns ``sql``.

        A read with a limit is not split, unless the limit is a bound rather than a cut (at least
        :data:`BOUND_ROWS`: the planner reads a join input or a shared read while it plans with one):
        each range is then asked for at most that many rows, and DataFusion's limit above the scan
        keeps as many as the query asked for.
        """
        splits = spec.source.table is not None or (self.queries and spec.source.split is not None)
        cut = spec.limit is not None and spec.limit < BOUND_ROWS
        if not splits or cut or self.max_partitions < 2:
            return sql
        with self._lock:
            self._specs[sql] = spec
            self._specs.move_to_end(sql)
            while len(self._specs) > _REMEMBERED_SCANS:
                self._specs.popitem(last=False)
        return sql

    def splittable(self, sql: str) -> ScanSpec | None:
        """The spec of the table scan ``sql`` if it is one remembered and may be split into ranges now."""
        with self._lock:
            spec = self._specs.get(sql)
        return spec if spec is not None and most_ranges(self.max_partitions, spec) > 1 else None


class Budget:
    """How many range reads of one connector run at once, at most its ``max_partitions``.

    A query reading two big tables at once (TPC-H Q11 reads partsupp twice) splits the first and
    reads the second on one connection, rather than running more reading threads than cores.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """How many ranges a read may be split into now, at most ``wanted``; taken until :meth:`give`
        back, one by one. 1 (nothing taken): read it on one connection."""
        with self._lock:
            granted = min(wanted, self.size - self._used)
            if granted < 2:
                return 1
            self._used += granted
            return granted

    def give(self, count: int = 1) -> None:
        """Give back ``count`` ranges' places (each range when its read is over)."""
        with self._lock:
            self._used = max(0, self._used - count)


def most_ranges(max_partitions: int, spec: ScanSpec) -> int:
    """The most ranges ``spec``'s read may be split into: the connector's ``max_partitions`` shared
    among the reads of the product the query runs at once (``ScanSpec.reads``)."""
    return max(1, max_partitions // max(1, spec.reads))


def close_parts(first: tuple[Connection, Cursor], parts: list[Part]) -> None:
    """Close the connections of ``parts`` (opening them failed), or ``first``'s when none was made."""
    if not parts:
        discard(*first)
    for part in parts:
        discard(part.connection, part.cursor)


def partition_options(config: ConnectorConfig, domain: str, default: int) -> int:
    """The connector option ``max_partitions`` (``default`` when absent), checked: 1 to :data:`MAX_PARTITIONS`."""
    parts = positive_option(config, domain, "max_partitions", default)
    if parts > MAX_PARTITIONS:  # each is a thread and a connection of the gateway's
        raise ConfigError(f"domain {domain!r}: connector option max_partitions must be at most {MAX_PARTITIONS}")
    return parts


def positive_option(config: ConnectorConfig, domain: str, name: str, default: int) -> int:
    """The integer connector option ``name`` (``default`` when absent); a clear error unless it is >= 1."""
    value = config.options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"domain {domain!r}: connector option {name} must be an integer >= 1")
    return value


def ranges(low: int, high: int, parts: int) -> list[tuple[int | None, int | None]]:
    """``parts`` ranges ``[a, b)`` cutting ``[low, high)`` evenly; the first open below, the last above.

    Rows beyond the bounds the split was made from (added since) fall in the first or last range.

    >>> ranges(0, 100, 3)
    [(None, 33), (33, 66), (66, None)]
    >>> ranges(1, 11, 2)
    [(None, 6), (6, None)]
    """
    bounds = [low + (high - low) * i // parts for i in range(1, parts)]
    lows: list[int | None] = [None, *bounds]
    highs: list[int | None] = [*bounds, None]
    return list(zip(lows, highs, strict=True))


def restrict(
    query: exp.Expr, conditions: Callable[[str], list[str]], dialect: str, table: str | None = None
) -> exp.Expr:
    """``query`` with ``conditions(alias)`` ANDed into the WHERE of the SELECT that reads its one table,
    or, given ``table`` (a name as ``SourceObject.table`` writes it), that table, which it reads once.

    ``alias`` is that table's alias (or name), quoted in ``dialect``.
    """
    query = query.copy()
    tables = list(query.find_all(exp.Table))
    if table is not None:
        wanted = exp.to_table(table, dialect=dialect)
        tables = [found for found in tables if (found.name, found.db) == (wanted.name, wanted.db)]
    if len(tables) != 1:
        raise ValueError(f"a range needs a query reading its table once, not {len(tables)} times")
    read = tables[0]
    select = read.find_ancestor(exp.Select)
    assert select is not None
    added = conditions(exp.to_identifier(read.alias_or_name, quoted=True).sql(dialect))
    if added:
        select.where(exp.condition(" AND ".join(added), dialect=dialect), copy=False)
    return query


@dataclass
class Part:
    """One range: its query, prepared on a connection of its own, in a read transaction that sees the shared state."""

    connection: Connection
    cursor: Cursor
    sql: str
    lock: threading.Lock
    started: bool = False
    interrupted: bool = False
    released: bool = False


class PartitionedScan:
    """The ranges of one scan read concurrently into one bounded queue (a :class:`~connectors.sqlbase.SourceScan`)."""

    def __init__(self, connector: AdbcConnector, parts: list[Part], bound: bool, budget: Budget) -> None:
        self._connector = connector
        self._parts = parts
        self._budget = budget  # each part's place, given back when the part is released
        self._bound = bound  # the connections carry the scan's deadline until unbound
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)  # and each range's thread holds one more
        self._stop = threading.Event()
        self.detail: str | None = None

    def start(self) -> Iterator[pa.RecordBatch]:
        for number, part in enumerate(self._parts):
            threads.start(self._read, part, name=f"ctid-range-{number}")
        return self._merged()

    def interrupt(self) -> None:
        for part in self._parts:
            with part.lock:  # never cancel on a connection that went back to the pool
                if part.released:
                    continue
                part.interrupted = True
                if part.started:
                    with suppress(Exception):
                        part.cursor.adbc_cancel()

    def finish(self, complete: bool) -> None:
        """Stop the ranges still running; ranges never started are closed here, the others by their threads."""
        self._stop.set()
        if complete:
            return  # every range was read whole and released by its own thread
        self.interrupt()
        for part in self._parts:
            with part.lock:
                idle = not part.started and not part.released
                part.released = part.released or idle
            if idle:
                self._budget.give()
                discard(part.connection, part.cursor)

    def error(self, exc: Exception) -> SourceError:
        return self._connector.error(exc)

    def _merged(self) -> Iterator[pa.RecordBatch]:
        left = len(self._parts)
        while left:
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _DONE:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                assert isinstance(item, pa.RecordBatch)
                yield item

    def _read(self, part: Part) -> None:
        """A range's thread: run its query, queue its batches, release its connection."""
        complete = False
        try:
            with part.lock:
                if part.released or self._stop.is_set():
                    return
                part.started = True
            part.cursor.execute(part.sql)
            for batch in part.cursor.fetch_record_batch():
                if not self._put(self._connector.received(batch)):
                    return
            complete = True
        except Exception as error:
            if not self._stop.is_set():
                self._put(error)
        finally:
            self._release(part, complete)
        if complete:
            self._put(_DONE)

    def _release(self, part: Part, complete: bool) -> None:
        with part.lock:
            if part.released:
                return
            part.released = True
            reusable = complete and not part.interrupted
        self._budget.give()
        if not reusable:
            if part.started:
                with suppress(Exception):  # stop a half-read result before closing (else closing drains it)
                    part.cursor.adbc_cancel()
            discard(part.connection, part.cursor)
            return
        try:
            part.cursor.close()
            with part.connection.cursor() as cursor:
                cursor.execute("ROLLBACK")  # end the read transaction
            if self._bound:
                self._connector.unbound(part.connection)
        except Exception:
            discard(part.connection)
        else:
            self._connector.give_back(part.connection)

    def _put(self, item: object) -> bool:
        """Queue ``item`` for the consumer; False once the scan is stopped."""
        return threads.offer(self._queue, item, self._stop.is_set, _POLL)


_DONE = object()

__all__ = [
    "MAX_PARTITIONS",
    "Budget",
    "Part",
    "PartitionedScan",
    "TableScans",
    "close_parts",
    "most_ranges",
    "partition_options",
    "positive_option",
    "ranges",
    "restrict",
]
