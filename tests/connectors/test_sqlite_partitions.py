"""Parallel SQLite reads in rowid ranges, all in one state of the file (connectors/rowid.py), on real files.

Small tables are split by setting ``partition_rows`` low, so that every behaviour of a big
table's read (several connections, one state of the file in both journal modes, errors, the
connections' return to the pool) is checked on tables that load in milliseconds.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_sqlite
import pyarrow as pa
import pytest
from sqlglot import exp

from connectors import drivers, rowid, split
from connectors.base import ScanSpec, SourceObject, SourceStream
from connectors.sqlite import SqliteConnector
from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine
from gateway.errors import ConfigError, SourceError

ROWS = 20_000
SPLIT = "read in 4 rowid ranges on 4 connections in one state of the file"


def connector(path: Path, **options: object) -> SqliteConnector:
    return SqliteConnector("shop", ConnectorConfig(type="sqlite", path=str(path), options=options))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``orders`` (ROWS rows, an INTEGER PRIMARY KEY), ``kinds`` (its 7 values of ``k``), ``keyed`` (a WITHOUT
    ROWID table), ``odd`` (columns named rowid and oid), ``opaque`` (columns taking every name of the rowid) and a view."""
    path = tmp_path_factory.mktemp("sqlite-split") / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, k INTEGER, x REAL, note TEXT)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)", [(i, i % 7, i * 0.5, f"n{i}") for i in range(1, ROWS + 1)]
        )
        db.execute("CREATE INDEX orders_k ON orders (k)")
        db.execute("CREATE TABLE kinds (k INTEGER PRIMARY KEY, label TEXT)")
        db.executemany("INSERT INTO kinds VALUES (?, ?)", [(k, f"kind {k}") for k in range(7)])
        db.execute("CREATE TABLE keyed (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID")
        db.executemany("INSERT INTO keyed VALUES (?, ?)", [(i, f"v{i}") for i in range(ROWS)])
        db.execute("CREATE TABLE odd (rowid TEXT, oid INTEGER)")
        db.executemany("INSERT INTO odd VALUES (?, ?)", [(f"r{i}", i) for i in range(ROWS)])
        db.execute("CREATE TABLE opaque (rowid INTEGER, _rowid_ INTEGER, oid INTEGER)")
        db.executemany("INSERT INTO opaque VALUES (?, ?, ?)", [(i, i, i) for i in range(ROWS)])
        db.execute("CREATE VIEW recent AS SELECT * FROM orders WHERE id > 100")
    return path


@pytest.fixture(scope="module")
def parted(database: Path) -> Iterator[SqliteConnector]:
    """Reads every table of 4,000 rowids or more in 4 ranges."""
    reader = connector(database, partition_rows=1_000, max_partitions=4)
    yield reader
    reader.close()


def open_scan(
    reader: SqliteConnector,
    source: SourceObject,
    predicate: str | None = None,
    limit: int | None = None,
    reads: int = 1,
    deadline: float | None = None,
) -> SourceStream:
    schema = pa.schema([pa.field(c.name, c.type) for c in reader.columns(source)])  # described once, kept
    condition = exp.condition(predicate, dialect="sqlite") if predicate else None
    spec = ScanSpec(source, tuple(schema.names), condition, limit, reads)
    return reader.execute(reader.scan_sql(spec), schema, deadline)


def rows(stream: SourceStream) -> Counter[tuple[object, ...]]:
    table = pa.Table.from_batches(list(stream), stream.schema)
    return Counter(tuple(row.values()) for row in table.to_pylist())


def test_ranges_cut_the_rowids_evenly_and_are_open_at_both_ends() -> None:
    assert split.ranges(1, 101, 1) == [(None, None)]
    assert split.ranges(1, 101, 4) == [(None, 26), (26, 51), (51, 76), (76, None)]
    assert split.ranges(-50, 50, 2) == [(None, 0), (0, None)]


