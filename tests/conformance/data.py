"""One conformance dataset for every connector, loaders for each source, and what each gives back.

:func:`conformance_table` is 50 rows over the types the gateway cares about, with
NULLs in every column and awkward values (quotes, unicode, the empty string, integer
extremes, microseconds). Each ``load_*`` writes exactly that data with the source's
own tools (not through the connector under test), and :func:`expected` says what the
connector must return for it. What each source can hold:

- postgres, duckdb, parquet: everything, exactly.
- mysql (MariaDB): everything, exactly: ``flag`` is a BOOLEAN (TINYINT(1)), ``tstz`` a
  TIMESTAMP (UTC), ``ts`` a DATETIME(6), ``name`` utf8mb4 TEXT.
- sqlite: integers are all int64 (SQLite does not keep widths); no time zones, so
  ``tstz`` is stored as UTC text in a TIMESTAMP column and comes back naive;
  ``amount`` is stored as SQLite numbers (mixed INTEGER and REAL storage).
- delta: everything, exactly (``ts`` is a timestamp_ntz column, ``tstz`` a timestamp).
- iceberg: everything, but Iceberg has no 8- or 16-bit integers: ``i16`` is an int (int32).
- csv: what DataFusion infers: int64 integers, float64 for ``amount``, naive UTC
  timestamps for ``tstz``, no binary column (``payload`` is left out), and the empty
  string reads as NULL.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from deltalake import write_deltalake

from tests.support.iceberg import warehouse_of
from tests.support.mysql import connect

ROWS = 50
TABLE = "conformance"
KINDS = ("postgres", "sqlite", "duckdb", "parquet", "csv", "delta", "iceberg")
SERVER_KINDS = ("mysql",)
"""Kinds whose server may be absent: their tests skip, saying why (tests/support/mysql.py)."""
UTC = dt.UTC

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("i16", pa.int16()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("f64", pa.float64()),
        ("amount", pa.decimal128(12, 2)),
        ("flag", pa.bool_()),
        ("name", pa.string()),
        ("day", pa.date32()),
        ("ts", pa.timestamp("us")),
        ("tstz", pa.timestamp("us", tz="UTC")),
        ("payload", pa.binary()),
    ]
)

_I16 = [0, 1, -1, 32767, -32768, 12, 300]
_I32 = [0, 7, -7, 2147483647, -2147483648, 123456, 42]
_I64 = [0, 5, -5, 9223372036854775807, -9223372036854775808, 10**15, 77]
_F64 = [0.0, 1.5, -2.25, 0.1 + 0.2, 1e300, -1e-300, 123456789.125]
_AMOUNTS = ["0.00", "12.34", "-0.01", "9999999999.99", "10.00", "10.01", "250.50", "-73.10"]
_NAMES = [
    "plain",
    "it's",
    'say "hi"',
    "Zoë Ångström",
    "日本語",
    "🚀 rocket",
    "",
    "comma, separated",
    "tab\there",
    " leading",
    "trailing ",
    "back\\slash",
    "100% _under",
    "UPPER lower",
]
_DAYS = [dt.date(2024, 2, 29), dt.date(1970, 1, 1), dt.date(1900, 1, 1), dt.date(9999, 12, 31), dt.date(2000, 6, 15)]


def _cycle(values: Sequence[object], i: int, null_every: int) -> object:
    return None if i % null_every == null_every - 1 else values[i % len(values)]


def conformance_table() -> pa.Table:
    """The 50-row dataset every connector is checked against."""
    rows = range(ROWS)
    base = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    columns = {
        "id": list(range(1, ROWS + 1)),
        "i16": [_cycle(_I16, i, 9) for i in rows],
        "i32": [_cycle(_I32, i, 8) for i in rows],
        "i64": [_cycle(_I64, i, 7) for i in rows],
        "f64": [_cycle(_F64, i, 6) for i in rows],
        "amount": [None if i % 10 == 9 else Decimal(_AMOUNTS[i % len(_AMOUNTS)]) for i in rows],
        "flag": [None if i % 5 == 4 else i % 2 == 0 for i in rows],
        "name": [_cycle(_NAMES, i, 15) for i in rows],
        "day": [_cycle(_DAYS, i, 11) for i in rows],
        "ts": [None if i % 12 == 11 else base + dt.timedelta(days=i * 37, microseconds=i * 1001) for i in rows],
        "tstz": [
            None if i % 13 == 12 else (base + dt.timedelta(hours=i * 17, microseconds=i)).replace(tzinfo=UTC)
            for i in rows
        ],
        "payload": [None if i % 8 == 7 else bytes([i, 0, 255 - i]) * (i % 3) for i in rows],
    }
    return pa.table(columns, schema=SCHEMA)


def expected(kind: str) -> pa.Table:
    """What a connector of ``kind`` must return for the loaded dataset."""
    table = conformance_table()
    if kind in ("postgres", "duckdb", "parquet", "mysql", "flightsql", "delta"):
        return table
    if kind == "iceberg":
        return table.set_column(table.schema.get_field_index("i16"), "i16", table["i16"].cast(pa.int32()))
    naive_tstz = pc.local_timestamp(table["tstz"]).cast(pa.timestamp("us"))
    table = table.set_column(table.schema.get_field_index("tstz"), "tstz", naive_tstz)
    for name in ("i16", "i32"):
        table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(pa.int64()))
    if kind == "sqlite":
        return table
    assert kind == "csv", kind
    table = table.drop_columns(["payload"])
    as_float = table["amount"].cast(pa.string()).cast(pa.float64())  # parsed from the text, as the reader does
    table = table.set_column(table.schema.get_field_index("amount"), "amount", as_float)
    empty_as_null = pc.if_else(pc.equal(table["name"], ""), None, table["name"])
    return table.set_column(table.schema.get_field_index("name"), "name", empty_as_null)


def load_postgres(uri: str, schema: str) -> None:
    """Create ``schema.conformance`` with PostgreSQL's own types and insert the dataset."""
    ddl = (
        f'CREATE TABLE "{schema}".{TABLE} (id int8, i16 int2, i32 int4, i64 int8, f64 float8, amount numeric(12, 2),'
        " flag bool, name text, day date, ts timestamp, tstz timestamptz, payload bytea)"
    )
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(ddl)
        cursor.adbc_ingest(TABLE, conformance_table(), mode="append", db_schema_name=schema)


