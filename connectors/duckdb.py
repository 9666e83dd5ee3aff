"""DuckDB through the ``duckdb`` package: ``config.path`` is a database file, opened read-only.

Types are DuckDB's own Arrow export (exact), with three adjustments: ``TIMESTAMPTZ``
is reported as ``timestamp[us, tz=UTC]``, ``ENUM`` as string and ``UUID`` as string;
enums and UUIDs are also compared as text in pushed predicates (DuckDB orders enums
by declaration). Every scan runs on its own cursor (DuckDB connections are not
thread-safe) with the time zone set to UTC, and ``cancel()`` interrupts it.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.base import DiscoveredProduct, SourceObject, SourceStream, SqlCapabilities
from connectors.naming import qualified, unique
from connectors.sqlbase import ReaderStream, SourceColumn, TypedSqlConnector
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, SourceError, SourceUnavailableError

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

_DISCOVER = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE table_catalog = current_database() AND table_schema NOT IN ('information_schema', 'pg_catalog')
ORDER BY table_schema <> 'main', table_schema, table_name
"""


class DuckdbConnector(TypedSqlConnector):
    """A DuckDB database file."""

    kind = "duckdb"
    # avg() of a DECIMAL is a DOUBLE in DuckDB: whole queries with decimal results stay federated.
    capabilities = SqlCapabilities(dialect="duckdb", functions=FUNCTIONS, supports_ilike=True, exact_decimals=False)

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: a duckdb connector needs a path")
        super().__init__(domain, config)
        self.path = Path(config.path)
        self._database: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the shared read-only connection (opened on first use)."""
        with self._lock:
            if self._database is None:
                if not self.path.is_file():
                    raise SourceUnavailableError(self.domain, self.label, f"DuckDB file {self.path} does not exist")
                try:
                    self._database = duckdb.connect(str(self.path), read_only=True)
                except duckdb.Error as exc:
                    raise SourceUnavailableError(self.domain, self.label, f"cannot open: {exc}") from exc
            cursor = self._database.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

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

    def execute(self, sql: str, schema: pa.Schema) -> SourceStream:
        """Bind ``sql`` now (errors raise here); run and stream it when iterated."""
        cursor = self.cursor()
        try:
            relation = cursor.sql(sql)
        except duckdb.Error as exc:
            cursor.close()
            raise self.error(exc) from exc
        return ReaderStream(schema, _DuckdbScan(self, cursor, relation))

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


def _column(field: pa.Field, duck_type: str) -> SourceColumn:
    if duck_type == "UUID" or duck_type.startswith("ENUM"):
        return SourceColumn(field.name, pa.string(), view_as="VARCHAR")
    return SourceColumn(field.name, _classic(field.type))


def _classic(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    if pa.types.is_dictionary(kind):
        return _classic(kind.value_type)
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, tz="UTC")
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
