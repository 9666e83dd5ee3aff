"""The engine against real sources: concurrency, failures, cancellation, error messages."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway import engine as engine_module
from gateway import planner
from gateway.api import CallerContext
from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.errors import (
    NotFoundError,
    PlanningError,
    QueryCancelledError,
    SourceError,
    SourceUnavailableError,
)
from gateway.plan import key_sets, runtime_filter, shared_reads
from gateway.scan import SourceQuery
from tests.support.postgres import wait_until_no_backend_runs


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Iterator[Engine]:
    directory = tmp_path_factory.mktemp("engine")
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.numbers AS SELECT g AS id FROM generate_series(1, 10) g")
        connection.commit()
    with sqlite3.connect(directory / "local.db") as connection:
        connection.execute("CREATE TABLE items (id INTEGER, label TEXT)")
        connection.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 21)])
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: left
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: numbers, source: {pg_schema}.numbers}}
      - {{name: slow, sql: "SELECT 1 AS x FROM pg_sleep(1)"}}
      - {{name: very_slow, sql: "SELECT g AS x FROM generate_series(1, 2) g, pg_sleep(30)"}}
      - {{name: failing, sql: "SELECT 10 / (id - 5) AS r FROM {pg_schema}.numbers"}}
  - name: right
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: slow, sql: "SELECT 1 AS x FROM pg_sleep(1)"}}
  - name: local
    connector: {{type: sqlite, path: local.db}}
  - name: offline
    connector: {{type: postgres, uri: "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1"}}
"""
    )
    catalog = MeshCatalog(load_config(directory / "mesh.yaml"))
    yield Engine(catalog)
    catalog.close()


def test_independent_sources_are_read_concurrently(mesh: Engine) -> None:
    execution = mesh.run("SELECT * FROM left.slow l JOIN right.slow r ON l.x = r.x")
    assert execution.read_all().num_rows == 1
    first, second = sorted(execution.source_queries, key=lambda q: q.started)
    assert first.finished is not None and second.finished is not None
    assert second.started < first.finished, "the second source query started only after the first finished"


def test_offline_domain_is_reported_and_others_keep_serving(mesh: Engine) -> None:
    assert mesh.run("SELECT count(*) AS n FROM local.items").read_all().column("n").to_pylist() == [20]
    with pytest.raises(SourceUnavailableError, match=r"offline") as raised:
        mesh.run("SELECT * FROM offline.anything")
    assert "127.0.0.1:1" in str(raised.value)


def test_source_error_while_running_names_domain_and_source(mesh: Engine) -> None:
    with pytest.raises(SourceError, match=r"\[left/postgres:.*\].*division by zero"):
        mesh.run("SELECT f.r, i.label FROM left.failing f JOIN local.items i ON i.id = f.r").read_all()
    # The engine (and the source's connection pool) keep working afterwards.
    assert mesh.run("SELECT count(*) AS n FROM left.numbers").read_all().column("n").to_pylist() == [10]


