"""What every SQL source shares: typed product columns, scan SQL shaping, streaming with casts.

A source's own values and comparisons do not always match Arrow's, so each product
column is a :class:`SourceColumn` that says how to bridge the two:

- ``type``: the exact Arrow type the engine sees;
- ``view_as``: a SQL type the product's relation presents the column as, when the
  source compares the raw column differently from DataFusion on ``type`` (PostgreSQL
  enums order by declaration, ``char(n)`` ignores trailing blanks). Pushed predicates
  then see the very values the engine sees;
- ``guard``: an expression over the raw column that the relation presents instead
  (before ``view_as``), making the source fail on values Arrow cannot hold exactly
  rather than send them mangled (PostgreSQL arrays of several dimensions). Being part
  of the relation, it holds for scans and for whole queries alike;
- ``read``: how a scan reads the column so that every value arrives exactly (SQLite
  decimals are read as text); predicates keep using the raw column;
- ``collation``: the source's collation of a text column, when it does not compare as
  bytes (DataFusion does). A collation under which distinct strings can be equal
  (SQLite ``NOCASE``/``RTRIM``, PostgreSQL's nondeterministic ones) is overridden in the
  relation by the dialect's binary collation (``string_collation``), so that equality,
  grouping, joins, ordering and LIKE all see bytes on every route; a deterministic one
  (PostgreSQL ``en_US``, ICU) only orders differently, which the planner handles where
  text is ordered (``gateway/pushdown.py`` for pushed filters, ``gateway/bytewise.py`` for
  whole queries).

:class:`ReaderStream` streams a source's record batches, each cast to the expected
schema by :func:`conform`, which converts exactly or raises.
"""

from __future__ import annotations

import queue
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from connectors import threads
from connectors.base import ScanSpec, SourceObject, SourceStream, SqlConnector
from connectors.deadline import expired, passed
from meshcore.arrow import is_text
from meshcore.config import ConnectorConfig
from meshcore.errors import MeshgateError, SourceError

Read = Callable[[exp.Expr], exp.Expr]


@dataclass(frozen=True)
class Collation:
    """A text column's collation in its source, when it is not byte order.

    ``deterministic``: strings are equal only when their bytes are (only the order differs).
    """

    name: str
    deterministic: bool


@dataclass(frozen=True)
class SourceColumn:
    """One product column: its Arrow type and how the source must present and read it."""

    name: str
    type: pa.DataType
    view_as: str | None = None
    read: Read | None = None
    guard: Read | None = None
    collation: Collation | None = None

    def rebinds(self, binary: str | None) -> bool:
        """Whether the relation presents this column in ``binary`` (the dialect's byte-order collation)."""
        return binary is not None and self.collation is not None and not self.collation.deterministic


class TypedSqlConnector(SqlConnector):
    """A SQL source whose products are described column by column (see the module doc).

    Subclasses implement :meth:`describe` (over :meth:`raw_relation`) and ``execute``.
    """

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        super().__init__(domain, config)
        self._columns: dict[SourceObject, tuple[SourceColumn, ...]] = {}
        self._columns_lock = threading.Lock()

    @abstractmethod
    def describe(self, source: SourceObject) -> list[SourceColumn]:
        """Ask the source for the product's columns (raises SourceError)."""

    def columns(self, source: SourceObject) -> tuple[SourceColumn, ...]:
        """The product's columns, described once and kept until :meth:`schema` is asked again."""
        if source.columns is not None:  # a query the planner derived: its columns are known
            return source.columns
        with self._columns_lock:
            cached = self._columns.get(source)
        return cached if cached is not None else self._describe(source)

    def schema(self, source: SourceObject) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self._describe(source)])

    def _describe(self, source: SourceObject) -> tuple[SourceColumn, ...]:
        columns = tuple(self.describe(source))
        with self._columns_lock:
            self._columns[source] = columns
        return columns

    def raw_relation(self, source: SourceObject, alias: str) -> exp.Expr:
        """The product's table or query as the source holds it."""
        return super().relation(source, alias)

    def relation(self, source: SourceObject, alias: str) -> exp.Expr:
        """The product as the engine sees it: columns with ``guard``, ``view_as`` and a binary collation
        (see :class:`SourceColumn`) applied in a subquery."""
        return self.present(source, self.columns(source), alias)

    def present(self, source: SourceObject, columns: Iterable[SourceColumn], alias: str) -> exp.Expr:
        """:meth:`relation` for these ``columns`` (a subclass asks it while describing the product)."""
        columns = tuple(columns)
        binary = self.capabilities.string_collation
        if not any(c.view_as or c.guard or c.rebinds(binary) for c in columns):
            return self.raw_relation(source, alias)
        dialect = self.capabilities.dialect
        items = []
        for c in columns:
            column: exp.Expr = exp.column(c.name, table="s", quoted=True)
            if not (c.view_as or c.guard or c.rebinds(binary)):
                items.append(column)
                continue
            if c.guard:
                column = c.guard(column)
            if c.view_as:
                column = exp.cast(column, c.view_as, dialect=dialect)
            if c.rebinds(binary):
                assert binary is not None
                column = exp.Collate(this=column, expression=exp.Identifier(this=binary, quoted=True))
            items.append(column.as_(c.name, quoted=True))
        query = exp.select(*items).from_(self.raw_relation(source, "s"))
        return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))

    def scan_query(self, spec: ScanSpec) -> exp.Expr:
        """The base scan, wrapped in an outer select when some columns need a ``read``."""
        inner = super().scan_query(spec)
        reads = {c.name: c.read for c in self.columns(spec.source) if c.read is not None}
        if not any(name in reads for name in spec.columns):
            return inner
        items = []
        for name in spec.columns:
            column = exp.column(name, table="q", quoted=True)
            read = reads.get(name)
            items.append(read(column).as_(name, quoted=True) if read else column)
        alias = exp.TableAlias(this=exp.to_identifier("q", quoted=True))
        return exp.select(*items).from_(exp.Subquery(this=inner, alias=alias))


