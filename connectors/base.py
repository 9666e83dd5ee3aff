"""The connector contract: what the engine asks of a domain's source.

A connector reports the data products its source holds, each product's exact Arrow
schema, and serves scans. Pushdown is negotiated, not assumed: SQL sources declare
:class:`SqlCapabilities`, the planner pushes only predicates the source can evaluate
with the same result, and whatever it keeps back is evaluated by DataFusion.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import ErrorLevel

if TYPE_CHECKING:
    from datafusion import SessionContext

    from meshcore.config import ConnectorConfig

log = logging.getLogger(__name__)

STATS_SECONDS = 60.0
"""How long a connector keeps a product's row estimate before asking its source again."""

WHOLE_QUERY_FUNCTIONS: tuple[type[exp.Func], ...] = (
    exp.And,  # AND and OR are functions to sqlglot
    exp.Or,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,  # of decimals, rewritten or kept federated by gateway/planner.py (gateway/averages.py)
    exp.Exists,
    exp.RowNumber,
    exp.Rank,
    exp.DenseRank,
    exp.Collate,  # written by the planner: text compared in byte order (gateway/bytewise.py)
)
"""The functions (sqlglot's classes) of a whole query every SQL source answers as DataFusion does;
the others must be among a source's :attr:`SqlCapabilities.functions`."""

_DATAFUSION_NAMES: dict[type[exp.Func], tuple[str, ...]] = {exp.StrPosition: ("strpos", "instr")}
"""DataFusion's names of sqlglot's functions whose own names (``Func.sql_names``) are others."""


@dataclass(frozen=True)
class SourceObject:
    """Where a data product's rows live inside its source: a table or a query.

    ``table`` is a (possibly schema-qualified) table name for SQL sources, or a path
    relative to the connector's path for file sources. ``sql`` is a query in the
    source's own dialect. ``columns`` (``connectors.sqlbase.SourceColumn``) are given for
    a query the planner derived from products of this source (gateway/plan/same_source.py):
    it already knows them, so the source is not asked to describe it. ``as_of`` pins a
    lakehouse table's version: a Delta version or Iceberg snapshot id (int), or an ISO 8601
    timestamp (str); None reads the table's current version. ``split``, for such a derived query
    that inner-joins tables, names one of them (as ``table`` would) that occurs once in it, outside
    any subquery: the query may be read in ranges of that table, each joined with the rest, which
    together give the query's rows.
    """

    table: str | None = None
    sql: str | None = None
    columns: tuple[Any, ...] | None = None
    as_of: int | str | None = None
    split: str | None = None

    def describe(self) -> str:
        return self.table if self.table is not None else f"({self.sql})"


@dataclass(frozen=True)
class DiscoveredProduct:
    """A product found in a source when the domain declares none."""

    name: str
    source: SourceObject
    description: str | None = None


@dataclass(frozen=True)
class ScanSpec:
    """One scan the engine wants from a SQL source, with what was agreed to push down.

    ``predicate`` is a sqlglot expression over the product's (unqualified) column
    names that the planner already checked against the source's capabilities. ``reads`` is how
    many reads of this product the query runs at once, this one included: a connector that splits
    a read into ranges on several connections splits it at most ``max_partitions // reads`` ways.
    """

    source: SourceObject
    columns: tuple[str, ...]
    predicate: exp.Expr | None = None
    limit: int | None = None
    reads: int = 1


