"""Every connector estimates a product's rows from its source's statistics (``Connector.estimate_rows``).

The same table of a few thousand rows is loaded into each kind of source (PostgreSQL after
ANALYZE: ``reltuples`` needs it; a Parquet folder of three files, whose footers are summed);
each estimate must be within a factor of 2 of the true count.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake
from sqlglot import exp

from connectors.base import Connector, ScanSpec, SourceObject, SqlConnector
from connectors.registry import open_connector
from meshcore.config import ConnectorConfig
from tests.conformance import data
from tests.support.iceberg import warehouse_of

ROWS = 3_000


def counted_table(start: int = 0, rows: int = ROWS) -> pa.Table:
    ids = range(start, start + rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"customer number {i}" for i in ids],
            "amount": pa.array([i * 1.25 for i in ids], pa.float64()),
        }
    )


def load(kind: str, folder: Path, uri: str, schema: str) -> tuple[ConnectorConfig, SourceObject]:
    """The counted table in a source of ``kind``, and where it is."""
    table = counted_table()
    if kind == "postgres":
        with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'CREATE TABLE "{schema}".counted (id int8, name text, amount float8)')
            cursor.adbc_ingest("counted", table, mode="append", db_schema_name=schema)
            cursor.execute(f'ANALYZE "{schema}".counted')
        return ConnectorConfig(type=kind, uri=uri), SourceObject(table=f'"{schema}".counted')
    if kind == "sqlite":
        path = folder / "counted.sqlite"
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE counted (id INTEGER, name TEXT, amount REAL)")
            connection.executemany(
                "INSERT INTO counted VALUES (?, ?, ?)", [tuple(r.values()) for r in table.to_pylist()]
            )
        connection.close()
        return ConnectorConfig(type=kind, path=path), SourceObject(table="counted")
    if kind == "duckdb":
        path = folder / "counted.duckdb"
        connection = duckdb.connect(str(path))
        try:
            connection.register("incoming", table)
            connection.execute("CREATE TABLE counted AS SELECT * FROM incoming")
        finally:
            connection.close()
        return ConnectorConfig(type=kind, path=path), SourceObject(table="counted")
    if kind == "parquet":
        (folder / "counted").mkdir()
        for part in range(3):
            pq.write_table(table.slice(part * ROWS // 3, ROWS // 3), folder / "counted" / f"part-{part}.parquet")
        return ConnectorConfig(type=kind, path=folder), SourceObject(table="counted")
    if kind == "delta":
        write_deltalake(folder / "counted", table.slice(0, ROWS // 2))
        write_deltalake(folder / "counted", table.slice(ROWS // 2), mode="append")
        return ConnectorConfig(type=kind, path=folder), SourceObject(table="counted")
    if kind == "iceberg":
        created = warehouse_of(folder).create_table("counted", table.schema)
        created.append(table.slice(0, ROWS // 2))
        created.append(table.slice(ROWS // 2))
        return ConnectorConfig(type=kind, path=folder), SourceObject(table="counted")
    assert kind == "csv", kind
    pcsv.write_csv(table, folder / "counted.csv")
    return ConnectorConfig(type=kind, path=folder), SourceObject(table="counted.csv")


@pytest.fixture(scope="module", params=data.KINDS)
def counted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Connector, SourceObject]]:
    kind: str = request.param
    uri = schema = ""
    if kind == "postgres":
        uri, schema = request.getfixturevalue("postgres_uri"), request.getfixturevalue("pg_schema")
    config, source = load(kind, tmp_path_factory.mktemp(kind), uri, schema)
    connector = open_connector("estimates", config)
    yield connector, source
    connector.close()


def test_the_estimate_is_within_a_factor_of_two(counted: tuple[Connector, SourceObject]) -> None:
    connector, source = counted
    estimate = connector.estimate_rows(source)
    assert estimate is not None
    assert ROWS / 2 <= estimate <= ROWS * 2, (connector.kind, estimate)


def test_a_missing_table_has_no_estimate(counted: tuple[Connector, SourceObject]) -> None:
    connector, _ = counted
    missing = "nothing_here.csv" if connector.kind == "csv" else "nothing_here"
    assert connector.estimate_rows(SourceObject(table=missing)) is None


# -- per source: what stands in for statistics --------------------------------------------


def test_postgres_estimates_follow_analyze_are_cached_and_cover_queries(postgres_uri: str, pg_schema: str) -> None:
    table = f'"{pg_schema}".grown'
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} AS SELECT g::int8 AS id FROM generate_series(1, {ROWS}) g")
        cursor.execute(f"ANALYZE {table}")
        connector = open_connector("estimates", ConnectorConfig(type="postgres", uri=postgres_uri))
        try:
            first = connector.estimate_rows(SourceObject(table=table))
            assert first is not None and ROWS / 2 <= first <= ROWS * 2
            query = SourceObject(sql=f"SELECT * FROM {table} WHERE id <= {ROWS // 3}")  # EXPLAIN's Plan Rows
            estimate = connector.estimate_rows(query)
            assert estimate is not None and ROWS / 6 <= estimate <= ROWS * 2 / 3
            cursor.execute(f"INSERT INTO {table} SELECT g FROM generate_series({ROWS + 1}, {ROWS * 10}) g")
            cursor.execute(f"ANALYZE {table}")
            assert connector.estimate_rows(SourceObject(table=table)) == first  # kept for a minute
        finally:
            connector.close()
        fresh = open_connector("estimates", ConnectorConfig(type="postgres", uri=postgres_uri))
        try:
            grown = fresh.estimate_rows(SourceObject(table=table))
            assert grown is not None and ROWS * 5 <= grown <= ROWS * 20
        finally:
            fresh.close()


def test_a_postgres_table_locked_by_a_writer_has_no_estimate_at_once(postgres_uri: str, pg_schema: str) -> None:
    """Found by the deadline suite: the estimate waited 5 s on the lock, past the statement timeout."""
    table = f'"{pg_schema}".locked_for_stats'
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} AS SELECT g::int8 AS id FROM generate_series(1, 10) g")
    connector = open_connector("estimates", ConnectorConfig(type="postgres", uri=postgres_uri))
    with pg.connect(postgres_uri) as locker, locker.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            started = time.monotonic()
            assert connector.estimate_rows(SourceObject(table=table)) is None
            assert time.monotonic() - started < 1.0
        finally:
            locker.rollback()
            connector.close()


def test_sqlite_uses_sqlite_stat1_after_analyze_and_max_rowid_before(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        connection.execute("CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID")
        connection.executemany("INSERT INTO t VALUES (?, 'x')", [(i * 10,) for i in range(1, 101)])
        connection.executemany("INSERT INTO w VALUES (?, 'x')", [(i,) for i in range(1, 101)])
        connection.execute("CREATE VIEW v AS SELECT * FROM t")
    connection.close()
    before = open_connector("estimates", ConnectorConfig(type="sqlite", path=path))
    try:
        assert before.estimate_rows(SourceObject(table="t")) == 1000  # max(rowid): the ids run to 1,000
        assert before.estimate_rows(SourceObject(table="w")) is None  # no rowid, no statistics
        assert before.estimate_rows(SourceObject(table="v")) is None
        assert before.estimate_rows(SourceObject(sql="SELECT * FROM t")) is None
    finally:
        before.close()
    with sqlite3.connect(path) as connection:
        connection.execute("ANALYZE")
    connection.close()
    after = open_connector("estimates", ConnectorConfig(type="sqlite", path=path))
    try:
        assert after.estimate_rows(SourceObject(table="t")) == 100
        assert after.estimate_rows(SourceObject(table="w")) == 100
    finally:
        after.close()


# -- a filtered scan: what the source knows of the filtered columns -----------------------

SKEWED = 30_000
"""Rows of a table whose ``kind`` is 'rare' on 1 row in 100 and 'common' on the rest, spread
over the table (every hundredth row), as a type of part is over TPC-H's part table."""


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_a_filtered_scan_is_estimated_from_the_filtered_columns(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``SqlConnector.estimate_scan``: PostgreSQL's plan of the scan (its statistics of the column),
    SQLite's count over blocks of rows spread over the table; each within a factor of 2. A
    predicate that is not the source's own (an unknown column) gives no estimate, never an error."""
    rows = [(i, "rare" if i % 100 == 0 else "common", i % 7) for i in range(SKEWED)]
    table = pa.table({"id": [r[0] for r in rows], "kind": [r[1] for r in rows], "bucket": [r[2] for r in rows]})
    if kind == "postgres":
        uri, schema = request.getfixturevalue("postgres_uri"), request.getfixturevalue("pg_schema")
        with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'CREATE TABLE "{schema}".skewed (id int8, kind text, bucket int8)')
            cursor.adbc_ingest("skewed", table, mode="append", db_schema_name=schema)
            cursor.execute(f'ANALYZE "{schema}".skewed')
        config, source = ConnectorConfig(type=kind, uri=uri), SourceObject(table=f'"{schema}".skewed')
    else:
        with sqlite3.connect(tmp_path / "skewed.sqlite") as connection:
            connection.execute("CREATE TABLE skewed (id INTEGER, kind TEXT, bucket INTEGER)")
            connection.executemany("INSERT INTO skewed VALUES (?, ?, ?)", rows)
        connection.close()
        config, source = ConnectorConfig(type=kind, path=tmp_path / "skewed.sqlite"), SourceObject(table="skewed")
    connector = open_connector("estimates", config)
    try:
        assert isinstance(connector, SqlConnector)
        cases = {
            "kind = 'rare'": SKEWED / 100,
            "kind = 'common'": SKEWED * 0.99,
            "bucket = 3 AND kind = 'common'": SKEWED * 0.99 / 7,
        }
        for where, expected in cases.items():
            spec = ScanSpec(source, ("id",), exp.condition(where))
            estimate = connector.estimate_scan(spec)
            assert estimate is not None and expected / 2 <= estimate <= expected * 2, (where, estimate)
        assert connector.estimate_scan(ScanSpec(source, ("id",), exp.condition("no_such_column = 1"))) is None
        assert connector.estimate_scan(ScanSpec(source, ("id",))) == connector.estimate_rows(source)
    finally:
        connector.close()


def test_a_small_sqlite_table_is_counted_exactly(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "small.sqlite") as connection:
        connection.execute("CREATE TABLE small (id INTEGER, kind TEXT)")
        connection.executemany("INSERT INTO small VALUES (?, ?)", [(i, "a" if i % 3 else "b") for i in range(999)])
    connection.close()
    connector = open_connector("estimates", ConnectorConfig(type="sqlite", path=tmp_path / "small.sqlite"))
    try:
        assert isinstance(connector, SqlConnector)
        assert (
            connector.estimate_scan(ScanSpec(SourceObject(table="small"), ("id",), exp.condition("kind = 'b'"))) == 333
        )
    finally:
        connector.close()
