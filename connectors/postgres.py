"""PostgreSQL through ADBC (``adbc_driver_postgresql``): ``config.uri`` is a libpq URI.

Types, PostgreSQL -> Arrow (exact; anything else is read as PostgreSQL's text form)::

    int2/int4/int8           int16/int32/int64
    float4/float8            float32/float64 (NaN and infinities included)
    numeric(p, s)            decimal128(p, s) (decimal256 for p > 38, text for p > 76)
    numeric                  decimal128(38, options.numeric_scale), default scale 10
    text, varchar            string
    bool, date, time         bool, date32, time64[us]
    timestamp, timestamptz   timestamp[us], timestamp[us, tz=UTC]
    interval                 month_day_nano_interval
    bytea                    binary
    T[] (one dimension)      list<T> for T above (numeric elements: the unconstrained decimal), else list<string>
    char(n), uuid, json(b), timetz, enums, money, ...   string (``::text``)

An unconstrained ``numeric`` has no fixed scale, so it is read as decimal with a fixed
scale (option ``numeric_scale``, like Trino's ``decimal-default-scale``) and a value
with more fractional digits fails the scan instead of being rounded; declare
``::numeric(p, s)`` in the product's SQL to choose. ``NaN`` and infinities fail too.
Columns read as text are also compared as text in pushed predicates (see
:mod:`connectors.sqlbase`): ``char(n)`` loses its trailing blanks, enums compare by name.

Values Arrow cannot hold fail the query rather than arrive changed: an array with
several dimensions or a lower bound other than 1 (the driver would flatten it), a
timestamp after 294247-01-10 (Arrow's microsecond range), an interval whose time part
exceeds 292 years (nanoseconds), ``24:00:00``. Dates and timestamps of ``±infinity``
arrive as the largest and smallest value of their Arrow type, as DuckDB exports its own.

Big tables are read in parallel: a scan of a table or materialized view without a LIMIT
is split into ``ctid`` page ranges read on connections of their own under one exported
snapshot (:mod:`connectors.ctid`), ``pages // partition_pages`` of them (option, default
5,000 pages), at most ``max_partitions`` (option, default the machine's CPU count). Whether
to split is decided when the scan runs, from the table's size then. A scan with a pushed
filter stays on one connection when PostgreSQL reads it through an index or plans it at a
cost below one range, and is split at most once per ``partition_rows`` (option, default
50,000) rows it is expected to return. The stream's ``detail`` says when a read was split.

Row estimates (``estimate_rows``): a table's ``reltuples`` scaled to its size now (as the
planner does); for views, ``sql:`` products and tables never analyzed, ``EXPLAIN``'s Plan
Rows: planning only, and what PostgreSQL itself expects of the query.

Each connection's session time zone is UTC, DataFusion's (:data:`_UTC`).

Deadlines: a scan with a deadline runs with ``statement_timeout`` and ``lock_timeout`` set
to the time it has left (reset before its connection goes back to the pool), and new
connections give up after ``connect_timeout`` seconds: what is left, or 10 s without a
deadline (a ``connect_timeout`` in the uri wins). TCP keepalives (30 s idle) let a dead
host's connections end; a server stopped with SIGSTOP keeps them alive, which is why the
gateway also stops waiting at the deadline (:mod:`connectors.deadline`).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import adbc_driver_manager
import adbc_driver_postgresql.dbapi
import pyarrow as pa
import pyarrow.compute as pc
from adbc_driver_manager.dbapi import Connection, Cursor
from cachetools import TTLCache
from sqlglot import exp

from connectors import ctid, drivers, split
from connectors.adbc import AdbcConnector, AdbcScan
from connectors.base import STATS_SECONDS, DiscoveredProduct, ScanSpec, SourceObject, SourceStream, SqlCapabilities
from connectors.deadline import before, milliseconds_left, remaining
from connectors.naming import qualified, unique
from connectors.sqlbase import Collation, ConversionError, ReaderStream, SourceColumn, SourceScan
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds a new connection may take when no deadline is nearer (libpq's ``connect_timeout``)."""
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}

# ADBC's default (16 MiB) is slower here and holds more memory per batch in flight;
# 4 MiB batches streamed 5 M rows at 3.6 M rows/s against 2.2 M (see the report).
BATCH_BYTES = 4 << 20

NATIVE_TYPES = {
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "interval": pa.month_day_nano_interval(),
    "bytea": pa.binary(),
}