def load_sqlite(path: Path) -> Path:
    """A SQLite file with the dataset, written by the standard library's sqlite3."""
    table = conformance_table()
    with sqlite3.connect(path) as connection:
        connection.execute(
            f"CREATE TABLE {TABLE} (id INTEGER, i16 SMALLINT, i32 INT, i64 BIGINT, f64 DOUBLE, amount DECIMAL(12, 2),"
            " flag BOOLEAN, name TEXT, day DATE, ts TIMESTAMP, tstz TIMESTAMP, payload BLOB)"
        )
        rows = [[_sqlite_value(value) for value in row.values()] for row in table.to_pylist()]
        connection.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(SCHEMA))})", rows)
    connection.close()
    return path


def _sqlite_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)  # NUMERIC affinity stores it as INTEGER or REAL, as SQLite users get it
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if value.tzinfo else value.isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def load_duckdb(path: Path) -> Path:
    """A DuckDB file with the dataset (DuckDB maps every Arrow type here exactly)."""
    connection = duckdb.connect(str(path))
    try:
        connection.register("incoming", conformance_table())
        connection.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM incoming")
    finally:
        connection.close()
    return path


def load_mysql(uri: str) -> None:
    """Create ``conformance`` in the database of ``uri`` with MySQL's own types and insert the dataset."""
    ddl = (
        f"CREATE TABLE {TABLE} (id BIGINT, i16 SMALLINT, i32 INT, i64 BIGINT, f64 DOUBLE, amount DECIMAL(12, 2),"
        " flag BOOLEAN, name TEXT, day DATE, ts DATETIME(6), tstz TIMESTAMP(6) NULL, payload BLOB)"
        " CHARACTER SET utf8mb4"
    )
    rows = [
        [v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) and v.tzinfo else v for v in row.values()]
        for row in conformance_table().to_pylist()
    ]
    with connect(uri) as connection, connection.cursor() as cursor:  # session time zone UTC
        cursor.execute(ddl)
        cursor.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join(['%s'] * len(SCHEMA))})", rows)


def load_parquet(path: Path) -> Path:
    pq.write_table(conformance_table(), path)
    return path


def load_delta(path: Path) -> Path:
    """A Delta table written by the deltalake package (two commits: versions 0 and 1)."""
    table = conformance_table()
    write_deltalake(path, table.slice(0, 20))
    write_deltalake(path, table.slice(20), mode="append")
    return path


def load_iceberg(path: Path) -> Path:
    """An Iceberg table written by pyiceberg (tests/support/iceberg.py), in two snapshots."""
    table = expected("iceberg")
    created = warehouse_of(path.parent).create_table(path.name, table.schema)
    created.append(table.slice(0, 20))
    created.append(table.slice(20))
    return path


def load_csv(path: Path) -> Path:
    """A CSV file with a header row; binary has no CSV form, so ``payload`` is left out."""
    pcsv.write_csv(conformance_table().drop_columns(["payload"]), path)
    return path
