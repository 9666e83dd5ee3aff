"""The MySQL/MariaDB connector against the real server: comparisons as DataFusion makes them,
types refused rather than mangled, cancel and deadlines that stop the server's statement,
clean errors, and a federated query through the ADBC Flight SQL client checked against DuckDB.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pytest
from datafusion import SessionContext
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.mysql import MysqlConnector, parse_uri
from connectors.registry import open_connector
from gateway.config import ConnectorConfig, load_config
from gateway.errors import ConfigError, QueryTimeoutError, SourceError, SourceUnavailableError
from tests.support.gateway import query, serve_in_process, source_queries
from tests.support.mysql import connect
from tests.support.ports import free_port

pytestmark = pytest.mark.mariadb

WORDS = ["abc", "ABC", "abc ", "Abd", "ábc", "b", "", None, "a_c", "zeta", "Zeta", "日本"]


@pytest.fixture(scope="module")
def loaded(mysql_uri: str) -> str:
    with connect(mysql_uri) as connection, connection.cursor() as cursor:
        # The server's default collation: case-insensitive and PAD SPACE.
        cursor.execute("CREATE TABLE words (id INT PRIMARY KEY, w VARCHAR(20), c CHAR(8), e ENUM('zz', 'aa'))")
        cursor.executemany(
            "INSERT INTO words VALUES (%s, %s, %s, %s)",
            [(i, w, w, ("zz", "aa")[i % 2]) for i, w in enumerate(WORDS)],
        )
        cursor.execute("CREATE TABLE odd (id INT, d DATE, g GEOMETRY, t TIME)")
        cursor.execute("INSERT INTO odd VALUES (1, '2024-01-01', POINT(1, 2), '12:00:00')")
        cursor.execute("CREATE TABLE zero (id INT, d DATE)")
        cursor.execute("INSERT INTO zero VALUES (1, '2024-01-01'), (2, '0000-00-00')")
        cursor.execute("CREATE TABLE flags (id INT, b BOOLEAN)")
        cursor.execute("INSERT INTO flags VALUES (1, 1), (2, 0), (3, 2)")
    return mysql_uri


@pytest.fixture
def connector(loaded: str) -> Iterator[MysqlConnector]:
    made = open_connector("shop", ConnectorConfig(type="mysql", uri=loaded))
    assert isinstance(made, MysqlConnector)
    yield made
    made.close()


def scan(connector: MysqlConnector, table: str, columns: tuple[str, ...], predicate: str | None = None) -> pa.Table:
    source = SourceObject(table=table)
    schema = connector.schema(source)
    spec = ScanSpec(source, columns, exp.condition(predicate) if predicate else None)
    projected = pa.schema([schema.field(name) for name in columns])
    return pa.Table.from_batches(list(connector.execute(connector.scan_sql(spec), projected)), projected)


def oracle(predicate: str, column: str) -> list[int]:
    ctx = SessionContext()
    ctx.from_arrow(pa.table({"id": pa.array(range(len(WORDS)), pa.int32()), column: WORDS}), name="words")
    return sorted(ctx.sql(f"SELECT id FROM words WHERE {predicate}").to_pydict()["id"])


@pytest.mark.parametrize(
    "predicate",
    [
        "w = 'abc'",  # not 'ABC' (case-insensitive collation) nor 'abc ' (PAD SPACE)
        "w <> 'abc'",
        "w > 'Z'",  # byte order: lower case after upper case
        "w < 'b'",
        "w LIKE 'a%'",  # case-sensitive
        "w LIKE 'a\\_c' ESCAPE '\\'",
        "w LIKE '_bc'",  # one character, not one byte: 'ábc' matches
        "w IN ('ABC', 'zeta')",
        "w BETWEEN 'A' AND 'a'",
        "char_length(w) = 3",
        "strpos(w, 'b') = 2",
        "replace(w, 'a', 'x') = 'xbc'",
        "w = ''",
        "w IS NULL",
    ],
)
def test_text_compares_as_datafusion_does(connector: MysqlConnector, predicate: str) -> None:
    got = scan(connector, "words", ("id",), predicate)
    assert sorted(got.column("id").to_pylist()) == oracle(predicate, "w")


def test_char_values_lose_their_padding_and_compare_without_it(connector: MysqlConnector) -> None:
    got = scan(connector, "words", ("id", "c"), "c = 'abc'")
    assert got.to_pylist() == [{"id": 0, "c": "abc"}, {"id": 2, "c": "abc"}]  # MySQL reads CHAR without blanks


def test_enums_compare_as_their_text(connector: MysqlConnector) -> None:
    # MySQL orders enums by their position ('zz' < 'aa' here); DataFusion compares the text.
    got = scan(connector, "words", ("id",), "e < 'b'")
    assert sorted(got.column("id").to_pylist()) == [i for i in range(len(WORDS)) if i % 2 == 1]


def test_a_column_without_an_arrow_type_is_left_out(connector: MysqlConnector, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        schema = connector.schema(SourceObject(table="odd"))
    assert schema.names == ["id", "d", "t"]
    assert "column 'g' is left out: MySQL GEOMETRY" in caplog.text


def test_a_zero_date_fails_naming_it(connector: MysqlConnector) -> None:
    with pytest.raises(SourceError, match=r"column 'd': MySQL's zero or partial date '0000-00-00' has no Arrow value"):
        scan(connector, "zero", ("id", "d"))
    assert scan(connector, "zero", ("id", "d"), "id = 1").num_rows == 1  # filtered out at the source: fine


def test_a_boolean_holding_two_fails(connector: MysqlConnector) -> None:
    assert scan(connector, "flags", ("id", "b"), "id < 3").column("b").to_pylist() == [True, False]
    with pytest.raises(SourceError, match="column 'b': a BOOLEAN"):
        scan(connector, "flags", ("id", "b"))


def test_catalog_answers(connector: MysqlConnector) -> None:
    names = {product.name for product in connector.discover()}
    assert {"words", "odd", "zero", "flags"} <= names
    source = SourceObject(table="words")
    assert connector.primary_key(source) == ("id",)
    assert connector.not_null(source) == ("id",)
    estimate = connector.read_row_estimate(source)
    assert estimate is not None and len(WORDS) / 2 <= estimate <= len(WORDS) * 2
    assert connector.read_row_estimate(SourceObject(sql="SELECT 1")) is None
    assert connector.estimate_rows(SourceObject(table="nothing_here")) is None


# -- cancel and deadlines ------------------------------------------------------------------------


def running(uri: str, fragment: str) -> int:
    with connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.processlist WHERE info LIKE %s AND id <> CONNECTION_ID()",
            (f"%{fragment}%",),
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def wait_until_gone(uri: str, fragment: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while running(uri, fragment):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


SLOW = "SELECT SLEEP(30) AS {marker}"


def test_cancel_kills_the_statement_on_the_server(connector: MysqlConnector, loaded: str) -> None:
    sql = SLOW.format(marker="cancel_me")
    stream = connector.execute(sql, pa.schema([("cancel_me", pa.int64())]))
    reader = threading.Thread(target=lambda: list(stream), daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not running(loaded, "cancel_me") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(loaded, "cancel_me") == 1
    started = time.monotonic()
    stream.cancel()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert wait_until_gone(loaded, "cancel_me", timeout=3), "the statement still runs on the server"
    assert time.monotonic() - started < 3


def test_a_deadline_ends_the_statement_on_the_server(connector: MysqlConnector, loaded: str) -> None:
    sql = SLOW.format(marker="too_slow")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match=r"\[shop/mysql\] the source query did not finish"):
        list(connector.execute(sql, pa.schema([("too_slow", pa.int64())]), deadline=time.monotonic() + 1.0))
    assert time.monotonic() - started < 2.5
    assert wait_until_gone(loaded, "too_slow", timeout=3), "the statement still runs on the server"


def test_a_deadline_is_also_the_servers_own_limit(connector: MysqlConnector) -> None:
    """max_statement_time ends the statement even if nobody is left to cancel it."""
    stream = connector.execute("SELECT SLEEP(5) AS s", pa.schema([("s", pa.int64())]), deadline=time.monotonic() + 0.5)
    scan_ = stream._scan  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError):
        list(stream)
    assert scan_._done.wait(timeout=3), "the server did not end the statement at its limit"
    assert time.monotonic() - started < 3


def test_a_slow_source_query_does_not_hold_up_the_process(connector: MysqlConnector) -> None:
    """connectorx's streaming reader would hold the GIL until the first rows: scans must not."""
    stream = connector.execute("SELECT SLEEP(1.5) AS s", pa.schema([("s", pa.int64())]))
    reader = threading.Thread(target=lambda: list(stream), daemon=True)
    gaps = []
    reader.start()
    last = time.monotonic()
    while reader.is_alive():
        time.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    assert sum(gaps) > 1.4 and max(gaps) < 0.75, f"this thread waited {max(gaps):.2f} s at once over {sum(gaps):.2f} s"