@dataclass(frozen=True)
class SqlCapabilities:
    """What a SQL source can evaluate exactly as DataFusion would.

    ``functions`` holds DataFusion scalar function names whose sqlglot rendering in
    ``dialect`` gives identical results. ``binary_string_order`` says whether ``<``
    and ``>`` on text follow Arrow's byte order; when false, ``string_collation``
    (if any) is applied to pushed string comparisons, else they are kept back.
    ``temporal_literals`` says how date/timestamp constants are written: ``"typed"``
    (``CAST('2024-01-01' AS DATE)``), ``"iso_text"`` (dates compared as ISO strings,
    timestamps kept back: SQLite stores them as text) or ``"none"`` (kept back).
    ``exact_decimals`` is false for sources that compute on decimals in floating point
    (SQLite): whole queries whose results hold decimals then stay federated.
    ``join_pushdown`` says whether same-source sub-plans (scans, filters, column projections
    and inner equi-joins: gateway/plan/same_source.py) may be sent to the source; None
    follows ``supports_full_query`` (see :attr:`pushes_joins`). ``key_sets`` says how the
    source takes a run-time filter's many integer keys as one constant (one of
    ``gateway.plan.key_sets.STYLES``: ``"array"``, ``"json_each"``, ``"unnest"``); None: it does not.
    ``text_keys`` says text is equal in the source exactly when its bytes are, for every column of
    its products (PostgreSQL: deterministic collations compare bytes, the others are presented in
    ``C``; MySQL: every text column is presented in a binary collation): a grouping by text may then
    be sent to it (gateway/plan/same_source.py). Not SQLite (a text column may hold numbers, which
    compare apart from the same digits as text) nor DuckDB (its column collations are not known).
    ``decimal_sums`` says the source sums decimals, and takes their minimum and maximum, exactly
    even where ``exact_decimals`` is false for its other decimal arithmetic (DuckDB, whose ``avg``
    of a decimal is a DOUBLE): such aggregates may be sent to it (gateway/plan/same_source.py).
    ``fast_groupings`` says the source groups as fast as DataFusion or faster, however many the
    groups (DuckDB, a vectorised engine): its groupings are sent without an estimate of their size.
    ``truncating_division`` says the source divides decimals exactly, truncating to an integer
    (PostgreSQL's ``DIV``): an average of decimals is then sent written to give DataFusion's
    digits (gateway/averages.py), so a whole query that averages decimals may go to it.
    ``integer_division`` says the source divides integers as DataFusion does: ``/`` truncates toward
    zero and a zero divisor fails (PostgreSQL; not SQLite, where it gives NULL, nor DuckDB, whose
    ``/`` of integers is a DOUBLE); ``integer_remainder`` the same of ``%``, whose result takes the
    dividend's sign (PostgreSQL, DuckDB): a whole query that divides integers so may go to it
    (``gateway.planner.single_source_sql``; reals and decimals never do).
    ``narrow_integer_literals`` says the source reads an integer constant as a 32-bit integer
    (PostgreSQL, DuckDB): a whole query's constants in arithmetic are then written as ``BIGINT``,
    DataFusion's type (``gateway.planner.integer_literals``).
    ``hash_joins`` is false for a source that joins a row at a time (SQLite's nested loops): a
    whole query that joins goes to it only when it reads no big table unfiltered
    (``gateway.planner.single_source_sql``).
    ``distinct_windows`` says the source computes a window aggregate of distinct values
    (``count(DISTINCT x) OVER ()``: DuckDB); PostgreSQL, SQLite and MariaDB refuse one.
    ``string_dates`` says the source reads a string constant compared with a DATE as DataFusion
    does, as a date (PostgreSQL, DuckDB): not SQLite, which compares the text, nor MySQL, which
    compares a date with a string holding a time as a DATETIME (``gateway/date_literals.py``).
    ``strict_casts`` says the source fails a cast of text that is not a number to a number, as
    DataFusion does: SQLite and MySQL read it as 0 (``CAST('inf' AS DOUBLE)`` too), so a whole query
    casting anything but a number to a real or a decimal stays federated there.
    """

    dialect: str
    functions: frozenset[str] = frozenset()
    supports_like: bool = True
    supports_ilike: bool = False
    binary_string_order: bool = True
    string_collation: str | None = None
    supports_full_query: bool = True
    temporal_literals: str = "typed"
    exact_decimals: bool = True
    join_pushdown: bool | None = None
    key_sets: str | None = None
    hash_joins: bool = True
    truncating_division: bool = False
    integer_division: bool = False
    integer_remainder: bool = False
    narrow_integer_literals: bool = False
    text_keys: bool = False
    fast_groupings: bool = False
    decimal_sums: bool = False
    distinct_windows: bool = False
    string_dates: bool = True
    strict_casts: bool = True

    def evaluates(self, node: exp.Func) -> bool:
        """Whether the source answers ``node``, a function of a whole query as sqlglot reads
        DataFusion's SQL, as DataFusion does: one of :data:`WHOLE_QUERY_FUNCTIONS`, or one whose
        name (one of sqlglot's names for it) is among :attr:`functions`."""
        if isinstance(node, WHOLE_QUERY_FUNCTIONS):
            return True
        names = (*type(node).sql_names(), *_DATAFUSION_NAMES.get(type(node), ()))
        return any(name.lower() in self.functions for name in names)

    @property
    def pushes_joins(self) -> bool:
        """Whether joins of the source's products, with their filters, may be sent to it as one query."""
        return self.supports_full_query if self.join_pushdown is None else self.join_pushdown