def test_the_range_goes_into_the_select_that_reads_the_table_under_a_free_name_of_the_rowid() -> None:
    inner = exp.select("a").from_(exp.to_table("t").as_("s", quoted=True))
    outer = exp.select('"q"."a"').from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("q"))))
    alias = rowid.rowid_alias(["a", "ROWID"])
    assert alias == "_rowid_"
    assert rowid.restrict(outer, alias, 5, 9).sql("sqlite") == (
        'SELECT "q"."a" FROM (SELECT a FROM t AS "s" WHERE "s"._rowid_ >= 5 AND "s"._rowid_ < 9) AS q'
    )
    assert rowid.rowid_alias(["rowid", "_rowid_", "oid"]) is None


@pytest.mark.parametrize("predicate", [None, "k = 3", "x < 2000 OR note = 'n7'", "note > 'n5'"])
def test_a_partitioned_read_returns_the_rows_of_one_connection(
    database: Path, parted: SqliteConnector, predicate: str | None
) -> None:
    whole = connector(database, max_partitions=1)
    try:
        source = SourceObject(table="orders")
        stream = open_scan(parted, source, predicate)
        got = rows(stream)
        single = open_scan(whole, source, predicate)
        want = rows(single)
    finally:
        whole.close()
    assert single.detail is None
    assert sum(want.values()) > 100
    assert got == want
    # k = 3 is answered from the index orders_k: not split; the others scan the table
    assert stream.detail == (None if predicate == "k = 3" else SPLIT)


