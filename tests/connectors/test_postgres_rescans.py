"""A query PostgreSQL would answer by running a costly subquery once per row around it (a correlated
subquery, or ``NOT IN`` over more rows than ``work_mem`` hashes) is not sent whole: the federated
route answers it (``AdbcConnector.per_row``, ``connectors/postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from statistics import fmean
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pytest

from connectors.postgres import RESCAN_COST, PostgresConnector, _per_row
from gateway.api import CallerContext
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine

ROWS = 20_000  # not hashed in 64 kB of work_mem: 20,000 x 20,000 comparisons


def node(kind: str, cost: float, *children: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"Node Type": kind, "Total Cost": cost, "Plans": list(children), **fields}


def subplan(kind: str, name: str = "SubPlan 1", relationship: str = "SubPlan") -> dict[str, Any]:
    return node(kind, 5_000, node("Seq Scan", 4_000), **{"Parent Relationship": relationship, "Subplan Name": name})


HIGH = 20 * RESCAN_COST


@pytest.mark.parametrize(
    ("plan", "per_row"),
    [
        # PostgreSQL 15: NOT IN over 1.5 M keys that do not fit in work_mem (cost 19.5 billion) ...
        (
            node("Aggregate", 1.95e10, node("Seq Scan", 1.95e10, subplan("Materialize"), Filter="(NOT (SubPlan 1))")),
            True,
        ),
        # ... and over keys that do: probed in a hash table
        (node("Seq Scan", HIGH, subplan("Seq Scan"), Filter="(NOT (hashed SubPlan 1))"), False),
        # a correlated average (847 million)
        (node("Seq Scan", 8.47e8, subplan("Aggregate"), Filter="(c_acctbal > (SubPlan 1))"), True),
        # PostgreSQL 17's wording
        (node("Seq Scan", HIGH, subplan("Materialize"), Filter="(NOT (ANY (a = (SubPlan 1).col1)))"), True),
        (node("Seq Scan", HIGH, subplan("Materialize"), Filter="(NOT (ANY (a = (hashed SubPlan 1).col1)))"), False),
        # "hashed SubPlan 1" does not hash SubPlan 10
        (node("Seq Scan", HIGH, subplan("Materialize", "SubPlan 10"), Filter="(NOT (hashed SubPlan 1))"), True),
        # deeper in the plan, under a join
        (node("Hash Join", HIGH, node("Seq Scan", HIGH, subplan("Aggregate"), Filter="(x > (SubPlan 1))")), True),
        # cheap: a per-row subquery of a small query (an index lookup, a few rows)
        (node("Seq Scan", RESCAN_COST - 1, subplan("Aggregate"), Filter="(x > (SubPlan 1))"), False),
        # run once, before the query (an uncorrelated scalar subquery)
        (node("Seq Scan", HIGH, subplan("Aggregate", "InitPlan 1", "InitPlan"), Filter="(x > $0)"), False),
        # costly, without subqueries
        (node("Hash Join", HIGH, node("Seq Scan", HIGH), node("Hash", 10)), False),
    ],
    ids=[
        "not-in-rescans",
        "not-in-hashed",
        "correlated",
        "pg17-rescans",
        "pg17-hashed",
        "other-name",
        "nested",
        "cheap",
        "init-plan",
        "no-subplan",
    ],
)
def test_a_costly_plan_that_runs_a_subquery_per_row_is_found(plan: dict[str, Any], per_row: bool) -> None:
    assert _per_row(plan) is per_row


def run(uri: str, *statements: str) -> None:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@pytest.fixture(scope="module")
def small_memory_uri(postgres_uri: str, pg_schema: str) -> str:
    """The server, with 64 kB of ``work_mem`` for the gateway's connections, and two tables of ``ROWS`` keys."""
    run(
        postgres_uri,
        f"CREATE TABLE {pg_schema}.a AS SELECT g AS id, g % 10 AS k FROM generate_series(1, {ROWS}) g",
        f"CREATE TABLE {pg_schema}.b AS SELECT g AS id, g % 10 AS k FROM generate_series(6, {ROWS + 5}) g",
        f"CREATE TABLE {pg_schema}.few AS SELECT g AS id FROM generate_series(1, 10) g",
        f"ANALYZE {pg_schema}.a",
        f"ANALYZE {pg_schema}.b",
        f"ANALYZE {pg_schema}.few",
    )
    return f"{postgres_uri}{'&' if '?' in postgres_uri else '?'}options=-c%20work_mem%3D64kB"


