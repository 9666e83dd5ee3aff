"""Parallel PostgreSQL reads in ctid ranges under one snapshot (connectors/ctid.py), on a real server.

Small tables are split by setting ``partition_pages`` to 1, so that every behaviour of a
big table's read (several connections, one exported snapshot, cancel, deadlines, errors)
is checked on tables that load in milliseconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pytest
from sqlglot import exp

from connectors import ctid
from connectors.base import ScanSpec, SourceObject, SourceStream
from connectors.postgres import PostgresConnector
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError, QueryTimeoutError, SourceError
from tests.support.postgres import wait_until_no_backend_runs

ROWS = 20_000


def run(uri: str, *statements: str) -> list[tuple[object, ...]]:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def connector(uri: str, **options: object) -> PostgresConnector:
    return PostgresConnector("sales", ConnectorConfig(type="postgres", uri=uri, options=options))


@pytest.fixture(scope="module")
def table(postgres_uri: str, pg_schema: str) -> str:
    """A table of about 170 pages, with a column read as text (a uuid: the relation is a subquery)."""
    name = f'"{pg_schema}".orders'
    run(
        postgres_uri,
        f"CREATE TABLE {name} AS SELECT g::int8 AS id, (g % 7)::int4 AS k, g * 0.5::float8 AS x,"
        f" md5(g::text)::uuid AS u FROM generate_series(1, {ROWS}) g",
        f"ALTER TABLE {name} ADD PRIMARY KEY (id)",
        f"VACUUM ANALYZE {name}",
    )
    return name


@pytest.fixture(scope="module")
def split(postgres_uri: str) -> Iterator[PostgresConnector]:
    """Reads every table in 4 ranges."""
    reader = connector(postgres_uri, partition_pages=1, partition_rows=1, max_partitions=4)
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def whole(postgres_uri: str) -> Iterator[PostgresConnector]:
    """Reads every table on one connection."""
    reader = connector(postgres_uri, max_partitions=1)
    yield reader
    reader.close()


def open_scan(
    reader: PostgresConnector,
    source: SourceObject,
    predicate: str | None = None,
    limit: int | None = None,
    deadline: float | None = None,
    columns: tuple[str, ...] | None = None,
) -> SourceStream:
    schema = reader.schema(source)
    names = columns or tuple(schema.names)
    condition = exp.condition(predicate, dialect="postgres") if predicate else None
    projected = pa.schema([schema.field(name) for name in names])
    return reader.execute(reader.scan_sql(ScanSpec(source, names, condition, limit)), projected, deadline)


def rows(stream: SourceStream) -> Counter[tuple[object, ...]]:
    table = pa.Table.from_batches(list(stream), stream.schema)
    return Counter(tuple(row.values()) for row in table.to_pylist())


def test_ranges_cover_every_page_and_are_open_at_both_ends() -> None:
    assert ctid.ranges(10, 1) == [(None, None)]
    assert ctid.ranges(10, 4) == [(None, 2), (2, 5), (5, 7), (7, None)]


def test_the_range_goes_into_the_select_that_reads_the_table() -> None:
    inner = exp.select("a").from_(exp.to_table("s.t").as_("s", quoted=True))
    outer = exp.select('"t"."a"').from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("t"))))
    restricted = ctid.restrict(outer.where("a > 1"), 5, 9).sql("postgres")
    assert restricted == (
        'SELECT "t"."a" FROM (SELECT a FROM s.t AS "s" WHERE "s".ctid >= CAST(\'(5,0)\' AS tid)'
        " AND \"s\".ctid < CAST('(9,0)' AS tid)) AS t WHERE a > 1"
    )


@pytest.mark.parametrize("predicate", [None, "k = 3", "x < 2000 OR k = 1", "u > 'f'"])
def test_a_partitioned_read_returns_the_rows_of_one_connection(
    table: str, split: PostgresConnector, whole: PostgresConnector, predicate: str | None
) -> None:
    source = SourceObject(table=table)
    parallel = open_scan(split, source, predicate)
    got = rows(parallel)
    single = open_scan(whole, source, predicate)
    want = rows(single)
    assert parallel.detail == "read in 4 ctid ranges on 4 connections under one snapshot"
    assert single.detail is None
    assert sum(want.values()) > 100
    assert got == want


def test_small_tables_limits_views_queries_and_index_lookups_are_read_on_one_connection(
    postgres_uri: str, pg_schema: str, table: str, split: PostgresConnector
) -> None:
    view = f'"{pg_schema}".orders_view'
    run(postgres_uri, f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {table}")
    default = connector(postgres_uri, max_partitions=4)  # 10,000 pages a range: the table is too small
    coarse = connector(postgres_uri, max_partitions=4, partition_pages=20, partition_rows=1)  # of about 170 pages
    few = connector(postgres_uri, max_partitions=4, partition_pages=1, partition_rows=5_000)
    keys = ", ".join(str(key) for key in range(1, ROWS, 5))  # 4,000 keys of the primary key's index
    cases = [
        (default, SourceObject(table=table), None, None, ROWS),
        (coarse, SourceObject(table=table), "id = 17", None, 1),  # an index lookup costs less than one range
        (split, SourceObject(table=table), f"id = ANY(ARRAY[{keys}])", None, ROWS // 5),  # read by the index
        (few, SourceObject(table=table), "k = 3", None, 2857),  # fewer rows than one range's partition_rows
        (split, SourceObject(table=table), None, 10, 10),
        (split, SourceObject(table=view), None, None, ROWS),
        (split, SourceObject(sql=f"SELECT * FROM {table}"), None, None, ROWS),
    ]
    try:
        control = open_scan(coarse, SourceObject(table=table), "k = 3")
        assert sum(rows(control).values()) > 0
        assert control.detail is not None  # a split the same connector does make
        for reader, source, predicate, limit, count in cases:
            stream = open_scan(reader, source, predicate, limit)
            assert sum(rows(stream).values()) == count
            assert stream.detail is None, (source, predicate, limit)
        wide = open_scan(few, SourceObject(table=table), "k < 5")  # 14,286 rows: two ranges' worth
        assert sum(rows(wide).values()) == 14_286
        assert wide.detail == "read in 2 ctid ranges on 2 connections under one snapshot"
    finally:
        default.close()
        coarse.close()
        few.close()


def test_a_partitioned_read_sees_one_snapshot_while_batches_are_replaced(postgres_uri: str, pg_schema: str) -> None:
    """A writer replaces a random batch of rows (delete it, insert a new one) per transaction, so
    every snapshot holds exactly LIVE batches of SIZE rows. Ranges reading in snapshots of their
    own would see a deleted batch in one range and its replacement in another."""
    live, size = 200, 20
    name = f'"{pg_schema}".ledger'
    run(
        postgres_uri,
        f"CREATE TABLE {name} AS SELECT b AS batch, g AS n, repeat('x', 60) AS pad"
        f" FROM generate_series(1, {live}) b, generate_series(1, {size}) g",
    )
    replace = (
        f"WITH gone AS (DELETE FROM {name} WHERE batch = $1)"
        f" INSERT INTO {name} SELECT $2, g, repeat('x', 60) FROM generate_series(1, {size}) g"
    )
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        batches, latest = list(range(1, live + 1)), live
        with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
            while not stop.is_set():
                old = batches.pop(random.randrange(len(batches)))
                latest += 1
                cursor.execute(replace, (old, latest))
                batches.append(latest)
                commits[0] += 1

    reader = connector(postgres_uri, partition_pages=1, max_partitions=8)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        counts = []
        for _ in range(30):
            stream = open_scan(reader, SourceObject(table=name), columns=("batch",))
            per_batch = rows(stream)  # rows by batch
            assert stream.detail is not None and "8 ctid ranges" in stream.detail
            counts.append((len(per_batch), set(per_batch.values())))
        during = commits[0]
    finally:
        stop.set()
        writer.join()
        reader.close()
    assert during > 100  # batches were replaced while the reads ran
    assert counts == [(live, {size})] * len(counts)


def test_cancel_mid_read_stops_every_range(table: str, split: PostgresConnector, postgres_uri: str) -> None:
    stream = open_scan(split, SourceObject(table=table), "pg_sleep(0.0011) IS NOT NULL")
    started = time.monotonic()
    threading.Timer(0.5, stream.cancel).start()
    assert sum(rows(stream).values()) < ROWS
    assert stream.detail is not None
    assert time.monotonic() - started < 2.5
    assert wait_until_no_backend_runs(postgres_uri, "pg_sleep(0.0011)")


def test_a_deadline_ends_every_range(table: str, split: PostgresConnector, postgres_uri: str) -> None:
    deadline = time.monotonic() + 1.0
    stream = open_scan(split, SourceObject(table=table), "pg_sleep(0.0012) IS NOT NULL", deadline=deadline)
    with pytest.raises(QueryTimeoutError, match="did not finish before the query's deadline"):
        rows(stream)
    assert stream.detail is not None
    assert time.monotonic() - deadline < 0.5
    assert wait_until_no_backend_runs(postgres_uri, "pg_sleep(0.0012)")


def test_an_error_in_one_range_fails_the_read_and_stops_the_others(
    table: str, split: PostgresConnector, postgres_uri: str
) -> None:
    stream = open_scan(
        split, SourceObject(table=table), f"1 / (id - {ROWS - 5}) + length(pg_sleep(0.0013)::text) IS NULL"
    )
    with pytest.raises(SourceError, match=r"^\[sales/postgres:.*\] division by zero"):
        rows(stream)
    assert wait_until_no_backend_runs(postgres_uri, "pg_sleep(0.0013)")


def test_connections_go_back_to_the_pool_outside_any_transaction_and_unbound(postgres_uri: str, table: str) -> None:
    reader = connector(postgres_uri, partition_pages=1, max_partitions=3, pool_size=4)
    try:
        stream = open_scan(reader, SourceObject(table=table), deadline=time.monotonic() + 30)
        assert sum(rows(stream).values()) == ROWS
        idle = list(reader._pool._idle)
        assert len(idle) == 3
        pids = []
        for connection in idle:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')")
                pid, timeout = cursor.fetchone()
            assert timeout == "0"
            pids.append(pid)
        states = run(postgres_uri, f"SELECT state FROM pg_stat_activity WHERE pid IN ({', '.join(map(str, pids))})")
        assert states == [("idle",)] * 3
    finally:
        reader.close()


def test_partition_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="connector option max_partitions must be an integer >= 1"):
        connector("postgresql://127.0.0.1:1/none", max_partitions=0)
    with pytest.raises(ConfigError, match="connector option partition_pages must be an integer >= 1"):
        connector("postgresql://127.0.0.1:1/none", partition_pages="many")
    with pytest.raises(ConfigError, match="connector option max_partitions must be at most 32"):
        connector("postgresql://127.0.0.1:1/none", max_partitions=10_000)


def test_a_pushed_join_is_read_in_ranges_of_its_split_table(
    postgres_uri: str, pg_schema: str, table: str, split: PostgresConnector, whole: PostgresConnector
) -> None:
    """A join the planner pushed whole (gateway/plan/same_source.py) names a table it reads once
    (``SourceObject.split``): each range of that table is joined with the rest, under one snapshot."""
    kinds = f'"{pg_schema}".kinds'
    run(
        postgres_uri,
        f"DROP TABLE IF EXISTS {kinds}",
        f"CREATE TABLE {kinds} AS SELECT g::int4 AS k, 'kind ' || g AS label FROM generate_series(0, 6) g",
    )
    joined = (
        f'SELECT "o"."id" AS "id", "d"."label" AS "label" FROM {table} AS "o" INNER JOIN {kinds} AS "d" ON TRUE'
        ' WHERE "o"."x" > 10 AND "o"."k" = "d"."k"'
    )
    parallel = open_scan(split, SourceObject(sql=joined, split=table))
    got = rows(parallel)
    single = open_scan(whole, SourceObject(sql=joined, split=table))
    assert parallel.detail == "read in 4 ctid ranges on 4 connections under one snapshot"
    assert single.detail is None
    assert got == rows(single)
    assert sum(got.values()) == ROWS - 20
    # a query that reads its split table twice cannot be cut by its ranges: it is read whole
    twice = (
        f'SELECT "a"."id" AS "id" FROM {table} AS "a" INNER JOIN {table} AS "b" ON TRUE WHERE "a"."id" = "b"."id" + 1'
    )
    stream = open_scan(split, SourceObject(sql=twice, split=table))
    assert sum(rows(stream).values()) == ROWS - 1
    assert stream.detail is None
