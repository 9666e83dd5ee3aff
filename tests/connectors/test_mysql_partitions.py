"""Partitioned reads of MySQL/MariaDB tables on an integer primary key (``max_partitions``):
the same rows as one read, ranges that leave no key out, splits only where they are allowed,
and an option only an admin may set.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlglot import exp

from connectors.base import ScanSpec, SourceObject
from connectors.mysql import MysqlConnector, _MysqlScan
from connectors.registry import open_connector, registry
from connectors.sqlbase import ReaderStream
from gateway.api import CallerContext
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, PermissionDeniedError
from gateway.reload import Reloader
from tests.support.gateway import query, serve_in_process
from tests.support.mysql import connect

pytestmark = pytest.mark.mariadb

ROWS = 6000


@pytest.fixture(scope="module")
def loaded(mysql_uri: str) -> str:
    generator = random.Random(12)
    sampled = {k if k % 2 else -k for k in generator.sample(range(1, 2**40), ROWS - 3)}
    keys = sorted(sampled | {-(2**63), 0, 2**63 - 1})  # gaps everywhere, and both ends of BIGINT
    assert len(keys) == ROWS
    with connect(mysql_uri) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE gappy (id BIGINT PRIMARY KEY, v VARCHAR(12), n DOUBLE, at TIMESTAMP(3) NULL)")
        cursor.executemany(
            "INSERT INTO gappy VALUES (%s, %s, %s, %s)",
            [
                (k, ("Paid", "paid", "paid ", None)[i % 4], i / 7, None if i % 5 else f"2024-03-31 0{i % 10}:30:00.125")
                for i, k in enumerate(keys)
            ],
        )
        cursor.execute("CREATE TABLE big_unsigned (id BIGINT UNSIGNED PRIMARY KEY, v INT)")
        cursor.executemany("INSERT INTO big_unsigned VALUES (%s, %s)", [(2**64 - 1 - 7 * i, i) for i in range(ROWS)])
        cursor.execute("CREATE TABLE texty (code VARCHAR(10) PRIMARY KEY, v INT)")
        cursor.executemany("INSERT INTO texty VALUES (%s, %s)", [(f"k{i}", i) for i in range(ROWS)])
        cursor.execute("CREATE TABLE pair (a INT, b INT, PRIMARY KEY (a, b))")
        cursor.executemany("INSERT INTO pair VALUES (%s, %s)", [(i, i) for i in range(ROWS)])
        cursor.execute("CREATE TABLE tiny (id INT PRIMARY KEY)")
        cursor.execute("INSERT INTO tiny VALUES (1), (2)")
        cursor.execute("ANALYZE TABLE gappy, big_unsigned, texty, pair, tiny")
        cursor.fetchall()
    return mysql_uri


def opened(uri: str, **options: int) -> MysqlConnector:
    made = open_connector("shop", ConnectorConfig(type="mysql", uri=uri, options=dict(options)))
    assert isinstance(made, MysqlConnector)
    return made


@pytest.fixture
def split(loaded: str) -> Iterator[MysqlConnector]:
    made = opened(loaded, max_partitions=4, partition_rows=1000)
    yield made
    made.close()


def read(
    connector: MysqlConnector, table: str, predicate: str | None = None, limit: int | None = None
) -> tuple[pa.Table, str | None]:
    source = SourceObject(table=f"`{table}`")
    schema = connector.schema(source)
    where = exp.condition(predicate, dialect="meshgatemysql") if predicate else None
    spec = ScanSpec(source, tuple(schema.names), where, limit)
    stream = connector.execute(connector.scan_sql(spec), schema)
    batches = list(stream)
    return pa.Table.from_batches(batches, schema).sort_by(
        "id" if "id" in schema.names else schema.names[0]
    ), stream.detail


def checksum(table: pa.Table) -> tuple[int, int]:
    return table.num_rows, hash(tuple(tuple(r.values()) for r in table.to_pylist()))


@pytest.mark.parametrize("table", ["gappy", "big_unsigned"])
def test_four_ranges_read_the_same_rows_as_one_read(loaded: str, split: MysqlConnector, table: str) -> None:
    one = opened(loaded)
    try:
        whole, detail = read(one, table)
    finally:
        one.close()
    assert detail is None and whole.num_rows == ROWS
    parts, detail = read(split, table)
    assert detail == "read in 4 primary key ranges on 4 connections"
    assert checksum(parts) == checksum(whole)
    assert parts.equals(whole)
    assert pc.count_distinct(parts["id"]).as_py() == ROWS  # no key twice, none left out


def test_the_ranges_cover_every_key_and_are_open_at_both_ends(split: MysqlConnector) -> None:
    source = SourceObject(table="`gappy`")
    spec = ScanSpec(source, ("id",))
    queries = split.ranges(spec, split.scan_sql(spec))
    assert len(queries) == 4
    assert "`id` < " in queries[0] and ">=" not in queries[0]
    assert "`id` >= " in queries[-1] and "<" not in queries[-1].split("WHERE")[1]


def test_the_session_settings_hold_in_every_range(split: MysqlConnector, loaded: str) -> None:
    """TIMESTAMP values in UTC (the session's time zone) from each range's own connection."""
    parts, detail = read(split, "gappy", "`at` IS NOT NULL")
    assert detail is not None and parts.num_rows == ROWS // 5
    one = opened(loaded)
    try:
        whole, _ = read(one, "gappy", "`at` IS NOT NULL")
    finally:
        one.close()
    assert parts.equals(whole)
    assert parts["at"].type == pa.timestamp("us", tz="UTC")
    assert str(parts["at"][0].as_py().tzinfo) == "UTC" and parts["at"][0].as_py().microsecond == 125000


def test_every_range_has_its_own_connection_with_the_scans_session(split: MysqlConnector) -> None:
    """The server here runs in UTC, so the time zone is asked directly of each range's session."""
    sql = "SELECT @@session.time_zone AS z, @@session.sql_mode AS m, CONNECTION_ID() AS c"
    schema = pa.schema([("z", pa.string()), ("m", pa.string()), ("c", pa.uint64())])
    scan = _MysqlScan(split, split.server(), [sql, sql, sql], schema, None)
    got = pa.Table.from_batches(list(ReaderStream(schema, scan)), schema).to_pylist()
    assert len(got) == 3 and len({r["c"] for r in got}) == 3
    assert all(r["z"] == "+00:00" and "NO_BACKSLASH_ESCAPES" not in r["m"] for r in got)


@pytest.mark.parametrize(
    ("table", "why"),
    [("texty", "text key"), ("pair", "two key columns"), ("tiny", "estimate below two ranges")],
)
def test_no_split_where_it_is_not_allowed(split: MysqlConnector, table: str, why: str) -> None:
    rows, detail = read(split, table)
    assert detail is None, why
    assert rows.num_rows == (2 if table == "tiny" else ROWS)


def test_a_limit_is_never_split(split: MysqlConnector) -> None:
    rows, detail = read(split, "gappy", "`v` = 'paid'", limit=7)
    assert detail is None and rows.num_rows == 7


def test_a_pushed_filter_and_a_limit_stay_correct_through_the_gateway(loaded: str, tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(
        f"domains:\n  - name: one\n    connector: {{type: mysql, uri: '{loaded}'}}\n"
        "    products:\n      - {name: gappy, source: gappy}\n"
        f"  - name: four\n    connector: {{type: mysql, uri: '{loaded}', max_partitions: 4, partition_rows: 1000}}\n"
        "    products:\n      - {name: gappy, source: gappy}\n"
    )
    with serve_in_process(tmp_path) as uri:
        for where in ("v = 'paid'", "v >= 'p' AND n > 100", "id < 0 OR v IS NULL"):
            sql = "SELECT count(*) AS c, sum(id % 1000003) AS s, min(id) AS lo, max(id) AS hi FROM {} WHERE " + where
            assert query(uri, sql.format("four.gappy")).to_pylist() == query(uri, sql.format("one.gappy")).to_pylist()
        # Byte-exact text: 'paid' only, not 'Paid' nor 'paid '; a quarter of the rows.
        assert query(uri, "SELECT count(*) AS c FROM four.gappy WHERE v = 'paid'").to_pylist() == [{"c": ROWS // 4}]
        limited = query(uri, "SELECT id, v FROM four.gappy WHERE v = 'paid' AND id > 0 LIMIT 5")
        assert limited.num_rows == 5 and set(limited["v"].to_pylist()) == {"paid"}
        assert all(k > 0 for k in limited["id"].to_pylist())


@pytest.mark.parametrize("value", [0, -1, "4", True, 33])
def test_bad_max_partitions_is_refused_by_name(loaded: str, value: object) -> None:
    with pytest.raises(ConfigError, match="max_partitions must be"):
        open_connector("shop", ConnectorConfig(type="mysql", uri=loaded, options={"max_partitions": value}))


def test_only_an_admin_may_set_max_partitions(loaded: str, tmp_path: Path) -> None:
    assert "max_partitions" in registry().kind("mysql").admin_keys
    shop = (
        f"domains:\n  - name: shop\n    owner: shop-team\n    connector: {{type: mysql, uri: '{loaded}'}}\n"
        "    products:\n      - {name: gappy, source: gappy}\n"
    )
    (tmp_path / "platform.yaml").write_text(
        'policies:\n  roles:\n    admin: [root]\n  grants:\n    - {role: admin, on: "*"}\n'
        "self_serve:\n  domains:\n    shop: {owner: shop-team}\n"
    )
    (tmp_path / "shop.yaml").write_text(shop)
    engine = Engine.from_config(load_config(tmp_path))
    try:
        owner = CallerContext(user="olga", attributes={"groups": "shop-team"})
        wider = shop.replace(f"uri: '{loaded}'}}", f"uri: '{loaded}', max_partitions: 32}}")
        with pytest.raises(PermissionDeniedError, match="may not set connector option max_partitions of domain 'shop'"):
            Reloader(engine, tmp_path).apply_text(owner, wider)
        assert (tmp_path / "shop.yaml").read_text() == shop
    finally:
        engine.close()


def running(uri: str, fragment: str) -> int:
    with connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.processlist WHERE info LIKE %s AND id <> CONNECTION_ID()",
            (f"%{fragment}%",),
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0


def test_a_cancel_kills_every_range_on_the_server(split: MysqlConnector, loaded: str) -> None:
    sql = "SELECT SLEEP(30) AS cancel_split"
    schema = pa.schema([("cancel_split", pa.int64())])
    stream = ReaderStream(schema, _MysqlScan(split, split.server(), [sql, sql, sql], schema, None))
    reader = threading.Thread(target=lambda: list(stream), daemon=True)
    reader.start()
    give_up = time.monotonic() + 5
    while not running(loaded, "cancel_split") and time.monotonic() < give_up:
        time.sleep(0.05)
    time.sleep(0.2)
    # connectorx runs as many ranges at once as the machine has cores, the rest after them.
    assert 1 <= running(loaded, "cancel_split") <= 3
    stream.cancel()
    reader.join(timeout=5)
    assert not reader.is_alive()
    give_up = time.monotonic() + 3
    while running(loaded, "cancel_split") and time.monotonic() < give_up:
        time.sleep(0.05)
    assert running(loaded, "cancel_split") == 0, "a range still runs on the server"
