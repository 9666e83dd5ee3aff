"""DuckDB through the ``duckdb`` package: ``config.path`` is a database file, opened read-only.

Types are DuckDB's own Arrow export (exact: ``TINYINT`` .. ``BIGINT`` and ``UTINYINT`` ..
``UBIGINT`` as int8 .. int64 and uint8 .. uint64, ``INTERVAL`` as month_day_nano_interval,
lists as ``list<T>`` at any depth, timestamps in their own unit), with these adjustments:

- ``TIMESTAMPTZ`` is reported as ``timestamp[us, tz=UTC]``;
- ``UUID``, ``JSON``, ``ENUM``, ``TIME WITH TIME ZONE`` (exported without its offset),
  ``BIT`` and ``BIGNUM`` are strings (DuckDB's text form), and nested types holding one
  of them are read as text whole; they are also compared as text in pushed predicates
  (DuckDB orders enums by declaration);
- ``HUGEINT`` and ``UHUGEINT`` are read as ``DECIMAL(38, 0)`` (DuckDB's export would
  wrap larger values silently; the cast fails on them instead);
- an ``INTERVAL`` whose time part exceeds 2562047 hours fails the query (its
  nanoseconds would wrap); intervals inside nested types are read as text.

Every scan runs on its own cursor (DuckDB connections are not thread-safe) with the
time zone set to UTC, and ``cancel()`` interrupts it, as does reaching its deadline.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.base import DiscoveredProduct, SourceObject, SourceStream, SqlCapabilities
from connectors.naming import qualified, unique
from connectors.sqlbase import ReaderStream, SourceColumn, TypedSqlConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError

BATCH_ROWS = 65536

# Checked against DataFusion by tests/connectors/test_functions.py. Left out: upper and
# lower ('ß', final sigma), substr (negative starts), reverse (reverses graphemes).
FUNCTIONS = frozenset(
    {
        "abs",
        "ascii",
        "char_length",
        "character_length",
        "coalesce",
        "ends_with",
        "instr",
        "left",
        "length",
        "ltrim",
        "md5",
        "nullif",
        "repeat",
        "replace",
        "right",
        "rtrim",
        "split_part",
        "starts_with",
        "strpos",
        "trim",
    }
)

REFUSED_OPERATORS = (exp.BitwiseLeftShift,)
"""Operators DuckDB answers otherwise: it fails ``-7 << 2`` ("Cannot left-shift negative number"),
which DataFusion, PostgreSQL and SQLite answer -28."""

_DISCOVER = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE table_catalog = current_database() AND table_schema NOT IN ('information_schema', 'pg_catalog')
ORDER BY table_schema <> 'main', table_schema, table_name
"""


# Unqualified names resolve in the current database and schema (DuckDB's search path
# default); DuckDB compares identifiers case-insensitively.
_PRIMARY_KEY = """
SELECT constraint_column_names FROM duckdb_constraints()
WHERE constraint_type = 'PRIMARY KEY'
  AND database_name = coalesce($1, current_database())
  AND (lower(schema_name) = lower($2) OR ($3 IS NULL AND schema_name = current_schema()))
  AND lower(table_name) = lower($4)
"""


_ESTIMATED_SIZE = """
SELECT estimated_size FROM duckdb_tables()
WHERE database_name = coalesce($1, current_database())
  AND (lower(schema_name) = lower($2) OR ($3 IS NULL AND schema_name = current_schema()))
  AND lower(table_name) = lower($4)
"""


_NOT_NULL = """
SELECT column_name FROM duckdb_columns()
WHERE NOT is_nullable
  AND database_name = coalesce($1, current_database())
  AND (lower(schema_name) = lower($2) OR ($3 IS NULL AND schema_name = current_schema()))
  AND lower(table_name) = lower($4)
ORDER BY column_index
"""