class ConversionError(ValueError):
    """A value the source returned has no exact representation in the column's Arrow type."""


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s names and types (by position), without field metadata.

    Opaque/extension and dictionary columns are unwrapped (inside lists too); numbers
    become decimals through their text (so ``12.345`` never silently rounds into
    ``decimal(12, 2)``); ISO text becomes times of day; every cast is safe: a value
    that does not fit raises :class:`ConversionError`.
    """
    if len(schema) == 0:
        return batch.select([])
    if batch.num_columns != len(schema):
        raise ConversionError(f"the source returned {batch.num_columns} columns, expected {len(schema)}")
    arrays = [convert(batch.column(i), field.type, field.name) for i, field in enumerate(schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def convert(array: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    """One column cast exactly to ``target`` (see :func:`conform`)."""
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.type == target:
        return _in_day(array, name) if pa.types.is_time(target) else array
    source = array.type
    if pa.types.is_null(target):
        # DataFusion types a bare NULL (``SELECT NULL AS v``) as Null; a source sends it as text or
        # an integer (and a value that is not NULL cannot be one).
        if array.null_count != len(array):
            raise ConversionError(f"column {name!r}: the source returned values where DataFusion expects only NULL")
        return pa.nulls(len(array))
    if _is_list(source) and _is_list(target):
        return _convert_list(array, target, name)
    if (pa.types.is_date(target) or pa.types.is_timestamp(target)) and not (
        is_text(source) or pa.types.is_temporal(source) or pa.types.is_null(source)
    ):
        raise ConversionError(f"column {name!r}: {source} values are not dates or timestamps")
    try:
        if pa.types.is_time(target) and is_text(source):
            return _in_day(_time_from_text(array, target), name)
        if pa.types.is_decimal(target) and (pa.types.is_floating(source) or pa.types.is_integer(source)):
            array = array.cast(pa.string())
        converted = array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ConversionError(f"column {name!r}: cannot convert {source} to {target} exactly: {error}") from error
    return _in_day(converted, name) if pa.types.is_time(target) else converted


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _convert_list(array: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    """A list column with its elements converted (and its child field renamed) exactly."""
    if pa.types.is_fixed_size_list(target) != pa.types.is_fixed_size_list(array.type):
        raise ConversionError(f"column {name!r}: cannot convert {array.type} to {target}")
    values = convert(array.values, target.value_type, f"{name}[]")
    mask = array.is_null() if array.null_count else None
    if pa.types.is_fixed_size_list(target):
        if array.offset:  # .values is the whole child array: take the slice's own elements
            values = values.slice(array.offset * target.list_size, len(array) * target.list_size)
        return pa.FixedSizeListArray.from_arrays(values, type=target, mask=mask)
    offsets = array.offsets
    if pa.types.is_large_list(target) != pa.types.is_large_list(array.type):
        offsets = offsets.cast(pa.int64() if pa.types.is_large_list(target) else pa.int32())
    kind = pa.LargeListArray if pa.types.is_large_list(target) else pa.ListArray
    return kind.from_arrays(offsets, values, type=target, mask=mask)


_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def _time_from_text(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``'HH:MM:SS[.ffffff]'`` text as times of day (Arrow has no direct cast)."""
    text = array.cast(pa.string())
    stamps = pc.binary_join_element_wise("1970-01-01 ", text, "").cast(pa.timestamp(target.unit))
    return stamps.cast(pa.int64()).cast(pa.int32() if target.bit_width == 32 else pa.int64()).view(target)


def _in_day(array: pa.Array, name: str) -> pa.Array:
    """``array`` if every time is before 24:00 (sources allow ``24:00:00``; Arrow does not)."""
    if array.null_count == len(array):
        return array
    raw = array.view(pa.int32() if array.type.bit_width == 32 else pa.int64())
    bounds = pc.min_max(raw)
    if bounds["min"].as_py() < 0 or bounds["max"].as_py() >= _DAY[array.type.unit]:
        raise ConversionError(f"column {name!r}: a time of day of 24:00:00 or later has no {array.type} value")
    return array


