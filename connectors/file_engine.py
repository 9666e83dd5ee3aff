"""DuckDB as the engine of whole queries that aggregate Parquet files only.

A query whose every table is a Parquet product of one domain (read unrestricted, no masks) and that
aggregates is planned by DataFusion as usual, then written in DuckDB's dialect over the very
files the query would read (``read_parquet`` of the product's held version: the same bytes
DataFusion's scan would see) and run by DuckDB in the gateway process: DuckDB's Parquet reader
and hash aggregation are about twice as fast as DataFusion's here (TPC-H Q1 over lineitem: 198
against 285 ms; Q6: 74 against 124). The planner writes the query (``gateway.planner.single_source_sql``,
as for any source that takes whole queries), so every check that keeps an answer route-independent
applies; on top of those, :meth:`FileEngine.whole_query` refuses what DuckDB computes otherwise:

- ``/`` (DuckDB divides decimals and integers into a DOUBLE; DataFusion keeps the type);
- a cast to a decimal of anything but a constant (the two round a reduced scale their own way);
- functions other than ``sum``, ``min``, ``max``, ``count``, ``CASE``, ``coalesce``, ``abs`` and casts;
- columns of other types than integers, 128-bit decimals, dates, text and booleans (not floating
  point: sums of doubles depend on the order they are added in).

Averages of decimals are written to give DataFusion's digits (``gateway/averages.py``), their
integer division done on ``HUGEINT`` (DuckDB's ``//`` of decimals is not an integer division).

Parts of federated queries run here too (``gateway/plan/rules.py``), some of them joins of the
files with tables the planner computed for the query: :class:`ComputedTables` registers those
Arrow tables on each cursor it opens, so the query reads them by name, in place.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from connectors.base import SourceObject, SqlCapabilities, text_frame_offsets
from connectors.duckdb import FUNCTIONS, REFUSED_OPERATORS, DuckdbConnector, whole_intervals
from connectors.sqlbase import SourceColumn
from meshcore.config import ConnectorConfig
from meshcore.errors import SourceUnavailableError

_EXACT_TYPES = (
    pa.types.is_integer,
    pa.types.is_decimal128,
    pa.types.is_date32,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_string_view,
    pa.types.is_boolean,
)


_FUNCTIONS = (exp.Sum, exp.Min, exp.Max, exp.Count, exp.Cast, exp.Case, exp.If, exp.Coalesce, exp.Abs, exp.Connector)
"""The functions a routed query may call: those DuckDB computes as DataFusion does over the types
:func:`engine_type` admits (no floating point: sums and averages of doubles round by the order
they are added in, and the two order NaN apart)."""


def engine_type(kind: pa.DataType) -> bool:
    """Whether DuckDB reads a Parquet column of Arrow type ``kind`` as DataFusion does."""
    return any(test(kind) for test in _EXACT_TYPES)


def file_source(path: Path, schema: pa.Schema) -> SourceObject:
    """The product held at ``path`` (a Parquet file) with ``schema``, as :class:`FileEngine` reads it."""
    return SourceObject(table=str(path), columns=tuple(SourceColumn(f.name, f.type) for f in schema))


class DuckdbFiles:
    """The gateway's one in-memory DuckDB database, opened on first use, shared by the domains' :class:`FileEngine`."""

    def __init__(self, threads: int, memory_bytes: int, spill: Path | None = None) -> None:
        self._threads = max(1, threads)
        self._memory = max(64 * 1024 * 1024, memory_bytes)
        # Where DuckDB spills past its memory limit (its default is ./.tmp, wherever the gateway runs).
        self._spill = (spill or Path(tempfile.gettempdir())) / f"meshgate-file-engine-{os.getpid()}"
        self._database: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor (raises duckdb.Error when DuckDB cannot start)."""
        with self._lock:
            if self._database is None:
                self._database = duckdb.connect(
                    ":memory:",
                    config={
                        "threads": self._threads,
                        "memory_limit": f"{self._memory // (1024 * 1024)}MB",
                        "temp_directory": str(self._spill),
                        "autoinstall_known_extensions": False,
                        "autoload_known_extensions": False,
                    },
                )
                self._database.execute("SET GLOBAL TimeZone = 'UTC'")  # every cursor's (duckdb.py)
                # Each file's footer is read once, not by every query: kept by path and checked
                # against the file's modification time (a changed product is held under a new path).
                # A selective aggregate over TPC-H's lineitem: 2.4 ms against 4.9-5.3 ms. Set after
                # connecting: in the connect config DuckDB 2 wants its Parquet extension loaded first,
                # and it ignores 1.x's ``enable_object_cache``, which this replaces.
                self._database.execute("SET GLOBAL parquet_metadata_cache = true")
            return self._database.cursor()

    def close(self) -> None:
        with self._lock:
            database, self._database = self._database, None
        if database is not None:
            database.close()