def test_cancel_stops_the_source_query(mesh: Engine, postgres_uri: str) -> None:
    execution = mesh.run("SELECT v.x, i.label FROM left.very_slow v JOIN local.items i ON i.id = v.x")
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            execution.read_all()
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    execution.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive(), "cancel did not stop the query"
    assert time.monotonic() - started < 10
    assert outcome and isinstance(outcome[0], QueryCancelledError), outcome
    assert wait_until_no_backend_runs(postgres_uri, "pg_sleep(30)"), "PostgreSQL is still running the cancelled query"


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        ("SELEC * FROM local.items", PlanningError, r"SQL syntax error at line 1, column 1: .*SELEC"),
        ("SELECT *\nFROM local.items\nWHERE id = = 3", PlanningError, r"SQL syntax error at line 3, column 12"),
        ("SELECT * FROM local.nope", NotFoundError, r"unknown data product 'local.nope' \(domain 'local' has: items\)"),
        ("SELECT * FROM nowhere.items", NotFoundError, r"unknown domain 'nowhere'.*domains: left, local, offline"),
        ("SELECT nope FROM local.items", PlanningError, r"No field named nope"),
    ],
)
def test_planning_errors_say_what_and_where(mesh: Engine, sql: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        mesh.run(sql)


def test_count_star_needs_no_columns_from_the_source(mesh: Engine) -> None:
    execution = mesh.run("SELECT count(*) AS n FROM left.numbers, local.items WHERE items.id < 4")
    assert execution.read_all().column("n").to_pylist() == [30]
    (numbers,) = [query.sql for query in execution.source_queries if query.domain == "left"]
    assert '"id"' not in numbers


def test_a_product_scanned_twice_with_different_filters(mesh: Engine) -> None:
    execution = mesh.run(
        "SELECT a.id AS a, b.id AS b FROM left.numbers a JOIN left.numbers b ON a.id = b.id + 1"
        " JOIN local.items i ON i.id = a.id WHERE a.id > 3 AND b.id < 8 ORDER BY a.id"
    )
    assert execution.read_all().to_pylist() == [{"a": a, "b": a - 1} for a in range(4, 9)]
    (sent,) = {q.sql for q in execution.source_queries if q.domain == "left"}
    assert " OR " in sent, "one source query serves both scans with the union of their rows"


def test_a_shared_expression_in_a_filter_still_reaches_the_source(mesh: Engine) -> None:
    """Common-subexpression elimination would move ``length(label)`` into a projection between
    the filter and the scan (``__common_expr_1 > 5``): queries of SQL sources are planned without it."""
    execution = mesh.run(
        "SELECT n.id, i.label FROM left.numbers n JOIN local.items i ON i.id = n.id"
        " WHERE length(i.label) > 5 AND length(i.label) < 7"
    )
    assert sorted(execution.read_all().column("id").to_pylist()) == list(range(1, 10))
    (items,) = [query for query in execution.source_queries if query.domain == "local"]
    assert "length(" in items.sql.lower() and items.rows == 9, items.sql


def test_a_query_of_files_only_keeps_common_subexpression_elimination(tmp_path: Path) -> None:
    """It spares recomputing shared expressions (``__common_expr``) where no SQL source needs the filters."""
    pq.write_table(pa.table({"p": [1.5, 2.5], "d": [0.1, 0.2]}), tmp_path / "t.parquet")
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: f\n    connector: {type: parquet, path: t.parquet}\n")
    catalog = MeshCatalog(load_config(tmp_path / "mesh.yaml"))
    try:
        sql = "SELECT sum(p * (1 - d)) AS a, sum(p * (1 - d) * 2) AS b FROM f.t"
        planned = Engine(catalog)._plan(sql, CallerContext(user="root"))
        assert "__common_expr" in planned.federated.display_indent()
    finally:
        catalog.close()


def test_scalar_subqueries_fetch_only_the_columns_they_need(mesh: Engine) -> None:
    execution = mesh.run("SELECT (SELECT count(*) FROM left.numbers) + (SELECT max(id) FROM local.items) AS n")
    assert execution.read_all().column("n").to_pylist() == [30]
    (numbers,) = [query.sql for query in execution.source_queries if query.domain == "left"]
    assert '"id"' not in numbers


def test_explain_shows_each_source_query(mesh: Engine) -> None:
    plan = dict(
        (row["plan_type"], row["plan"])
        for row in mesh.run(
            "EXPLAIN SELECT n.id, i.label FROM left.numbers n JOIN local.items i ON i.id = n.id WHERE n.id > 3"
        )
        .read_all()
        .to_pylist()
    )
    assert plan["route"].startswith("federated")
    left = next(text for kind, text in plan.items() if kind.startswith("source_query[left/"))
    assert "WHERE" in left and "> 3" in left


def test_unqualified_names_resolve_against_the_callers_default_domain(mesh: Engine) -> None:
    caller = CallerContext(user="u", default_schema="left")
    execution = mesh.run("SELECT count(*) AS n FROM numbers WHERE id > 2", caller)
    assert execution.read_all().column("n").to_pylist() == [8]
    (sent,) = [q.sql for q in execution.source_queries]
    assert "numbers" in sent and "> 2" in sent, "the whole query went to the source with the real table name"
    cte = mesh.run("WITH numbers AS (SELECT 1 AS id) SELECT count(*) AS n FROM numbers", caller)
    assert cte.read_all().column("n").to_pylist() == [1], "a CTE named like a product is the CTE"
    assert mesh.audit.records("u")[0].products == ["left.numbers"]


def test_a_product_in_a_scalar_subquery_and_outside_it(mesh: Engine, postgres_uri: str, pg_schema: str) -> None:
    """TPC-H Q22's shape: the subquery's scan must not reuse the outer scan's filter."""
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.amounts (v numeric(15,2))")
        cursor.execute(f"INSERT INTO {pg_schema}.amounts VALUES (-10), (5), (7), (-20)")
        connection.commit()
    folder = mesh.catalog.domain("left").config.file.parent
    config = folder / "amounts.yaml"
    config.write_text(
        f"domains:\n  - name: money\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: amounts, source: {pg_schema}.amounts}}\n"
    )
    engine = Engine(MeshCatalog(load_config(config)))
    try:
        result = engine.run(
            "SELECT count(*) AS n, sum(v) AS total FROM money.amounts WHERE v > (SELECT avg(v) FROM money.amounts WHERE v > 0.00)"
        ).read_all()
        assert result.to_pylist() == [{"n": 1, "total": Decimal("7.00")}]
    finally:
        engine.close()
        config.unlink()


def _beside_a_sqlite_row(mesh: Engine, domain: str, product: str, postgres_uri: str) -> Path:
    """A config of a PostgreSQL domain holding ``product`` and a one-row SQLite product ``one.one``
    (crossing it keeps a query federated), next to the mesh's files."""
    folder = mesh.catalog.domain("left").config.file.parent
    with sqlite3.connect(folder / "one.sqlite") as lite:
        lite.execute("CREATE TABLE IF NOT EXISTS one (k INTEGER)")
        lite.execute("DELETE FROM one")
        lite.execute("INSERT INTO one VALUES (1)")
    lite.close()
    config = folder / f"{domain}.yaml"
    config.write_text(
        f"domains:\n  - name: {domain}\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {product}\n"
        "  - name: one\n    connector: {type: sqlite, path: one.sqlite}\n"
        "    products:\n      - {name: one, source: one}\n"
    )
    return config


def test_scans_beside_a_scalar_subquery_fetch_only_the_columns_they_read(
    mesh: Engine, postgres_uri: str, pg_schema: str
) -> None:
    """Scans DataFusion filters in the gateway (here: next to a subquery kept as an expression)
    ask their source for the columns the plan and that filter read, not for every column."""
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.items (id int8, v numeric(15,2), flag text, note text)")
        cursor.execute(
            f"INSERT INTO {pg_schema}.items VALUES (1, -10, 'x', 'long'), (2, 5, 'x', 'long'), (3, 7, 'y', 'long'),"
            " (4, 9, 'x', 'long'), (5, -20, 'y', 'long')"
        )
        connection.commit()
    config = _beside_a_sqlite_row(mesh, "stock", f"{{name: items, source: {pg_schema}.items}}", postgres_uri)
    engine = Engine(MeshCatalog(load_config(config)))
    try:
        execution = engine.run(  # a second source keeps the query federated
            "SELECT count(*) AS n, max(i.id) AS top FROM stock.items i CROSS JOIN one.one"
            " WHERE substr(i.flag, 1, 1) = 'x' AND i.v > (SELECT avg(v) FROM stock.items WHERE v > 0.00)"
        )
        assert execution.read_all().to_pylist() == [{"n": 1, "top": 4}]
        sent = [query.sql for query in execution.source_queries if "items" in query.sql]
        assert len(sent) == 2 and not any("note" in sql for sql in sent), sent
        assert any('"flag"' in sql and '"id"' in sql for sql in sent), sent
    finally:
        engine.close()
        config.unlink()


def test_a_scalar_subquery_no_longer_keeps_the_other_scans_from_pushing_down(
    mesh: Engine, postgres_uri: str, pg_schema: str
) -> None:
    """TPC-H Q11/Q22's shape: the subquery's scan of a product is a scan of its own, so both the
    query's and the subquery's scans send their filters to the source, and the answer stays."""
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.stock (id int8, v numeric(15,2), flag text)")
        cursor.execute(
            f"INSERT INTO {pg_schema}.stock SELECT g, (g % 50) - 20, CASE WHEN g % 3 = 0 THEN 'x' ELSE 'y' END"
            " FROM generate_series(1, 300) g"
        )
        connection.commit()
    config = _beside_a_sqlite_row(mesh, "store", f"{{name: stock, source: {pg_schema}.stock}}", postgres_uri)
    engine = Engine(MeshCatalog(load_config(config)))
    sql = (
        "SELECT count(*) AS n, sum(s.v) AS total FROM store.stock s CROSS JOIN one.one"
        " WHERE s.flag = 'x' AND s.v > (SELECT avg(v) FROM store.stock WHERE v > 0.00 AND id < 200)"
    )
    try:
        execution = engine.run(sql)
        answer = execution.read_all().to_pylist()
        queries = [q for q in execution.source_queries if "stock" in q.sql]
        outer = next(q for q in queries if "flag" in q.sql)
        inner = next(q for q in queries if q is not outer)
        assert "WHERE" in outer.sql and "'x'" in outer.sql and outer.rows == 100, outer.sql
        assert "< 200" in inner.sql and "> 0" in inner.sql and inner.rows < 200, inner.sql
        assert "subquery_scans" in engine.run("EXPLAIN " + sql).read_all().to_pylist()[0]["plan"]
    finally:
        engine.close()
        config.unlink()
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:  # the same query, in PostgreSQL
        cursor.execute(
            f"SELECT count(*), sum(v) FROM {pg_schema}.stock WHERE flag = 'x'"
            f" AND v > (SELECT avg(v) FROM {pg_schema}.stock WHERE v > 0.00 AND id < 200)"
        )
        (n, total) = cursor.fetchone()
    assert answer == [{"n": n, "total": Decimal(total)}] and n > 0


def test_keys_cascade_from_a_file_through_a_small_source_table_to_a_big_one(tmp_path: Path) -> None:
    """TPC-H Q11's shape: the nation picked from a CSV file filters supplier (SQLite), and the
    keys of the suppliers left then filter partsupp's query, which returns only their rows."""
    (tmp_path / "nation.csv").write_text("n_nationkey,n_name\n" + "".join(f"{i},n{i}\n" for i in range(25)))
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE supplier (s_suppkey INTEGER PRIMARY KEY, s_nationkey INTEGER)")
        lite.executemany("INSERT INTO supplier VALUES (?, ?)", [(s, s % 25) for s in range(2000)])
        lite.execute("CREATE TABLE partsupp (ps_partkey INTEGER, ps_suppkey INTEGER, ps_qty INTEGER)")
        lite.executemany("INSERT INTO partsupp VALUES (?, ?, ?)", [(p, p % 2000, p % 7) for p in range(80_000)])
    lite.close()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: reference\n    connector: {type: csv, path: .}\n"
        "    products:\n      - {name: nation, source: nation.csv}\n"
        "  - name: procurement\n    connector: {type: sqlite, path: parts.sqlite}\n"
        "    products:\n      - {name: supplier, source: supplier}\n      - {name: partsupp, source: partsupp}\n"
    )
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    sql = (
        "SELECT ps_partkey % 3 AS g, sum(ps_qty) AS q FROM procurement.partsupp"
        " JOIN procurement.supplier ON ps_suppkey = s_suppkey JOIN reference.nation ON s_nationkey = n_nationkey"
        " WHERE n_name = 'n7' GROUP BY 1 ORDER BY 1"
    )
    try:
        execution = engine.run(sql)
        answer = execution.read_all().to_pylist()
        partsupp = next(q for q in execution.source_queries if "partsupp" in q.sql)
        assert " IN (" in partsupp.sql and partsupp.rows == 80_000 // 25, partsupp.sql[:300]
        assert "cascaded_runtime_filter" in engine.run("EXPLAIN " + sql).read_all().to_pylist()[0]["plan"]
    finally:
        engine.close()
    expected: dict[int, int] = {}
    for p in range(80_000):
        if (p % 2000) % 25 == 7:
            expected[p % 3] = expected.get(p % 3, 0) + p % 7
    assert answer == [{"g": g, "q": q} for g, q in sorted(expected.items())]


