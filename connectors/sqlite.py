"""SQLite through ADBC (``adbc_driver_sqlite``): ``config.path`` is a database file, opened read-only.

SQLite stores each value with its own storage class, so a product's Arrow types come
from the declared column types (``PRAGMA table_info`` of the table, or of a temporary
view over the product's query), mapped like this::

    BOOLEAN, BOOL                     bool (stored 0/1)
    DATE                              date32 (stored as ISO text 'YYYY-MM-DD')
    TIME                              time64[us] (ISO text 'HH:MM:SS[.ffffff]')
    DATETIME, TIMESTAMP               timestamp[us] (ISO text; no time zones in SQLite)
    DECIMAL(p, s), NUMERIC(p, s)      decimal128(p, s) (read as text, so never rounded)
    DECIMAL, NUMERIC                  float64
    anything else, by SQLite's affinity rules:
      containing INT                  int64
      containing CHAR, CLOB or TEXT   string
      containing BLOB                 binary
      containing REAL, FLOA or DOUB   float64
      undeclared or other             string (and compared as text)

A value that does not fit its column's type (text in an INTEGER column, a time zone in
a TIMESTAMP) fails the scan instead of being guessed at. Computed columns of a
product's query have no declared type: give them one with ``CAST(expr AS type)``.
``PRAGMA case_sensitive_like`` is on for every connection, so pushed LIKE matches
DataFusion.

A scan with a deadline waits for a writer's lock at most until then (``PRAGMA
busy_timeout``, set back to ``lock_wait`` before its connection goes back to the pool), and
the gateway stops waiting for it at the deadline; without a deadline it waits ``lock_wait``
seconds at most (option, default 5). A statement cannot be interrupted: ADBC's SQLite
driver (1.13) answers a cancel with NOT_IMPLEMENTED and links SQLite privately, so neither
``sqlite3_interrupt`` nor a progress handler can be reached. A cancelled or timed-out
scan stops at its next batch, while a long computation before the first batch (a pushed
aggregate over a big table) runs on to that batch in the background.
"""

from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import adbc_driver_sqlite.dbapi
import pyarrow as pa
import sqlglot
from adbc_driver_manager.dbapi import Connection, Cursor
from sqlglot import exp
from sqlglot.errors import SqlglotError

from connectors import drivers, rowid, split
from connectors.adbc import AdbcConnector, AdbcScan
from connectors.base import STATS_SECONDS, DiscoveredProduct, ScanSpec, SourceObject, SourceStream, SqlCapabilities
from connectors.deadline import before, milliseconds_left
from connectors.naming import identifier, unique
from connectors.sqlbase import Collation, ReaderStream, SourceColumn
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError

BATCH_ROWS = 65536
LOCK_WAIT = 5.0
"""Seconds a read without a deadline waits for another connection's lock (option ``lock_wait``): a
writer's commit holds the file for milliseconds, and a read that gave up at once failed 52 of 300
times beside a writer committing every 2 ms."""
MAX_LOCK_WAIT = 60.0
"""The longest ``lock_wait``: a domain's file must not let a lock held on its database keep queries
(and the admission slots they hold) waiting for long."""
PARTITION_ROWS = 100_000
"""Rowids each range of a parallel read covers at least (option ``partition_rows``): some 20 ms of
reading on one connection, against well under a millisecond to open a range (a connection of the
pool, ``BEGIN`` and one read)."""

# Checked against DataFusion by tests/connectors/test_functions.py. Left out: upper and
# lower (ASCII only in SQLite), substr (negative starts count from the end).
FUNCTIONS = frozenset(
    {
        "abs",
        "char_length",
        "character_length",
        "coalesce",
        "instr",
        "length",
        "ltrim",
        "nullif",
        "octet_length",
        "replace",
        "rtrim",
        "strpos",
        "trim",
    }
)

_DECLARED = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_ ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
_PROBE = "meshgate_probe"
SAMPLE_ROWS = 10_000
"""The most rows :meth:`SqliteConnector.read_scan_estimate` counts a predicate over."""
SAMPLE_BLOCKS = 20
"""How many blocks of rowids those rows are read in, spread over the table."""