# Checked against DataFusion on tricky inputs by tests/connectors/test_functions.py.
# Left out: upper/lower (PostgreSQL maps 'ß', final sigma and 'İ' differently), round
# (float8 rounds half to even), concat (sqlglot renders ||, which propagates NULL).
FUNCTIONS = frozenset(
    {
        "abs",
        "ascii",
        "btrim",
        "char_length",
        "character_length",
        "coalesce",
        "instr",
        "left",
        "length",
        "ltrim",
        "md5",
        "nullif",
        "octet_length",
        "repeat",
        "replace",
        "reverse",
        "right",
        "rtrim",
        "split_part",
        "starts_with",
        "strpos",
        "substr",
        "substring",
        "trim",
    }
)

_INT4_ARGUMENTS: dict[type[exp.Func], tuple[str, ...]] = {
    exp.Left: ("expression",),
    exp.Right: ("expression",),
    exp.Repeat: ("times",),
    exp.Substring: ("start", "length"),
    exp.SplitPart: ("part_index",),
}
"""PostgreSQL functions of :data:`FUNCTIONS` with ``integer`` (32-bit) parameters, by sqlglot's argument names."""


def _integer_constant(node: exp.Expr) -> bool:
    """Whether ``node`` is an integer constant, negative or not (``2``, ``-1``, ``(3)``)."""
    while isinstance(node, exp.Paren | exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_int


PARTITION_PAGES = 5_000
"""Pages (8 KiB) each range of a parallel read covers at least (option ``partition_pages``): 40 MB,
some 150 ms on one connection, against a few ms to open a range (a connection, BEGIN, the snapshot).
A table of 1.5 M rows and 4 columns (11,000 pages) is read in two ranges."""
PARTITION_ROWS = 50_000
"""Rows (PostgreSQL's estimate) a filtered read returns for each range at least (option
``partition_rows``): a selective filter leaves little to share out, and the ranges' scans compete
with the rest of the query for the cores."""
_INDEX_READS = frozenset({"Index Scan", "Index Only Scan", "Bitmap Heap Scan"})
STATS_LOCK_WAIT_MS = 100
"""How long a row estimate waits for a lock on the table (milliseconds) before giving up."""
STATS_WAIT = 1.0
"""Seconds a row estimate may wait for the server before it is given up (None, kept a minute like
any estimate): planning does not know the query's deadline, so this bounds what an unresponsive
server adds to it."""

_DISCOVER = """
SELECT n.nspname AS schema_name, c.relname AS table_name, obj_description(c.oid, 'pg_class') AS description
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname <> 'public', n.nspname, c.relname
"""


# A table's primary key, by the same name resolution a query uses (search_path, quoting).
_PRIMARY_KEY = """
SELECT a.attname AS name
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indisprimary AND i.indrelid = to_regclass($1)
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


_NOT_NULL = """
SELECT a.attname AS name FROM pg_catalog.pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
ORDER BY a.attnum
"""


# A relation's kind, its statistics (as of the last VACUUM/ANALYZE) and its size in pages now.
_SIZE = """
SELECT c.relkind::text AS kind, c.relpages::int8 AS relpages, c.reltuples::float8 AS reltuples,
  pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int8 AS pages
FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)
"""
_HEAPS = ("r", "m")  # tables and materialized views: they have ctids and statistics of their own


class _Size(NamedTuple):
    kind: str
    relpages: int
    reltuples: float
    pages: int


class PostgresConnector(AdbcConnector):
    """A PostgreSQL database. Options: ``pool_size``, ``numeric_scale``, ``max_partitions``, ``partition_pages``,
    ``partition_rows``."""

    kind = "postgres"
    config_keys = frozenset(
        {"uri", "pool_size", "numeric_scale", "max_partitions", "partition_pages", "partition_rows"}
    )
    capabilities = SqlCapabilities(
        dialect="postgres",
        functions=FUNCTIONS,
        integer_division=True,
        integer_remainder=True,
        narrow_integer_literals=True,
        supports_ilike=True,
        binary_string_order=False,
        string_collation="C",
        key_sets="array",
        truncating_division=True,
        text_keys=True,
    )

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if not config.uri:
            raise ConfigError(f"domain {domain!r}: a postgres connector needs a uri")
        scale = config.options.get("numeric_scale", 10)
        if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= 38:
            raise ConfigError(f"domain {domain!r}: connector option numeric_scale must be an integer in 0..38")
        self.max_partitions = split.partition_options(config, domain, os.cpu_count() or 1)
        self.partition_pages = split.positive_option(config, domain, "partition_pages", PARTITION_PAGES)
        self.partition_rows = split.positive_option(config, domain, "partition_rows", PARTITION_ROWS)
        self._budget = split.Budget(self.max_partitions)
        super().__init__(domain, config)
        self.uri = config.uri
        self.driver = drivers.POSTGRES.library(domain)  # another build of the driver, the operator's
        self.unconstrained_numeric = pa.decimal128(38, scale)
        self._scans = split.TableScans(self.max_partitions, queries=True)
        self._pages: dict[str, tuple[float, int]] = {}  # by table: its size in pages, and when it was read
        self._pages_lock = threading.Lock()
        # by the SQL's hash (a key set's SQL runs to megabytes): how many ranges PostgreSQL's plan
        # makes a filtered read worth, kept like a size
        self._filtered: TTLCache[int, int] = TTLCache(maxsize=256, ttl=STATS_SECONDS)

    def connect(self, deadline: float | None = None) -> Connection:
        left = remaining(deadline)
        seconds = DEFAULT_CONNECT_TIMEOUT if left is None else min(DEFAULT_CONNECT_TIMEOUT, max(1, math.ceil(left)))
        uri = with_connect_options(self.uri, {"connect_timeout": str(seconds), **KEEPALIVES})
        if self.driver is None:
            connection = adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)
        else:
            connection = drivers.POSTGRES.connect(self.driver, uri)
        try:
            with connection.cursor() as cursor:  # the session's zone is DataFusion's: see _UTC
                cursor.execute(_UTC)
                cursor.fetchall()
        except BaseException:
            connection.close()
            raise
        return connection

    def bound(self, connection: Connection, deadline: float) -> None:
        """``statement_timeout`` and ``lock_timeout``: the milliseconds left until ``deadline``."""
        with connection.cursor() as cursor:
            cursor.execute(_BOUND, parameters=(str(milliseconds_left(deadline)),))
            cursor.fetchall()

    def unbound(self, connection: Connection) -> None:
        with connection.cursor() as cursor:
            cursor.execute(_UNBOUND)
            cursor.fetchall()

    def configure(self, cursor: Cursor) -> None:
        cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})

    def discover(self) -> list[DiscoveredProduct]:
        rows = self.fetch(_DISCOVER).to_pylist()
        names = unique(qualified(r["schema_name"], r["table_name"], "public") for r in rows)
        return [
            DiscoveredProduct(
                name=name,
                source=SourceObject(
                    table=exp.table_(r["table_name"], db=r["schema_name"], quoted=True).sql("postgres")
                ),
                description=r["description"],
            )
            for name, r in zip(names, rows, strict=True)
        ]

    def describe(self, source: SourceObject) -> list[SourceColumn]:
        sql = self.render(exp.select("*").from_(self.raw_relation(source, "t")))

        def result_schema(cursor: Cursor) -> pa.Schema:
            return cursor.adbc_execute_schema(sql)

        return self.collated(source, [self.column(field) for field in self.run(result_schema)])

    def collated(self, source: SourceObject, columns: list[SourceColumn]) -> list[SourceColumn]:
        """``columns`` with the collation of each text column that does not compare as bytes.

        Asked of the relation as the engine sees it (``pg_collation_for``, so columns read as
        text and products defined by a query are covered too), with ``pg_collation`` and the
        database's default: see :func:`collation`.
        """
        text = [c for c in columns if pa.types.is_string(c.type)]
        if not text:
            return columns
        inner = exp.select(*(exp.column(c.name, table="t", quoted=True) for c in text))
        inner = inner.from_(self.present(source, columns, "t")).limit(0)
        probes = ", ".join(
            f"({i}, pg_catalog.pg_collation_for({exp.column(c.name, table='t', quoted=True).sql('postgres')}))"
            for i, c in enumerate(text)
        )
        sql = _COLLATIONS.format(relation=self.render(inner), probes=probes)

        def rows(cursor: Cursor) -> list[dict[str, object]]:
            cursor.execute(sql)
            return cursor.fetch_arrow_table().to_pylist()

        found = {text[int(str(r["position"]))].name: collation(r) for r in self.run(rows)}
        return [replace(c, collation=found[c.name]) if found.get(c.name) else c for c in columns]

    def column(self, field: pa.Field) -> SourceColumn:
        """The product column for a field of ADBC's result schema (``POSTGRESQL:*`` metadata)."""
        if pa.types.is_list(field.type) and _type_name(field).startswith("_"):
            element = self.exact_type(field.type.value_field)
            guard = partial(one_dimensional, field.name)
            if element is None:
                return SourceColumn(field.name, pa.list_(pa.string()), view_as="TEXT[]", guard=guard)
            return SourceColumn(field.name, pa.list_(element), guard=guard)
        arrow_type = self.exact_type(field)
        if arrow_type is None:
            return SourceColumn(field.name, pa.string(), view_as="TEXT")
        return SourceColumn(field.name, arrow_type)

    def exact_type(self, field: pa.Field) -> pa.DataType | None:
        """The Arrow type a PostgreSQL type maps to exactly; None: read its text form."""
        type_name = _type_name(field)
        metadata = field.metadata or {}
        if self.driver is not None and (not type_name or (type_name == "numeric" and _TYPMOD not in metadata)):
            # Without them every column would be read as text, every numeric as unconstrained.
            raise ConfigError(
                f"domain {self.domain!r}: {drivers.POSTGRES.variable} names a build of the driver that does not"
                f" describe column {field.name!r} as adbc-driver-postgresql 1.13 does ({_TYPE.decode()} metadata,"
                f" and {_TYPMOD.decode()} for numeric): build that release or a later one"
            )
        if type_name in NATIVE_TYPES:
            return NATIVE_TYPES[type_name]
        if type_name == "numeric":
            return numeric_type(int(metadata.get(_TYPMOD, b"-1")), self.unconstrained_numeric)
        return None

    def received(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Dates and timestamps with ``±infinity`` as the extremes of their Arrow type (see the module doc)."""
        schema = batch.schema
        columns: list[pa.Array] | None = None
        for position, field in enumerate(schema):
            if _has_datetime(field.type):
                column = batch.column(position)
                fixed = finite(column, field.name)
                if fixed is not column:  # a batch without infinities is passed on as it is
                    columns = columns or batch.columns
                    columns[position] = fixed
        return batch if columns is None else pa.RecordBatch.from_arrays(columns, schema=schema)

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The table's primary key columns in key order (``pg_index``); none for queries and views."""
        return self._column_names(_PRIMARY_KEY, source)

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        """The table's NOT NULL columns (``pg_attribute.attnotnull``); none for queries."""
        return self._column_names(_NOT_NULL, source)

    def _column_names(self, sql: str, source: SourceObject) -> tuple[str, ...]:
        """The ``name`` column of a catalog query about a table product (parameter: its name)."""
        if source.table is None:
            return ()

        def names(cursor: Cursor) -> pa.Table:
            cursor.execute(sql, parameters=(source.table,))
            return cursor.fetch_arrow_table()

        return tuple(self.run(names).column("name").to_pylist())

    # -- row estimates and parallel reads ----------------------------------------------

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """A table's ``reltuples``, scaled to its size now as PostgreSQL's planner does it; for a
        view, a query, or a table never analyzed, the planner's own estimate (``EXPLAIN``'s Plan Rows).

        Gives up (None) after :data:`STATS_WAIT` seconds: a server that does not answer must not hold planning.
        """

        def ask(cursor: Cursor) -> int | None:
            if source.table is not None:
                size = self._size(cursor, source.table)
                if size is not None and size.kind in _HEAPS:
                    if size.pages == 0:
                        return 0
                    if size.reltuples >= 0 and size.relpages > 0:
                        return round(size.reltuples / size.relpages * size.pages)
            sql = self.render(exp.select("*").from_(self.raw_relation(source, "t")))
            return round(_explain(cursor, sql)["Plan Rows"])

        return self._statistics(ask)

    def read_group_estimate(self, source: SourceObject) -> int | None:
        """The Plan Rows of the largest grouping (an ``Aggregate`` node with a ``Group Key``) in
        PostgreSQL's plan of the query ``source``; None if it does not group. Gives up as
        :meth:`read_row_estimate`."""

        def ask(cursor: Cursor) -> int | None:
            sql = self.render(exp.select("*").from_(self.raw_relation(source, "t")))
            nodes, groups = [_explain(cursor, sql)], None
            while nodes:
                node = nodes.pop()
                if node.get("Node Type") == "Aggregate" and node.get("Group Key"):
                    groups = max(groups or 0, round(node["Plan Rows"]))
                nodes.extend(node.get("Plans", []))
            return groups

        return self._statistics(ask)

    def read_scan_estimate(self, spec: ScanSpec, sql: str) -> int | None:
        """The Plan Rows of PostgreSQL's plan for the scan: its statistics of the filtered columns
        (most common values, histograms). Gives up as :meth:`read_row_estimate`."""
        return self._statistics(lambda cursor: round(_explain(cursor, sql)["Plan Rows"]))

    def _statistics(self, ask: Callable[[Cursor], int | None]) -> int | None:
        """``ask`` on a connection of the source, not waiting for locks; None after :data:`STATS_WAIT` seconds."""

        def asked(cursor: Cursor) -> int | None:
            # A table locked by a writer (ALTER, TRUNCATE) blocks pg_relation_size and EXPLAIN: an
            # estimate gives up at once (an error: None) instead of holding the query's planning.
            cursor.execute(f"SET lock_timeout = {STATS_LOCK_WAIT_MS}")
            try:
                return ask(cursor)
            finally:
                cursor.execute("RESET lock_timeout")

        deadline = time.monotonic() + STATS_WAIT
        return before(deadline, lambda: self.run(asked), abandon=lambda _: None, source=self.source)

    def runs_per_row(self, sql: str) -> bool | None:
        """Whether PostgreSQL's plan of ``sql`` (``EXPLAIN``) runs a subquery once per row around it
        at a cost of :data:`RESCAN_COST` or more (:func:`_per_row`); None when it gives no plan within
        :data:`STATS_WAIT` seconds.

        PostgreSQL runs a correlated subquery per row, and answers ``x NOT IN (SELECT ...)`` from a
        hash table only when the subquery's rows fit in ``work_mem``, searching them row by row
        otherwise. Sent whole, a count of the customers above their nation's average balance did
        not end in 30 s (federated: 0.17 s), and 1.5 M TPC-H orders against 1.5 M order keys in NOT
        IN had not ended after three minutes (federated: 0.4 s).
        """
        answer = self._statistics(lambda cursor: int(_per_row(_explain(cursor, sql))))
        return None if answer is None else answer == 1

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        """As every source's, and none giving a function that takes a 32-bit count or position
        (``left``, ``right``, ``repeat``, ``substr``, ``split_part``) anything but a constant: an
        ``int8`` column there has no such form (``left(text, bigint) does not exist``), and a
        product's integers do not say which of them are ``int4`` in PostgreSQL. Nor ``min`` or ``max``
        of a boolean, which PostgreSQL does not have ("function max(boolean) does not exist").
        Bytes (``X'6162'``, a bit string to PostgreSQL) are written ``decode('6162', 'hex')``."""
        booleans = {f.name for schema in schemas for f in schema if pa.types.is_boolean(f.type)}
        for extreme in query.find_all(exp.Max, exp.Min):
            argument = extreme.this.unnest()  # without its parentheses
            if isinstance(argument, (exp.Predicate, exp.Connector, exp.Not, exp.Boolean)) or (
                isinstance(argument, exp.Column) and argument.name in booleans
            ):
                return None
        for function in query.find_all(*_INT4_ARGUMENTS):
            arguments = [value for key, value in function.args.items() if key in _INT4_ARGUMENTS[type(function)]]
            if not all(_integer_constant(argument) for argument in arguments if argument is not None):
                return None
        sent = super().whole_query(query, schemas, output)
        for constant in list(sent.find_all(exp.HexString)) if sent is not None else ():
            # Bytes, which the unparser writes X'6162': a bit string to PostgreSQL ("operator does not
            # exist: bytea = bit"); decoded from hex instead, whatever standard_conforming_strings says.
            constant.replace(exp.Decode(this=exp.Literal.string(constant.this), charset=exp.Literal.string("hex")))
        return sent

    def scan_sql(self, spec: ScanSpec) -> str:
        """The scan's SQL; a table scan without a limit is remembered, for :meth:`execute` to read it in parallel."""
        return self._scans.remember(super().scan_sql(spec), spec)

    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Run ``sql``: on one connection, or, for a big table's scan, in ``ctid`` ranges (:mod:`connectors.ctid`)."""
        spec = self._scans.splittable(sql)
        table = None if spec is None else spec.source.table or spec.source.split
        if spec is None or table is None:
            return super().execute(sql, schema, deadline)
        with self._pages_lock:
            known = self._pages.get(table)
        if known is not None and time.monotonic() - known[0] < STATS_SECONDS and self.parts(known[1], spec) < 2:
            return super().execute(sql, schema, deadline)  # small, as seen a moment ago
        scan = before(
            deadline,
            lambda: self._prepare(spec, sql, deadline),
            abandon=lambda prepared: prepared.finish(False),
            source=self.source,
        )
        stream = ReaderStream(schema, scan, deadline, self.source)
        if isinstance(scan, split.PartitionedScan):
            stream.detail = scan.detail
        return stream

    def parts(self, pages: int, spec: ScanSpec) -> int:
        """How many ranges ``spec``'s table of ``pages`` pages is read in (1: on one connection)."""
        return max(1, min(split.most_ranges(self.max_partitions, spec), pages // self.partition_pages))

    def _prepare(self, spec: ScanSpec, sql: str, deadline: float | None) -> SourceScan:
        """The scan of a table, or of a derived query that may be split on one of its tables
        (``SourceObject.split``), prepared: in ranges if the table is big enough now, else on one connection."""
        table = spec.source.table or spec.source.split
        assert table is not None
        derived = spec.source.table is None  # its filters and joins are in its SQL

        def plan(cursor: Cursor) -> list[str] | None:
            size = self._size(cursor, table)
            pages = size.pages if size is not None and size.kind in _HEAPS else 0
            with self._pages_lock:
                self._pages[table] = (time.monotonic(), pages)
            parts = self.parts(pages, spec)
            if parts > 1 and (spec.predicate is not None or derived):
                with self._pages_lock:
                    worth = self._filtered.get(hash(sql))
                if worth is None:
                    worth = _filtered_parts(_explain(cursor, sql), self.partition_pages, self.partition_rows)
                    with self._pages_lock:
                        self._filtered[hash(sql)] = worth
                parts = min(parts, worth)
            query = self.scan_query(spec)
            try:  # a derived query whose SQL reads the table twice (a product defined by a query) stays whole
                ctid.restrict(query, None, None, table if derived else None)
            except ValueError:
                parts = 1
            parts = self._budget.take(parts) if parts > 1 else 1
            if parts < 2:
                cursor.adbc_prepare(sql)
                return None
            on = table if derived else None
            return [self.render(ctid.restrict(query, low, high, on)) for low, high in ctid.ranges(pages, parts)]

        connection, cursor, sqls = self.checkout(plan, deadline)
        bound = deadline is not None
        if sqls is None:
            return AdbcScan(self, connection, cursor, sql, bound=bound)
        try:
            parts = ctid.open_parts(self, (connection, cursor), sqls, deadline, BATCH_BYTES)
        except BaseException:
            self._budget.give(len(sqls))
            raise
        scan = split.PartitionedScan(self, parts, bound, self._budget)
        scan.detail = f"read in {len(sqls)} ctid ranges on {len(sqls)} connections under one snapshot"
        return scan

    def _size(self, cursor: Cursor, table: str) -> _Size | None:
        cursor.execute(_SIZE, parameters=(table,))
        rows = cursor.fetch_arrow_table().to_pylist()
        return _Size(**rows[0]) if rows else None

    def lost_connection(self, exc: BaseException) -> bool:
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(exc, adbc_driver_manager.OperationalError):
            return sqlstate is None or sqlstate.startswith(("08", "57P"))
        text = str(exc)
        return any(sign in text for sign in _LOST_CONNECTION)

    def message(self, exc: BaseException) -> str:
        details = dict(getattr(exc, "details", None) or [])
        primary = details.get(b"PG_DIAG_MESSAGE_PRIMARY")
        if not primary:
            return _LIBPQ_PREFIX.sub("", super().message(exc))
        text = primary.decode()
        if detail := details.get(b"PG_DIAG_MESSAGE_DETAIL"):
            text = f"{text}: {detail.decode()}"
        sqlstate = getattr(exc, "sqlstate", None)
        return f"{text} (SQLSTATE {sqlstate})" if sqlstate else text


# The collation of each probed column (its name as pg_collation_for writes it), and the database's
# default: one row per probe. to_jsonb reads datlocprovider, which only PostgreSQL 15 and later have.
_COLLATIONS = """
SELECT k.position, k.name, c.collprovider::text AS provider, c.collisdeterministic AS deterministic,
  c.collcollate::text AS collate, db.provider AS db_provider, db.collate AS db_collate
FROM (SELECT 1) AS one LEFT JOIN ({relation}) AS t ON TRUE
CROSS JOIN LATERAL (VALUES {probes}) AS k(position, name)
LEFT JOIN pg_catalog.pg_collation c ON c.oid = pg_catalog.to_regcollation(k.name)
CROSS JOIN (
  SELECT to_jsonb(d) ->> 'datlocprovider' AS provider, d.datcollate::text AS collate
  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
) AS db
"""


def collation(row: Mapping[str, object]) -> Collation | None:
    """A column's collation from a row of ``_COLLATIONS``; None when it compares as bytes.

    Byte order: the libc ``C``/``POSIX`` locales and the builtin provider (PostgreSQL 17:
    ``C``, ``C.UTF-8``, ``PG_UNICODE_FAST`` all sort by code point). Any other (ICU, libc
    locales, including glibc's ``C.UTF-8``, whose order this gateway cannot check) is not;
    ``default`` is the database's, always deterministic.

    >>> collation({"name": '"C"', "provider": "c", "deterministic": True, "collate": "C"})
    >>> collation({"name": '"default"', "provider": "d", "deterministic": True, "db_provider": "i"})
    Collation(name='"default"', deterministic=True)
    >>> collation({"name": '"ci"', "provider": "i", "deterministic": False})
    Collation(name='"ci"', deterministic=False)
    """
    name = str(row.get("name") or "unknown")
    provider, collate = row.get("provider"), row.get("collate")
    deterministic = row.get("deterministic") is not False
    if provider == "d":
        provider, collate = row.get("db_provider") or "c", row.get("db_collate")
        deterministic = True
    if (provider == "c" and collate in ("C", "POSIX")) or provider == "b":
        return None
    return Collation(name, deterministic)


_UTC = "SELECT set_config('TimeZone', 'UTC', false)"
"""Each connection's session time zone, whatever the server's or the uri's: PostgreSQL reads a
zoneless string compared with a ``timestamptz`` in it, and takes a ``timestamptz``'s date in it,
where DataFusion uses UTC. With a server in America/New_York, ``CAST(z AS DATE)`` of 03:30 UTC was
the day before, and ``z = '2024-02-29 10:00:00'`` matched 15:00 UTC, when the query went whole."""

# Set per scan (not per transaction: scans run in autocommit), reset to the session's defaults after.
_BOUND = "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $1, false)"
_UNBOUND = (
    "SELECT set_config(name, reset_val, false) FROM pg_catalog.pg_settings"
    " WHERE name IN ('statement_timeout', 'lock_timeout')"
)


def _filtered_parts(plan: dict[str, Any], partition_pages: int, partition_rows: int) -> int:
    """How many ranges a filtered read whose plan (``EXPLAIN (FORMAT JSON)``'s top node) is ``plan`` is worth.

    One when PostgreSQL reads the table through an index (ranges would scan it instead: TPC-H Q12's
    29,000 keys of a run-time filter took 301-315 ms split against 253-261 ms by the index) or the
    plan is cheap; else one range per ``partition_pages`` of cost and per ``partition_rows`` rows it
    returns (Q4's 57,000 of 1.5 M orders: 204-224 ms split against 183-199 ms whole).
    """
    nodes = [plan]
    while nodes:
        node = nodes.pop()
        if node.get("Node Type") in _INDEX_READS:
            return 1
        nodes.extend(node.get("Plans", []))
    by_cost = int(plan["Total Cost"] // partition_pages)
    return max(1, min(by_cost, int(plan["Plan Rows"] // partition_rows)))


RESCAN_COST = 1_000_000
"""The highest total cost (PostgreSQL's units: a sequential page read is 1) of a plan that runs a
subquery once per row around it, for the query to be sent whole (:meth:`PostgresConnector.runs_per_row`).
TPC-H's heaviest queries sent whole cost 40,000-160,000 (Q13's grouping of 1.5 M orders: 157,000,
about a second); a correlated average over 150,000 customers cost 847 million, and a NOT IN of 1.5 M keys
searched row by row 19.5 billion."""


def _per_row(plan: dict[str, Any]) -> bool:
    """Whether ``plan`` (``EXPLAIN (FORMAT JSON)``'s top node) runs a subquery once per row around it
    (a ``SubPlan`` its parent does not probe as ``hashed``: a correlated subquery, or a ``NOT IN``
    subquery whose rows do not fit in ``work_mem``) and costs :data:`RESCAN_COST` or more in all."""
    if plan.get("Total Cost", 0) < RESCAN_COST:
        return False
    nodes = [plan]
    while nodes:
        node = nodes.pop()
        conditions = " ".join(str(node.get(key, "")) for key in ("Filter", "Join Filter", "One-Time Filter"))
        for child in node.get("Plans", []):
            name = child.get("Subplan Name")
            if (
                child.get("Parent Relationship") == "SubPlan"
                and name
                and not re.search(rf"\bhashed {re.escape(name)}\b", conditions)
            ):
                return True
        nodes.extend(node.get("Plans", []))
    return False


def _explain(cursor: Cursor, sql: str) -> dict[str, Any]:
    """The top node of PostgreSQL's plan for ``sql`` (``EXPLAIN (FORMAT JSON)``: Plan Rows, Total Cost ...).

    On a cursor of its own: EXPLAIN cannot run through COPY, the driver's way to read results.
    """
    with cursor.connection.cursor() as explain:
        explain.adbc_statement.set_options(**{"adbc.postgresql.use_copy": "false"})
        explain.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        row = explain.fetchone()
    assert row is not None
    plan: dict[str, Any] = json.loads(row[0])[0]["Plan"]
    return plan


def with_connect_options(uri: str, options: dict[str, str]) -> str:
    """``uri`` with the libpq ``options`` it does not set itself (URI or ``key=value`` form).

    >>> with_connect_options("postgresql://h/db", {"connect_timeout": "3"})
    'postgresql://h/db?connect_timeout=3'
    >>> with_connect_options("postgresql://h/db?connect_timeout=9&sslmode=disable", {"connect_timeout": "3"})
    'postgresql://h/db?connect_timeout=9&sslmode=disable'
    >>> with_connect_options("host=h dbname=db", {"connect_timeout": "3"})
    'host=h dbname=db connect_timeout=3'
    """
    if not re.match(r"^postgres(?:ql)?://", uri):
        present = set(re.findall(r"(\w+)\s*=", uri))
        return " ".join([uri, *(f"{key}={value}" for key, value in options.items() if key not in present)])
    present = {key for key, _ in parse_qsl(urlsplit(uri).query, keep_blank_values=True)}
    added = "&".join(f"{key}={value}" for key, value in options.items() if key not in present)
    if not added:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}{added}"


# "[libpq] Execution error [PGRES_FATAL_ERROR]: ERROR:  division by zero" -> "division by zero"
# (FATAL: a backend terminated mid-stream, "terminating connection due to administrator command")
_LIBPQ_PREFIX = re.compile(
    r"^\[libpq\] (?:Execution error \[\w+\]|Failed to execute query)?:? ?(?:could not begin COPY: )?(?:ERROR|FATAL): +"
)

_LOST_CONNECTION = ("server closed the connection", "no connection to the server", "terminating connection")


def numeric_type(typmod: int, unconstrained: pa.DataType) -> pa.DataType | None:
    """The decimal type for a ``numeric`` typmod; ``None`` when too wide (read as text).

    ``typmod - 4`` packs precision (high 16 bits) and scale (low 11 bits, signed since
    PostgreSQL 15): ``numeric(12, 2)`` is ``(12 << 16 | 2) + 4``. A negative scale rounds
    to tens, so ``numeric(5, -1)`` holds integers of up to 6 digits.
    """
    if typmod < 4:
        return unconstrained
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (((typmod - 4) & 0x7FF) ^ 0x400) - 0x400
    if scale < 0:
        precision, scale = precision - scale, 0
    precision = max(precision, scale)
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    return None


_TYPE, _TYPMOD = b"POSTGRESQL:type", b"POSTGRESQL:typmod"  # what the driver tells of a result's column


def _type_name(field: pa.Field) -> str:
    return (field.metadata or {}).get(_TYPE, b"").decode()


def one_dimensional(name: str, column: exp.Expr) -> exp.Expr:
    """``column`` where its arrays have one dimension and start at 1; the query fails on others.

    The driver would flatten ``{{1,2},{3,4}}`` into ``[1, 2, 3, 4]`` and drop lower bounds;
    the slice bound cannot be read as an integer, so PostgreSQL raises an error showing
    the message (built from the value: not folded into a constant at planning).
    """
    message = f"[Meshgate] column {name!r} holds an array Arrow cannot hold as a list (one dimension, from 1): "
    bad = exp.or_(
        exp.GT(this=exp.func("array_ndims", column.copy()), expression=exp.Literal.number(1)),
        exp.NEQ(this=exp.func("array_lower", column.copy(), exp.Literal.number(1)), expression=exp.Literal.number(1)),
    )
    text = exp.DPipe(this=exp.Literal.string(message), expression=exp.func("array_dims", column.copy()), safe=True)
    failing = exp.Bracket(
        this=column.copy(), expressions=[exp.Slice(this=exp.Literal.number(1), expression=exp.cast(text, "INT"))]
    )
    return exp.Case(ifs=[exp.If(this=bad, true=failing)], default=column.copy())


# PostgreSQL stores ±infinity as the extremes of int64 microseconds (int32 days) since
# 2000; the driver shifts them to 1970 with wrap-around, giving these codes. DuckDB
# exports its infinities as the extremes of the Arrow type: so do we. Anything else
# before PostgreSQL's earliest value (4714-11-24 BC) is a later value that wrapped.
_I64, _I32 = 2**63 - 1, 2**31 - 1
_TIMESTAMP_CODES = {_I64 + 946_684_800_000_000 - 2**64: _I64, -_I64 - 1 + 946_684_800_000_000: -_I64}
_DATE_CODES = {_I32 + 10_957 - 2**32: _I32, -_I32 - 1 + 10_957: -_I32}
_EARLIEST = {"timestamp": -210_866_803_200_000_000, "date": -2_440_588}


def _has_datetime(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind):
        return _has_datetime(kind.value_type)
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date32(kind))


def finite(array: pa.Array, name: str) -> pa.Array:
    """PostgreSQL's ``±infinity`` as the largest/smallest Arrow value; out-of-range values fail."""
    kind = array.type
    if pa.types.is_list(kind) and _has_datetime(kind):
        values = finite(array.values, f"{name}[]")
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(array.offsets, values, type=kind, mask=mask)
    if pa.types.is_timestamp(kind):
        raw, codes, earliest = array.view(pa.int64()), _TIMESTAMP_CODES, _EARLIEST["timestamp"]
    elif pa.types.is_date32(kind):
        raw, codes, earliest = array.view(pa.int32()), _DATE_CODES, _EARLIEST["date"]
    else:
        return array
    if array.null_count == len(array) or pc.min(raw).as_py() >= earliest:
        return array
    below = pc.less(raw, earliest)
    special = pc.is_in(raw, value_set=pa.array(list(codes), raw.type))
    if pc.any(pc.and_(below, pc.invert(special))).as_py():
        raise ConversionError(f"column {name!r}: a value is outside the range of Arrow's {kind}")
    for code, extreme in codes.items():
        raw = pc.if_else(pc.equal(raw, code), pa.scalar(extreme, raw.type), raw)
    return raw.view(kind)