def test_more_keys_than_a_list_holds_reach_the_source_as_their_range(tmp_path: Path) -> None:
    """1,500 distinct keys from a Parquet file (more than MAX_KEYS) filter the SQLite table's
    query as ``key >= min AND key <= max``: it returns the 1,500 rows of that range, not 40,000."""
    pq.write_table(pa.table({"k": pa.array(range(2000, 3500), pa.int64())}), tmp_path / "keys.parquet")
    with sqlite3.connect(tmp_path / "big.sqlite") as lite:
        lite.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, v INTEGER)")
        lite.executemany("INSERT INTO events VALUES (?, ?)", [(i, i % 11) for i in range(40_000)])
    lite.close()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: picks\n    connector: {type: parquet, path: keys.parquet}\n"
        "  - name: store\n    connector: {type: sqlite, path: big.sqlite}\n"
    )
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    try:
        execution = engine.run("SELECT sum(v) AS s, count(*) AS n FROM store.events JOIN picks.keys ON id = k")
        answer = execution.read_all().to_pylist()
        (events,) = [q for q in execution.source_queries if q.domain == "store"]
    finally:
        engine.close()
    assert answer == [{"s": sum(i % 11 for i in range(2000, 3500)), "n": 1500}]
    assert ">= 2000" in events.sql and "<= 3499" in events.sql and events.rows == 1500, events.sql


def test_a_sources_filtered_keys_reach_another_table_joined_on_the_same_key(tmp_path: Path) -> None:
    """TPC-H Q9's shape: the green parts (SQLite) join lineitem (Parquet), which joins partsupp
    (SQLite) on the same part key: the 1,500 green part keys reach partsupp's query as a key set,
    which returns their 6,000 rows, not 80,000."""
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE part (p_partkey INTEGER PRIMARY KEY, p_name TEXT)")
        names = [(p, "green box" if p % 40 < 3 else "red box") for p in range(20_000)]
        lite.executemany("INSERT INTO part VALUES (?, ?)", names)
        lite.execute("CREATE TABLE partsupp (ps_partkey INTEGER, ps_suppkey INTEGER, ps_cost INTEGER)")
        lite.executemany(
            "INSERT INTO partsupp VALUES (?, ?, ?)", [(p, s, p % 9 + s) for p in range(20_000) for s in range(4)]
        )
    lite.close()
    lines = pa.table({"l_partkey": [i % 20_000 for i in range(60_000)], "l_suppkey": [i % 4 for i in range(60_000)]})
    sql = (
        "SELECT count(*) AS n, sum(ps_cost) AS cost FROM procurement.part, procurement.partsupp, logistics.lineitem"
        " WHERE ps_suppkey = l_suppkey AND ps_partkey = l_partkey AND p_partkey = l_partkey AND p_name LIKE '%green%'"
    )
    engine = Engine(MeshCatalog(load_config(_procurement_mesh(tmp_path, lines))))
    try:
        execution = engine.run(sql)
        answer = execution.read_all().to_pylist()
        partsupp = next(q for q in execution.source_queries if "partsupp" in q.sql)
    finally:
        engine.close()
    green = [i for i in range(60_000) if (i % 20_000) % 40 < 3]
    assert answer == [{"n": len(green), "cost": sum((i % 20_000) % 9 + i % 4 for i in green)}]
    assert "JSON_EACH(" in partsupp.sql.upper() and partsupp.rows == 1_500 * 4, partsupp.sql[:300]