@pytest.fixture(scope="module")
def connector(small_memory_uri: str) -> Iterator[PostgresConnector]:
    connector = PostgresConnector("sales", ConnectorConfig(type="postgres", uri=small_memory_uri))
    yield connector
    connector.close()


def test_the_source_is_not_sent_what_it_would_run_per_row(connector: PostgresConnector, pg_schema: str) -> None:
    big = f"SELECT count(*) FROM {pg_schema}.a WHERE NOT a.id IN (SELECT b.id FROM {pg_schema}.b AS b)"
    assert connector.per_row(big)
    correlated = f"SELECT count(*) FROM {pg_schema}.a AS a WHERE a.id > (SELECT avg(b.id) FROM {pg_schema}.b AS b WHERE b.k = a.k)"
    assert connector.per_row(correlated)
    assert not connector.per_row(f"SELECT count(*) FROM (SELECT a.id FROM {pg_schema}.a AS a) AS d")  # a derived table
    assert not connector.per_row(big.replace(f"{pg_schema}.b AS b", f"{pg_schema}.few AS b"))  # hashed in 64 kB
    assert not connector.per_row(big.replace("NOT a.id IN", "a.id IN"))  # a semi join
    assert not connector.per_row(f"SELECT count(*) FROM {pg_schema}.a")  # no subquery: not asked
    assert connector.per_row("SELECT 1 FROM no_such_table WHERE x NOT IN (SELECT 1)")  # unknown: federated


def test_such_a_query_is_answered_federated(small_memory_uri: str, pg_schema: str, tmp_path: Path) -> None:
    (tmp_path / "sales.yaml").write_text(
        "domains:\n  - name: sales\n"
        f"    connector: {{type: postgres, uri: '{small_memory_uri}'}}\n"
        "    products:\n"
        f"      - {{name: a, source: {pg_schema}.a}}\n"
        f"      - {{name: b, source: {pg_schema}.b}}\n"
        f"      - {{name: few, source: {pg_schema}.few}}\n"
    )
    engine = Engine.from_config(load_config(tmp_path))
    root = CallerContext()
    try:
        sql = "SELECT count(*) AS n FROM sales.a WHERE id NOT IN (SELECT id FROM sales.b)"
        route = engine.run(f"EXPLAIN {sql}", root).read_all().column("plan")[0].as_py()
        assert route.startswith("federated"), route
        assert engine.run(sql, root).read_all().to_pylist() == [{"n": 5}]
        small = "SELECT count(*) AS n FROM sales.a WHERE id NOT IN (SELECT id FROM sales.few)"
        route = engine.run(f"EXPLAIN {small}", root).read_all().column("plan")[0].as_py()
        assert route.startswith("single source"), route
        assert engine.run(small, root).read_all().to_pylist() == [{"n": ROWS - 10}]
        correlated = "SELECT count(*) AS n FROM sales.a WHERE a.id > (SELECT avg(b.id) FROM sales.b WHERE b.k = a.k)"
        route = engine.run(f"EXPLAIN {correlated}", root).read_all().column("plan")[0].as_py()
        assert route.startswith("federated"), route
        averages = {k: fmean(i for i in range(6, ROWS + 6) if i % 10 == k) for k in range(10)}
        expected = sum(1 for i in range(1, ROWS + 1) if i > averages[i % 10])
        assert engine.run(correlated, root).read_all().to_pylist() == [{"n": expected}]
    finally:
        engine.close()
