"""MySQL and MariaDB: ``config.uri`` is ``mysql://user:password@host:3306/database`` (``mariadb://`` too).

Drivers. Rows are read by ``connectorx`` (Arrow-native, Rust), metadata and cancels go
through ``pymysql``. Measured here on 1 M rows of (BIGINT, INT, DOUBLE, VARCHAR), loopback,
MariaDB 10.11, 2 cores (load average 0.5): connectorx 4.2 M rows/s into one Arrow table,
4.1 M rows/s as its ``arrow_stream``, 3.2 M rows/s split in two ``partition_on`` ranges;
pymysql's unbuffered ``SSCursor`` turned into Arrow batches 0.27 M rows/s (15x slower).
connectorx's ``arrow_stream`` holds Python's GIL while it waits for the source's first
rows (a ``SLEEP(1.5)`` froze every other thread of the process for 1.4 s), so a slow
MySQL query would stall the whole gateway: scans use ``return_type="arrow"``, which
releases the GIL for the whole read, and are handed on in 64 k-row batches. The cost is
that a scan's result is held whole in memory before its first batch leaves. connectorx
binds no parameters and cannot be cancelled through its API; every scan therefore carries
a token in a comment (``/* meshgate:<hex> */``) and a cancel, a close before the end or a
deadline sends ``KILL QUERY`` from a pymysql connection to the thread running it. Each scan
opens its own connection (connectorx keeps no pool; about 2 ms on loopback).

Partitioned reads (option ``max_partitions``, default 1: off; admin-only, at most 32). A scan of
a table without a LIMIT, whose primary key is one integer column and whose row estimate holds
two ranges of ``partition_rows`` (default 250,000) or more, is read as key ranges cut evenly
between the key's MIN and MAX, the outer ones open (``id < b1``, ..., ``id >= bn``): every key,
even one inserted meanwhile, is in exactly one range, and a primary key is never NULL. The
ranges go to connectorx as a list of queries, each on its own connection with the session
settings below (connectorx's own ``partition_on`` would bound them by a MIN/MAX over the whole
query, closed at MAX). Each range is its own transaction: MySQL cannot share a snapshot between
connections, so a table written to during the read is not seen as of one instant. Measured on
1 M rows (BIGINT key, INT, DOUBLE, VARCHAR), MariaDB 10.11 on the same 2 cores, through this
connector (text presented in the binary collation), three runs each, load average 1.5-1.9
(other work): 1 range 0.85-0.91 M rows/s, 2 ranges 0.82-0.87, 4 ranges 0.79-0.85. It pays only
when the server has cores to spare. connectorx runs as many ranges at once as this machine has
cores (four ``SLEEP(1)`` ranges took 2.2 s on 2 cores), the others after them.

Types, MySQL -> Arrow (exact; anything else refused with the column named)::

    TINYINT .. BIGINT               int8, int16, int32 (MEDIUMINT, INT), int64
    ... UNSIGNED                    uint8, uint16, uint32, uint64
    BOOLEAN (TINYINT(1))            bool; a value other than 0 and 1 fails the scan
    DECIMAL(p, s)                   decimal128(p, s), decimal256 above 38 digits (read as text)
    FLOAT, DOUBLE                   float32, float64
    CHAR, VARCHAR, TEXT, ENUM, SET, JSON   string (CHAR loses trailing blanks, as MySQL reads it)
    BINARY, VARBINARY, BLOB         binary
    DATE                            date32
    DATETIME(n)                     timestamp[us]
    TIMESTAMP(n)                    timestamp[us, tz=UTC] (read with the session time zone '+00:00')
    TIME(n)                         time64[us]; values outside 00:00:00..23:59:59.999999 fail
    YEAR                            int16
    BIT(n)                          uint64
    GEOMETRY and others             left out of the product, with a warning naming the column

MySQL's zero and partial dates (``'0000-00-00'``, ``'2024-00-10'``) have no Arrow value:
a scan that meets one fails, naming the value. connectorx would round decimals to 10
digits of scale and cannot read more than 28 digits, so decimals are read as their text
and converted exactly; TIME is read as text too (connectorx fails on negative times).

Comparisons. MySQL compares text by the column's collation: usually case-insensitive,
and padded (``'a ' = 'a'``). DataFusion compares bytes. So every text column is presented
to pushed predicates as ``CONVERT(col USING utf8mb4) COLLATE utf8mb4_nopad_bin`` (MySQL
8: ``utf8mb4_0900_bin``): byte order, no padding, case-sensitive LIKE, and literals take
the column's collation. The cost is that an index on a text column is not used for a
pushed predicate. Enums compare as their text, BIT as its number. ``/`` and ``%`` are
never pushed (the planner keeps them everywhere; MySQL's ``/`` on integers is decimal).

Joins of this source's products with their filters are sent to it as one query
(``join_pushdown``; gateway/plan/same_source.py): only scans, filters, column projections and
inner joins on keys that are not text, every text column in the binary collation through its
product's relation, read back through this connector's scan. A query that reads only this
source's products goes to it whole when MySQL answers it as DataFusion would
(connectors/mysql_queries.py: NULL order and intervals rewritten; division, AVG and other
functions whose results differ keep the query federated); its answer is cast to DataFusion's
types (``SUM`` of integers is a DECIMAL in MySQL). Its text constants are given the binary no-pad
collation, so they compare by bytes as well.

Every scan's session gets ``time_zone = '+00:00'``, an ``sql_mode`` without
``NO_BACKSLASH_ESCAPES`` and ``PAD_CHAR_TO_FULL_LENGTH`` (pushed LIKE patterns escape with
a backslash; CHAR values lose their padding), and, with a deadline, ``max_statement_time``
(MariaDB, seconds) or ``max_execution_time`` (MySQL, ms) ending at it. Metadata connections
give up connecting after 10 s (``connect_timeout``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import connectorx
import pyarrow as pa
import pyarrow.compute as pc
import pymysql
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL

from connectors import mysql_queries, split
from connectors.base import DiscoveredProduct, ScanSpec, SourceObject, SourceStream, SqlCapabilities
from connectors.deadline import before, remaining
from connectors.naming import qualified, unique
from connectors.sqlbase import ConversionError, ReaderStream, SourceColumn, TypedSqlConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError, SourceError, SourceUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

BATCH_ROWS = 65536
CONNECT_TIMEOUT = 10
"""Seconds a metadata or cancel connection may take to connect."""
PARTITION_ROWS = 250_000
"""Rows (by the table's estimate) each key range of a partitioned read covers at least (``partition_rows``)."""

# Checked against DataFusion by tests/connectors/test_functions.py, over text presented with a
# binary collation (which makes instr/strpos/replace case-sensitive). Left out: upper/lower
# ('ß', final sigma), ascii (MySQL gives the first byte), left/right/substr/substring (negative
# or zero lengths and starts), split_part, starts_with and ends_with (MySQL has none).
FUNCTIONS = frozenset(
    {
        "abs",
        "btrim",
        "char_length",
        "character_length",
        "coalesce",
        "instr",
        "length",
        "ltrim",
        "md5",
        "nullif",
        "octet_length",
        "repeat",
        "replace",
        "reverse",
        "rtrim",
        "strpos",
        "trim",
    }
)

# MySQL protocol column types (include/mysql_com.h) and flags.
_TINY, _SHORT, _LONG, _FLOAT, _DOUBLE, _NULL, _TIMESTAMP, _LONGLONG, _INT24 = 1, 2, 3, 4, 5, 6, 7, 8, 9
_DATE, _TIME, _DATETIME, _YEAR, _NEWDATE, _VARCHAR, _BIT = 10, 11, 12, 13, 14, 15, 16
_JSON, _NEWDECIMAL, _DECIMAL, _ENUM, _SET, _GEOMETRY = 245, 246, 0, 247, 248, 255
_TEXT_TYPES = {_VARCHAR, _JSON, _ENUM, _SET, 249, 250, 251, 252, 253, 254}
_UNSIGNED_FLAG = 32
_BINARY_CHARSET = 63
_INTEGERS = {_TINY: 8, _SHORT: 16, _INT24: 32, _LONG: 32, _LONGLONG: 64}
_TYPE_NAMES = {_GEOMETRY: "GEOMETRY", _NULL: "NULL"}

_SESSION = [
    "SET time_zone = '+00:00'",
    "SET sql_mode = REPLACE(REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', ''), 'PAD_CHAR_TO_FULL_LENGTH', '')",
]


@dataclass(frozen=True)
class Server:
    """What kind of server answers: decides the binary collation and the statement time limit."""

    mariadb: bool
    version: str

    @property
    def binary_collation(self) -> str:
        return "utf8mb4_nopad_bin" if self.mariadb else "utf8mb4_0900_bin"

    def time_limit(self, seconds: float) -> str:
        """The session setting that ends the next statements after ``seconds`` (rounded up)."""
        if self.mariadb:
            return f"SET SESSION max_statement_time = {max(0.001, seconds):.3f}"
        return f"SET SESSION max_execution_time = {max(1, int(seconds * 1000) + 1)}"


@dataclass(frozen=True)
class Address:
    """A parsed ``mysql://`` uri: the pymysql settings and the uri connectorx gets."""

    host: str
    port: int
    user: str
    password: str
    database: str | None
    reader_uri: str


def parse_uri(uri: str, domain: str) -> Address:
    """Split a ``mysql://`` or ``mariadb://`` uri (user and password percent-decoded).

    >>> a = parse_uri("mariadb://app:p%40ss@db:3307/sales", "d")
    >>> (a.host, a.port, a.user, a.password, a.database)
    ('db', 3307, 'app', 'p@ss', 'sales')
    >>> a.reader_uri
    'mysql://app:p%40ss@db:3307/sales?prefer_socket=false'
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
        raise ConfigError(
            f"domain {domain!r}: a mysql connector's uri must look like mysql://user:password@host:3306/db"
        )
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError(f"domain {domain!r}: the mysql uri's port is not a number") from None
    database = unquote(parts.path.lstrip("/")) or None
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(key == "prefer_socket" for key, _ in query):
        query.append(("prefer_socket", "false"))  # the same user@host as pymysql's TCP connections
    reader_uri = urlunsplit(("mysql", parts.netloc, parts.path, urlencode(query), ""))
    return Address(
        parts.hostname, port, unquote(parts.username or ""), unquote(parts.password or ""), database, reader_uri
    )


class MeshgateMySQL(MySQL):
    """sqlglot's MySQL dialect (registered as ``meshgatemysql``), with timestamp casts to ``DATETIME(6)``.

    MySQL's ``CAST('2024-01-01 12:30:00.5' AS DATETIME)`` drops the fraction: a pushed
    timestamp constant would compare as another instant. The tree is rewritten before
    generating (sqlglotc's compiled generator cannot be subclassed in Python).
    """

    def generate(self, expression: exp.Expr, copy: bool = True, **opts: Any) -> str:
        expression = expression.copy() if copy else expression
        for node in list(expression.find_all(exp.DataType)):
            if node.this in _TIMESTAMPS and not node.expressions:
                node.replace(_DATETIME6.copy())
        return super().generate(expression, copy=False, **opts)


_TIMESTAMPS = {exp.DType.TIMESTAMP, exp.DType.TIMESTAMPNTZ, exp.DType.DATETIME}
_DATETIME6 = exp.DataType.build("DATETIME(6)", dialect="mysql")
DIALECT = "meshgatemysql"


_DISCOVER = """
SELECT table_schema, table_name, table_comment FROM information_schema.tables
WHERE table_schema = COALESCE(DATABASE(), table_schema)
  AND table_schema NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')
ORDER BY table_schema <> COALESCE(DATABASE(), ''), table_schema, table_name
"""
_ESTIMATE = """
SELECT table_rows FROM information_schema.tables
WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s
"""
_PRIMARY_KEY = """
SELECT column_name FROM information_schema.key_column_usage
WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s AND constraint_name = 'PRIMARY'
ORDER BY ordinal_position
"""
_NOT_NULL = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s AND is_nullable = 'NO'
ORDER BY ordinal_position
"""


class MysqlConnector(TypedSqlConnector):
    """A MySQL (8.0 or later) or MariaDB (10.2 or later) database. Options: ``max_partitions``, ``partition_rows``."""

    kind = "mysql"
    config_keys = frozenset({"uri", "max_partitions", "partition_rows"})
    admin_keys = frozenset({"max_partitions"})  # each range is a connection to the source and a thread
    capabilities = SqlCapabilities(
        dialect=DIALECT, functions=FUNCTIONS, text_keys=True, string_dates=False, strict_casts=False
    )

    def __init__(self, domain: str, config: ConnectorConfig) -> None:
        if not config.uri:
            raise ConfigError(f"domain {domain!r}: a mysql connector needs a uri")
        self.max_partitions = split.partition_options(config, domain, 1)
        self.partition_rows = split.positive_option(config, domain, "partition_rows", PARTITION_ROWS)
        super().__init__(domain, config)
        self.address = parse_uri(config.uri, domain)
        self._scans = split.TableScans(self.max_partitions)
        self._server: Server | None = None
        self._idle: pymysql.connections.Connection | None = None  # one metadata connection, reused
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        """``domain/kind``: how deadline errors name this source (without its location)."""
        return f"{self.domain}/{self.kind}"

    # -- metadata (pymysql) ---------------------------------------------------------
    def connect(self, timeout: float = CONNECT_TIMEOUT) -> pymysql.connections.Connection:
        a = self.address
        try:
            return pymysql.connect(
                host=a.host,
                port=a.port,
                user=a.user,
                password=a.password,
                database=a.database,
                connect_timeout=max(1, timeout),
                charset="utf8mb4",
                autocommit=True,
            )
        except Exception as exc:
            raise SourceUnavailableError(self.domain, self.label, f"cannot connect: {self.message(exc)}") from exc

    def run(self, action: Callable[[Any], T]) -> T:
        """``action(cursor)`` on the metadata connection (one at a time), mapping errors."""
        with self._lock:
            connection, self._idle = self._idle, None
        if connection is None:
            connection = self.connect()
        try:
            with connection.cursor() as cursor:
                result = action(cursor)
        except Exception as exc:
            with suppress(Exception):
                connection.close()
            raise self.error(exc) from exc
        with self._lock:
            if self._idle is None:
                self._idle, connection = connection, None
        if connection is not None:
            with suppress(Exception):
                connection.close()
        return result

    def server(self) -> Server:
        """The server's kind and version (asked once); refuses servers without a binary NO PAD collation."""
        if self._server is None:

            def ask(cursor: Any) -> str:
                cursor.execute("SELECT VERSION()")
                return str(cursor.fetchone()[0])

            version = self.run(ask)
            server = Server("mariadb" in version.lower(), version)
            major = _version_tuple(version)
            if (server.mariadb and major < (10, 2)) or (not server.mariadb and major < (8, 0)):
                raise SourceUnavailableError(
                    self.domain,
                    self.label,
                    f"server version {version} is not supported (MySQL 8.0 or MariaDB 10.2 and later)",
                )
            self._server = server
        return self._server

    def discover(self) -> list[DiscoveredProduct]:
        def tables(cursor: Any) -> list[tuple[str, str, str]]:
            cursor.execute(_DISCOVER)
            return list(cursor.fetchall())

        rows = self.run(tables)
        default = self.address.database or ""
        names = unique(qualified(schema, table, default) for schema, table, _ in rows)
        return [
            DiscoveredProduct(
                name, SourceObject(table=exp.table_(table, db=schema, quoted=True).sql(DIALECT)), comment or None
            )
            for name, (schema, table, comment) in zip(names, rows, strict=True)
        ]

    def describe(self, source: SourceObject) -> list[SourceColumn]:
        server = self.server()
        sql = self.render(exp.select("*").from_(self.raw_relation(source, "t")).limit(0))

        def fields(cursor: Any) -> list[Any]:
            cursor.execute(sql)
            return list(cursor._result.fields)  # pymysql's column definitions: type, flags, charset, length

        found = []
        for field in self.run(fields):
            column = self.column(field, server)
            if column is None:
                log.warning(
                    "[%s/%s] %s: column %r is left out: MySQL %s has no exact Arrow type",
                    self.domain,
                    self.kind,
                    source.describe(),
                    field.name,
                    _TYPE_NAMES.get(field.type_code, f"type {field.type_code}"),
                )
                continue
            found.append(column)
        return found

    def column(self, field: Any, server: Server) -> SourceColumn | None:
        """The product column for one MySQL column definition (see the module doc); None: not served."""
        name, code, flags = str(field.name), int(field.type_code), int(field.flags)
        unsigned = bool(flags & _UNSIGNED_FLAG)
        if code == _TINY and field.length == 1 and not unsigned:
            return SourceColumn(name, pa.bool_())
        if code in _INTEGERS:
            bits = _INTEGERS[code]
            return SourceColumn(name, pa.type_for_alias(f"{'u' if unsigned else ''}int{bits}"))
        if code in (_NEWDECIMAL, _DECIMAL):
            scale = int(field.scale)
            precision = int(field.length) - (0 if unsigned else 1) - (1 if scale > 0 else 0)
            kind = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
            return SourceColumn(name, kind, read=_as_text)
        if code == _FLOAT:
            return SourceColumn(name, pa.float32())
        if code == _DOUBLE:
            return SourceColumn(name, pa.float64())
        if code == _YEAR:
            return SourceColumn(name, pa.int16())
        if code == _BIT:
            return SourceColumn(name, pa.uint64(), guard=_as_unsigned)
        if code in (_DATE, _NEWDATE):
            return SourceColumn(name, pa.date32())
        if code == _DATETIME:
            return SourceColumn(name, pa.timestamp("us"))
        if code == _TIMESTAMP:
            return SourceColumn(name, pa.timestamp("us", tz="UTC"))
        if code == _TIME:
            return SourceColumn(name, pa.time64("us"), read=_as_text)
        if code in _TEXT_TYPES:
            if int(field.charsetnr) == _BINARY_CHARSET and code not in (_JSON, _ENUM, _SET):
                return SourceColumn(name, pa.binary())
            return SourceColumn(name, pa.string(), guard=partial(_bytewise, server.binary_collation))
        return None

    def primary_key(self, source: SourceObject) -> tuple[str, ...]:
        """The table's primary key columns in key order; none for queries."""
        return self._column_names(_PRIMARY_KEY, source)

    def not_null(self, source: SourceObject) -> tuple[str, ...]:
        """The table's NOT NULL columns; none for queries."""
        return self._column_names(_NOT_NULL, source)

    def read_row_estimate(self, source: SourceObject) -> int | None:
        """``information_schema.tables.table_rows`` (InnoDB's estimate); None for queries."""
        found = self._about_table(_ESTIMATE, source)
        return int(found[0][0]) if found and found[0][0] is not None else None

    def _column_names(self, sql: str, source: SourceObject) -> tuple[str, ...]:
        return tuple(str(row[0]) for row in self._about_table(sql, source))

    def _about_table(self, sql: str, source: SourceObject) -> list[Any]:
        if source.table is None:
            return []
        table = exp.to_table(source.table, dialect=DIALECT)

        def rows(cursor: Any) -> list[Any]:
            cursor.execute(sql, (table.db or None, table.name))
            return list(cursor.fetchall())

        return self.run(rows)

    def whole_query(self, query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema) -> exp.Expr | None:
        return mysql_queries.whole_query(query, schemas, output, self.server().binary_collation)

    # -- scans (connectorx) -----------------------------------------------------------
    def scan_sql(self, spec: ScanSpec) -> str:
        """The scan's SQL; a table scan without a limit is remembered, for :meth:`execute` to split it."""
        return self._scans.remember(super().scan_sql(spec), spec)

    def execute(self, sql: str, schema: pa.Schema, deadline: float | None = None) -> SourceStream:
        """Run ``sql`` when the stream is first iterated, in key ranges if it is a big table's scan
        (see the module doc)."""
        server = before(deadline, self.server, abandon=lambda _: None, source=self.source)
        spec = self._scans.splittable(sql)
        queries = [sql]
        if spec is not None:
            queries = before(deadline, lambda: self.ranges(spec, sql), abandon=lambda _: None, source=self.source)
        scan = _MysqlScan(self, server, queries, schema, deadline)
        stream = ReaderStream(schema, scan, deadline, self.source)
        if len(queries) > 1:
            stream.detail = f"read in {len(queries)} primary key ranges on {len(queries)} connections"
        return stream

    def ranges(self, spec: ScanSpec, sql: str) -> list[str]:
        """``spec`` as one query per range of its table's integer primary key, or ``[sql]`` (one read).

        Split only when the table's row estimate holds two ranges of ``partition_rows``. The
        ranges are cut evenly between the key's current MIN and MAX and the outer ones are
        open (``key < b1``, ``b1 <= key < b2``, ..., ``key >= bn``): every key, whatever was
        inserted meanwhile, falls in exactly one range, and a primary key is never NULL.
        """
        assert spec.source.table is not None
        key = self.primary_key(spec.source)
        found = [c for c in self.columns(spec.source) if len(key) == 1 and c.name == key[0]]
        if not found or not pa.types.is_integer(found[0].type) or found[0].guard is not None:  # not BIT
            return [sql]
        estimate = self.estimate_rows(spec.source) or 0
        parts = min(split.most_ranges(self.max_partitions, spec), estimate // self.partition_rows)
        if parts < 2:
            return [sql]
        column = exp.column(key[0], quoted=True)
        bounds_sql = self.render(
            exp.select(exp.func("MIN", column), exp.func("MAX", column)).from_(self.raw_relation(spec.source, "t"))
        )

        def bounds(cursor: Any) -> tuple[Any, Any]:
            cursor.execute(bounds_sql)
            low, high = cursor.fetchone()
            return low, high

        low, high = self.run(bounds)
        if low is None or high is None:
            return [sql]
        cuts = sorted({low + (high - low + 1) * i // parts for i in range(1, parts)} - {low})
        if not cuts:
            return [sql]
        edges: list[tuple[int | None, int | None]] = list(zip([None, *cuts], [*cuts, None], strict=True))
        return [
            super(MysqlConnector, self).scan_sql(replace(spec, predicate=_within(spec, key[0], a, b))) for a, b in edges
        ]

    def kill(self, token: str) -> bool:
        """``KILL QUERY`` every thread running a statement marked with ``token``; whether one was found."""

        def kill(cursor: Any) -> bool:
            cursor.execute(
                "SELECT id FROM information_schema.processlist WHERE info LIKE %s AND id <> CONNECTION_ID()",
                (f"%meshgate:{token}%",),
            )
            ids = [int(row[0]) for row in cursor.fetchall()]
            for thread in ids:
                with suppress(pymysql.err.OperationalError):  # it ended meanwhile
                    cursor.execute(f"KILL QUERY {thread}")
            return bool(ids)

        connection = self.connect(timeout=5)
        try:
            with connection.cursor() as cursor:
                return kill(cursor)
        finally:
            with suppress(Exception):
                connection.close()

    # -- errors ---------------------------------------------------------------------------
    def message(self, exc: BaseException) -> str:
        """The server's or driver's message on one line, without the uri's password."""
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        if isinstance(exc, pymysql.err.Error) and len(args) == 2 and isinstance(args[0], int):
            text = f"{args[1]} (MySQL error {args[0]})"
        elif found := _CX_ERROR.search(str(exc)):
            text = f"{found.group(3)} (MySQL error {found.group(1)})"
        else:
            text = str(exc)
        text = " ".join(text.split()) or type(exc).__name__
        password = self.address.password
        for secret in {password, _quoted(password)} - {""}:
            text = text.replace(secret, "***")
        return text

    def error(self, exc: BaseException) -> SourceError:
        if isinstance(exc, SourceError):
            return exc
        text = str(exc)
        code = _error_code(exc)
        lost = code in _UNAVAILABLE_CODES or any(sign in text for sign in _UNAVAILABLE_SIGNS)
        kind = SourceUnavailableError if lost else SourceError
        return kind(self.domain, self.label, self.message(exc))

    def close(self) -> None:
        with self._lock:
            connection, self._idle = self._idle, None
        if connection is not None:
            with suppress(Exception):
                connection.close()


# "... MySqlError { ERROR 1146 (42S02): Table 'test.nope' doesn't exist }"
_CX_ERROR = re.compile(r"ERROR (\d+) \((\w+)\): (.*?) \}")
# Cannot connect, access denied, unknown database, server gone or lost.
_UNAVAILABLE_CODES = {1044, 1045, 1049, 2002, 2003, 2005, 2006, 2013}
_UNAVAILABLE_SIGNS = ("Connection refused", "IoError", "os error", "Can't connect", "DriverError")


def _error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if isinstance(exc, pymysql.err.Error) and args and isinstance(args[0], int):
        return args[0]
    found = _CX_ERROR.search(str(exc))
    return int(found.group(1)) if found else None


def _quoted(text: str) -> str:
    return quote(text, safe="")


def _version_tuple(version: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _within(spec: ScanSpec, key: str, low: int | None, high: int | None) -> exp.Expr:
    """``spec``'s predicate and ``low <= key < high`` (a missing bound: open on that side)."""
    column = exp.column(key, quoted=True)
    conditions: list[exp.Expr] = [] if spec.predicate is None else [spec.predicate.copy()]
    if low is not None:
        conditions.append(exp.GTE(this=column.copy(), expression=exp.Literal.number(low)))
    if high is not None:
        conditions.append(exp.LT(this=column.copy(), expression=exp.Literal.number(high)))
    return exp.and_(*conditions)


def _as_text(column: exp.Expr) -> exp.Expr:
    return exp.cast(column, "CHAR", dialect=DIALECT)


def _as_unsigned(column: exp.Expr) -> exp.Expr:
    return exp.cast(column, "UNSIGNED", dialect=DIALECT)


def _bytewise(collation: str, column: exp.Expr) -> exp.Expr:
    """``CONVERT(column USING utf8mb4) COLLATE <binary, no pad>``: text compared as DataFusion does."""
    converted = exp.Cast(this=column, to=exp.DataType.build("CHAR CHARACTER SET utf8mb4", dialect=DIALECT))
    return exp.Collate(this=converted, expression=exp.Var(this=collation))


# A zero or partial date, as connectorx reports it: Couldn't convert the value `Date("'0000-00-00'")`
_BAD_DATE = re.compile(r"Couldn't convert the value `Date\(\"'([^']*)'\"\)`")


class _MysqlScan:
    """One query through connectorx on a connection of its own (a :class:`SourceScan`)."""

    def __init__(
        self, connector: MysqlConnector, server: Server, queries: list[str], schema: pa.Schema, deadline: float | None
    ) -> None:
        self._connector = connector
        self._server = server
        self._token = uuid.uuid4().hex
        self._queries = [f"/* meshgate:{self._token} */ {sql}" for sql in queries]
        self._schema = schema
        self._deadline = deadline
        self._running = threading.Event()
        self._done = threading.Event()

    def start(self) -> Iterator[pa.RecordBatch]:
        session = list(_SESSION)
        left = remaining(self._deadline)
        if left is not None:
            session.append(self._server.time_limit(left))
        self._running.set()
        try:
            # A list of queries is read concurrently, one connection each, every one with the session settings.
            queries = self._queries if len(self._queries) > 1 else self._queries[0]
            table = connectorx.read_sql(
                self._connector.address.reader_uri, queries, return_type="arrow", pre_execution_query=session
            )
        except BaseException as exc:  # connectorx reports failures as Rust panics (BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise self._failure(exc) from None
        finally:
            self._done.set()
        assert isinstance(table, pa.Table)
        return (self._received(batch) for batch in table.to_batches(max_chunksize=BATCH_ROWS))

    def _failure(self, exc: BaseException) -> Exception:
        text = str(exc)
        bad_date = _BAD_DATE.search(text)
        if bad_date:
            columns = [f.name for f in self._schema if pa.types.is_date(f.type) or pa.types.is_timestamp(f.type)]
            where = (
                f"column {columns[0]!r}" if len(columns) == 1 else f"one of the columns {', '.join(map(repr, columns))}"
            )
            return ConversionError(
                f"{where}: MySQL's zero or partial date '{bad_date.group(1)}' has no Arrow value"
                " (store NULL instead, or filter it out in the product's SQL)"
            )
        return self._connector.error(exc)

    def _received(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``BOOLEAN`` columns as Arrow booleans, failing on values other than 0 and 1."""
        if not any(pa.types.is_boolean(f.type) for f in self._schema):
            return batch
        arrays = list(batch.columns)
        for i, field in enumerate(self._schema):
            if pa.types.is_boolean(field.type) and pa.types.is_integer(arrays[i].type):
                values = arrays[i]
                bounds = pc.min_max(values)
                if (bounds["min"].as_py() or 0) < 0 or (bounds["max"].as_py() or 0) > 1:
                    raise ConversionError(
                        f"column {field.name!r}: a BOOLEAN (TINYINT(1)) holds a value other than 0 and 1"
                    )
                arrays[i] = pc.not_equal(values, 0)
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    def interrupt(self) -> None:
        """``KILL QUERY`` the scan's statement; looks for it for up to a second if it has not shown up yet."""
        if not self._running.is_set():
            return
        give_up = time.monotonic() + 1.0
        while not self._done.is_set():
            killed = self._connector.kill(self._token)
            if (killed and len(self._queries) == 1) or time.monotonic() > give_up:
                return  # the ranges of a split read may start one after another: all are looked for
            time.sleep(0.05)

    def finish(self, complete: bool) -> None:
        if not complete and self._running.is_set() and not self._done.is_set():
            with suppress(Exception):
                self.interrupt()

    def error(self, exc: Exception) -> SourceError:
        return self._connector.error(exc)


__all__ = ["MysqlConnector", "parse_uri"]