def test_a_library_the_operator_names_reads_in_ranges_as_the_wheels_does(
    database: Path, parted: SqliteConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MESHGATE_SQLITE_DRIVER: another build of the driver (here the wheel's own library under its
    path: an optimised build is not on a fresh machine) serves every connection, ranges included."""
    monkeypatch.setenv(drivers.SQLITE.variable, adbc_driver_sqlite._driver_path())
    named = connector(database, partition_rows=1_000, max_partitions=4)
    try:
        assert str(named.driver) == adbc_driver_sqlite._driver_path()
        source = SourceObject(table="orders")
        stream = open_scan(named, source, "x < 2000")
        assert rows(stream) == rows(open_scan(parted, source, "x < 2000"))
        assert stream.detail == SPLIT
    finally:
        named.close()


def test_a_table_whose_columns_are_named_rowid_is_split_by_another_name_of_it(parted: SqliteConnector) -> None:
    stream = open_scan(parted, SourceObject(table="odd"))
    got = rows(stream)
    assert stream.detail == SPLIT
    assert sorted(got) == sorted((f"r{i}", i) for i in range(ROWS))


def test_small_tables_limits_views_queries_and_tables_without_rowid_are_read_on_one_connection(
    database: Path, parted: SqliteConnector
) -> None:
    default = connector(database, max_partitions=4)  # 100,000 rowids a range: the table is too small
    cases = [
        (default, SourceObject(table="orders"), None, ROWS),
        (parted, SourceObject(table="orders"), 10, 10),
        (parted, SourceObject(table="recent"), None, ROWS - 100),
        (parted, SourceObject(sql="SELECT * FROM orders"), None, ROWS),
        (parted, SourceObject(table="keyed"), None, ROWS),
        (parted, SourceObject(table="opaque"), None, ROWS),
    ]
    try:
        for reader, source, limit, count in cases:
            stream = open_scan(reader, source, limit=limit)
            assert sum(rows(stream).values()) == count
            assert stream.detail is None, source
    finally:
        default.close()


JOINED = 'SELECT "o"."id" AS "id", "d"."label" AS "label" FROM orders AS "o" INNER JOIN kinds AS "d" ON TRUE'


@pytest.mark.parametrize(
    ("where", "split_on", "parted_read"),
    [
        # SQLite scans orders and finds each order's kind by its key: ranges of orders, whichever
        # table the planner named (ranges of kinds would each search all of orders)
        ('"o"."x" > 10 AND "o"."k" = "d"."k"', "orders", True),
        ('"o"."x" > 10 AND "o"."k" = "d"."k"', "kinds", True),
        (
            '"o"."x" > 10 AND "o"."k" = "d"."k" AND "o"."id" IN (SELECT "s"."id" FROM orders AS "s" WHERE "s"."k" = 2)',
            "orders",
            False,
        ),  # orders read twice
        ('"o"."k" = 3 AND "o"."k" = "d"."k"', "orders", False),  # orders searched by its index on k
    ],
)
def test_a_pushed_join_is_read_in_ranges_of_the_table_sqlite_scans_outermost(
    database: Path, parted: SqliteConnector, where: str, split_on: str, parted_read: bool
) -> None:
    """A join the planner pushed whole (gateway/plan/same_source.py, ``SourceObject.split``) is read in
    ranges of the table SQLite's plan loops over outermost, each joined with the rest: the rows of one connection."""
    whole = connector(database, max_partitions=1)
    try:
        source = SourceObject(sql=f"{JOINED} WHERE {where}", split=split_on)
        stream = open_scan(parted, source)
        got = rows(stream)
        want = rows(open_scan(whole, source))
    finally:
        whole.close()
    assert got == want
    assert sum(want.values()) > 1000
    assert stream.detail == (SPLIT if parted_read else None)


def test_only_a_join_that_keeps_each_row_of_its_tables_once_is_read_in_ranges(database: Path) -> None:
    """Ranges of a table give a query's rows only where each of them holds one row of that table:
    the tables of the SELECT that inner-joins the planner's split table, each read once, outside subqueries."""
    inner = exp.maybe_parse(f'{JOINED} WHERE "d"."k" IN (SELECT "k" FROM keyed AS "x")', dialect="sqlite")
    assert sorted(rowid.ranged_tables(inner, "orders")) == ["d", "o"]
    left = exp.maybe_parse('SELECT "o"."id" FROM orders AS "o" LEFT JOIN kinds AS "d" ON "o"."k" = "d"."k"')
    assert rowid.ranged_tables(left, "orders") == {}
    twice = exp.maybe_parse('SELECT "o"."id" FROM orders AS "o" INNER JOIN orders AS "d" ON "o"."k" = "d"."id"')
    assert rowid.ranged_tables(twice, "orders") == {}
    query = rowid.restrict(inner, "rowid", 5, None, "kinds")
    assert '"d".rowid >= 5' in query.sql("sqlite") and '"o".rowid' not in query.sql("sqlite")


def test_a_limit_that_bounds_rather_than_cuts_leaves_the_read_split(parted: SqliteConnector) -> None:
    """The planner reads join inputs and shared reads with a bound (``LIMIT 1000001``): such a read is
    still split, each range asked for at most that many rows; a smaller limit is a cut, read whole."""
    source = SourceObject(table="orders")
    bounded = open_scan(parted, source, "x < 2000 OR note = 'n7'", limit=split.BOUND_ROWS)
    assert bounded.detail == SPLIT
    assert rows(bounded) == rows(open_scan(parted, source, "x < 2000 OR note = 'n7'"))
    assert open_scan(parted, source, limit=split.BOUND_ROWS - 1).detail is None


def test_a_product_the_query_reads_twice_at_once_is_split_in_fewer_ranges(parted: SqliteConnector) -> None:
    """max_partitions is shared among the query's reads of the product (``ScanSpec.reads``)."""
    source = SourceObject(table="orders")
    assert (
        open_scan(parted, source, reads=2).detail == "read in 2 rowid ranges on 2 connections in one state of the file"
    )
    assert open_scan(parted, source, reads=3).detail is None


def test_reads_at_once_share_the_connectors_ranges(parted: SqliteConnector) -> None:
    """A read opened while another holds every range of the connector is read on one connection;
    the ranges are given back when a read is over, or closed unread."""
    source = SourceObject(table="orders")
    first = open_scan(parted, source)  # its ranges are open (not yet read)
    second = open_scan(parted, source)
    assert (first.detail, second.detail) == (SPLIT, None)
    assert sum(rows(second).values()) == ROWS
    assert sum(rows(first).values()) == ROWS
    third = open_scan(parted, source)
    assert third.detail == SPLIT
    third.close()  # never read
    fourth = open_scan(parted, source)
    assert fourth.detail == SPLIT
    assert sum(rows(fourth).values()) == ROWS


def test_the_budget_grants_what_is_free_and_never_a_range_of_one() -> None:
    budget = split.Budget(4)
    assert budget.take(3) == 3
    assert budget.take(3) == 1  # one left: read on one connection, nothing taken
    budget.give()
    assert budget.take(8) == 2
    budget.give(5)
    assert budget.take(4) == 4


# The writer runs in a process of its own: ADBC's driver links its own copy of SQLite, and two
# copies in one process do not see each other's POSIX locks (sqlite.org/howtocorrupt.html, 2.2.1).
WRITER = """
import random, sqlite3, sys, time
from pathlib import Path
path, stop, live, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
batches, latest, commits = list(range(1, live + 1)), live, 0
db = sqlite3.connect(path, timeout=30, isolation_level=None)
while not stop.exists():
    old = batches.pop(random.randrange(len(batches)))
    latest += 1
    db.execute("BEGIN IMMEDIATE")
    db.execute("DELETE FROM ledger WHERE batch = ?", (old,))
    db.executemany("INSERT INTO ledger VALUES (?, ?, ?)", [(latest, g, "x" * 60) for g in range(size)])
    db.execute("COMMIT")
    batches.append(latest)
    commits += 1
    time.sleep(0.002)
print(commits)
"""


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_partitioned_read_sees_one_state_of_the_file_while_batches_are_replaced(tmp_path: Path, mode: str) -> None:
    """A writer replaces a random batch of rows (delete it, insert a new one) per transaction, so
    every committed state holds exactly LIVE batches of SIZE rows. Ranges reading different states
    would see a deleted batch in one range and its replacement in another. In WAL mode nothing
    makes the ranges begin at one commit: such a database is read on one connection."""
    live, size = 200, 20
    path, stop = tmp_path / "ledger.db", tmp_path / "stop"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA journal_mode = {mode}")
        db.execute("CREATE TABLE ledger (batch INTEGER, n INTEGER, pad TEXT)")
        db.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?)", [(b, g, "x" * 60) for b in range(1, live + 1) for g in range(size)]
        )
    reader = connector(path, partition_rows=100, max_partitions=4)
    reader.columns(SourceObject(table="ledger"))  # described before the writer starts, and kept
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(stop), str(live), str(size)], stdout=subprocess.PIPE, text=True
    )
    try:
        counts, split_reads = [], 0
        for read in range(40):  # every other read without a deadline: it waits lock_wait for a commit
            deadline = None if read % 2 else time.monotonic() + 30
            stream = open_scan(reader, SourceObject(table="ledger"), deadline=deadline)
            per_batch = Counter(batch for batch, _, _ in rows(stream))
            split_reads += stream.detail is not None
            counts.append((len(per_batch), set(per_batch.values())))
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
        reader.close()
    assert writer.returncode == 0
    assert int(out) > 20  # batches were replaced while the reads ran
    # reads were split meanwhile (a split given up reads on one connection); a WAL database never is
    assert split_reads > 0 if mode == "delete" else split_reads == 0
    assert counts == [(live, {size})] * len(counts)