# -- clean errors ------------------------------------------------------------------------------------


def test_a_wrong_password_is_unavailable_without_showing_it(loaded: str) -> None:
    address = parse_uri(loaded, "shop")
    uri = f"mysql://{address.user}:s3cret-wrong@{address.host}:{address.port}/{address.database}"
    made = open_connector("shop", ConnectorConfig(type="mysql", uri=uri))
    assert isinstance(made, MysqlConnector)
    with pytest.raises(SourceUnavailableError) as failure:
        made.schema(SourceObject(table="words"))
    text = str(failure.value)
    assert text.startswith("[shop/mysql:mysql://root:***@") and "Access denied" in text, text
    assert "s3cret-wrong" not in text
    with pytest.raises(SourceUnavailableError) as failure:  # the scan path (connectorx) too
        list(made.execute("SELECT 1 AS one", pa.schema([("one", pa.int64())])))
    assert "s3cret-wrong" not in str(failure.value)


def test_nothing_listening_is_unavailable() -> None:
    port = free_port()
    made = open_connector("shop", ConnectorConfig(type="mysql", uri=f"mysql://root@127.0.0.1:{port}/test"))
    with pytest.raises(SourceUnavailableError, match=r"\[shop/mysql:mysql://root@127.0.0.1:\d+/test\] cannot connect"):
        made.discover()