class SourceScan(Protocol):
    """One source query, as :class:`ReaderStream` drives it."""

    def start(self) -> Iterable[pa.RecordBatch]:
        """Run the query (may block until its first rows; :meth:`interrupt` stops it)."""

    def interrupt(self) -> None:
        """Ask the source to stop the query; called from any thread, may block (a frozen server)."""

    def finish(self, complete: bool) -> None:
        """Release the query's resources; ``complete`` says every row was read and nothing interrupted it."""

    def error(self, exc: Exception) -> SourceError:
        """The gateway error for a failure of this query."""


_END = object()
_CANCELLED = object()
QUEUED_BATCHES = 2
_POLL = 0.1  # seconds between looks at a cancel while waiting


class ReaderStream(SourceStream):
    """A :class:`SourceStream` over a :class:`SourceScan`: the query runs from :meth:`start` or the
    first iteration, in a thread of its own that hands batches over through a small queue.

    So the consumer never waits on the source past a cancel or the ``deadline``, however stuck
    the source is. ``cancel()`` (any thread) never blocks: it asks the source to stop the query
    from yet another thread, and the stream ends quietly. At the deadline the stream raises
    :func:`~connectors.deadline.expired` and stops the query the same way. ``source`` names
    the source in that error (``domain/kind``). The query's resources are released exactly
    once: by the reading thread when it ends, or by :meth:`close` if it never started.
    """

    def __init__(self, schema: pa.Schema, scan: SourceScan, deadline: float | None = None, source: str = "") -> None:
        self._scan = scan
        self._deadline = deadline
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUED_BATCHES)
        self._state = threading.Lock()  # guards the four flags below; never held while calling the source
        self._started = False
        self._closed = False
        self._drained = False  # the consumer took every batch: the reading thread releases the query as complete
        self._interrupting = False
        self._finish_lock = threading.Lock()  # finish and interrupt exclude each other
        self._finished = False
        self._interrupted = False
        super().__init__(schema, self._read())

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from super().__iter__()
        finally:
            self.close()

    def start(self) -> None:
        """Run the query now, so that its first batches are on their way before anyone asks for them."""
        self._run_once()

    def _run_once(self) -> bool:
        """Start the reading thread unless it runs already; False once the stream is closed or cancelled."""
        with self._state:
            if self._closed or self.cancelled:  # never start a query nobody will read
                return False
            started, self._started = self._started, True
        if not started:
            threads.start(self._pump, self.schema, name=f"source-{self._source}")
        return True

    def cancel(self) -> None:
        super().cancel()
        with self._state:
            if not self._started or self._drained or self._interrupting:
                return
            self._interrupting = True
        threads.start(self._interrupt, name="source-interrupt")

    def close(self) -> None:
        """Stop and release the source query unless it was read to the end (idempotent, never blocks)."""
        with self._state:
            self._closed = True
            started, drained = self._started, self._drained
        if drained:
            return
        self.cancel()
        if not started:
            self._finish(complete=False)

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()

    def _read(self) -> Generator[pa.RecordBatch]:
        if not self._run_once():
            return
        while True:
            item = self._take()
            if item is _CANCELLED:
                return
            if item is _END:
                with self._state:
                    self._drained = True
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield item

    def _take(self) -> object:
        """The next item from the reading thread (_CANCELLED once cancelled); raises at the deadline."""
        while True:
            wait = _POLL
            if self._deadline is not None:
                wait = min(wait, self._deadline - time.monotonic())
                if wait <= 0:
                    self.cancel()
                    raise expired(self._source)
            try:
                return self._queue.get(timeout=wait)
            except queue.Empty:
                if self.cancelled:
                    return _CANCELLED

    def _pump(self, schema: pa.Schema) -> None:
        """The reading thread: run the query, hand its batches over, release it."""
        complete = False
        try:
            for batch in self._scan.start():
                if not self._hand(conform(batch, schema)):
                    return
            complete = True
            self._finish(complete)  # back in its pool before the consumer sees the end
            self._hand(_END)
        except Exception as error:
            if not self.cancelled:
                self._hand(self._failure(error))
        finally:
            self._finish(complete)

    def _failure(self, error: Exception) -> Exception:
        if passed(self._deadline):  # the source's own timeouts end at the deadline
            return expired(self._source)
        if isinstance(error, MeshgateError):
            return error
        failure = self._scan.error(error)
        failure.__cause__ = error
        return failure

    def _hand(self, item: object) -> bool:
        """Queue ``item`` for the consumer; False once the stream is cancelled."""
        return threads.offer(self._queue, item, lambda: self.cancelled, _POLL)

    def _interrupt(self) -> None:
        with self._finish_lock:  # never interrupt a connection that went back to its pool
            if self._finished:
                return
            self._interrupted = True
            with suppress(Exception):  # best effort: the reading thread also stops at its next batch
                self._scan.interrupt()

    def _finish(self, complete: bool) -> None:
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
            with self._state:  # an interrupt asked for but not yet sent may still reach the connection
                interrupting = self._interrupting
            self._scan.finish(complete and not self._interrupted and not interrupting)