def test_an_error_in_one_range_fails_the_read(parted: SqliteConnector) -> None:
    """SQLite's ``abs()`` of the smallest integer overflows: only the last range holds that row."""
    stream = open_scan(
        parted, SourceObject(table="orders"), "abs(CASE WHEN id = 19999 THEN -9223372036854775808 ELSE id END) > 0"
    )
    with pytest.raises(SourceError, match=r"^\[shop/sqlite:.*integer overflow"):
        rows(stream)


def test_connections_go_back_to_the_pool_outside_any_transaction_and_unbound(database: Path) -> None:
    reader = connector(database, partition_rows=1_000, max_partitions=3, pool_size=4)
    try:
        stream = open_scan(reader, SourceObject(table="orders"), deadline=time.monotonic() + 30)
        assert sum(rows(stream).values()) == ROWS
        assert stream.detail is not None
        idle = list(reader._pool._idle)
        assert len(idle) == 3
        for connection in idle:
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout")
                assert cursor.fetchone() == (5_000,)  # lock_wait's default, not the scan's deadline
                cursor.execute("BEGIN")  # fails inside a transaction
                cursor.execute("ROLLBACK")
        with sqlite3.connect(database, timeout=0) as db:  # and no lock is left: a writer commits at once
            db.execute("CREATE TABLE IF NOT EXISTS scratch (a INTEGER)")
            db.execute("INSERT INTO scratch VALUES (1)")
    finally:
        reader.close()


