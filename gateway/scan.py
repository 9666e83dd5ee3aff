"""Lazy, streaming scans of SQL sources, plugged into DataFusion as pyarrow datasets.

DataFusion's Python API has no table-provider hook, but it accepts a subclass of
``pyarrow.dataset.Dataset`` and calls, by name: ``schema``, ``scanner(columns=,
filter=)`` (for the projected schema), ``get_fragments(filter=)`` and, per partition
at execution, ``fragment.scanner(schema, columns=, filter=, batch_size=)`` followed by
``to_batches()``. ``tests/test_scan.py`` pins that behaviour.

``filter`` carries the predicates DataFusion marked *exact* for the scan: they are
applied here unless the planner proved the source already applied all of them, with
NaN compared as DataFusion compares it (:mod:`gateway.nan_order`).
Each fragment starts its source query in a background thread that prefetches a few
batches, so independent sources run concurrently and memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from datafusion import Expr
from sqlglot import exp, parse_one

from connectors import threads
from connectors.base import ScanSpec, SourceStream, SqlConnector
from gateway.catalog import Product
from gateway.errors import MeshgateError, PermissionDeniedError, QueryCancelledError, SourceError
from gateway.nan_order import datafusion_order
from gateway.plan.substrait_plan import referenced_columns
from gateway.policy import Access
from gateway.pushdown import translate

PREFETCH_BATCHES = 4


@dataclass
class Occurrence:
    """One place a product is scanned in a plan, with what was agreed to push down."""

    columns: tuple[str, ...]
    pushed: list[exp.Expr]
    kept: list[str]
    exact_filters_pushed: bool
    limit: int | None = None

    @property
    def predicate(self) -> exp.Expr | None:
        if not self.pushed:
            return None
        return exp.and_(*self.pushed) if len(self.pushed) > 1 else self.pushed[0]


@dataclass
class SourceQuery:
    """A query one source received: its SQL and what came back (for EXPLAIN ANALYZE)."""

    domain: str
    source: str
    product: str
    sql: str
    rows: int = 0
    bytes: int = 0
    batches: int = 0
    detail: str | None = None  # how the source read it, when not on one connection ("read in 2 ctid ranges ...")
    started: float = 0.0
    finished: float | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Guard:
    """What the policies demand of every source query of one product, for one caller.

    ``columns`` are the only ones the source may be asked for (the granted ones and those
    the row filter reads); ``predicate`` is the row filter as far as the source evaluates
    it exactly, ANDed into every query whatever the plan's shape; ``complete`` says it is
    all of it (otherwise the view's own filter, directly above the scan, applies the rest).
    """

    columns: tuple[str, ...]
    predicate: exp.Expr | None = None
    complete: bool = True


def guard(product: Product, access: Access, row_filter: Expr | None) -> Guard:
    """The :class:`Guard` of ``product`` under ``access``; ``row_filter`` is the view's filter predicate."""
    schema = product.schema
    wanted = set(access.columns)
    predicate: exp.Expr | None = None
    complete = row_filter is None
    if access.row_filter is not None:
        for column in parse_one(access.row_filter, read="postgres").find_all(exp.Column):
            name = column.name if column.name in schema.names else column.name.lower()
            wanted.add(name)
    if row_filter is not None and isinstance(product.connector, SqlConnector):
        agreed = translate([row_filter], schema, product.connector.capabilities)
        predicate, complete = agreed.predicate, not agreed.kept
    return Guard(tuple(name for name in schema.names if name in wanted), predicate, complete)


@dataclass
class ProductScan:
    """All scans of one product within one query."""

    product: Product
    guard: Guard | None = None
    occurrences: list[Occurrence] = field(default_factory=list)
    queries: list[SourceQuery] = field(default_factory=list)
    streams: list[PrefetchedStream] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    blind: bool = False  # the plan has scans of it the planner could not see (see negotiate_scans)
    verify: bool = False  # its pushdown was negotiated before the plan was final: filter its rows here too
    deadline: float | None = None  # when its source queries must be over (connectors/deadline.py)
    reads: int = 1  # the query's reads of this product at once (ScanSpec.reads)

    @property
    def connector(self) -> SqlConnector:
        connector = self.product.connector
        assert isinstance(connector, SqlConnector)
        return connector

    @property
    def fetchable(self) -> tuple[str, ...]:
        """The columns a source query of this product may ask for (the guard's, or all)."""
        return self.guard.columns if self.guard is not None else tuple(self.product.schema.names)

    def spec(self, columns: tuple[str, ...]) -> tuple[ScanSpec, bool]:
        """The source query for ``columns``, and whether DataFusion's exact filters
        still need applying here (they do unless one occurrence pushed them all).
        The guard's row filter is part of every one."""
        if len(self.occurrences) == 1 and self.occurrences[0].exact_filters_pushed:
            only = self.occurrences[0]
            if self.verify:  # the source filters as negotiated; what DataFusion asks is checked here
                return self._guarded(columns, only.predicate), True
            return self._guarded(columns, only.predicate, only.limit), False
        if self.blind or not self.occurrences:
            # Scans the plan walk cannot reach (subqueries kept as expressions: the Python
            # binding does not expose their plans): fetch the requested columns and apply
            # DataFusion's filter here.
            return self._guarded(columns, None), True
        # Several scans of one product (a self-join, a CTE used twice): each asks for the
        # union of their rows; each applies its own filter here.
        predicates = [occurrence.predicate for occurrence in self.occurrences]
        predicate: exp.Expr | None = None
        if predicates and all(p is not None for p in predicates):
            predicate = exp.or_(*[exp.Paren(this=p) for p in predicates if p is not None])
        return self._guarded(columns, predicate), True

    def estimate(self, predicate: exp.Expr | None) -> int | None:
        """About how many rows a source query of this product with ``predicate`` returns, held to
        the guard (``SqlConnector.estimate_scan``)."""
        return self.connector.estimate_scan(self._guarded((), predicate))

    def _guarded(self, columns: tuple[str, ...], predicate: exp.Expr | None, limit: int | None = None) -> ScanSpec:
        """A scan of ``columns`` with ``predicate``, held to the guard (fails closed on other columns)."""
        if self.guard is not None:
            outside = [name for name in columns if name not in self.guard.columns]
            if outside:
                raise PermissionDeniedError(
                    f"access denied: {self.product.qualified_name}.{outside[0]} is not a column the caller may read"
                )
            if self.guard.predicate is not None:
                guarded = exp.Paren(this=self.guard.predicate.copy())
                predicate = guarded if predicate is None else exp.and_(guarded, exp.Paren(this=predicate))
        return ScanSpec(self.product.source, columns, predicate, limit, self.reads)

    def cancel(self) -> None:
        self.cancelled.set()
        for stream in list(self.streams):
            stream.cancel()

    @property
    def error(self) -> BaseException | None:
        return next((query.error for query in self.queries if query.error is not None), None)


class ProductDataset(ds.Dataset):  # type: ignore[misc]
    """A product seen by DataFusion: a pyarrow Dataset whose only fragment queries the source.

    DataFusion builds each scan's physical plan by calling ``scanner(columns=,
    filter=)`` and then ``get_fragments()``: the fragment starts its source query
    right there, so that every source of a query starts at once, not only when the
    join above it first asks for rows.
    """

    def __init__(self, scan: ProductScan) -> None:
        self._scan = scan
        self._last_request: tuple[list[str] | None, Any] = (None, None)

    @property
    def schema(self) -> pa.Schema:
        return self._scan.product.schema

    def scanner(self, columns: list[str] | None = None, filter: Any = None, **_: Any) -> _Scanner:
        self._last_request = (columns, filter)
        return _Scanner(self._scan, columns, filter)

    def get_fragments(self, filter: Any = None) -> list[_Fragment]:
        columns, _ = self._last_request
        started = _Scanner(self._scan, columns, filter)
        started.start()
        return [_Fragment(self._scan, started)]


class _Fragment:
    def __init__(self, scan: ProductScan, started: _Scanner) -> None:
        self._scan = scan
        self._started: _Scanner | None = started

    def scanner(
        self, schema: pa.Schema | None = None, columns: list[str] | None = None, filter: Any = None, **_: Any
    ) -> _Scanner:
        started, self._started = self._started, None
        if started is not None and started.serves(columns, filter):
            return started
        if started is not None:
            started.cancel()
        return _Scanner(self._scan, columns, filter)


def _request(schema: pa.Schema, columns: list[str] | None, filter: Any) -> tuple[tuple[str, ...], bool, Any]:
    """A scan request as ``(columns, no_rows, filter)``.

    A filter DataFusion folded to a constant arrives as a BooleanScalar, not an Expression:
    false means no rows, true means no filter.
    """
    names = tuple(columns) if columns is not None else tuple(schema.names)
    no_rows = isinstance(filter, pa.BooleanScalar) and filter.as_py() is not True
    return names, no_rows, None if isinstance(filter, pa.Scalar) else filter


class _Scanner:
    def __init__(self, scan: ProductScan, columns: list[str] | None, filter: Any) -> None:
        self._scan = scan
        self._columns, self._no_rows, self._filter = _request(scan.product.schema, columns, filter)
        self._stream: PrefetchedStream | None = None
        self._filter_here = False

    @property
    def projected_schema(self) -> pa.Schema:
        schema = self._scan.product.schema
        return pa.schema([schema.field(name) for name in self._columns])

    def serves(self, columns: list[str] | None, filter: Any) -> bool:
        """Whether this (already started) scanner answers the same request."""
        names, no_rows, wanted = _request(self._scan.product.schema, columns, filter)
        if names != self._columns or no_rows != self._no_rows:
            return False
        if wanted is None or self._filter is None:
            return wanted is None and self._filter is None
        return bool(wanted.equals(self._filter))

    def start(self) -> None:
        """Send the source query now; batches wait in a bounded queue."""
        if self._no_rows:
            return  # the filter is constant false: nothing to ask the source
        scan = self._scan
        spec, filter_here = scan.spec(self._columns)
        self._filter_here = filter_here and self._filter is not None
        if self._filter_here:  # the filter may read columns the plan does not output: fetch those too
            read = referenced_columns(self._filter, scan.product.schema)
            wanted = [n for n in scan.fetchable if read is None or n in read or n in spec.columns]
            if wanted != list(spec.columns):
                spec = replace(spec, columns=tuple(wanted), limit=None)
        self._stream = PrefetchedStream(scan, spec)

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        if self._no_rows:
            return
        if self._stream is None:
            self.start()
        assert self._stream is not None
        here = None
        for batch in self._stream:
            if self._filter_here:
                if here is None:  # NaN compared as DataFusion compares it, over the columns read
                    here = datafusion_order(self._filter, batch.schema)
                # Only a Table evaluates a pyarrow Expression; a RecordBatch wants a mask.
                kept = pa.Table.from_batches([batch]).filter(here)
                batch = kept.combine_chunks().to_batches()[0] if kept.num_rows else batch.slice(0, 0)
            if batch.schema.names != list(self._columns):
                batch = batch.select(list(self._columns))
            yield batch


_END = object()


class PrefetchedStream:
    """Runs one source query in a thread, handing batches over through a bounded queue."""

    def __init__(self, scan: ProductScan, spec: ScanSpec) -> None:
        connector = scan.connector
        fetch_columns = spec.columns
        if fetch_columns:
            schema = pa.schema([scan.product.schema.field(name) for name in fetch_columns])
        else:  # nothing but the row count is needed: fetch a constant
            schema = pa.schema([pa.field("one", pa.int64())])
        self._record = SourceQuery(
            domain=scan.product.domain,
            source=connector.label,
            product=scan.product.qualified_name,
            sql=connector.scan_sql(spec),
            started=time.time(),
        )
        scan.queries.append(self._record)
        scan.streams.append(self)
        self._scan = scan
        self._schema = schema
        self._keep_no_columns = not fetch_columns
        self._queue: queue.Queue[object] = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._cancelled = threading.Event()
        self._source: SourceStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"scan-{scan.product.qualified_name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        record = self._record
        try:
            self._source = self._scan.connector.execute(record.sql, self._schema, self._scan.deadline)
            record.detail = self._source.detail
            if self._cancelled.is_set():
                self._source.cancel()
            for batch in self._source:
                record.rows += batch.num_rows
                record.bytes += batch.nbytes
                record.batches += 1
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            record.error = (
                error if isinstance(error, MeshgateError) else SourceError(record.domain, record.source, str(error))
            )
            self._put(record.error)
        finally:
            record.finished = time.time()

    def _put(self, item: object) -> bool:
        return threads.offer(self._queue, item, self._cancelled.is_set)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._cancelled.is_set() or self._scan.cancelled.is_set():
                    raise QueryCancelledError(f"query cancelled while reading {self._record.product}") from None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.RecordBatch)
            if self._keep_no_columns:
                item = item.select([])
            yield item

    def cancel(self) -> None:
        self._cancelled.set()
        if self._source is not None:
            self._source.cancel()


def classic_types(schema: pa.Schema) -> pa.Schema:
    """The schema with view types replaced by classic ones (what clients receive)."""
    return pa.schema([field.with_type(_classic(field.type)) for field in schema], metadata=schema.metadata)


def _classic(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):  # Flight streams of ours carry no dictionary batches: send values
        return _classic(kind.value_type)
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_list(kind) or pa.types.is_list_view(kind):
        return pa.list_(kind.value_field.with_type(_classic(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_classic(kind.field(i).type)) for i in range(kind.num_fields)])
    return kind


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast ``batch`` to ``schema`` by position (names and classic types)."""
    if batch.schema.equals(schema):
        return batch
    columns = [
        column if column.type == field.type else pc.cast(column, field.type)
        for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