def _parts_and_lines(tmp_path: Path) -> tuple[Path, str]:
    """5,000 parts in SQLite, 100,000 lines in Parquet, and TPC-H Q17's shape over them."""
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE part (p_partkey INTEGER PRIMARY KEY, p_brand TEXT)")
        lite.executemany("INSERT INTO part VALUES (?, ?)", [(p, f"b{p % 50}") for p in range(5_000)])
    lite.close()
    lines = pa.table({"l_partkey": [i % 5_000 for i in range(100_000)], "l_quantity": [i % 37 for i in range(100_000)]})
    sql = (
        "SELECT count(*) AS n, sum(l_quantity) AS q FROM logistics.lineitem, procurement.part"
        " WHERE p_partkey = l_partkey AND p_brand = 'b7'"
        " AND l_quantity < (SELECT 0.5 * avg(l_quantity) FROM logistics.lineitem WHERE l_partkey = p_partkey)"
    )
    return _procurement_mesh(tmp_path, lines), sql


def _procurement_mesh(tmp_path: Path, lines: pa.Table) -> Path:
    """A mesh of ``lines`` as logistics' Parquet file and ``parts.sqlite`` as procurement."""
    pq.write_table(lines, tmp_path / "lineitem.parquet")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: logistics\n    connector: {type: parquet, path: lineitem.parquet}\n"
        "  - name: procurement\n    connector: {type: sqlite, path: parts.sqlite}\n"
    )
    return tmp_path / "mesh.yaml"


def _the_source_query(mesh: Path, sql: str, domain: str) -> SourceQuery:
    """The one query ``sql`` sends to ``domain``'s source, run with the rules."""
    engine = Engine(MeshCatalog(load_config(mesh)))
    try:
        execution = engine.run(sql)
        execution.read_all()
        (sent,) = [query for query in execution.source_queries if query.domain == domain]
    finally:
        engine.close()
    return sent


def _planned_and_answers(
    mesh: Path, sql: str
) -> tuple[tuple[str, ...], str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The rules that fired, the optimised plan, the answer, and the answer without the rules."""
    engine = Engine(MeshCatalog(load_config(mesh)))
    plain = Engine(engine.catalog, EngineSettings(plan_rules=False))
    try:
        planned = engine._plan(sql, CallerContext(user="root"))
        plan = planned.dataframe.optimized_logical_plan().display_indent()
        return planned.fired, plan, engine.run(sql).read_all().to_pylist(), plain.run(sql).read_all().to_pylist()
    finally:
        engine.close()
        plain.close()


def test_a_join_input_the_first_keys_made_small_sends_its_own_keys_to_the_other_input(
    tmp_path: Path, postgres_uri: str, pg_schema: str
) -> None:
    """TPC-H Q18's shape: customers (PostgreSQL) join orders (PostgreSQL) whose keys the lines'
    aggregate (Parquet) keeps. Built on the customers at first (fewer than the orders), the join
    is built again on the orders once the aggregate's keys have made them few, and their customer
    keys then filter the customers' query: 4 rows fetched instead of 30,000 (Q18: 57 for 150,000)."""
    lines = 600_000
    pq.write_table(
        pa.table(
            {
                "l_orderkey": pa.array([i % 300_000 for i in range(lines)], pa.int64()),
                "l_quantity": [(50 if i % 300_000 % 7_500 == 11 else 1) for i in range(lines)],
            }
        ),
        tmp_path / "lineitem.parquet",
    )
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.q18_customer (c_custkey int8 PRIMARY KEY, c_name text)")
        cursor.execute(f"INSERT INTO {pg_schema}.q18_customer SELECT g, 'c' || g FROM generate_series(0, 29999) g")
        cursor.execute(f"CREATE TABLE {pg_schema}.q18_orders (o_orderkey int8 PRIMARY KEY, o_custkey int8)")
        cursor.execute(
            f"INSERT INTO {pg_schema}.q18_orders SELECT g, (g * 7) % 30000 FROM generate_series(0, 299999) g"
        )
        cursor.execute(f"ANALYZE {pg_schema}.q18_customer")
        cursor.execute(f"ANALYZE {pg_schema}.q18_orders")
        connection.commit()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: logistics\n    connector: {type: parquet, path: lineitem.parquet}\n"
        f"  - name: sales\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: customer, source: {pg_schema}.q18_customer}}\n"
        f"      - {{name: orders, source: {pg_schema}.q18_orders}}\n"
    )
    sql = (
        "SELECT c.c_name, o.o_orderkey FROM sales.customer c JOIN sales.orders o ON c.c_custkey = o.o_custkey"
        " WHERE o.o_orderkey IN (SELECT l_orderkey FROM logistics.lineitem GROUP BY l_orderkey"
        " HAVING sum(l_quantity) > 60) ORDER BY 2"
    )
    fired, _, answer, expected = _planned_and_answers(tmp_path / "mesh.yaml", sql)
    assert {"runtime_filter", "cascaded_runtime_filter"} <= set(fired), fired
    assert answer == expected and len(answer) == 40
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    try:
        execution = engine.run(sql)
        execution.read_all()
        sent = {query.sql.split(" FROM ")[1].split()[0]: query for query in execution.source_queries}
    finally:
        engine.close()
    customers = sent[f"{pg_schema}.q18_customer"]
    assert customers.rows == len({row["c_name"] for row in answer}) == 4, customers.sql[:300]
    assert "c_custkey" in customers.sql.split(" WHERE ")[1]