class SourceStream:
    """Record batches from one source query, cast to the schema the engine expects.

    Iterating yields ``pa.RecordBatch`` objects. ``rows`` and ``batches`` count what the
    source returned. ``cancel()`` may be called from any thread; it stops the source
    query where the source allows it, and never blocks. ``detail`` says how the source
    read the rows when that is worth showing (a partitioned read), else None.
    """

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
        self.schema = schema
        self._batches = batches
        self.detail: str | None = None
        self.rows = 0
        self.batches = 0
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._batches:
            if self._cancelled.is_set():
                break
            self.rows += batch.num_rows
            self.batches += 1
            yield batch

    def start(self) -> None:
        """Begin reading now, ahead of the first iteration, where the stream can (idempotent)."""

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        """Release the stream early (stops the source query where it can)."""
        self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class Connector(ABC):
    """A domain's source. One instance per domain, shared by all queries."""

    kind: ClassVar[str]
    config_keys: ClassVar[frozenset[str]] = frozenset()
    """The settings a domain's ``connector:`` mapping may give besides ``type``. ``uri`` or ``path``
    says where the source is (a ``path`` is resolved against the YAML file and must exist); the
    others arrive in ``config.options``, for the constructor to check."""
    admin_keys: ClassVar[frozenset[str]] = frozenset()
    """Of :attr:`config_keys`, those only an admin may set or change through self-serve: where a
    source is reached and with which credentials (endpoints, certificate files, user names, keys)."""
    path_keys: ClassVar[frozenset[str]] = frozenset()
    """Options naming a file, resolved against the YAML file's folder like ``path``; like
    :attr:`admin_keys`, only an admin may set or change them (another file the gateway would read)."""
    versioned: ClassVar[bool] = False
    """Whether a product may pin a version of its table (``as_of``: lakehouse tables)."""

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        self.domain = domain
        self.config = config
        self._estimates: dict[tuple[str, SourceObject], tuple[float, int | None]] = {}
        self._estimates_lock = threading.Lock()

    @property
    def label(self) -> str:
        """How errors name this source: ``kind:location``."""
        return f"{self.kind}:{self.config.location}"

    @abstractmethod
    def discover(self) -> list[DiscoveredProduct]:
        """Every table (or file) of the source, for domains that declare no products."""

    @abstractmethod
    def schema(self, source: SourceObject) -> pa.Schema:
        """The exact Arrow schema of a product (raises SourceError if it cannot)."""

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The product's primary key columns in key order, as the source declares them.

        Empty when the source has no such notion (files), for products defined by a
        query, and for tables without a primary key. Raises SourceError if it cannot ask.
        """
        return ()

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        """The product's columns the source declares NOT NULL (catalog metadata for clients).

        Empty where the source has no such notion, and for products defined by a query.
        Raises SourceError if it cannot ask.
        """
        return ()

    def estimate_rows(self, source: SourceObject) -> int | None:
        """About how many rows the product holds, from the source's statistics; None when it cannot tell.

        Cheap (never a full scan of a big table), kept for :data:`STATS_SECONDS`, and never
        raises: a source that fails to answer gives None. Subclasses implement
        :meth:`read_row_estimate`.
        """
        return self._estimated("rows", source, self.read_row_estimate)

    def estimate_groups(self, source: SourceObject) -> int | None:
        """The most groups a grouping in the query ``source`` is estimated to make (its largest
        ``GROUP BY``, wherever it is in the query); None when the source cannot tell, or the query
        does not group. Cheap, kept and never raising as :meth:`estimate_rows`; subclasses
        implement :meth:`read_group_estimate`."""
        return self._estimated("groups", source, self.read_group_estimate)

    def _estimated(self, what: str, source: SourceObject, read: Callable[[SourceObject], int | None]) -> int | None:
        """``read(source)``, kept for :data:`STATS_SECONDS` (by ``what`` and ``source``); None if it fails."""
        now = time.monotonic()
        with self._estimates_lock:
            cached = self._estimates.get((what, source))
        if cached is not None and now - cached[0] < STATS_SECONDS:
            return cached[1]
        try:
            rows = read(source)
        except Exception as error:  # an estimate is advice: its absence must not fail a query
            log.info("[%s/%s] no %s estimate for %s: %s", self.domain, self.kind, what, source.describe(), error)
            rows = None
        with self._estimates_lock:
            self._estimates[(what, source)] = (now, rows)
        return rows

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """Ask the source for :meth:`estimate_rows` (uncached; may raise). None: no cheap estimate."""
        return None

    def read_group_estimate(self, source: SourceObject) -> int | None:
        """Ask the source for :meth:`estimate_groups` (uncached; may raise). None: no cheap estimate."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""