def test_partition_options_are_checked(database: Path) -> None:
    with pytest.raises(ConfigError, match="connector option max_partitions must be an integer >= 1"):
        connector(database, max_partitions=0)
    with pytest.raises(ConfigError, match="connector option partition_rows must be an integer >= 1"):
        connector(database, partition_rows="many")
    with pytest.raises(ConfigError, match="connector option max_partitions must be at most 32"):
        connector(database, max_partitions=10_000)
    with pytest.raises(ConfigError, match="connector option lock_wait must be a number of seconds from 0 to 60"):
        connector(database, lock_wait=-1)


def engine_beside_a_csv(tmp_path: Path, database: Path, *products: str) -> Engine:
    """An engine over ``products`` of the database (read in ranges of 1,000 rowids) and ``ref.names`` (a CSV file)."""
    (tmp_path / "names.csv").write_text("k,name\n" + "".join(f"{k},name {k}\n" for k in range(7)))
    config = tmp_path / "mesh.yaml"
    config.write_text(
        "domains:\n  - name: shop\n"
        f"    connector: {{type: sqlite, path: '{database}', partition_rows: 1000, max_partitions: 4}}\n"
        "    products:\n"
        + "".join(f"      - {{name: {name}, source: {name}}}\n" for name in products)
        + f"  - name: ref\n    connector: {{type: csv, path: '{tmp_path}'}}\n"
        "    products:\n      - {name: names, source: names.csv}\n"
    )
    return Engine(MeshCatalog(load_config(config)))


def sqlite_queries(engine: Engine, sql: str) -> list[str]:
    """What EXPLAIN ANALYZE of ``sql`` says of its SQLite queries."""
    plan = engine.run(f"EXPLAIN ANALYZE {sql}", CallerContext(user="root")).read_all().to_pydict()
    return [text for kind, text in zip(plan["plan_type"], plan["plan"], strict=True) if "shop/sqlite" in kind]


def test_explain_analyze_names_the_ranges_of_a_split_read(tmp_path: Path, database: Path) -> None:
    """Through the engine: a federated query (a SQLite table beside a CSV file) reads the table in ranges."""
    engine = engine_beside_a_csv(tmp_path, database, "orders")
    sql = "SELECT id, note FROM shop.orders WHERE x >= 100 UNION ALL SELECT k, name FROM ref.names"
    try:
        result = engine.run(sql, CallerContext(user="root")).read_all()
        assert sorted(result.column("id").to_pylist()) == sorted([*range(200, ROWS + 1), *range(7)])
        texts = sqlite_queries(engine, sql)
        assert len(texts) == 1 and texts[0].endswith(f"\n  {SPLIT}"), texts
    finally:
        engine.close()