def test_a_sources_filtered_keys_reach_the_aggregate_of_a_correlated_subquery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TPC-H Q17's shape: the subquery's average quantity per part, which DataFusion computes
    for every part and joins as a semi join, is computed for the chosen parts only: their keys
    (from SQLite) filter the Parquet scan below the aggregate. (The aggregate is estimated too
    big to run first, as Q17's 600,000 groups are.)"""
    monkeypatch.setattr(runtime_filter, "TRY_BUILD_ROWS", 5_000)
    monkeypatch.setattr(shared_reads, "MAX_ROWS", 0)  # the file is read twice (see the next test)
    fired, plan, answer, expected = _planned_and_answers(*_parts_and_lines(tmp_path))
    assert {"runtime_filter", "cascaded_runtime_filter"} & set(fired)
    aggregate = plan[plan.index("Aggregate: groupBy=[[logistics.lineitem.l_partkey]]") :]
    assert "Filter: logistics.lineitem.l_partkey IN ([Int64(7), Int64(57)" in aggregate.splitlines()[1], plan
    assert answer == expected and answer[0]["n"] > 0


def test_a_file_filtered_twice_by_the_same_keys_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TPC-H Q17's shape again: the chosen parts' keys filter lineitem in the query and below the
    subquery's aggregate, so the file is read once, with the columns of both, before the query
    runs (Q17 at SF1 in process: 245 -> 150 ms)."""
    monkeypatch.setattr(runtime_filter, "TRY_BUILD_ROWS", 5_000)
    fired, plan, answer, expected = _planned_and_answers(*_parts_and_lines(tmp_path))
    assert "shared_reads" in fired
    assert "TableScan: logistics.lineitem" not in plan and plan.count("meshgate.derived.shared_read projection") == 2
    assert answer == expected and answer[0]["n"] > 0


def test_a_sql_product_read_twice_by_the_same_keys_is_read_once_and_split(tmp_path: Path) -> None:
    """TPC-H Q11's shape: one nation's supplier keys filter partsupp in the query and in its HAVING
    subquery (a scan of its own); SQLite is asked once, in rowid ranges, for the rows of both
    (Q11 at SF1 in process: 342-373 -> 248-309 ms)."""
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE supplier (s_suppkey INTEGER PRIMARY KEY, s_nationkey INTEGER)")
        lite.executemany("INSERT INTO supplier VALUES (?, ?)", [(s, s % 25) for s in range(500)])
        lite.execute("CREATE TABLE partsupp (ps_partkey INTEGER, ps_suppkey INTEGER, ps_cost INTEGER)")
        lite.executemany("INSERT INTO partsupp VALUES (?, ?, ?)", [(i % 2_000, i % 500, i % 89) for i in range(20_000)])
    lite.close()
    pq.write_table(
        pa.table({"n_nationkey": range(25), "n_name": [f"N{n}" for n in range(25)]}), tmp_path / "nation.parquet"
    )
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: reference\n    connector: {type: parquet, path: nation.parquet}\n"
        "  - name: procurement\n    connector: {type: sqlite, path: parts.sqlite, partition_rows: 1000}\n"
    )
    joined = (
        "FROM procurement.partsupp, procurement.supplier, reference.nation"
        " WHERE ps_suppkey = s_suppkey AND s_nationkey = n_nationkey AND n_name = 'N7'"
    )
    sql = (
        f"SELECT ps_partkey, sum(ps_cost) AS v {joined} GROUP BY ps_partkey"
        f" HAVING sum(ps_cost) > (SELECT sum(ps_cost) * 0.0004 {joined})"
    )
    fired, plan, answer, expected = _planned_and_answers(tmp_path / "mesh.yaml", sql)
    assert "shared_reads" in fired and "TableScan: procurement.partsupp" not in plan, plan
    assert sorted(answer, key=repr) == sorted(expected, key=repr) and answer
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    try:
        execution = engine.run(sql)
        execution.read_all()
        (read,) = [query for query in execution.source_queries if "partsupp" in query.sql]
    finally:
        engine.close()
    assert read.rows == 20_000 // 25 and read.detail is not None and "rowid ranges" in read.detail, read


def test_a_key_set_is_not_carried_over_to_a_file(tmp_path: Path) -> None:
    """Here (all parts) the 5,000 average quantities run first, and their part keys filter the
    join of part (SQLite) with lineitem (Parquet) as their range only: DataFusion would carry a
    key set over the join key to lineitem, whose rows would each be looked up in Python. (With
    one brand's parts, their join with lineitem is estimated smaller than the averages, and the
    parts' keys filter both reads of lineitem instead.)"""
    mesh, sql = _parts_and_lines(tmp_path)
    fired, plan, answer, expected = _planned_and_answers(mesh, sql.replace(" AND p_brand = 'b7'", ""))
    assert "runtime_filter" in fired and "l_partkey >= Int64(0)" in plan, plan
    assert key_sets.PREFIX not in plan and answer == expected and answer[0]["n"] > 0


def test_a_key_set_reaches_the_source_that_owns_the_key_beside_a_file_it_never_meets(tmp_path: Path) -> None:
    """TPC-H Q7's shape: 1,600 customers of two nations (one SQLite file) filter orders (another) by
    ``o_custkey`` as a key set, though the join input that holds orders also reads lineitem
    (Parquet): DataFusion carries the key set to no column of lineitem's."""
    with sqlite3.connect(tmp_path / "crm.sqlite") as lite:
        lite.execute("CREATE TABLE customer (c_custkey INTEGER PRIMARY KEY, c_nation INTEGER)")
        lite.executemany("INSERT INTO customer VALUES (?, ?)", [(c, c % 25) for c in range(20_000)])
    lite.close()
    with sqlite3.connect(tmp_path / "sales.sqlite") as lite:
        lite.execute("CREATE TABLE orders (o_orderkey INTEGER PRIMARY KEY, o_custkey INTEGER)")
        lite.executemany("INSERT INTO orders VALUES (?, ?)", [(o, (o * 7) % 20_000) for o in range(60_000)])
    lite.close()
    lines = pa.table({"l_orderkey": [i % 60_000 for i in range(120_000)], "l_qty": [i % 37 for i in range(120_000)]})
    pq.write_table(lines, tmp_path / "lineitem.parquet")
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: logistics\n    connector: {type: parquet, path: lineitem.parquet}\n"
        "  - name: crm\n    connector: {type: sqlite, path: crm.sqlite}\n"
        "  - name: sales\n    connector: {type: sqlite, path: sales.sqlite}\n"
    )
    sql = (
        "SELECT count(*) AS n, sum(l_qty) AS q FROM logistics.lineitem l"
        " JOIN sales.orders o ON l.l_orderkey = o.o_orderkey JOIN crm.customer c ON c.c_custkey = o.o_custkey"
        " WHERE c.c_nation IN (6, 7)"
    )
    fired, plan, answer, expected = _planned_and_answers(tmp_path / "mesh.yaml", sql)
    assert "cascaded_runtime_filter" in fired and answer == expected and answer[0]["n"] > 0
    lines = plan.splitlines()
    (tested,) = [n for n, line in enumerate(lines) if key_sets.PREFIX in line]  # once, right above orders
    assert "TableScan: sales.orders" in lines[tested + 1] and "lineitem" not in lines[tested], plan
    orders = _the_source_query(tmp_path / "mesh.yaml", sql, "sales")
    assert "JSON_EACH(" in orders.sql and orders.rows == 60_000 * 2 // 25, orders.sql[:300]


def _shop(tmp_path: Path) -> Path:
    """A SQLite domain: 3,000 items (each in one of 30 kinds) and their 30 kinds."""
    with sqlite3.connect(tmp_path / "shop.sqlite") as lite:
        lite.execute("CREATE TABLE kinds (kind INTEGER PRIMARY KEY, label TEXT)")
        lite.executemany("INSERT INTO kinds VALUES (?, ?)", [(k, f"kind {k}") for k in range(30)])
        lite.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, kind INTEGER, price INTEGER)")
        lite.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, i % 30, i % 97) for i in range(3_000)])
    lite.close()
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: shop\n    connector: {type: sqlite, path: shop.sqlite}\n")
    return tmp_path / "mesh.yaml"