class FileVersion(ABC):
    """One version of a file product's files, held so that every query reads it whole.

    ``stamp`` is what :meth:`FileConnector.stamp` said of the files when they were
    opened: the engine builds a new version when a later stamp differs.
    """

    stamp: Hashable

    @abstractmethod
    def register(self, ctx: SessionContext, name: str) -> None:
        """Register this version as table ``name`` in ``ctx``, with the product's schema pinned."""

    @abstractmethod
    def retire(self) -> None:
        """Let the files go once queries that started on this version had time to finish."""


class FileConnector(Connector):
    """A source DataFusion reads itself (Parquet, CSV): pushdown is DataFusion's own."""

    @abstractmethod
    def register(self, ctx: SessionContext, name: str, source: SourceObject) -> None:
        """Register the product as table ``name`` in ``ctx``."""

    def prepare(self, ctx: SessionContext) -> None:
        """Register in a query's context what reading this connector's tables needs (object stores)."""

    @abstractmethod
    def stamp(self, product: str, source: SourceObject) -> Hashable:
        """What a ``stat`` of each of the product's files says now: cheap, asked before every query.

        Raises SourceUnavailableError naming the domain, product and file when one is missing.
        """

    @abstractmethod
    def open_version(
        self, product: str, source: SourceObject, schema: pa.Schema, previous: FileVersion | None
    ) -> FileVersion:
        """The product's files as they are now, checked against ``schema`` (the one it registered).

        Files ``previous`` already checked, unchanged, are not read again. Raises SourceError
        (SourceUnavailableError for a missing file) naming the domain, product and file.
        """