def test_a_federated_query_reads_its_pushed_sqlite_join_in_ranges(tmp_path: Path, database: Path) -> None:
    """Through the engine: two SQLite tables joined beside a CSV file go to SQLite as one join, read in ranges."""
    engine = engine_beside_a_csv(tmp_path, database, "orders", "kinds")
    sql = (
        "SELECT o.id, d.label, n.name FROM shop.orders o JOIN shop.kinds d ON o.k = d.k"
        " JOIN ref.names n ON n.k = d.k WHERE o.x > 10"
    )
    try:
        result = engine.run(sql, CallerContext(user="root")).read_all().to_pylist()
        assert sorted((r["id"], r["label"], r["name"]) for r in result) == [
            (i, f"kind {i % 7}", f"name {i % 7}") for i in range(21, ROWS + 1)
        ]
        texts = sqlite_queries(engine, sql)
        assert len(texts) == 1 and "JOIN" in texts[0] and texts[0].endswith(f"\n  {SPLIT}"), texts
    finally:
        engine.close()


def test_a_file_replaced_at_its_path_is_read_anew(tmp_path: Path) -> None:
    """A product published by renaming a new file over the old one: pooled connections still hold the
    old file open, and are replaced rather than read (a split read and a read on one connection)."""

    def publish(version: int) -> None:
        building = tmp_path / "building.db"
        with sqlite3.connect(building) as db:
            db.execute("CREATE TABLE facts (n INTEGER, version INTEGER)")
            db.executemany("INSERT INTO facts VALUES (?, ?)", [(i, version) for i in range(5_000)])
            db.execute("CREATE INDEX facts_n ON facts (n)")
        building.replace(tmp_path / "facts.db")

    publish(1)
    reader = connector(tmp_path / "facts.db", partition_rows=1_000, max_partitions=4)
    try:
        for version in (1, 2, 3):
            if version > 1:
                publish(version)
            for predicate in (None, "n = 7"):  # split in ranges, then on one connection (SQLite's index)
                stream = open_scan(reader, SourceObject(table="facts"), predicate)
                assert {row[1] for row in rows(stream)} == {version}
                assert (stream.detail is not None) == (predicate is None)
    finally:
        reader.close()


def test_a_read_filtered_by_a_key_set_is_read_in_ranges(tmp_path: Path) -> None:
    """A run-time filter's key set reaches SQLite as ``IN (SELECT value FROM JSON_EACH(...))``, a table of
    the query too: the range goes on the product's table (it failed: "a range needs a query reading its
    table once, not 2 times"). Found comparing query shapes against DataFusion over the same rows."""
    path = tmp_path / "facts.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE facts (id INTEGER PRIMARY KEY, g INTEGER, v INTEGER)")  # no index on g
        db.executemany(
            "INSERT INTO facts VALUES (?, ?, ?)", [(i, i % 5_000, (i * 7919) % 1_000) for i in range(1, ROWS + 1)]
        )
    engine = engine_beside_a_csv(tmp_path, path, "facts")
    sql = "SELECT count(*) AS n FROM shop.facts f WHERE f.v > (SELECT avg(f2.v) FROM shop.facts f2 WHERE f2.g = f.g)"
    groups: dict[int, list[int]] = {}
    for i in range(1, ROWS + 1):
        groups.setdefault(i % 5_000, []).append((i * 7919) % 1_000)
    expected = sum(
        1 for i in range(1, ROWS + 1) if (i * 7919) % 1_000 > sum(groups[i % 5_000]) / len(groups[i % 5_000])
    )
    try:
        assert engine.run(sql, CallerContext(user="root")).read_all().to_pylist() == [{"n": expected}]
        texts = sqlite_queries(engine, sql)
        assert any("JSON_EACH" in text and text.endswith(f"\n  {SPLIT}") for text in texts), texts
    finally:
        engine.close()