def test_a_dropped_table_fails_naming_it(connector: MysqlConnector, loaded: str) -> None:
    with connect(loaded) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE dropped (id INT)")
    schema = connector.schema(SourceObject(table="dropped"))
    with connect(loaded) as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE dropped")
    spec = ScanSpec(SourceObject(table="dropped"), ("id",))
    with pytest.raises(SourceError, match=r"Table '\w+\.dropped' doesn't exist \(MySQL error 1146\)") as failure:
        list(connector.execute(connector.scan_sql(spec), schema))
    assert not isinstance(failure.value, SourceUnavailableError)


@pytest.mark.parametrize("uri", ["postgresql://h/db", "mysql:///db", "mysql://h:port/db"])
def test_bad_uris_are_refused_by_name(uri: str) -> None:
    with pytest.raises(ConfigError, match="domain 'shop'"):
        open_connector("shop", ConnectorConfig(type="mysql", uri=uri))


def test_a_password_from_the_environment_is_never_shown(
    loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = parse_uri(loaded, "shop")
    monkeypatch.setenv("MYSQL_PASSWORD", "p@ss/w:rd%")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n  - name: shop\n    connector:\n      type: mariadb\n"
        f"      uri: mysql://{address.user}:${{MYSQL_PASSWORD}}@{address.host}:{address.port}/{address.database}\n"
    )
    (domain,) = load_config(tmp_path / "mesh.yaml").domains
    made = open_connector("shop", domain.connector)
    assert parse_uri(domain.connector.uri or "", "shop").password == "p@ss/w:rd%"  # percent-encoded on the way
    with pytest.raises(SourceUnavailableError) as failure:
        made.discover()
    text = str(failure.value)
    assert "mysql://root:***@" in text and "p@ss" not in text and "p%40ss" not in text, text


# -- a federated query through the gateway ---------------------------------------------------------


def test_federated_join_with_postgres_matches_duckdb(
    loaded: str, postgres_uri: str, pg_schema: str, tmp_path: Path
) -> None:
    customers = pa.table(
        {
            "customer_id": pa.array([1, 2, 3, 4], pa.int64()),
            "name": ["Zoë", "ábc", "ABC", "abc "],
            "country": ["DE", "de", "FR", "DE"],
        }
    )
    orders = pa.table(
        {
            "order_id": pa.array(range(1, 9), pa.int64()),
            "customer_id": pa.array([1, 1, 2, 3, 4, 4, 4, 9], pa.int64()),
            "amount": pa.array([10.5, 2.25, 7.0, 1.0, 3.5, 4.0, 0.25, 99.0], pa.float64()),
        }
    )
    with connect(loaded) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, name VARCHAR(20), country CHAR(2))")
        cursor.executemany("INSERT INTO customers VALUES (%s, %s, %s)", [tuple(r.values()) for r in customers.to_pylist()])
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".orders (order_id int8, customer_id int8, amount float8)')
        cursor.adbc_ingest("orders", orders, mode="append", db_schema_name=pg_schema)
    (tmp_path / "shop.yaml").write_text(
        f"domains:\n  - name: shop\n    connector: {{type: mysql, uri: '{loaded}'}}\n"
        "    products:\n      - {name: customers, source: customers}\n"
        f"  - name: sales\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: orders, source: {pg_schema}.orders}}\n"
    )
    sql = (
        "SELECT c.name, c.country, count(*) AS orders, sum(o.amount) AS total"
        " FROM shop.customers c JOIN sales.orders o ON o.customer_id = c.customer_id"
        " WHERE c.country = 'DE' AND c.name >= 'A' GROUP BY c.name, c.country ORDER BY c.name"
    )
    reference = duckdb.connect()
    reference.register("customers", customers)
    reference.register("orders", orders)
    want = reference.sql(sql.replace("shop.customers", "customers").replace("sales.orders", "orders")).to_arrow_table()
    with serve_in_process(tmp_path) as uri:
        got = query(uri, sql)
        assert got.to_pylist() == want.to_pylist()
        assert got.num_rows == 2  # 'de' is not 'DE', 'abc ' is not 'ABC'
        sent = {label.split("/")[0]: (text, rows) for label, text, rows in source_queries(uri, sql)}
    text, rows = sent["shop"]
    assert "WHERE" in text and rows == 2, sent