class SqlConnector(Connector):
    """A source that speaks SQL. Subclasses declare capabilities and run queries."""

    capabilities: ClassVar[SqlCapabilities]

    def relation(self, source: SourceObject, alias: str) -> exp.Expr:
        """The FROM item for a product: its table, or its query as a subquery."""
        if source.sql is not None:
            query: exp.Expr = exp.maybe_parse(source.sql, dialect=self.capabilities.dialect)
            return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        assert source.table is not None
        table = exp.to_table(source.table, dialect=self.capabilities.dialect)
        return table.as_(alias, quoted=True)

    def refuses(self, query: exp.Expr) -> bool:
        """Whether :meth:`whole_query` will refuse ``query`` whatever the gateway's rewrites before it
        do: asked first, so that a query which cannot go whole is not typed and rewritten for nothing."""
        return False

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        """``query``, a whole query over this source's products (``schemas``: theirs) whose answer
        DataFusion typed as ``output``, as the source must be sent it to answer as DataFusion
        would; None keeps the query federated.

        Called before the products are swapped for their relations. The default sends it as it is
        when the source evaluates every function and operator in it as DataFusion does
        (:meth:`SqlCapabilities.evaluates`): answers must not depend on the route.
        """
        if any(not self.capabilities.evaluates(node) for node in query.find_all(exp.Func)):
            return None
        if self.capabilities.dialect != "postgres" and text_frame_offsets(query):
            return None
        return query

    def accepts(self, sql: str) -> bool:
        """Whether the source can plan ``sql``, a query the planner wrote for it as a whole query
        or a same-source sub-plan, which it sends only then (else that part stays federated).

        A source whose engine the capabilities describe exactly accepts what they allow, without
        being asked; one of unknown version (a remote Flight SQL server) is asked (see there).
        """
        return True

    def per_row(self, sql: str) -> bool:
        """Whether the source would run a costly subquery of ``sql`` (a whole query or a same-source
        sub-plan the planner wrote) once for each row around it; the planner then keeps that part
        federated, where DataFusion joins it. A source that never does says False (the default)."""
        return False

    def scan_sql(self, spec: ScanSpec) -> str:
        """Render a scan as one query in the source's dialect."""
        return self.render(self.scan_query(spec))

    def estimate_scan(self, spec: ScanSpec) -> int | None:
        """About how many rows a scan with a pushed predicate returns, as the source estimates it
        from what it knows of the filtered columns; None when it cannot tell. Cheap, kept and
        never raising as :meth:`estimate_rows`; subclasses implement :meth:`read_scan_estimate`."""
        if spec.predicate is None:
            return self.estimate_rows(spec.source)
        try:
            sql = self.render(self.scan_query(replace(spec, limit=None)))
        except Exception as error:  # advice only, as in _estimated
            log.info("[%s/%s] no scan estimate for %s: %s", self.domain, self.kind, spec.source.describe(), error)
            return None
        return self._estimated("scan", SourceObject(sql=sql), lambda _: self.read_scan_estimate(spec, sql))

    def read_scan_estimate(self, spec: ScanSpec, sql: str) -> int | None:
        """Ask the source for :meth:`estimate_scan` of ``spec`` (``sql``, rendered; uncached; may
        raise). None: no cheap estimate."""
        return None

    def scan_query(self, spec: ScanSpec) -> exp.Expr:
        """A scan as a query tree: the columns, the pushed predicate and limit over the product."""
        alias = "t"
        columns: list[exp.Expr] = [exp.column(name, table=alias, quoted=True) for name in spec.columns]
        query: exp.Select = exp.select(*(columns or [exp.Literal.number(1)])).from_(self.relation(spec.source, alias))
        if spec.predicate is not None:  # qualified in a copy, taken as it is (a key list is long to copy)
            query = query.where(_qualify_columns(spec.predicate, alias), copy=False)
        if spec.limit is not None:
            query = query.limit(spec.limit, copy=False)
        return query

    def render(self, query: exp.Expr, *, copy: bool = True) -> str:
        """``query`` in the source's dialect. sqlglot's dialects rewrite the tree they write (their
        transforms), so it is copied first unless the caller gives it away (``copy=False``: a tree of
        a few thousand nodes, TPC-H Q19's part keys, took 9 ms to copy)."""
        return query.sql(dialect=self.capabilities.dialect, copy=copy, unsupported_level=ErrorLevel.RAISE)

    @abstractmethod
    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Run ``sql`` and stream its rows cast to ``schema`` (names and types).

        Raises SourceUnavailableError when the source cannot be reached and
        SourceError when it rejects the query, both naming domain and source.
        ``deadline`` (``time.monotonic()``; None: none) is when the query must be over:
        neither this call nor the stream waits on the source past it, the source is
        asked to stop by then, and both raise QueryTimeoutError when it passes
        (:mod:`connectors.deadline`).
        """

    binds_parameters: ClassVar[bool] = False
    """Whether :meth:`execute_bound` runs queries with bind parameters."""

    def execute_bound(
        self, sql: str, schema: pa.Schema, parameters: pa.RecordBatch, deadline: float | None = None
    ) -> SourceStream:
        """:meth:`execute` with ``parameters`` (one row, a column per ``$n``) bound, typed as their Arrow types.

        ``sql`` holds the source's own placeholders (``$1``; ``?1`` for SQLite). Only
        connectors whose :attr:`binds_parameters` is true implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not bind parameters")


def _qualify_columns(predicate: exp.Expr, alias: str) -> exp.Expr:
    def qualify(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            return exp.column(node.name, table=alias, quoted=True)
        return node

    return predicate.transform(qualify)  # a copy: the scan's predicate stays unqualified


__all__ = [
    "Connector",
    "DiscoveredProduct",
    "FileConnector",
    "FileVersion",
    "ScanSpec",
    "SourceObject",
    "SourceStream",
    "SqlCapabilities",
    "SqlConnector",
]


def text_frame_offsets(query: exp.Expr) -> bool:
    """Whether a window frame of ``query`` is offset by a string that is not a number. DataFusion's
    unparser writes every offset of a ``RANGE`` frame as a string: ``'1' PRECEDING``, which every
    source reads as the number, and ``'31 days' PRECEDING`` for ``INTERVAL '31 days' PRECEDING``,
    which PostgreSQL reads as the ordering key's interval and SQLite and DuckDB refuse ("frame
    starting offset must be a non-negative number"): such a query goes whole to PostgreSQL
    dialects only."""
    for spec in query.find_all(exp.WindowSpec):
        for bound in (spec.args.get("start"), spec.args.get("end")):
            if isinstance(bound, exp.Literal) and bound.is_string and not _number(bound.this):
                return True
    return False


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