class FileEngine(DuckdbConnector):
    """One domain's Parquet files as :class:`DuckdbFiles` reads them (a ``SourceObject``'s table is
    a path): errors and source queries name the domain."""

    kind = "duckdb"
    capabilities = SqlCapabilities(
        dialect="duckdb",
        functions=FUNCTIONS,
        integer_remainder=True,
        narrow_integer_literals=True,
        supports_ilike=True,
        exact_decimals=True,  # with what whole_query refuses
        truncating_division=True,  # on HUGEINT: whole_query
        fast_groupings=True,
        decimal_sums=True,
        distinct_windows=True,
    )

    def __init__(self, domain: str, files: DuckdbFiles) -> None:
        super().__init__(
            domain, ConnectorConfig(type="duckdb", path=Path("(in memory, over the domain's Parquet files)"))
        )
        self.files = files

    def cursor(self) -> duckdb.DuckDBPyConnection:
        try:
            return self.files.cursor()
        except duckdb.Error as exc:
            raise SourceUnavailableError(self.domain, self.label, f"cannot start DuckDB: {exc}") from exc

    def close(self) -> None:
        """Nothing of its own to close: the database is :class:`DuckdbFiles`'."""

    def raw_relation(self, source: SourceObject, alias: str) -> exp.Expr:
        assert source.table is not None
        read = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(source.table)])
        return exp.Table(this=read, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))

    def refuses(self, query: exp.Expr) -> bool:
        """A function :meth:`whole_query` refuses (an average aside: ``gateway/averages.py`` may write
        it out), such as the ``EXISTS`` of a semi-join (TPC-H Q18 tried four such parts, 10 ms each)."""
        return any(not isinstance(f, (*_FUNCTIONS, exp.Avg)) for f in query.find_all(exp.Func))

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        named = {column.name for column in query.find_all(exp.Column)}
        if any(not engine_type(f.type) for schema in schemas for f in schema if f.name in named):
            return None
        if not all(engine_type(field.type) for field in output):
            return None
        if query.find(exp.Div, exp.Avg, *REFUSED_OPERATORS) is not None or query.find(exp.Star) is not None:
            return None  # an average left is not of a decimal column (gateway/averages.py writes those)
        if text_frame_offsets(query):
            return None
        if any(not isinstance(f, _FUNCTIONS) for f in query.find_all(exp.Func)):
            return None
        for cast in query.find_all(exp.Cast):
            if cast.to.is_type(exp.DType.DECIMAL) and not isinstance(cast.this, exp.Literal):
                return None
        return query

    def render(self, query: exp.Expr, *, copy: bool = True) -> str:
        """``query`` in DuckDB's SQL, its intervals as DuckDB reads them (:func:`whole_intervals`), the
        integer division of an exact average (gateway/averages.py: an integral decimal over a count)
        on ``HUGEINT``: DuckDB's ``//`` of a decimal divides."""
        written = whole_intervals(query)  # a copy, if it changed anything
        if copy and written is query and query.find(exp.IntDiv) is not None:
            written = query.copy()  # the caller's tree is left as it was
        for division in list(written.find_all(exp.IntDiv)):
            division.set("this", exp.cast(division.this, exp.DataType.build("HUGEINT", dialect="duckdb")))
        # sqlglot's DuckDB transforms change the tree they write: the caller's is copied once, if it keeps it.
        return written.sql(dialect="duckdb", copy=copy and written is query, unsupported_level=ErrorLevel.RAISE)


class ComputedTables(FileEngine):
    """A :class:`FileEngine` whose queries also read tables the planner computed (Arrow tables in
    memory, ``gateway/plan/file_subplans.py``): each cursor registers them under their names, and
    DuckDB scans them in place."""

    def __init__(self, engine: FileEngine, tables: Mapping[str, pa.Table]) -> None:
        super().__init__(engine.domain, engine.files)
        self._tables = dict(tables)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = super().cursor()
        for name, rows in self._tables.items():
            cursor.register(name, rows)
        return cursor

    def raw_relation(self, source: SourceObject, alias: str) -> exp.Expr:
        if source.table not in self._tables:
            return super().raw_relation(source, alias)
        return exp.Table(
            this=exp.to_identifier(source.table, quoted=True),
            alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
        )


def computed_source(name: str, schema: pa.Schema) -> SourceObject:
    """A table the planner computed, registered as ``name`` (:class:`ComputedTables`)."""
    return SourceObject(table=name, columns=tuple(SourceColumn(f.name, f.type) for f in schema))
