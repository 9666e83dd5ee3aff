"""SQLite connector against real files: declared types, exact values, LIKE, errors, streaming."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.sqlite import SqliteConnector, declared_column
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, SourceError, SourceUnavailableError


def make_db(path: Path, *statements: str, rows: tuple[str, Sequence[tuple[object, ...]]] | None = None) -> Path:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)
        if rows is not None:
            connection.executemany(*rows)
    connection.close()
    return path


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return make_db(tmp_path / "shop.db")


def open_sqlite(path: Path) -> SqliteConnector:
    return SqliteConnector("inventory", ConnectorConfig(type="sqlite", path=path))


@pytest.fixture
def connector(database: Path) -> Iterator[SqliteConnector]:
    connector = open_sqlite(database)
    yield connector
    connector.close()


def scan(connector: SqliteConnector, source: SourceObject, predicate: str | None = None) -> pa.Table:
    schema = connector.schema(source)
    spec = ScanSpec(source, tuple(schema.names), exp.condition(predicate) if predicate else None)
    return pa.Table.from_batches(list(connector.execute(connector.scan_sql(spec), schema)), schema)


@pytest.mark.parametrize(
    ("declared", "arrow_type"),
    [
        ("INTEGER", pa.int64()),
        ("BIGINT", pa.int64()),
        ("unsigned big int", pa.int64()),
        ("SMALLINT", pa.int64()),
        ("VARCHAR(255)", pa.string()),
        ("NVARCHAR", pa.string()),
        ("CLOB", pa.string()),
        ("TEXT", pa.string()),
        ("BLOB", pa.binary()),
        ("REAL", pa.float64()),
        ("DOUBLE PRECISION", pa.float64()),
        ("FLOAT", pa.float64()),
        ("DECIMAL(12, 2)", pa.decimal128(12, 2)),
        ("numeric(5)", pa.decimal128(5, 0)),
        ("NUMERIC", pa.float64()),
        ("BOOLEAN", pa.bool_()),
        ("DATE", pa.date32()),
        ("DATETIME", pa.timestamp("us")),
        ("TIMESTAMP", pa.timestamp("us")),
        ("", pa.string()),
        ("JSON", pa.string()),
    ],
)
def test_declared_types(declared: str, arrow_type: pa.DataType) -> None:
    assert declared_column("c", declared).type == arrow_type


def test_decimals_stay_exact_across_batches_of_mixed_storage(tmp_path: Path) -> None:
    """NUMERIC affinity stores 5 as INTEGER and 12.5 as REAL; the first batch holds only integers."""
    values = [(i, str(i) if i < 70_000 else f"{i}.25") for i in range(80_000)]
    path = make_db(
        tmp_path / "d.db",
        "CREATE TABLE t (id INTEGER, amount DECIMAL(12, 2))",
        rows=("INSERT INTO t VALUES (?, ?)", values),
    )
    connector = open_sqlite(path)
    got = scan(connector, SourceObject(table="t"))
    assert got.schema.field("amount").type == pa.decimal128(12, 2)
    assert got["amount"][0].as_py() == Decimal("0.00")
    assert got["amount"][-1].as_py() == Decimal("79999.25")
    assert got.num_rows == 80_000


def test_values_that_do_not_fit_their_type_fail(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "bad.db",
        "CREATE TABLE n (v INTEGER)",
        "INSERT INTO n VALUES (1), (1.5)",
        "CREATE TABLE d (v DATE)",
        "INSERT INTO d VALUES (20240101)",
        "CREATE TABLE s (v TIMESTAMP)",
        "INSERT INTO s VALUES ('2024-01-02 03:04:05+02:00')",
        "CREATE TABLE m (v DECIMAL(5, 2))",
        "INSERT INTO m VALUES (1.005)",
    )
    connector = open_sqlite(path)
    for table in ("n", "d", "s", "m"):
        with pytest.raises(SourceError, match=r"\[inventory/sqlite:.*column 'v'"):
            scan(connector, SourceObject(table=table))


def test_like_is_case_sensitive(connector: SqliteConnector, database: Path) -> None:
    make_db(database, "CREATE TABLE w (name TEXT)", "INSERT INTO w VALUES ('apple'), ('Apple'), ('APPLE pie')")
    assert scan(connector, SourceObject(table="w"), "name LIKE 'a%'").to_pylist() == [{"name": "apple"}]


def test_untyped_columns_are_text_in_values_and_predicates(connector: SqliteConnector, database: Path) -> None:
    make_db(database, "CREATE TABLE u (v)", "INSERT INTO u VALUES (3), ('3'), (2.5), ('x')")
    source = SourceObject(table="u")
    assert connector.schema(source) == pa.schema([("v", pa.string())])
    assert scan(connector, source)["v"].to_pylist() == ["3", "3", "2.5", "x"]
    assert scan(connector, source, "v = '3'").num_rows == 2


def test_sql_products_take_types_from_columns_and_casts(connector: SqliteConnector, database: Path) -> None:
    make_db(
        database,
        "CREATE TABLE o (id INTEGER, price DECIMAL(8, 2), day DATE)",
        "INSERT INTO o VALUES (1, 2.5, '2024-01-02')",
    )
    source = SourceObject(sql="SELECT day, price, CAST(count(*) AS INTEGER) AS n, id * 2 AS twice FROM o GROUP BY day")
    assert connector.schema(source) == pa.schema(
        [("day", pa.date32()), ("price", pa.decimal128(8, 2)), ("n", pa.int64()), ("twice", pa.string())]
    )
    assert scan(connector, source).to_pylist()[0]["price"] == Decimal("2.50")


def test_discover_lists_tables_and_views(connector: SqliteConnector, database: Path) -> None:
    make_db(database, 'CREATE TABLE "Order Lines" (id INTEGER)', 'CREATE VIEW recent AS SELECT id FROM "Order Lines"')
    found = {p.name: p.source for p in connector.discover()}
    assert found == {"order_lines": SourceObject(table='"Order Lines"'), "recent": SourceObject(table='"recent"')}
    assert connector.schema(found["order_lines"]) == pa.schema([("id", pa.int64())])


def test_the_file_is_opened_read_only(connector: SqliteConnector, database: Path) -> None:
    make_db(database, "CREATE TABLE t (id INTEGER)")
    with pytest.raises(SourceError, match="readonly"):
        list(connector.execute("DELETE FROM t", pa.schema([])))


def test_big_tables_stream_in_several_batches(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "big.db",
        "CREATE TABLE b (id INTEGER)",
        rows=("INSERT INTO b VALUES (?)", [(i,) for i in range(200_000)]),
    )
    connector = open_sqlite(path)
    stream = connector.execute(
        connector.scan_sql(ScanSpec(SourceObject(table="b"), ("id",))), pa.schema([("id", pa.int64())])
    )
    sizes = [batch.num_rows for batch in stream]
    assert len(sizes) >= 3 and sum(sizes) == 200_000


def test_cancel_stops_the_stream(tmp_path: Path) -> None:
    path = make_db(
        tmp_path / "big.db",
        "CREATE TABLE b (id INTEGER)",
        rows=("INSERT INTO b VALUES (?)", [(i,) for i in range(300_000)]),
    )
    connector = open_sqlite(path)
    stream = connector.execute("SELECT id FROM b", pa.schema([("id", pa.int64())]))
    read = 0
    for batch in stream:
        read += batch.num_rows
        stream.cancel()
    assert read < 300_000


def test_errors_name_domain_source_and_path(tmp_path: Path, connector: SqliteConnector) -> None:
    with pytest.raises(SourceError, match=r"^\[inventory/sqlite:.*shop.db\] .*no such table: nowhere"):
        connector.execute("SELECT * FROM nowhere", pa.schema([]))
    with pytest.raises(SourceError, match=r"^\[inventory/sqlite:.*\] no table or view nowhere"):
        connector.schema(SourceObject(table="nowhere"))
    missing = open_sqlite(tmp_path / "missing.db")
    with pytest.raises(SourceUnavailableError, match=r"SQLite file .*missing.db does not exist"):
        missing.discover()
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ConfigError, match=r"domain 'inventory'.*path"):
        SqliteConnector("inventory", ConnectorConfig(type="sqlite"))


def test_a_query_whose_correlated_subquery_sqlite_would_scan_per_row_is_not_sent(tmp_path: Path) -> None:
    """SQLite runs a correlated subquery once per row around it; one that scans a table there (no index
    to search) keeps the query federated, where DataFusion joins it (``AdbcConnector.per_row``)."""
    path = tmp_path / "facts.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE facts (id INTEGER PRIMARY KEY, g INTEGER, k INTEGER, v INTEGER)")
        db.executemany("INSERT INTO facts VALUES (?, ?, ?, ?)", [(i, i % 50, i % 50, i % 7) for i in range(4_000)])
        db.execute("CREATE INDEX facts_k ON facts (k)")
    connector = SqliteConnector("shop", ConnectorConfig(type="sqlite", path=str(path)))
    try:
        scanned = "SELECT count(*) FROM facts AS f WHERE f.v > (SELECT avg(f2.v) FROM facts AS f2 WHERE f2.g = f.g)"
        assert connector.runs_per_row(scanned) is True
        assert connector.per_row(scanned)
        searched = scanned.replace("f2.g = f.g", "f2.k = f.k")  # by the index on k
        assert connector.runs_per_row(searched) is False
        assert not connector.per_row(searched)
        small = tmp_path / "small.db"
        with sqlite3.connect(small) as db:
            db.execute("CREATE TABLE facts (id INTEGER PRIMARY KEY, g INTEGER, v INTEGER)")
            db.executemany("INSERT INTO facts VALUES (?, ?, ?)", [(i, i % 50, i % 7) for i in range(1_000)])
        few = SqliteConnector("shop", ConnectorConfig(type="sqlite", path=str(small)))
        try:
            assert not few.per_row(scanned)  # 1,000 rows: at most a million comparisons
        finally:
            few.close()
        for once in (
            "SELECT count(*) FROM facts WHERE v > (SELECT avg(v) FROM facts)",  # run once
            "SELECT count(*) FROM facts WHERE id NOT IN (SELECT g FROM facts)",  # a list, made once
            "SELECT count(*) FROM (SELECT id FROM facts) AS d",  # a derived table: not asked
        ):
            assert not connector.per_row(once), once
        assert connector.per_row("SELECT 1 FROM facts WHERE v IN (SELECT x FROM no_such_table)")  # cannot tell
    finally:
        connector.close()