class DuckdbConnector(TypedSqlConnector):
    """A DuckDB database file."""

    kind = "duckdb"
    config_keys = frozenset({"path"})
    # avg() of a DECIMAL is a DOUBLE in DuckDB: whole queries with decimal results stay federated.
    capabilities = SqlCapabilities(
        dialect="duckdb",
        functions=FUNCTIONS,
        integer_remainder=True,
        narrow_integer_literals=True,
        supports_ilike=True,
        exact_decimals=False,
        key_sets="unnest",
        fast_groupings=True,
        decimal_sums=True,
        distinct_windows=True,
    )

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: a duckdb connector needs a path")
        super().__init__(domain, config)
        self.path = Path(config.path)
        self._database: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        """As every source's, and none shifting left (:data:`REFUSED_OPERATORS`)."""
        if query.find(*REFUSED_OPERATORS) is not None:
            return None
        return super().whole_query(query, schemas, output)

    def render(self, query: exp.Expr, *, copy: bool = True) -> str:
        written = whole_intervals(query)  # a copy, if it changed anything
        return super().render(written, copy=copy and written is query)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the shared read-only connection (opened on first use)."""
        with self._lock:
            if self._database is None:
                if not self.path.is_file():
                    raise SourceUnavailableError(self.domain, self.label, f"DuckDB file {self.path} does not exist")
                try:
                    database = duckdb.connect(str(self.path), read_only=True)
                    # Timestamps with a zone read as DataFusion reads them; set once for every cursor
                    # (a SET on each cursor took 0.6 ms of every query).
                    database.execute("SET GLOBAL TimeZone = 'UTC'")
                except duckdb.Error as exc:
                    raise SourceUnavailableError(self.domain, self.label, f"cannot open: {exc}") from exc
                self._database = database
            return self._database.cursor()

    def discover(self) -> list[DiscoveredProduct]:
        rows = self._fetch(_DISCOVER)
        names = unique(qualified(schema, table, "main") for schema, table in rows)
        return [
            DiscoveredProduct(name, SourceObject(table=exp.table_(table, db=schema, quoted=True).sql("duckdb")))
            for name, (schema, table) in zip(names, rows, strict=True)
        ]

    def describe(self, source: SourceObject) -> list[SourceColumn]:
        query = self.render(exp.select("*").from_(self.raw_relation(source, "t")).limit(0))
        cursor = self.cursor()
        try:
            relation = cursor.sql(query)
            arrow = relation.to_arrow_table().schema
            types = [str(t) for t in relation.types]
        except duckdb.Error as exc:
            raise self.error(exc) from exc
        finally:
            cursor.close()
        return [_column(field, duck) for field, duck in zip(arrow, types, strict=True)]

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The table's primary key columns in key order (``duckdb_constraints()``); none for queries."""
        found = self._about_table(_PRIMARY_KEY, source)
        return tuple(found[0][0]) if found else ()

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        """The table's NOT NULL columns (``duckdb_columns()``); none for queries."""
        return tuple(row[0] for row in self._about_table(_NOT_NULL, source))

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """A table's ``duckdb_tables().estimated_size``; None for views and queries."""
        found = self._about_table(_ESTIMATED_SIZE, source)
        return int(found[0][0]) if found and found[0][0] is not None else None

    def _about_table(self, sql: str, source: SourceObject) -> list[Any]:
        """Rows of a catalog query about a table product (parameters: catalog, schema, schema, table)."""
        if source.table is None:
            return []
        table = exp.to_table(source.table, dialect="duckdb")
        cursor = self.cursor()
        try:
            rows: list[Any] = cursor.execute(
                sql, [table.catalog or None, table.db or None, table.db or None, table.name]
            ).fetchall()
        except duckdb.Error as exc:
            raise self.error(exc) from exc
        finally:
            cursor.close()
        return rows

    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Bind ``sql`` now (errors raise here); run and stream it when iterated, interrupted at ``deadline``."""
        cursor = self.cursor()
        try:
            relation = cursor.sql(sql)
        except duckdb.Error as exc:
            cursor.close()
            raise self.error(exc) from exc
        return ReaderStream(schema, _DuckdbScan(self, cursor, relation), deadline, f"{self.domain}/{self.kind}")

    binds_parameters = True

    def execute_bound(
        self, sql: str, schema: pa.Schema, parameters: pa.RecordBatch, deadline: float | None = None
    ) -> SourceStream:
        """:meth:`execute` with one row of ``parameters`` bound to ``$1, $2 ...``."""
        values = [column[0].as_py() for column in parameters.columns]
        cursor = self.cursor()
        try:
            relation = cursor.sql(sql, params=values)
        except duckdb.Error as exc:
            cursor.close()
            raise self.error(exc) from exc
        return ReaderStream(schema, _DuckdbScan(self, cursor, relation), deadline, f"{self.domain}/{self.kind}")

    def error(self, exc: BaseException) -> SourceError:
        if isinstance(exc, SourceError):
            return exc
        return SourceError(self.domain, self.label, " ".join(str(exc).split()))

    def close(self) -> None:
        with self._lock:
            database, self._database = self._database, None
        if database is not None:
            database.close()

    def _fetch(self, sql: str) -> list[tuple[Any, ...]]:
        cursor = self.cursor()
        try:
            return cursor.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise self.error(exc) from exc
        finally:
            cursor.close()


# Types DuckDB exports inexactly or with an order of its own, read and compared as text.
_AS_TEXT = ("UUID", "JSON", "TIME WITH TIME ZONE", "BIT", "BIGNUM", "VARINT")
_WIDE_INTEGERS = ("HUGEINT", "UHUGEINT")


def whole_intervals(query: exp.Expr) -> exp.Expr:
    """``query`` with each interval of an amount and a unit written as one string: a copy, or
    ``query`` itself when it holds no such interval (most queries: a copy of a tree of many
    constants costs milliseconds).

    DataFusion writes ``INTERVAL '1 MONS'``; sqlglot reads that as the amount ``'1'`` and the unit
    ``MONS``, and writes ``INTERVAL '1' MONS`` for DuckDB, whose parser knows no unit ``MONS``:
    a whole query adding a month or a year to a date failed. In one string
    (``INTERVAL '1 MONS'``) DuckDB reads every unit DataFusion writes.
    """
    if not any(_split_interval(interval) for interval in query.find_all(exp.Interval)):
        return query
    query = query.copy()
    for interval in [interval for interval in query.find_all(exp.Interval) if _split_interval(interval)]:
        interval.replace(exp.Interval(this=exp.Literal.string(f"{interval.this.this} {interval.args['unit'].name}")))
    return query


def _split_interval(interval: exp.Interval) -> bool:
    """Whether ``interval`` is an amount and a unit apart (``INTERVAL '1' MONS``)."""
    return isinstance(interval.this, exp.Literal) and isinstance(interval.args.get("unit"), exp.Var)


def _column(field: pa.Field, duck_type: str) -> SourceColumn:
    if duck_type in _WIDE_INTEGERS:
        return SourceColumn(field.name, pa.decimal128(38, 0), view_as="DECIMAL(38, 0)")
    if duck_type == "INTERVAL":
        return SourceColumn(field.name, pa.month_day_nano_interval(), guard=partial(_nanosecond_interval, field.name))
    words = set(re.findall(r"[A-Z]+(?: WITH TIME ZONE)?", duck_type))
    if duck_type.startswith("ENUM") or words & {*_AS_TEXT, *_WIDE_INTEGERS, "INTERVAL"}:
        return SourceColumn(field.name, pa.string(), view_as="VARCHAR")
    return SourceColumn(field.name, _classic(field.type))


# The time part of an interval must fit int64 nanoseconds (DuckDB keeps microseconds and
# its Arrow export multiplies them without a check: larger values would wrap).
_INTERVAL_MICROS = """abs(datepart('hour', x)::HUGEINT * 3600000000 + datepart('minute', x) * 60000000
    + datepart('microseconds', x)) > 9223372036854775"""


def _nanosecond_interval(name: str, column: exp.Expr) -> exp.Expr:
    """``column``, where the query fails on intervals Arrow's month_day_nano cannot hold."""
    too_long: exp.Expr = exp.maybe_parse(_INTERVAL_MICROS, dialect="duckdb").transform(
        lambda node: column.copy() if isinstance(node, exp.Column) and node.name == "x" else node
    )
    message = exp.DPipe(
        this=exp.Literal.string(f"[Meshgate] column {name!r}: the interval's time part exceeds Arrow's nanoseconds: "),
        expression=exp.cast(column.copy(), "VARCHAR"),
        safe=True,
    )
    return exp.Case(ifs=[exp.If(this=too_long, true=exp.func("error", message))], default=column.copy())


def _classic(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_dictionary(kind):
        return _classic(kind.value_type)
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, tz="UTC")
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
        return pa.list_(_classic(kind.value_type))  # DuckDB names the element "l"; Arrow's default is "item"
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_classic(kind.value_type), kind.list_size)
    return kind


class _DuckdbScan:
    """One bound relation on its own cursor (a :class:`SourceScan`)."""

    def __init__(self, connector: DuckdbConnector, cursor: duckdb.DuckDBPyConnection, relation: Any) -> None:
        self._connector = connector
        self._cursor = cursor
        self._relation = relation

    def start(self) -> pa.RecordBatchReader:
        reader: pa.RecordBatchReader = self._relation.to_arrow_reader(BATCH_ROWS)
        return reader

    def interrupt(self) -> None:
        self._cursor.interrupt()

    def finish(self, complete: bool) -> None:
        if not complete:
            with suppress(Exception):
                self._cursor.interrupt()
        with suppress(Exception):
            self._cursor.close()

    def error(self, exc: Exception) -> SourceError:
        return self._connector.error(exc)