_UNKNOWN_TO_SQLITE = (exp.Rollup, exp.Cube, exp.GroupingSets, exp.Any, exp.All, exp.ILike)
"""What SQLite's grammar has no word for: ``GROUP BY ROLLUP (g)``, ``CUBE``, ``GROUPING SETS`` and
``x = ANY (SELECT ...)`` / ``x > ALL (SELECT ...)`` (sqlglot writes them as they are).

Nor ``ILIKE``, which sqlglot writes as ``LOWER(x) LIKE LOWER(p)``: SQLite's ``lower`` folds ASCII
letters only, where DataFusion folds every letter (``'Ärger' ILIKE 'ä%'`` is true, and so is the
Kelvin sign's ``'K' ILIKE 'k'``): such a query answered no row whole."""


class SqliteConnector(AdbcConnector):
    """A SQLite database file. Options: ``pool_size``, ``max_partitions``, ``partition_rows``.

    A scan of a whole table (no limit) whose rowids span at least two ranges of ``partition_rows``
    (default 100,000) is read in up to ``max_partitions`` (default the machine's CPU count, at most
    32) rowid ranges on connections of their own, all seeing one state of the file
    (:mod:`connectors.rowid`); one whose pushed filter SQLite answers from an index, or of a database
    in WAL mode, is not split. A join the planner pushed whole is split on the table SQLite scans outermost.
    """

    kind = "sqlite"
    config_keys = frozenset({"path", "pool_size", "max_partitions", "partition_rows", "lock_wait"})
    capabilities = SqlCapabilities(
        dialect="sqlite",
        functions=FUNCTIONS,
        string_collation="BINARY",
        temporal_literals="iso_text",
        exact_decimals=False,
        key_sets="json_each",
        hash_joins=False,
        string_dates=False,
        strict_casts=False,
    )

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if config.path is None:
            raise ConfigError(f"domain {domain!r}: a sqlite connector needs a path")
        self.max_partitions = split.partition_options(config, domain, os.cpu_count() or 1)
        self.partition_rows = split.positive_option(config, domain, "partition_rows", PARTITION_ROWS)
        wait = config.options.get("lock_wait", LOCK_WAIT)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= MAX_LOCK_WAIT:
            raise ConfigError(
                f"domain {domain!r}: connector option lock_wait must be a number of seconds from 0 to {MAX_LOCK_WAIT:g}"
            )
        self.lock_wait_ms = round(wait * 1000)
        super().__init__(domain, config)
        self.path = Path(config.path)
        self.driver = drivers.SQLITE.library(domain)  # another build of the driver, the operator's
        self._scans = split.TableScans(self.max_partitions, queries=True)
        self._budget = split.Budget(self.max_partitions)
        self._files: weakref.WeakKeyDictionary[Connection, tuple[int, int]] = weakref.WeakKeyDictionary()
        self._spans: dict[str, tuple[float, int]] = {}  # by table: the rowids it spans, and when that was read

    def connect(self, deadline: float | None = None) -> Connection:
        if not self.path.is_file():
            raise SourceUnavailableError(self.domain, self.label, f"SQLite file {self.path} does not exist")
        opened = file_identity(self.path)
        # autocommit: otherwise each pooled connection stays in one read transaction and never sees new writes
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        connection: Connection = (
            adbc_driver_sqlite.dbapi.connect(uri, autocommit=True)
            if self.driver is None
            else drivers.SQLITE.connect(self.driver, uri)
        )
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA case_sensitive_like = ON")
            cursor.execute(f"PRAGMA busy_timeout = {self.lock_wait_ms}")
            cursor.fetchall()
        if opened is not None and file_identity(self.path) == opened:  # not replaced while it opened
            self._files[connection] = opened
        return connection

    def current(self, connection: Connection) -> bool:
        """Whether ``connection`` reads the file now at the path: a file replaced by another (a data
        product published by renaming a new file over the old one) is read anew, not the old one."""
        return self._files.get(connection) == file_identity(self.path)

    def runs_per_row(self, sql: str) -> bool | None:
        """Whether SQLite's plan of ``sql`` reads a table in a correlated subquery other than by an
        equality (:func:`_reads_per_row`) while the query reads a table of :data:`PER_ROW_ROWS` rows
        or more.

        SQLite runs a correlated subquery once per row around it: 20,000 rows counted against their
        group's average (a scan of the same 20,000 rows each) took 11.6 s whole, and TPC-H's 200,000
        parts against the largest size of their type less 5 (a range search by rowid for each) did not
        end in 20 s, where the federated route joins the groups computed once (0.1 s)."""
        read = sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)
        sizes = [self.estimate_rows(SourceObject(table=exp.table_name(table))) for table in read if table.name]
        if all(size is not None and size < PER_ROW_ROWS for size in sizes):
            return False  # small enough whatever the plan
        return self.run(lambda cursor: _reads_per_row(cursor, sql))

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        """As every source's, and none with an interval or arithmetic on a date or time: SQLite has
        no intervals, and holds dates as text (``d + 1`` of ``'2024-01-31'`` is 2025 there). Nor
        with what SQLite's grammar lacks (:data:`_UNKNOWN_TO_SQLITE`): such queries failed whole."""
        temporal = {f.name for schema in schemas for f in schema if pa.types.is_temporal(f.type)}
        arithmetic = query.find_all(exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg)
        if query.find(exp.Interval, *_UNKNOWN_TO_SQLITE) is not None or any(
            column.name in temporal for node in arithmetic for column in node.find_all(exp.Column)
        ):
            return None
        return super().whole_query(query, schemas, output)

    def configure(self, cursor: Cursor) -> None:
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})

    def bound(self, connection: Connection, deadline: float) -> None:
        """Wait for another connection's lock at most until ``deadline`` (then: "database is locked")."""
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {milliseconds_left(deadline)}")
            cursor.fetchall()

    def unbound(self, connection: Connection) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {self.lock_wait_ms}")
            cursor.fetchall()

    def scan_sql(self, spec: ScanSpec) -> str:
        """The scan's SQL; a table scan without a limit is remembered, for :meth:`execute` to split it."""
        return self._scans.remember(super().scan_sql(spec), spec)

    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Run ``sql``: on one connection, or, for a big table's scan, in rowid ranges (:mod:`connectors.rowid`)."""
        spec = self._scans.splittable(sql)
        if spec is None or (spec.source.table is None and spec.source.split is None):
            return super().execute(sql, schema, deadline)
        known = None if spec.source.table is None else self._spans.get(spec.source.table)
        if known is not None and time.monotonic() - known[0] < STATS_SECONDS and known[1] < 2 * self.partition_rows:
            return super().execute(sql, schema, deadline)  # small, as seen a moment ago
        try:
            scan = before(
                deadline,
                lambda: self._split(spec, sql, deadline),
                abandon=lambda prepared: prepared.finish(False),
                source=self.source,
            )
        except rowid.Unshared:
            return super().execute(sql, schema, deadline)
        stream = ReaderStream(schema, scan, deadline, self.source)
        if isinstance(scan, split.PartitionedScan):
            stream.detail = scan.detail
        return stream

    def _split(self, spec: ScanSpec, sql: str, deadline: float | None) -> AdbcScan | split.PartitionedScan:
        """The scan of a table, or of a derived query that may be split on one of its tables
        (``SourceObject.split``), prepared: in rowid ranges if the table is big enough now, else on one connection.

        A derived query is read in ranges of the table SQLite's plan loops over outermost, when it scans
        it whole and ranges of it give the query's rows (:func:`connectors.rowid.ranged_tables`): TPC-H
        Q16's partsupp joined with part is a scan of part and an index search of partsupp per part, so
        ranges of partsupp would each search it all.
        """
        query = self.scan_query(spec)
        derived = spec.source.table is None
        if spec.source.table is not None:  # a table's scan: its one table
            first = next(query.find_all(exp.Table))
            choices = {first.alias_or_name: (first, spec.source.table)}
        else:
            assert spec.source.split is not None
            ranged = rowid.ranged_tables(query, spec.source.split)
            choices = {key: (table, exp.table_name(table)) for key, table in ranged.items()}
        tables = {key: table for key, (table, _) in choices.items()}
        aliases = {
            key: rowid.rowid_alias(c.name for c in self.columns(SourceObject(table=name) if derived else spec.source))
            for key, (_, name) in choices.items()
        }

        def plan(cursor: Cursor) -> list[str] | None:
            key = _outer_scan(cursor, sql, tables) if derived else next(iter(choices))
            table, name = choices[key] if key is not None else (None, None)
            alias = None if key is None else aliases[key]
            span = None if table is None or alias is None else _rowids(cursor, table, alias)
            rows = 0 if span is None else span[1] - span[0] + 1
            if name is not None:
                self._spans[name] = (time.monotonic(), rows)
            parts = max(1, min(split.most_ranges(self.max_partitions, spec), rows // self.partition_rows))
            if parts > 1 and not derived and spec.predicate is not None and _outer_scan(cursor, sql, tables) is None:
                parts = 1  # SQLite answers the table's filter from an index: not worth splitting
            if parts > 1 and _in_wal_mode(cursor):
                parts = 1  # nothing makes WAL readers begin at one commit (connectors/rowid.py)
            parts = self._budget.take(parts) if parts > 1 else 1
            if span is None or alias is None or parts < 2:
                cursor.adbc_prepare(sql)
                return None
            on = name  # a key set's JSON_EACH is a table of the query too: the range goes on this one
            bounds = split.ranges(span[0], span[1] + 1, parts)
            return [self.render(rowid.restrict(query, alias, low, high, on)) for low, high in bounds]

        connection, cursor, sqls = self.checkout(plan, deadline)
        if sqls is None:
            return AdbcScan(self, connection, cursor, sql, bound=deadline is not None)
        try:
            parts = rowid.open_parts(self, (connection, cursor), sqls, self.lock_wait_ms)
        except BaseException:
            self._budget.give(len(sqls))
            raise
        scan = split.PartitionedScan(self, parts, deadline is not None, self._budget)
        scan.detail = f"read in {len(sqls)} rowid ranges on {len(sqls)} connections in one state of the file"
        return scan

    def discover(self) -> list[DiscoveredProduct]:
        rows = self.fetch(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " ORDER BY name"
        ).to_pylist()
        names = unique(identifier(r["name"]) for r in rows)
        return [
            DiscoveredProduct(name, SourceObject(table=exp.to_identifier(r["name"], quoted=True).sql("sqlite")))
            for name, r in zip(names, rows, strict=True)
        ]

    def describe(self, source: SourceObject) -> list[SourceColumn]:
        """Declared types of the table, or of a temporary view over the product's query."""
        if source.table is not None:
            table = exp.to_table(source.table, dialect="sqlite")
            info = f"pragma_table_info({_quote(table.name)}, {_quote(table.db or 'main')})"
            rows = self.fetch(f"SELECT name, type FROM {info} ORDER BY cid").to_pylist()
            if not rows:
                raise SourceError(self.domain, self.label, f"no table or view {source.table}")
            collations = self.collations(table)
            return [collated(declared_column(r["name"], r["type"] or ""), collations) for r in rows]
        query = self.render(exp.select("*").from_(self.raw_relation(source, "t")))

        def declared(cursor: Cursor) -> list[tuple[str, str]]:
            cursor.execute(f"CREATE TEMP VIEW {_PROBE} AS {query}")  # per connection: probes never collide
            try:
                cursor.execute(f"SELECT name, type FROM pragma_table_info('{_PROBE}', 'temp') ORDER BY cid")
                return [(name, decl or "") for name, decl in cursor.fetchall()]
            finally:
                cursor.execute(f"DROP VIEW temp.{_PROBE}")

        return [collated(declared_column(name, decl), None) for name, decl in self.run(declared)]

    def collations(self, table: exp.Table) -> dict[str, str] | None:
        """The declared ``COLLATE`` of each column of a table, from its ``CREATE TABLE``
        (``sqlite_master.sql``); None for a view (its columns' collations come from its query)."""
        master = f"{_quote_name(table.db or 'main')}.sqlite_master"
        rows = self.fetch(f"SELECT type, sql FROM {master} WHERE name = {_quote(table.name)}").to_pylist()
        if len(rows) != 1 or rows[0]["type"] != "table" or not rows[0]["sql"]:
            return None
        return declared_collations(str(rows[0]["sql"]))

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The table's primary key columns in key order (``PRAGMA table_info``); none for queries and views."""
        if source.table is None:
            return ()
        table = exp.to_table(source.table, dialect="sqlite")
        info = f"pragma_table_info({_quote(table.name)}, {_quote(table.db or 'main')})"
        rows = self.fetch(f"SELECT name FROM {info} WHERE pk > 0 ORDER BY pk").to_pylist()
        return tuple(r["name"] for r in rows)

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """The table's rows in ``sqlite_stat1`` (as of its last ANALYZE) if it has them, else ``max(rowid)``
        (one descent of the table's b-tree, not a scan); None for views, queries and WITHOUT ROWID
        tables that ANALYZE never saw."""
        if source.table is None:
            return None
        table = exp.to_table(source.table, dialect="sqlite")
        schema = exp.to_identifier(table.db or "main", quoted=True).sql("sqlite")
        name = _quote(table.name)

        def ask(cursor: Cursor) -> int | None:
            cursor.execute(f"SELECT name, type FROM {schema}.sqlite_master WHERE name IN ({name}, 'sqlite_stat1')")
            kinds = dict(cursor.fetchall())
            if kinds.get(table.name) != "table":
                return None
            if "sqlite_stat1" in kinds:  # a row per index (its first number: rows indexed), or one for the table
                cursor.execute(f"SELECT stat FROM {schema}.sqlite_stat1 WHERE tbl = {name}")
                counts = [int(str(stat).split()[0]) for (stat,) in cursor.fetchall() if stat]
                if counts:
                    return max(counts)
            rowid = f"SELECT count(*) FROM pragma_table_list({name}) WHERE schema = {_quote(table.db or 'main')} AND wr"
            cursor.execute(rowid)
            row = cursor.fetchone()
            if row is not None and row[0]:
                return None  # a WITHOUT ROWID table
            quoted = exp.to_identifier(table.name, quoted=True).sql("sqlite")
            cursor.execute(f"SELECT max(rowid) FROM {schema}.{quoted}")
            row = cursor.fetchone()
            return int(row[0]) if row is not None and row[0] is not None else 0

        return self.run(ask)

    def read_scan_estimate(self, spec: ScanSpec, sql: str) -> int | None:
        """SQLite keeps no statistics of a column's values: the scan's predicate is counted over the
        table when it holds at most :data:`SAMPLE_ROWS` rows, else over :data:`SAMPLE_BLOCKS` blocks of
        rows spread over its rowids (a few milliseconds, like the block sample PostgreSQL's ANALYZE
        reads), and scaled to the table's rows. None for views, queries and WITHOUT ROWID tables."""
        if spec.source.table is None or spec.predicate is None:
            return None
        total = self.estimate_rows(spec.source)
        if total is None:
            return None
        if total <= SAMPLE_ROWS:
            return int(self.fetch(f"SELECT count(*) AS n FROM ({sql}) AS s").column("n")[0].as_py())
        alias = rowid.rowid_alias(column.name for column in self.describe(spec.source))
        if alias is None:
            return None
        query = self.scan_query(replace(spec, columns=(), limit=None))  # FROM the table AS t WHERE the predicate
        assert isinstance(query, exp.Select)
        highest = query.select(f"max(t.{alias}) AS top", append=False).where(None, append=False)
        top = self.fetch(self.render(highest)).column("top")[0].as_py()
        if not top:
            return 0
        step, block = max(1, top // SAMPLE_BLOCKS), max(1, SAMPLE_ROWS // SAMPLE_BLOCKS)
        blocks = [f"t.{alias} BETWEEN {low} AND {low + block - 1}" for low in range(0, top + 1, step)[:SAMPLE_BLOCKS]]
        matched = exp.Case().when(query.args["where"].this.copy(), exp.Literal.number(1))
        sample = query.select(
            "count(*) AS n", exp.func("sum", matched.else_(exp.Literal.number(0))).as_("m"), append=False
        )
        counted = self.fetch(self.render(sample.where(" OR ".join(blocks), append=False))).to_pylist()[0]
        return round((counted["m"] or 0) / counted["n"] * total) if counted["n"] else None

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        """The table's NOT NULL columns (``PRAGMA table_info``), with the key columns SQLite keeps from NULL:
        an ``INTEGER PRIMARY KEY`` (the rowid) and the key of a ``WITHOUT ROWID`` table."""
        if source.table is None:
            return ()
        table = exp.to_table(source.table, dialect="sqlite")
        name, schema = _quote(table.name), _quote(table.db or "main")
        info = f"pragma_table_info({name}, {schema})"
        rowid = f"(pk = 1 AND upper(type) = 'INTEGER' AND (SELECT count(*) FROM {info} WHERE pk > 0) = 1)"
        without_rowid = f"(pk > 0 AND (SELECT wr FROM pragma_table_list({name}) WHERE schema = {schema}) = 1)"
        condition = f'"notnull" = 1 OR {rowid} OR {without_rowid}'
        rows = self.fetch(f"SELECT name FROM {info} WHERE {condition} ORDER BY cid").to_pylist()
        return tuple(r["name"] for r in rows)


def _quote(text: str) -> str:
    return exp.Literal.string(text).sql("sqlite")


def file_identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (None if it cannot be read): which file a connection opened."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _rowids(cursor: Cursor, table: exp.Table, alias: str) -> tuple[int, int] | None:
    """The smallest and largest rowid of ``table`` now (a descent of its b-tree each); None when
    it is empty or has no rowid (``WITHOUT ROWID``)."""
    try:
        name = table.sql("sqlite")  # one aggregate a query: SQLite seeks either end of the b-tree, not scans it
        cursor.execute(f"SELECT (SELECT min({alias}) FROM {name}), (SELECT max({alias}) FROM {name})")
        row = cursor.fetchone()
    except Exception:  # a WITHOUT ROWID table: "no such column"
        return None
    if row is None or row[0] is None or not isinstance(row[0], int) or not isinstance(row[1], int):
        return None
    return row[0], row[1]


def _in_wal_mode(cursor: Cursor) -> bool:
    """Whether the database ``cursor`` reads is in WAL mode (``PRAGMA journal_mode``)."""
    cursor.execute("PRAGMA journal_mode")
    mode = cursor.fetchone()
    return mode is not None and str(mode[0]).lower() == "wal"


PER_ROW_ROWS = 3_000
"""The fewest rows (estimated) the largest table of a query must hold for a correlated subquery that
SQLite would not look up by an equality to keep the query federated (:meth:`SqliteConnector.runs_per_row`):
below it, rows times rows stay under ten million."""


def _reads_per_row(cursor: Cursor, sql: str) -> bool:
    """Whether SQLite's plan for ``sql`` (``EXPLAIN QUERY PLAN``) reads a table inside a correlated
    subquery other than by an equality (``SEARCH t USING INDEX i (k=?)``): a ``SCAN``, or a range
    ``SEARCH``, once per row around it."""
    cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
    rows = [(int(row[0]), int(row[1]), str(row[-1])) for row in cursor.fetchall()]
    parents = {node: parent for node, parent, _ in rows}
    correlated = {node for node, _, detail in rows if detail.startswith("CORRELATED ")}
    for node, _, detail in rows:
        scans = detail.startswith("SCAN ") and not detail.startswith("SCAN CONSTANT ROW")
        if not scans and not (detail.startswith("SEARCH ") and "=?" not in detail):
            continue
        above = parents.get(node)
        while above is not None and above not in correlated:
            above = parents.get(above)
        if above is not None:
            return True
    return False


def _outer_scan(cursor: Cursor, sql: str, choices: dict[str, exp.Table]) -> str | None:
    """Which of ``choices`` (tables by alias) SQLite's plan for ``sql`` loops over outermost, if it
    scans it whole (``SCAN``, not by an index); None when it reaches the first of them by an index
    (``SEARCH``), or none."""
    cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
    for row in cursor.fetchall():
        verb, _, rest = str(row[-1]).partition(" ")
        name = rest.split(" ", 1)[0]
        if verb in ("SCAN", "SEARCH") and name in choices:
            return name if verb == "SCAN" else None
    return None


def _quote_name(text: str) -> str:
    return exp.to_identifier(text, quoted=True).sql("sqlite")


def declared_collations(ddl: str) -> dict[str, str] | None:
    """Column name -> the collation its definition declares (upper-cased); None when ``ddl`` does not parse.

    >>> declared_collations("CREATE TABLE t (a TEXT COLLATE NOCASE, [b c] TEXT, d TEXT DEFAULT 'x' COLLATE rtrim)")
    {'a': 'NOCASE', 'd': 'RTRIM'}
    """
    try:
        tree = sqlglot.parse_one(ddl, read="sqlite")
    except SqlglotError:
        return None
    found: dict[str, str] = {}
    for column in tree.find_all(exp.ColumnDef):
        for constraint in column.constraints:
            kind = constraint.kind
            if isinstance(kind, exp.CollateColumnConstraint):
                found[column.name] = kind.this.name.upper()
            elif isinstance(kind, exp.DefaultColumnConstraint) and isinstance(kind.this, exp.Collate):
                # sqlglot reads ``DEFAULT 'x' COLLATE c`` as a collated default: SQLite as the column's collation
                found[column.name] = kind.this.expression.name.upper()
    return found


def collated(column: SourceColumn, collations: dict[str, str] | None) -> SourceColumn:
    """``column`` with its collation when text does not compare as bytes in it: NOCASE, RTRIM or any
    other than BINARY. A view's or query's columns (``collations`` None) inherit collations this
    connector does not trace: their text columns count as not binary, so they are presented in BINARY.
    """
    if not pa.types.is_string(column.type):
        return column
    name = "undeclared" if collations is None else collations.get(column.name, "BINARY")
    return column if name == "BINARY" else replace(column, collation=Collation(name, deterministic=False))


def declared_column(name: str, declared: str) -> SourceColumn:
    """The product column for a declared SQLite type (see the module doc)."""
    match = _DECLARED.match(declared)
    base = " ".join(match.group(1).upper().split()) if match else declared.upper()
    if base in ("BOOLEAN", "BOOL"):
        return SourceColumn(name, pa.bool_())
    if base == "DATE":
        return SourceColumn(name, pa.date32())
    if base == "TIME":
        return SourceColumn(name, pa.time64("us"), read=_as_text)
    if base in ("DATETIME", "TIMESTAMP"):
        return SourceColumn(name, pa.timestamp("us"))
    if base in ("DECIMAL", "NUMERIC"):
        if match and match.group(2):
            precision, scale = int(match.group(2)), int(match.group(3) or 0)
            if 0 < precision <= 38 and scale <= precision:
                return SourceColumn(name, pa.decimal128(precision, scale), read=_as_text)
        return SourceColumn(name, pa.float64(), read=_as_real)
    if "INT" in base:
        return SourceColumn(name, pa.int64())
    if any(word in base for word in ("CHAR", "CLOB", "TEXT")):
        return SourceColumn(name, pa.string(), read=_as_text)
    if "BLOB" in base:
        return SourceColumn(name, pa.binary(), read=_as_blob)
    if any(word in base for word in ("REAL", "FLOA", "DOUB")):
        return SourceColumn(name, pa.float64())
    return SourceColumn(name, pa.string(), view_as="TEXT")


# ADBC's SQLite driver infers each batch's Arrow type from the values in it, and renders
# mixed numbers as text with 7 digits: reading such columns in one storage class keeps
# every value exact (NUMERIC-affinity columns hold both integers and reals).
def _as_text(column: exp.Expr) -> exp.Expr:
    return exp.cast(column, "TEXT")


def _as_blob(column: exp.Expr) -> exp.Expr:
    return exp.cast(column, "BLOB")


def _as_real(column: exp.Expr) -> exp.Expr:
    """Integers as reals; anything else as it is (text then fails the cast to float64)."""
    is_integer = exp.EQ(this=exp.func("typeof", column.copy()), expression=exp.Literal.string("integer"))
    return exp.Case(ifs=[exp.If(this=is_integer, true=exp.cast(column.copy(), "REAL"))], default=column.copy())