def test_a_parenthesized_join_written_for_its_source_keeps_its_inner_table(tmp_path: Path) -> None:
    """``a JOIN (b JOIN c ON ...) ON ...`` (as DataFusion's unparser writes a join on the right of a
    join in an optimised plan) reaches its source with c still in it: each product is swapped for
    its source's table, the ones inside the parentheses too (c was dropped with b's node before,
    and the query then joined b alone)."""
    config = _shop(tmp_path)
    engine = Engine(MeshCatalog(load_config(config)))
    text = (
        'SELECT count(1) AS "n" FROM "shop"."items" AS "a" INNER JOIN ("shop"."items" AS "b" INNER JOIN'
        ' "shop"."kinds" AS "c" ON "b"."kind" = "c"."kind" AND "c"."label" = \'kind 3\') ON "a"."id" = "b"."id"'
    )
    try:
        plain = "SELECT count(*) AS n FROM shop.items a JOIN shop.items b ON a.id = b.id JOIN shop.kinds c ON b.kind = c.kind"
        planned = engine._plan(plain, CallerContext(user="root"))
        routed = planner.single_source_sql(planned.dataframe, planned.scans, text=text)
    finally:
        engine.close()
    assert routed is not None and routed[0] == "shop"
    with sqlite3.connect(tmp_path / "shop.sqlite") as lite:
        (count,) = lite.execute(routed[1]).fetchone()
    lite.close()
    assert count == 100, routed[1]  # the items of kind 3; without c, all 3,000


def test_a_join_condition_naming_a_table_joined_after_it_keeps_the_query_federated() -> None:
    """DataFusion's unparser writes a parenthesized join on the right as a chain whose first
    condition names a table joined later; no engine takes that, so the query is not sent whole
    (tests/conformance/test_routes.py answers such queries through every source)."""
    flattened = 'SELECT * FROM "a" INNER JOIN "c" ON "b"."x" = "c"."x" INNER JOIN "b" ON "a"."y" = "b"."y"'
    assert not planner.joins_in_order(planner.parse_one(flattened, read="postgres"))
    nested = 'SELECT * FROM "a" INNER JOIN ("b" INNER JOIN "c" ON "b"."x" = "c"."x") ON "a"."y" = "c"."y"'
    assert planner.joins_in_order(planner.parse_one(nested, read="postgres"))
    correlated = (
        'SELECT * FROM "o" WHERE EXISTS (SELECT 1 FROM "a" JOIN "b" ON "a"."y" = "o"."y" AND "b"."x" = "a"."x")'
    )
    assert planner.joins_in_order(planner.parse_one(correlated, read="postgres"))


@pytest.mark.parametrize(
    ("sql", "whole"),
    [
        # items is read whole and joined: SQLite would join it row by row; DataFusion hash-joins it
        ("SELECT k.label, sum(i.price) AS p FROM shop.items i JOIN shop.kinds k ON k.kind = i.kind GROUP BY 1", False),
        # every big table filtered, or no join at all: the source gets it whole
        ("SELECT k.label, i.price FROM shop.items i JOIN shop.kinds k ON k.kind = i.kind WHERE i.id < 40", True),
        ("SELECT kind, sum(price) AS p FROM shop.items GROUP BY kind", True),
        ("SELECT price FROM shop.items WHERE id = 7", True),
    ],
)
def test_a_source_that_joins_row_by_row_gets_a_join_whole_only_when_its_big_tables_are_filtered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str, whole: bool
) -> None:
    """TPC-H Q16 (SQLite): 258 ms whole, 151 ms federated, where partsupp's 800,000 rows are read
    unfiltered. Here 3,000 items stand for a big table (the limit is lowered to 1,000)."""
    monkeypatch.setattr(planner, "ROW_AT_A_TIME_SCAN_ROWS", 1_000)
    engine = Engine(MeshCatalog(load_config(_shop(tmp_path))))
    try:
        planned = engine._plan(sql, CallerContext(user="root"))
        assert (planned.routed is not None) == whole, planned.routed
        execution = engine.run(sql)
        got = sorted(tuple(row.values()) for row in execution.read_all().to_pylist())
        assert len(execution.source_queries) == (1 if whole else 2), execution.source_queries
        with sqlite3.connect(tmp_path / "shop.sqlite") as lite:
            expected = sorted(lite.execute(sql.replace("shop.", "")).fetchall())
        lite.close()
        assert got == expected and got
    finally:
        engine.close()


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    """A PostgreSQL domain: 40,000 accounts of 40 kinds, and 120,000 of their payments (analyzed)."""
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {pg_schema}.accounts AS SELECT g AS id, g % 40 AS kind FROM generate_series(1, 40000) g"
        )
        cursor.execute(
            f"CREATE TABLE {pg_schema}.payments AS SELECT g AS id, g % 40000 + 1 AS account, g % 7 AS amount,"
            f" CASE WHEN g % 3 = 0 THEN 'refund' ELSE 'sale' END AS note FROM generate_series(1, 120000) g"
        )
        cursor.execute(f"ANALYZE {pg_schema}.accounts")
        cursor.execute(f"ANALYZE {pg_schema}.payments")
    directory = tmp_path_factory.mktemp("accounts")
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: bank
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: accounts, source: {pg_schema}.accounts}}
      - {{name: payments, source: {pg_schema}.payments}}
