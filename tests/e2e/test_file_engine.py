"""Whole queries that aggregate Parquet products run in DuckDB (connectors/file_engine.py).

Every answer is compared with DataFusion's own (the same engine with the file engine off), value
for value and type for type, through the engine and through the ADBC Flight SQL driver; EXPLAIN
says which route each query took. Decimals are negative, NULL and many-digited where the two
engines could round apart (averages truncate toward zero in DataFusion).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.errors import MeshgateError
from gateway.flightsql import FlightSqlServer
from tests.support.errors import assert_clean
from tests.support.gateway import query_served, serving

ROOT = CallerContext(user="root")
ALICE = CallerContext(user="alice")
ENGINE_ROUTE = "single source: the whole query runs in domain 'logi' (duckdb"

MESH = """domains:
  - name: logi
    connector: {type: parquet, path: parquet}
  - name: ref
    connector: {type: csv, path: csv}
  - name: shop
    connector: {type: sqlite, path: shop.db}
"""
POLICIES = """policies:
  roles:
    admin: [root]
    analyst: [alice]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "logi.*"}
    - {role: analyst, on: "shop.stock"}
  row_filters:
    - {on: logi.items, where: "grp <> 'c'", except: [admin]}
"""


def items(rows: int = 3000, shift: int = 0) -> pa.Table:
    """Groups a-d; amounts with two decimals, negative and NULL ones among them."""
    ids = list(range(rows))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "grp": pa.array(["abcd"[(i + shift) % 4] for i in ids]),
            "amount": pa.array(
                [None if i % 17 == 0 else Decimal(((i * 7919) % 20011 - 10005) + shift) / 100 for i in ids],
                pa.decimal128(12, 2),
            ),
            "rate": pa.array([Decimal((i * 104729) % 1000003) / 10**9 for i in ids], pa.decimal128(18, 9)),
            "qty": pa.array([i % 50 for i in ids], pa.int32()),
            "price": pa.array([i * 0.37 for i in ids], pa.float64()),
            "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in ids], pa.date32()),
        }
    )


@dataclass
class Mesh:
    root: Path
    engine: Engine
    datafusion: Engine  # the same mesh with the file engine off: the reference
    uri: str

    def publish(self, table: pa.Table) -> None:
        staged = self.root / "parquet" / ".items.tmp"
        pq.write_table(table, staged, row_group_size=1000)
        os.replace(staged, self.root / "parquet" / "items.parquet")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    (tmp_path / "parquet" / "parts").mkdir(parents=True)
    (tmp_path / "csv").mkdir()
    table = items()
    pq.write_table(table, tmp_path / "parquet" / "items.parquet", row_group_size=1000)
    for part in range(2):
        pq.write_table(table.slice(part * 1500, 1500), tmp_path / "parquet" / "parts" / f"part-{part}.parquet")
    table.select(["id", "grp", "qty"]).to_pandas().to_csv(tmp_path / "csv" / "items.csv", index=False)
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("CREATE TABLE groups (grp TEXT NOT NULL, label TEXT NOT NULL)")
        connection.executemany("INSERT INTO groups VALUES (?, ?)", [(g, g.upper()) for g in "abcd"])
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        connection.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"order {i}") for i in range(20_000)])
        connection.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, level INTEGER NOT NULL)")
        connection.executemany("INSERT INTO stock VALUES (?, ?)", [(i, i % 7) for i in range(40_000)])
    for name in ("mesh", "governed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mesh.yaml").write_text(MESH.replace("path: ", f"path: {tmp_path}/"))
    (tmp_path / "governed" / "platform.yaml").write_text(POLICIES)
    config = load_config(tmp_path / "mesh")
    engine = Engine.from_config(config)
    datafusion = Engine.from_config(config, EngineSettings(file_engine=False))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    with serving(server):
        yield Mesh(tmp_path, engine, datafusion, f"grpc://127.0.0.1:{server.port}")
    engine.close()
    datafusion.close()


def route(engine: Engine, sql: str, caller: CallerContext = ROOT) -> str:
    rows = engine.run(f"EXPLAIN {sql}", caller).read_all().to_pylist()
    return next(str(row["plan"]) for row in rows if row["plan_type"] == "route")


def same_answer(mesh: Mesh, sql: str, caller: CallerContext = ROOT) -> pa.Table:
    """``sql``'s answer, equal (values and types) to DataFusion's own (as sets without ORDER BY)."""
    answer = mesh.engine.run(sql, caller).read_all()
    expected = mesh.datafusion.run(sql, caller).read_all()
    assert answer.schema == expected.schema
    if "ORDER BY" in sql:
        assert answer.to_pylist() == expected.to_pylist()
    else:
        assert sorted(map(repr, answer.to_pylist())) == sorted(map(repr, expected.to_pylist()))
    return answer


ROUTED = [
    pytest.param(
        "SELECT grp, sum(amount) AS s, avg(amount) AS a, min(amount) AS lo, max(amount) AS hi, count(amount) AS n,"
        " count(*) AS rows FROM logi.items GROUP BY grp ORDER BY grp",
        id="decimal-aggregates",
    ),
    pytest.param(
        "SELECT grp, avg(rate) AS a, sum(rate * amount) AS weighted FROM logi.items WHERE qty < 20 GROUP BY grp"
        " ORDER BY grp",
        id="nine-digit-average",
    ),
    pytest.param(
        "SELECT sum(amount * (1 - rate)) AS net FROM logi.items WHERE day >= DATE '2024-03-01'"
        " AND rate BETWEEN 0.0001 - 0.00005 AND 0.0005 + 0.0001",
        id="folded-constants",
    ),
    pytest.param(
        "SELECT avg(amount) AS a FROM logi.items WHERE amount < 0 AND id % 3 = 1", id="negative-average-truncates"
    ),
    pytest.param("SELECT avg(amount) AS a, count(*) AS n FROM logi.items WHERE id < 0", id="no-rows"),
    # A count of a filtered read reads no column: written as a derived table selecting nothing,
    # which DuckDB refused ("SELECT clause without selection list") before gateway/planner.py's
    # selecting_something.
    pytest.param("SELECT count(*) AS n FROM logi.items WHERE qty = 3", id="count-of-a-filtered-read"),
    pytest.param(
        "SELECT count(*) AS n FROM logi.items WHERE qty > 3 AND day >= DATE '2024-06-01'", id="count-of-two-filters"
    ),
    pytest.param(
        "SELECT qty, count(*) AS n, max(day) AS last, sum(qty) AS q FROM logi.items GROUP BY qty"
        " HAVING count(*) > 10 ORDER BY qty DESC LIMIT 5",
        id="having-and-top",
    ),
    # The optimised plan of an aliased subquery over a filtered read was unparsed as
    # FROM ... AS "r" WHERE "items"."amount" > 0, which DuckDB refused ("Referenced table not found").
    pytest.param(
        "SELECT count(*) AS n, sum(amount) AS s FROM (SELECT id, amount FROM logi.items WHERE amount > 0) r",
        id="aliased-subquery",
    ),
    pytest.param(
        "WITH r AS (SELECT grp, amount FROM logi.items WHERE amount > 0) SELECT grp, sum(amount) AS s FROM r"
        " GROUP BY grp ORDER BY grp",
        id="common-table-expression",
    ),
    # Long lists, as the run-time filters write them, are set aside while the query is checked
    # (gateway/literal_lists.py): every key must still reach DuckDB.
    pytest.param(
        "SELECT grp, count(*) AS n, sum(amount) AS s FROM logi.items"
        f" WHERE id IN ({', '.join(str(i) for i in range(5, 3000, 37))})"
        f" AND grp IN ('b', 'd', {', '.join(repr(f'x{i}') for i in range(20))})"
        f" AND qty NOT IN ({', '.join(str(i) for i in range(0, 50, 2))}) GROUP BY grp ORDER BY grp",
        id="long-in-lists",
    ),
]


@pytest.mark.parametrize("sql", ROUTED)
def test_an_aggregate_over_parquet_runs_in_duckdb_with_datafusions_answer(mesh: Mesh, sql: str) -> None:
    assert route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    answer = same_answer(mesh, sql)
    with flightsql.connect(mesh.uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        assert cursor.fetch_arrow_table().to_pylist() == answer.to_pylist()


def test_an_average_of_a_third_truncates_toward_zero(mesh: Mesh) -> None:
    three = items(3)
    amounts = pa.array([Decimal("-0.01"), Decimal("0.00"), Decimal("0.00")], pa.decimal128(12, 2))
    mesh.publish(three.set_column(three.schema.get_field_index("amount"), "amount", amounts))
    sql = "SELECT avg(amount) AS a FROM logi.items"
    assert route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    assert same_answer(mesh, sql).to_pylist() == [{"a": Decimal("-0.003333")}]


NOT_ROUTED = [
    pytest.param("SELECT sum(amount) / sum(qty) AS r FROM logi.items", id="division"),
    pytest.param("SELECT sum(CAST(price AS DECIMAL(10, 1))) AS s FROM logi.items", id="decimal-cast-of-a-column"),
    pytest.param("SELECT id, amount FROM logi.items WHERE qty = 3 ORDER BY id", id="no-aggregate"),
    pytest.param("SELECT sum(price) AS s, max(price) AS m FROM logi.items", id="floating-point"),
    pytest.param("SELECT avg(qty) AS a FROM logi.items", id="average-of-integers"),
    pytest.param(
        # Constants DataFusion folds, and no projection above the grouping: its unparser writes the
        # aggregates first, and the two integer columns would arrive swapped.
        "SELECT qty, max(id) FROM logi.items WHERE rate > 0.0002 - 0.0001 GROUP BY qty",
        id="bare-grouping",
    ),
    pytest.param(
        "SELECT upper(grp) AS g, count(*) AS n FROM logi.items GROUP BY upper(grp) ORDER BY g", id="other-function"
    ),
    pytest.param("SELECT count(*) AS n, sum(qty) AS q FROM logi.parts", id="folder-product"),
    pytest.param("SELECT grp, sum(qty) AS q FROM ref.items GROUP BY grp ORDER BY grp", id="csv-product"),
    pytest.param(
        "SELECT g.label, sum(i.amount) AS s FROM logi.items AS i JOIN shop.groups AS g ON i.grp = g.grp"
        " GROUP BY g.label ORDER BY g.label",
        id="join-with-a-sql-source",
    ),
]


@pytest.mark.parametrize("sql", NOT_ROUTED)
def test_what_duckdb_would_answer_otherwise_stays_in_datafusion(mesh: Mesh, sql: str) -> None:
    assert not route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    same_answer(mesh, sql)


def test_a_product_a_policy_narrows_is_never_sent(mesh: Mesh) -> None:
    sql = "SELECT grp, count(*) AS n FROM logi.items GROUP BY grp ORDER BY grp"
    governed = Engine.from_config(load_config(mesh.root / "governed"))
    try:
        assert route(governed, sql, ROOT).startswith(ENGINE_ROUTE)  # exempt: the file as it is
        assert not route(governed, sql, ALICE).startswith(ENGINE_ROUTE)
        assert [row["grp"] for row in governed.run(sql, ALICE).read_all().to_pylist()] == ["a", "b", "d"]
        assert [row["grp"] for row in governed.run(sql, ROOT).read_all().to_pylist()] == ["a", "b", "c", "d"]
    finally:
        governed.close()


def test_a_new_version_of_the_file_is_what_duckdb_reads(mesh: Mesh) -> None:
    sql = "SELECT count(*) AS n, sum(amount) AS s FROM logi.items"
    before = same_answer(mesh, sql).to_pylist()
    mesh.publish(items(1200, shift=1))
    after = same_answer(mesh, sql).to_pylist()
    assert route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    assert before[0]["n"] == 3000 and after[0]["n"] == 1200


def test_duckdb_reads_each_files_footer_once(mesh: Mesh) -> None:
    """A file's Parquet metadata is kept for the next query (DuckDB's ``parquet_metadata_cache``),
    and a new version of the file, held under a path of its own, is read afresh (the test above)."""
    sql = "SELECT count(*) AS n FROM logi.items WHERE qty = 3"
    assert route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    assert same_answer(mesh, sql).to_pylist() == [{"n": 60}]
    cursor = mesh.engine._duckdb_files.cursor()
    assert cursor.execute("SELECT current_setting('parquet_metadata_cache')").fetchall() == [(True,)]
    kept = cursor.execute("SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'OBJECT_CACHE'").fetchone()
    assert kept is not None and kept[0] > 0


def test_a_file_that_no_longer_matches_is_a_clean_error(mesh: Mesh) -> None:
    mesh.publish(items(10).drop_columns(["rate"]))
    with pytest.raises(Exception, match=r"logi.*items.*rate") as raised:
        mesh.engine.run("SELECT sum(amount) AS s FROM logi.items", ROOT).read_all()
    assert "Traceback" not in str(raised.value)


def test_a_long_aggregate_in_duckdb_ends_at_its_deadline(mesh: Mesh) -> None:
    sql = "SELECT count(*) AS n FROM logi.items AS a, logi.items AS b, logi.items AS c WHERE a.qty + b.qty < c.qty"
    assert route(mesh.engine, sql).startswith(ENGINE_ROUTE)
    started = time.monotonic()
    with pytest.raises(MeshgateError, match=r"deadline|time") as raised:
        query = mesh.engine.prepare(sql, ROOT)
        mesh.engine.execute(query, ROOT, deadline=time.monotonic() + 0.5).read_all()
    assert time.monotonic() - started < 5, "DuckDB was not interrupted"
    assert_clean(str(raised.value))
    assert str(raised.value).startswith("[logi/duckdb]")  # the domain whose files it read
    assert same_answer(mesh, "SELECT count(*) AS n FROM logi.items").to_pylist() == [{"n": 3000}]  # it serves on


def test_a_repeated_aggregate_runs_its_cached_route_until_the_file_changes(mesh: Mesh) -> None:
    sql = "SELECT grp, count(*) AS n, sum(amount) AS s FROM logi.items WHERE qty = ? GROUP BY grp ORDER BY grp"
    engine = mesh.engine

    def run(qty: int) -> list[dict[str, object]]:
        query = engine.prepare(sql, ROOT)
        parameters = pa.record_batch([pa.array([qty], pa.int64())], names=["qty"])
        rows: list[dict[str, object]] = engine.execute(query, ROOT, parameters).read_all().to_pylist()
        expected = mesh.datafusion.run(sql.replace("?", str(qty)), ROOT).read_all().to_pylist()
        assert rows == expected
        return rows

    run(3)
    plannings, routed = engine.plans.plannings, engine.plans.routed
    assert [row["n"] for row in run(3)] == [30, 30] and [row["n"] for row in run(4)] == [30, 30]
    assert (engine.plans.plannings, engine.plans.routed) == (plannings, routed + 2)  # DuckDB, no planning
    mesh.publish(items(1200, shift=1))
    assert [row["n"] for row in run(3)] == [12, 12]  # the new file: planned again, not the old route
    assert engine.plans.plannings > plannings


# -- parts of federated queries ------------------------------------------------------------------

SHARED = (
    # An aggregate read twice (gateway/plan/shared_subplans.py) is computed once, ahead: in DuckDB.
    # No projection above its grouping, and two BIGINT columns: written as planned, DuckDB's
    # answer would come back with the aggregate first, the columns swapped.
    "WITH t AS (SELECT id, sum(qty) AS s FROM logi.items WHERE day >= DATE '2024-12-01' GROUP BY id)"
    " SELECT g.label, t.id, t.s FROM t JOIN shop.groups AS g ON g.grp = CASE WHEN t.s < 25 THEN 'a' ELSE 'b' END"
    " WHERE t.s > (SELECT avg(s) FROM t) ORDER BY t.id"
)


def explained(engine: Engine, sql: str, caller: CallerContext = ROOT) -> list[tuple[str, str]]:
    rows = engine.run(f"EXPLAIN ANALYZE {sql}", caller).read_all().to_pylist()
    return [(str(row["plan_type"]), str(row["plan"])) for row in rows]


def test_an_aggregate_a_federated_query_runs_ahead_runs_in_duckdb(mesh: Mesh) -> None:
    plan = explained(mesh.engine, SHARED)
    assert "file_engine" in dict(plan)["route"] and "shared_subplans" in dict(plan)["route"]
    engine_reads = [text for kind, text in plan if kind.startswith("source_query[logi/duckdb")]
    assert len(engine_reads) == 1 and "READ_PARQUET" in engine_reads[0] and "GROUP BY" in engine_reads[0]
    answer = same_answer(mesh, SHARED)
    assert answer.num_rows > 10 and all(row["s"] > 24 for row in answer.to_pylist())
    with flightsql.connect(mesh.uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(SHARED)
        assert cursor.fetch_arrow_table().to_pylist() == answer.to_pylist()


def test_a_part_run_ahead_never_reads_a_product_a_policy_narrows_in_duckdb(mesh: Mesh) -> None:
    sql = (
        "WITH t AS (SELECT grp, sum(qty) AS s, count(*) AS n FROM logi.items GROUP BY grp)"
        " SELECT grp, s, n FROM t WHERE n >= (SELECT max(n) FROM t) - 100 ORDER BY grp"
    )
    governed = Engine.from_config(load_config(mesh.root / "governed"))
    try:
        assert route(governed, sql, ROOT).startswith(ENGINE_ROUTE)  # exempt: whole, the file as it is
        plan = explained(governed, sql, ALICE)
        assert "file_engine" not in dict(plan)["route"] and not [kind for kind, _ in plan if "duckdb" in kind]
        assert [row["grp"] for row in governed.run(sql, ALICE).read_all().to_pylist()] == ["a", "b", "d"]
    finally:
        governed.close()


def test_a_small_join_input_over_parquet_runs_in_duckdb_and_filters_the_sql_source(mesh: Mesh) -> None:
    sql = (
        "SELECT o.id, o.note, i.amount FROM shop.orders AS o JOIN logi.items AS i ON o.id = i.id"
        " WHERE i.qty = 3 AND i.day < DATE '2024-06-01' ORDER BY o.id"
    )
    keys = [i for i in range(3000) if i % 50 == 3 and i % 400 < 152]  # qty = i % 50, day 152 is June 1st
    plan = explained(mesh.engine, sql)
    assert "file_engine" in dict(plan)["route"] and "runtime_filter" in dict(plan)["route"]
    (ahead,) = [text for kind, text in plan if kind.startswith("source_query[logi/duckdb")]
    assert "GROUP BY" not in ahead and f"rows={len(keys)} " in ahead
    (orders,) = [text for kind, text in plan if kind.startswith("source_query[shop/sqlite")]
    assert f"rows={len(keys)} " in orders  # the keys reached SQLite
    assert same_answer(mesh, sql).column("id").to_pylist() == keys


def test_a_part_run_ahead_over_a_file_that_no_longer_matches_is_a_clean_error(mesh: Mesh) -> None:
    mesh.publish(items(10).drop_columns(["qty"]))
    with pytest.raises(MeshgateError, match=r"logi.*items.*qty") as raised:
        mesh.engine.run(SHARED, ROOT).read_all()
    assert_clean(str(raised.value))
    mesh.publish(items())
    assert same_answer(mesh, SHARED).num_rows > 10  # it serves on


JOINED = (
    # The aggregate read twice is computed ahead (shared_subplans); the file's join with it then
    # runs in DuckDB too (gateway/plan/file_subplans.py), its scalar subquery over the computed
    # table included; the SQLite table's join stays in DataFusion.
    "WITH t AS (SELECT qty, sum(id) AS s, count(*) AS n FROM logi.items WHERE day < DATE '2024-06-01' GROUP BY qty)"
    " SELECT i.id, i.amount, t.s FROM logi.items AS i JOIN t ON i.qty = t.qty JOIN shop.stock AS k ON k.id = i.id"
    " WHERE t.s > (SELECT min(s) FROM t) AND k.level = 3"
)


def test_a_join_of_parquet_with_a_computed_table_runs_in_duckdb(mesh: Mesh) -> None:
    plan = explained(mesh.engine, JOINED)
    assert "file_subplans" in dict(plan)["route"]
    engine_reads = [text for kind, text in plan if kind.startswith("source_query[logi/duckdb")]
    (joined,) = [text for text in engine_reads if "JOIN" in text]
    assert 'FROM "shared" AS "shared" INNER JOIN READ_PARQUET(' in joined and "MIN(" in joined
    answer = same_answer(mesh, JOINED)
    assert answer.num_rows > 100 and "stock" not in joined  # SQLite's table is joined in DataFusion
    with flightsql.connect(mesh.uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(JOINED)
        assert sorted(map(repr, cursor.fetch_arrow_table().to_pylist())) == sorted(map(repr, answer.to_pylist()))


def test_a_join_duckdb_would_compute_otherwise_stays_in_datafusion(mesh: Mesh) -> None:
    # A decimal sum compared with an integer is cast to a decimal of another scale: DuckDB rounds
    # such casts its own way (connectors/file_engine.py), so the join is DataFusion's.
    sql = JOINED.replace("sum(id)", "sum(amount)").replace("(SELECT min(s) FROM t)", "(SELECT min(s) FROM t) + 10")
    plan = explained(mesh.engine, sql)
    assert "file_subplans" not in dict(plan)["route"] and "shared_subplans" in dict(plan)["route"]
    assert not [text for kind, text in plan if kind.startswith("source_query[logi/duckdb") and "JOIN" in text]
    assert same_answer(mesh, sql).num_rows > 10


def test_a_join_with_a_product_a_policy_narrows_is_never_sent_to_duckdb(mesh: Mesh) -> None:
    governed = Engine.from_config(load_config(mesh.root / "governed"))
    reference = Engine.from_config(load_config(mesh.root / "governed"), EngineSettings(file_engine=False))
    try:
        assert "file_subplans" in dict(explained(governed, JOINED, ROOT))["route"]  # exempt from the row filter
        assert not [kind for kind, _ in explained(governed, JOINED, ALICE) if "duckdb" in kind]
        answer = governed.run(JOINED, ALICE).read_all()
        expected = reference.run(JOINED, ALICE).read_all()
        assert sorted(map(repr, answer.to_pylist())) == sorted(map(repr, expected.to_pylist()))
        ids = answer.column("id").to_pylist()  # group c (id % 4 == 2) is filtered out for alice
        assert ids and not [i for i in ids if i % 4 == 2]
        assert [i for i in governed.run(JOINED, ROOT).read_all().column("id").to_pylist() if i % 4 == 2]
    finally:
        governed.close()
        reference.close()


def test_parts_run_ahead_by_queries_at_once_each_get_their_own_answer(mesh: Mesh) -> None:
    join = (
        "SELECT o.id, o.note FROM shop.orders AS o JOIN logi.items AS i ON o.id = i.id"
        " WHERE i.qty = {q} AND i.day < DATE '2024-06-01' ORDER BY o.id"
    )
    cases = [SHARED, JOINED, *(join.format(q=q) for q in (3, 7, 11))]
    expected = {sql: mesh.datafusion.run(sql, ROOT).read_all() for sql in cases}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for round_ in range(4):
                sql = cases[(offset + round_) % len(cases)]
                assert mesh.engine.run(sql, ROOT).read_all().equals(expected[sql]), sql
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors[0]
    assert "file_engine" in dict(explained(mesh.engine, cases[2]))["route"]
    assert "file_subplans" in dict(explained(mesh.engine, JOINED))["route"]


def test_an_offset_over_a_part_run_ahead_skips_its_rows_once(tmp_path: Path) -> None:
    """A source's few parts, the query's only source read, run first; the file engine then runs
    their join with the file's lines, ORDER BY, LIMIT and OFFSET included (TPC-H Q19's route). The
    optimised plan limits the sort to LIMIT + OFFSET rows, which DataFusion's unparser wrote as
    the LIMIT beside the OFFSET (``LIMIT 8 OFFSET 3``: three rows too many): such a part is left
    to DataFusion."""
    (tmp_path / "parquet").mkdir()
    (tmp_path / "csv").mkdir()
    lines = pa.table(
        {
            "part": pa.array([i % 500 for i in range(20_000)], pa.int64()),
            "qty": pa.array([(i * 7919) % 101 for i in range(20_000)], pa.int64()),
            "id": pa.array(range(20_000), pa.int64()),
        }
    )
    pq.write_table(lines, tmp_path / "parquet" / "lines.parquet", row_group_size=4000)
    with sqlite3.connect(tmp_path / "shop.db") as connection:
        connection.execute("CREATE TABLE parts (p INTEGER PRIMARY KEY, brand TEXT NOT NULL)")
        connection.executemany("INSERT INTO parts VALUES (?, ?)", [(i, f"b{i % 40}") for i in range(500)])
    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "mesh.yaml").write_text(MESH.replace("path: ", f"path: {tmp_path}/"))
    config = load_config(tmp_path / "mesh")
    engine, reference = Engine.from_config(config), Engine.from_config(config, EngineSettings(file_engine=False))
    sql = (
        "SELECT p.brand, l.id, l.qty FROM shop.parts AS p JOIN logi.lines AS l ON l.part = p.p"
        " WHERE p.brand = 'b7' ORDER BY l.qty DESC, l.id LIMIT 5 OFFSET 3"
    )
    try:
        assert "file_subplans" in route(engine, sql)
        answer = engine.run(sql, ROOT).read_all()
        assert answer.num_rows == 5 and answer.to_pylist() == reference.run(sql, ROOT).read_all().to_pylist()
        assert query_served(engine, sql).to_pylist() == answer.to_pylist()
    finally:
        engine.close()
        reference.close()
