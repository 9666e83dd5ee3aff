"""PostgreSQL connector against a real server: types, naming, streaming, pooling, errors, cancel."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from adbc_driver_postgresql import _driver_path
from datafusion import SessionContext
from sqlglot import exp

from connectors import drivers
from connectors.base import ScanSpec, SourceObject
from connectors.postgres import PostgresConnector, numeric_type
from connectors.sqlbase import ReaderStream
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, SourceError, SourceUnavailableError
from tests.support.postgres import temporary_schema


def run(uri: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements on a fresh connection; the rows of the last one."""
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def connector(postgres_uri: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    yield connector
    connector.close()


def scan(connector: PostgresConnector, source: SourceObject, predicate: str | None = None) -> pa.Table:
    schema = connector.schema(source)
    spec = ScanSpec(source, tuple(schema.names), exp.condition(predicate) if predicate else None)
    return pa.Table.from_batches(list(connector.execute(connector.scan_sql(spec), schema)), schema)


def query(connector: PostgresConnector, sql: str, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(list(connector.execute(sql, schema)), schema)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("declared", "arrow_type"),
    [
        ("numeric(12, 2)", pa.decimal128(12, 2)),
        ("numeric(38, 0)", pa.decimal128(38, 0)),
        ("numeric(5, -2)", pa.decimal128(7, 0)),
        ("numeric(3, 5)", pa.decimal128(5, 5)),
        ("numeric(40, 5)", pa.decimal256(40, 5)),
        ("numeric(1000, 0)", pa.string()),
        ("numeric", pa.decimal128(38, 10)),
    ],
)
def test_numeric_types(
    connector: PostgresConnector, postgres_uri: str, pg_schema: str, declared: str, arrow_type: pa.DataType
) -> None:
    table = f'"{pg_schema}"."{declared}"'
    run(postgres_uri, f"CREATE TABLE {table} (v {declared})", f"INSERT INTO {table} VALUES (0.00001), (NULL)")
    source = SourceObject(table=table)
    assert connector.schema(source) == pa.schema([("v", arrow_type)])
    assert scan(connector, source).column("v").null_count == 1


def test_numeric_typmod_decoding() -> None:
    unconstrained = pa.decimal128(38, 10)
    assert numeric_type(-1, unconstrained) == unconstrained
    assert numeric_type((12 << 16 | 2) + 4, unconstrained) == pa.decimal128(12, 2)
    assert numeric_type((5 << 16 | 0x7FF) + 4, unconstrained) == pa.decimal128(6, 0)  # numeric(5, -1)


def test_numeric_values_are_exact(connector: PostgresConnector, postgres_uri: str, pg_schema: str) -> None:
    table = f'"{pg_schema}".amounts'
    run(
        postgres_uri,
        f"CREATE TABLE {table} (fixed numeric(20, 4), free numeric)",
        f"INSERT INTO {table} VALUES (1234567890123456.7891, 12345678901234567890.0123456789), (-0.0001, -1.25)",
    )
    got = scan(connector, SourceObject(table=table))
    assert got.to_pylist() == [
        {"fixed": Decimal("1234567890123456.7891"), "free": Decimal("12345678901234567890.0123456789")},
        {"fixed": Decimal("-0.0001"), "free": Decimal("-1.2500000000")},
    ]


def test_unconstrained_numeric_never_rounds(postgres_uri: str, connector: PostgresConnector) -> None:
    source = SourceObject(sql="SELECT 1 / 3.0 AS third")
    with pytest.raises(SourceError, match=r"\[sales/postgres:.*column 'third'.*decimal128\(38, 10\)"):
        scan(connector, source)
    wider = PostgresConnector(
        "sales", ConnectorConfig(type="postgres", uri=postgres_uri, options={"numeric_scale": 20})
    )
    try:
        assert scan(wider, source).to_pylist() == [{"third": Decimal("0.33333333333333333333")}]
    finally:
        wider.close()
    with pytest.raises(SourceError, match="'nan'"):
        scan(connector, SourceObject(sql="SELECT 'NaN'::numeric AS n"))


def test_other_types_are_text_and_compare_as_text(
    connector: PostgresConnector, postgres_uri: str, pg_schema: str
) -> None:
    table = f'"{pg_schema}".misc'
    run(
        postgres_uri,
        f"CREATE TYPE \"{pg_schema}\".mood AS ENUM ('sad', 'happy')",
        f'CREATE TABLE {table} (id int4, mood "{pg_schema}".mood, code char(5), doc jsonb, tags text[],'
        f' u uuid, wait interval, at time, moods "{pg_schema}".mood[])',
        f"INSERT INTO {table} VALUES (1, 'sad', 'ab', '{{\"a\": 1}}', '{{x,y}}',"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00', '13:14:15.5', '{happy,NULL}'),"
        " (2, 'happy', 'abc  ', NULL, '{}', NULL, NULL, NULL, NULL)",
    )
    source = SourceObject(table=table)
    schema = connector.schema(source)
    assert schema == pa.schema(
        [
            ("id", pa.int32()),
            ("mood", pa.string()),
            ("code", pa.string()),
            ("doc", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("u", pa.string()),
            ("wait", pa.month_day_nano_interval()),
            ("at", pa.time64("us")),
            ("moods", pa.list_(pa.string())),
        ]
    )
    rows = scan(connector, source).to_pylist()
    assert rows[0]["mood"] == "sad" and rows[0]["code"] == "ab" and rows[0]["doc"] == '{"a": 1}'
    assert rows[0]["tags"] == ["x", "y"] and rows[0]["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert rows[0]["wait"] == pa.MonthDayNano([0, 1, 7_200_000_000_000]) and rows[1]["code"] == "abc"
    assert rows[0]["moods"] == ["happy", None] and rows[1]["tags"] == [] and rows[1]["moods"] is None
    # As an enum, 'sad' < 'happy'; as the text the engine sees, 'sad' > 'happy'.
    assert [r["id"] for r in scan(connector, source, "mood > 'm'").to_pylist()] == [1]
    assert [r["id"] for r in scan(connector, source, "code = 'abc'").to_pylist()] == [2]


def test_a_value_the_driver_cannot_convert_is_a_data_error(connector: PostgresConnector) -> None:
    """Not an outage: clients retry UNAVAILABLE, and the pool would drop a healthy connection."""
    with pytest.raises(SourceError, match="would overflow when converting to nanoseconds") as raised:
        scan(connector, SourceObject(sql="SELECT '3000000 hours'::interval AS long"))
    assert not isinstance(raised.value, SourceUnavailableError)


def test_discover_qualifies_names_and_keeps_them_unique(connector: PostgresConnector, postgres_uri: str) -> None:
    with temporary_schema(postgres_uri, "Discover Me") as schema:
        run(
            postgres_uri,
            f'CREATE TABLE "{schema}"."Orders" (id int8)',
            f'CREATE TABLE "{schema}".orders (id int4)',
            f'CREATE VIEW "{schema}"."Big Orders" AS SELECT id FROM "{schema}".orders WHERE id > 10',
            f"COMMENT ON TABLE \"{schema}\".orders IS 'all orders'",
        )
        found = {p.name: p for p in connector.discover() if p.name.startswith(schema)}
        assert set(found) == {f"{schema}_orders", f"{schema}_orders_2", f"{schema}_big_orders"}
        assert found[f"{schema}_big_orders"].source.table == f'"{schema}"."Big Orders"'
        assert found[f"{schema}_orders_2"].description == "all orders"
        assert connector.schema(found[f"{schema}_orders"].source) == pa.schema([("id", pa.int64())])
        assert connector.schema(found[f"{schema}_big_orders"].source) == pa.schema([("id", pa.int32())])


def test_big_tables_stream_in_several_batches(connector: PostgresConnector, postgres_uri: str, pg_schema: str) -> None:
    table = f'"{pg_schema}".big'
    run(
        postgres_uri,
        f"CREATE TABLE {table} AS SELECT g::int8 AS id, g * 0.5::float8 AS x FROM generate_series(1, 3000000) g",
    )
    source = SourceObject(table=table)
    schema = connector.schema(source)
    stream = connector.execute(connector.scan_sql(ScanSpec(source, ("id", "x"))), schema)
    sizes = [batch.num_rows for batch in stream]
    assert len(sizes) >= 2
    assert sum(sizes) == stream.rows == 3_000_000


def test_cancel_stops_the_running_query(connector: PostgresConnector, postgres_uri: str) -> None:
    stream = connector.execute("SELECT 1 AS x FROM pg_sleep(30)", pa.schema([("x", pa.int32())]))
    started = time.monotonic()
    threading.Timer(0.5, stream.cancel).start()
    assert list(stream) == []
    assert time.monotonic() - started < 2.5
    time.sleep(0.2)
    running = run(
        postgres_uri,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM pg_sleep(30)%'"
        " AND state = 'active' AND pid <> pg_backend_pid()",
    )
    assert running == [(0,)]


def test_closing_an_unfinished_stream_stops_the_query(connector: PostgresConnector, postgres_uri: str) -> None:
    sql = (
        "SELECT g AS x, pg_sleep(CASE WHEN g = 2000000 THEN 30 ELSE 0 END)::text AS s"
        " FROM generate_series(1, 3000000) g"
    )
    stream = connector.execute(sql, pa.schema([("x", pa.int32()), ("s", pa.string())]))
    assert isinstance(stream, ReaderStream)
    first = next(iter(stream))
    assert first.num_rows > 0
    stream.close()
    time.sleep(0.2)
    running = run(
        postgres_uri,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 3000000)%'"
        " AND state = 'active' AND pid <> pg_backend_pid()",
    )
    assert running == [(0,)]


def test_a_started_stream_runs_its_query_before_the_first_batch_is_asked_for_and_only_once(
    connector: PostgresConnector, postgres_uri: str, pg_schema: str
) -> None:
    sequence = f'"{pg_schema}".started_once'
    run(postgres_uri, f"DROP SEQUENCE IF EXISTS {sequence}", f"CREATE SEQUENCE {sequence}")

    def last_value() -> tuple[object, ...]:
        return run(postgres_uri, f"SELECT last_value, is_called FROM {sequence}")[0]

    stream = connector.execute(f"SELECT nextval('{sequence}') AS v", pa.schema([("v", pa.int64())]))
    stream.start()
    stream.start()  # idempotent
    deadline = time.monotonic() + 10
    while last_value() != (1, True):
        assert time.monotonic() < deadline, "the started query did not run"
        time.sleep(0.02)
    assert pa.Table.from_batches(list(stream)).column("v").to_pylist() == [1]
    assert last_value() == (1, True)  # iterating did not run it again


def test_a_started_stream_closed_unread_stops_its_query(connector: PostgresConnector, postgres_uri: str) -> None:
    stream = connector.execute("SELECT 1 AS x FROM pg_sleep(31)", pa.schema([("x", pa.int32())]))
    stream.start()
    deadline = time.monotonic() + 10
    count = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM pg_sleep(31)%' AND state = 'active'"
    while run(postgres_uri, count + " AND pid <> pg_backend_pid()") != [(1,)]:
        assert time.monotonic() < deadline, "the started query did not reach PostgreSQL"
        time.sleep(0.02)
    stream.close()
    while run(postgres_uri, count + " AND pid <> pg_backend_pid()") != [(0,)]:
        assert time.monotonic() < deadline + 5, "closing the unread stream did not stop its query"
        time.sleep(0.05)
    assert list(stream) == []


def test_bad_query_names_domain_source_and_the_servers_message(connector: PostgresConnector) -> None:
    with pytest.raises(SourceError) as raised:
        connector.execute("SELECT * FROM no_such_table", pa.schema([]))
    assert not isinstance(raised.value, SourceUnavailableError)
    assert raised.value.domain == "sales"
    assert str(raised.value).startswith("[sales/postgres:postgresql://postgres")
    assert 'relation "no_such_table" does not exist (SQLSTATE 42P01)' in str(raised.value)


def test_errors_while_streaming_are_source_errors(connector: PostgresConnector) -> None:
    stream = connector.execute(
        "SELECT 1 / (g - 150000) AS x FROM generate_series(1, 200000) g", pa.schema([("x", pa.int32())])
    )
    with pytest.raises(SourceError, match=r"^\[sales/postgres:[^\]]*\] division by zero$"):
        list(stream)


def test_an_unreachable_server_is_unavailable() -> None:
    port = closed_port()
    connector = PostgresConnector(
        "sales", ConnectorConfig(type="postgres", uri=f"postgresql://postgres:secret@127.0.0.1:{port}/test")
    )
    for attempt in (
        connector.discover,
        lambda: connector.schema(SourceObject(table="t")),
        lambda: connector.execute("SELECT 1", pa.schema([])),
    ):
        with pytest.raises(SourceUnavailableError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith(f"[sales/postgres:postgresql://postgres:***@127.0.0.1:{port}/test] cannot connect")
        assert "Connection refused" in message and "secret" not in message


def test_connections_are_reused_and_stale_ones_replaced(postgres_uri: str) -> None:
    connector = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    pid_schema = pa.schema([("pid", pa.int32())])
    try:
        first = query(connector, "SELECT pg_backend_pid() AS pid", pid_schema)["pid"][0].as_py()
        assert query(connector, "SELECT pg_backend_pid() AS pid", pid_schema)["pid"][0].as_py() == first
        run(postgres_uri, f"SELECT pg_terminate_backend({first})")
        time.sleep(0.2)
        assert query(connector, "SELECT pg_backend_pid() AS pid", pid_schema)["pid"][0].as_py() != first
    finally:
        connector.close()


def test_concurrent_scans_run_on_their_own_connections(connector: PostgresConnector) -> None:
    schema = pa.schema([("pid", pa.int32())])
    pids: list[int] = []

    def scan_slowly() -> None:
        pids.append(query(connector, "SELECT pg_backend_pid() AS pid FROM pg_sleep(0.6)", schema)["pid"][0].as_py())

    started = time.monotonic()
    threads = [threading.Thread(target=scan_slowly) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 3
    assert time.monotonic() - started < 1.5


def test_pushed_string_comparisons_need_the_declared_collation(
    connector: PostgresConnector, postgres_uri: str, pg_schema: str
) -> None:
    """PostgreSQL orders text by locale; COLLATE "C" (the declared string_collation) orders bytes like Arrow."""
    table = f'"{pg_schema}".words'
    run(postgres_uri, f"CREATE TABLE {table} (w text)", f"INSERT INTO {table} VALUES ('a'), ('B'), ('é'), ('Z'), ('b')")
    source = SourceObject(table=table)
    collation = connector.capabilities.string_collation
    assert collation is not None
    ctx = SessionContext()
    ctx.from_arrow(pa.table({"w": ["a", "B", "é", "Z", "b"]}), name="words")
    want = sorted(r["w"] for r in ctx.sql("SELECT w FROM words WHERE w > 'Z'").to_pylist())
    pushed = exp.condition(f"w COLLATE \"{collation}\" > 'Z'", dialect="postgres")
    spec = ScanSpec(source, ("w",), pushed)
    got = sorted(r["w"] for r in query(connector, connector.scan_sql(spec), connector.schema(source)).to_pylist())
    assert got == want == ["a", "b", "é"]


def test_config_errors_name_the_domain() -> None:
    with pytest.raises(ConfigError, match=r"domain 'sales'.*uri"):
        PostgresConnector("sales", ConnectorConfig(type="postgres"))
    with pytest.raises(ConfigError, match=r"domain 'sales'.*numeric_scale"):
        PostgresConnector(
            "sales", ConnectorConfig(type="postgres", uri="postgresql://x/y", options={"numeric_scale": 40})
        )


def test_a_stream_cancelled_before_reading_never_runs(connector: PostgresConnector) -> None:
    stream = connector.execute("SELECT 1 AS x FROM pg_sleep(30)", pa.schema([("x", pa.int32())]))
    stream.cancel()
    started = time.monotonic()
    assert list(stream) == []
    assert time.monotonic() - started < 1


def test_the_largest_grouping_of_a_query_is_estimated(
    connector: PostgresConnector, postgres_uri: str, pg_schema: str
) -> None:
    """``estimate_groups``: PostgreSQL's estimate of a query's biggest GROUP BY, wherever it is in the query."""
    run(
        postgres_uri,
        f"CREATE TABLE {pg_schema}.grouped AS SELECT g AS id, g % 50 AS kind FROM generate_series(1, 20000) g",
        f"ANALYZE {pg_schema}.grouped",
    )
    table = f"{pg_schema}.grouped"
    inner = f"SELECT n, count(*) AS c FROM (SELECT id, count(*) AS n FROM {table} GROUP BY id) x GROUP BY n"
    cases = {
        f"SELECT kind, count(*) FROM {table} GROUP BY kind": (40, 60),
        inner: (15_000, 25_000),  # the inner grouping's 20,000 ids, not the outer one's rows
        f"SELECT count(*) FROM {table}": None,  # no GROUP BY
        f"SELECT id FROM {table} WHERE id < 10": None,
    }
    for sql, expected in cases.items():
        groups = connector.estimate_groups(SourceObject(sql=sql))
        if expected is None:
            assert groups is None, sql
        else:
            assert groups is not None and expected[0] <= groups <= expected[1], (sql, groups)
    assert connector.estimate_groups(SourceObject(sql="SELECT * FROM no_such_table GROUP BY 1")) is None  # never raises


def test_the_operator_may_name_another_build_of_the_driver(
    postgres_uri: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MESHGATE_POSTGRES_DRIVER reads through a library of the operator's (here the wheel's own under
    its path: an optimised build is not on a fresh machine); which libraries it takes: test_drivers.py."""
    monkeypatch.setenv(drivers.POSTGRES.variable, _driver_path())
    named = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    try:
        assert named.driver is not None and str(named.driver) == _driver_path()
        run(
            postgres_uri,
            f"CREATE TABLE {pg_schema}.built AS SELECT g AS id, g / 4.0 AS part FROM generate_series(1, 5) g",
        )
        run(postgres_uri, f"ALTER TABLE {pg_schema}.built ALTER part TYPE numeric(6, 2)")
        source = SourceObject(table=f"{pg_schema}.built")
        assert named.schema(source).field("part").type == pa.decimal128(6, 2)
        got = scan(named, source)
        assert sorted(got.column("id").to_pylist()) == [1, 2, 3, 4, 5]
        assert sorted(got.column("part").to_pylist()) == [Decimal(f"{g / 4:.2f}") for g in range(1, 6)]
    finally:
        named.close()


def test_a_named_build_that_does_not_describe_columns_as_1_13_does_is_refused(
    postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Products are typed from the driver's POSTGRESQL:type and POSTGRESQL:typmod metadata (1.13 on):
    a named build without them would read every column as text, and every numeric with the default
    scale, without a word. The wheel's own driver always writes them."""
    numeric = pa.field("amount", pa.string(), metadata={b"POSTGRESQL:type": b"numeric"})
    untyped = pa.field("id", pa.int32())
    plain = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    try:
        assert plain.exact_type(numeric) == plain.unconstrained_numeric
        assert plain.exact_type(untyped) is None
    finally:
        plain.close()
    monkeypatch.setenv(drivers.POSTGRES.variable, _driver_path())
    named = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=postgres_uri))
    try:
        for field in (numeric, untyped):
            with pytest.raises(ConfigError, match=f"MESHGATE_POSTGRES_DRIVER .* column '{field.name}'"):
                named.column(field)
        described = numeric.with_metadata({b"POSTGRESQL:type": b"numeric", b"POSTGRESQL:typmod": b"-1"})
        assert named.exact_type(described) == named.unconstrained_numeric
        assert named.exact_type(untyped.with_metadata({b"POSTGRESQL:type": b"int4"})) == pa.int32()
    finally:
        named.close()


def test_a_server_in_another_time_zone_answers_as_datafusion_on_both_routes(
    postgres_uri: str, pg_schema: str, tmp_path: Path
) -> None:
    """Each connection's session zone is UTC, DataFusion's, whatever the server's or the uri's: with
    America/New_York, a whole query took the date of 03:30 UTC as the day before and matched a
    zoneless ``'2024-02-29 10:00:00'`` with 15:00 UTC."""
    run(
        postgres_uri,
        f'CREATE TABLE "{pg_schema}".zoned (id int8, z timestamptz)',
        f"INSERT INTO \"{pg_schema}\".zoned VALUES (1, '2024-02-29 03:30:00+00'), (2, '2024-02-29 10:00:00+00')",
    )
    pq.write_table(pa.table({"k": [1]}), tmp_path / "one.parquet")
    zone = "options=-c%20TimeZone%3DAmerica/New_York"
    uri = f"{postgres_uri}{'&' if '?' in postgres_uri else '?'}{zone}"
    (tmp_path / "mesh.yaml").write_text(
        f"domains:\n  - name: pg\n    connector: {{type: postgres, uri: '{uri}'}}\n"
        f"    products:\n      - {{name: zoned, source: {pg_schema}.zoned}}\n"
        "  - name: one\n    connector: {type: parquet, path: one.parquet}\n"
        "    products:\n      - {name: one, source: one.parquet}\n"
    )
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    try:
        for read in ("pg.zoned", "(SELECT v.* FROM pg.zoned v CROSS JOIN one.one)"):
            sql = f"SELECT id, CAST(z AS DATE) AS day, z = '2024-02-29 10:00:00' AS ten FROM {read} AS w ORDER BY id"
            rows = [row for batch in engine.run(sql) for row in batch.to_pylist()]
            assert rows == [
                {"id": 1, "day": dt.date(2024, 2, 29), "ten": False},
                {"id": 2, "day": dt.date(2024, 2, 29), "ten": True},
            ], read
    finally:
        engine.close()