"""
    )
    return directory / "mesh.yaml"


@pytest.mark.parametrize(
    ("sql", "whole"),
    [
        # 40,000 groups of 120,000 rows: more than max(10,000, a hundredth of the rows) groups
        ("SELECT account, sum(amount) AS s FROM bank.payments GROUP BY account", False),
        # TPC-H Q13's shape: each account's count of payments (a grouping per account), then grouped again
        (
            "SELECT n, count(*) AS c FROM (SELECT a.id, count(p.id) AS n FROM bank.accounts a LEFT JOIN"
            " bank.payments p ON p.account = a.id AND p.note NOT LIKE '%fund%' GROUP BY a.id) x GROUP BY n",
            False,
        ),
        # few groups, or none: the source gets the query whole
        (
            "SELECT a.kind, sum(p.amount) AS s FROM bank.accounts a JOIN bank.payments p ON p.account = a.id GROUP BY 1",
            True,
        ),
        ("SELECT count(*) AS c FROM bank.payments WHERE note = 'sale'", True),
        ("SELECT a.id, p.amount FROM bank.accounts a JOIN bank.payments p ON p.account = a.id WHERE p.id < 20", True),
    ],
)
def test_a_grouping_into_many_groups_is_made_by_the_gateway_not_the_source(
    accounts: Path, postgres_uri: str, pg_schema: str, sql: str, whole: bool
) -> None:
    """A whole query is sent to PostgreSQL unless it groups into more groups than a sub-plan's grouping
    may be sent with (``same_source.few_groups``): TPC-H Q13 took 1,150 ms whole, 984 ms federated."""
    engine = Engine(MeshCatalog(load_config(accounts)))
    try:
        planned = engine._plan(sql, CallerContext(user="root"))
        assert (planned.routed is not None) == whole, planned.routed
        got = sorted(tuple(row.values()) for row in engine.run(sql).read_all().to_pylist())
    finally:
        engine.close()
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql.replace("bank.", f"{pg_schema}."))
        expected = sorted(tuple(row) for row in cursor.fetchall())
    assert got == expected and got


@pytest.mark.parametrize(
    ("sql", "batch"),
    [
        ("SELECT * FROM files.rows WHERE id % 2 = 0 ORDER BY id DESC", 1_000),  # read, filtered, sorted
        ("SELECT * FROM files.rows a JOIN files.rows b ON a.id = b.id WHERE a.id % 2 = 0", 100),
        ("SELECT id % 5000 AS k, count(*) AS n FROM files.rows GROUP BY 1", 100),
    ],
)
def test_queries_that_compute_run_in_smaller_batches_than_queries_that_stream(
    tmp_path: Path, sql: str, batch: int
) -> None:
    """A join or aggregate runs in ``batch_size`` batches (cache-sized hash tables), a query that
    only reads in ``stream_batch_size`` batches (each batch costs the same to leave). DataFusion's
    batches: the file engine, which would run the aggregate of one Parquet file, is off."""
    pq.write_table(pa.table({"id": pa.array(range(10_000), pa.int64())}), tmp_path / "rows.parquet")
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: files\n    connector: {type: parquet, path: .}\n")
    settings = EngineSettings(target_partitions=1, batch_size=100, stream_batch_size=1_000, file_engine=False)
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")), settings)
    try:
        sizes = [batch.num_rows for batch in engine.run(sql)]
        assert max(sizes) == batch, sizes
        assert sum(sizes) == 5_000
    finally:
        engine.close()


def test_a_streamed_results_text_leaves_datafusion_as_classic_strings(tmp_path: Path) -> None:
    """Parquet text is read as views inside; a query that only reads has DataFusion cast it back
    (on the partitions' threads), so no batch is cast on its way out. Names with dots and quotes
    keep their spelling."""
    table = pa.table({"id": pa.array(range(3), pa.int64()), "name": ["a", None, "ccc"], "raw": [b"x", b"", None]})
    pq.write_table(table, tmp_path / "rows.parquet")
    (tmp_path / "mesh.yaml").write_text("domains:\n  - name: files\n    connector: {type: parquet, path: .}\n")
    engine = Engine(MeshCatalog(load_config(tmp_path / "mesh.yaml")))
    sql = 'SELECT id, name AS "a.b", raw AS "x""y" FROM files.rows WHERE id >= 0 ORDER BY id'
    try:
        planned = engine._plan(sql, CallerContext(user="root"))
        assert "Utf8View" in planned.federated.display_indent_schema()  # read as views
        assert planned.dataframe.schema().types == [pa.int64(), pa.string(), pa.binary()]  # sent as classic
        answer = engine.run(sql).read_all()
    finally:
        engine.close()
    assert answer.column_names == ["id", "a.b", 'x"y']
    assert answer.to_pydict() == {"id": [0, 1, 2], "a.b": ["a", None, "ccc"], 'x"y': [b"x", b"", None]}


def test_a_query_that_also_reads_a_file_is_not_written_for_its_sql_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-query route is not even tried (unparsing it cost 4-6 ms of TPC-H Q3's planning);
    a query of the SQL source alone still goes there whole."""
    config = _shop(tmp_path)
    pq.write_table(pa.table({"kind": list(range(30)), "weight": [k * 2 for k in range(30)]}), tmp_path / "w.parquet")
    config.write_text(
        config.read_text()
        + "  - name: depot\n    connector: {type: parquet, path: .}\n    products:\n"
        + "      - {name: weights, source: w.parquet}\n"
    )
    tried: list[str] = []
    written = engine_module.single_source_sql

    def spy(*args: Any, **kwargs: Any) -> Any:
        tried.append("tried")
        return written(*args, **kwargs)

    monkeypatch.setattr(engine_module, "single_source_sql", spy)
    engine = Engine(MeshCatalog(load_config(config)))
    try:
        caller = CallerContext(user="root")
        mixed = "SELECT k.label, w.weight FROM shop.kinds k JOIN depot.weights w ON w.kind = k.kind WHERE k.kind < 3"
        got = sorted(tuple(row.values()) for row in engine.run(mixed, caller).read_all().to_pylist())
        assert got == [("kind 0", 0), ("kind 1", 2), ("kind 2", 4)]
        routed = engine._plan(mixed, caller).routed  # (a plan's repr would run its DataFrame)
        assert routed is None and not tried, tried
        routed = engine._plan("SELECT label FROM shop.kinds WHERE kind = 4", caller).routed
        assert routed is not None and tried, routed
    finally:
        engine.close()


def _steel_lines(tmp_path: Path) -> tuple[Path, str]:
    """TPC-H Q8's build input over SQLite and Parquet: 300,000 lines (Parquet) of 30,000 parts and
    300,000 orders (both SQLite), and the yearly count of the lines of the 1,500 steel parts."""
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE part (p_partkey INTEGER PRIMARY KEY, p_type TEXT)")
        lite.executemany(
            "INSERT INTO part VALUES (?, ?)", [(p, "steel" if p % 20 == 3 else "tin") for p in range(30_000)]
        )
        lite.execute("CREATE TABLE orders (o_orderkey INTEGER PRIMARY KEY, o_year INTEGER)")
        lite.executemany("INSERT INTO orders VALUES (?, ?)", [(o, 1992 + o % 7) for o in range(300_000)])
        lite.execute("ANALYZE")
    lite.close()
    lines = pa.table(
        {"l_orderkey": pa.array(range(300_000), pa.int64()), "l_partkey": [(i * 7) % 30_000 for i in range(300_000)]}
    )
    sql = (
        "SELECT o.o_year, count(*) AS n FROM logistics.lineitem l JOIN procurement.part p ON p.p_partkey = l.l_partkey"
        " JOIN procurement.orders o ON o.o_orderkey = l.l_orderkey WHERE p.p_type = 'steel' GROUP BY 1 ORDER BY 1"
    )
    return _procurement_mesh(tmp_path, lines), sql


def test_a_join_input_of_parquet_and_small_source_tables_runs_in_the_file_engine(tmp_path: Path) -> None:
    """TPC-H Q8's build input: lines (Parquet) of the steel parts (SQLite), run first for their
    order keys. The parts are computed first, and DuckDB joins them with the lines (the file
    engine fires), where DataFusion joined them before; the answer is the plan's without rules."""
    fired, _, answer, expected = _planned_and_answers(*_steel_lines(tmp_path))
    assert {"file_engine", "cascaded_runtime_filter"} <= set(fired), fired
    assert answer == expected and sum(row["n"] for row in answer) == 15_000


def test_a_row_filter_on_a_small_table_keeps_the_part_out_of_the_file_engine(tmp_path: Path) -> None:
    """A part that reads a product a policy restricts for the caller is not run ahead by the rules
    (its read is the policy's view, which no rule takes), so it never reaches DuckDB: alice sees
    the parts below 15,000 only, and the answer is hers, as without the rules."""
    mesh, sql = _steel_lines(tmp_path)
    mesh.write_text(
        mesh.read_text()
        + 'policies:\n  roles:\n    analyst: [alice]\n  grants:\n    - {role: analyst, on: "*"}\n'
        + '  row_filters:\n    - {on: procurement.part, where: "p_partkey < 15000"}\n'
    )
    alice = CallerContext(user="alice")
    engine = Engine(MeshCatalog(load_config(mesh)), policies=load_config(mesh).policies)
    plain = Engine(engine.catalog, EngineSettings(plan_rules=False), policies=engine.policies)
    try:
        fired = engine._plan(sql, alice).fired
        answer, expected = engine.run(sql, alice).read_all().to_pylist(), plain.run(sql, alice).read_all().to_pylist()
    finally:
        engine.close()
        plain.close()
    assert "file_engine" not in fired, fired  # without the row filter it fires (the test above)
    assert answer == expected and sum(row["n"] for row in answer) == 7_500


def test_a_source_join_input_of_many_rows_sends_its_keys_to_postgresql_as_a_key_set(
    tmp_path: Path, postgres_uri: str, pg_schema: str
) -> None:
    """TPC-H Q8's shape: the lines of 1,500 parts of 30,000 (parts in SQLite, lines in Parquet),
    estimated at 50,000 rows (more than SQL_BUILD_ROWS, fewer than MAX_SET_KEYS), run first, and
    their order keys reach PostgreSQL's orders as a key set, which then returns only their orders."""
    with sqlite3.connect(tmp_path / "parts.sqlite") as lite:
        lite.execute("CREATE TABLE part (p_partkey INTEGER PRIMARY KEY, p_type TEXT)")
        lite.executemany(
            "INSERT INTO part VALUES (?, ?)", [(p, "steel" if p % 20 == 3 else "tin") for p in range(30_000)]
        )
        lite.execute("ANALYZE")
    lite.close()
    lines = 1_000_000
    pq.write_table(
        pa.table(
            {"l_orderkey": pa.array(range(lines), pa.int64()), "l_partkey": [(i * 7) % 30_000 for i in range(lines)]}
        ),
        tmp_path / "lineitem.parquet",
    )
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {pg_schema}.keyed_orders (o_orderkey int8 PRIMARY KEY, o_year int4)")
        cursor.execute(
            f"INSERT INTO {pg_schema}.keyed_orders SELECT g, 1992 + g % 7 FROM generate_series(0, {lines - 1}) g"
        )
        cursor.execute(f"ANALYZE {pg_schema}.keyed_orders")
        connection.commit()
    (tmp_path / "mesh.yaml").write_text(
        "domains:\n"
        "  - name: logistics\n    connector: {type: parquet, path: lineitem.parquet}\n"
        "  - name: procurement\n    connector: {type: sqlite, path: parts.sqlite}\n"
        f"  - name: sales\n    connector: {{type: postgres, uri: '{postgres_uri}'}}\n"
        f"    products:\n      - {{name: orders, source: {pg_schema}.keyed_orders}}\n"
    )
    sql = (
        "SELECT o.o_year, count(*) AS n FROM logistics.lineitem l JOIN procurement.part p ON p.p_partkey = l.l_partkey"
        " JOIN sales.orders o ON o.o_orderkey = l.l_orderkey WHERE p.p_type = 'steel' GROUP BY 1 ORDER BY 1"
    )
    fired, _, answer, expected = _planned_and_answers(tmp_path / "mesh.yaml", sql)
    assert "cascaded_runtime_filter" in fired and answer == expected
    assert sum(row["n"] for row in answer) == lines // 20
    orders = _the_source_query(tmp_path / "mesh.yaml", sql, "sales")
    assert "= ANY(CAST('{" in orders.sql and orders.rows == lines // 20, orders.sql[:300]
