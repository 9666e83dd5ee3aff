"""A query PostgreSQL would answer by searching a subquery's rows once per row around it (``NOT IN``
over more rows than ``work_mem`` hashes) is not sent whole: the federated route answers it
(``PostgresConnector.accepts``, ``connectors/postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import pytest

from connectors.postgres import RESCAN_WORK, PostgresConnector, _rescans
from gateway.api import CallerContext
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine

ROWS = 20_000  # big enough not to be hashed in 64 kB of work_mem: 20,000 x 20,000 comparisons


def node(kind: str, rows: float, *children: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"Node Type": kind, "Plan Rows": rows, "Plans": list(children), **fields}


def subplan(kind: str, rows: float, name: str = "SubPlan 1") -> dict[str, Any]:
    return node(kind, rows, node("Seq Scan", rows), **{"Parent Relationship": "SubPlan", "Subplan Name": name})


@pytest.mark.parametrize(
    ("plan", "rescans"),
    [
        # PostgreSQL 15: NOT IN over 1.5 M rows that do not fit in work_mem
        (node("Seq Scan", 312_500, subplan("Materialize", 1_499_997), Filter="(NOT (SubPlan 1))"), True),
        # ... and over rows that do: a hash table, probed once per row
        (node("Seq Scan", 312_500, subplan("Seq Scan", 6_055), Filter="(NOT (hashed SubPlan 1))"), False),
        # PostgreSQL 17's wording of the same two
        (node("Seq Scan", 2_000, subplan("Materialize", 2_000), Filter="(NOT (ANY (a = (SubPlan 1).col1)))"), False),
        (node("Seq Scan", 50_000, subplan("Materialize", 50_000), Filter="(NOT (ANY (a = (SubPlan 1).col1)))"), True),
        (
            node(
                "Seq Scan", 50_000, subplan("Materialize", 50_000), Filter="(NOT (ANY (a = (hashed SubPlan 1).col1)))"
            ),
            False,
        ),
        # "hashed SubPlan 1" does not hash SubPlan 10
        (
            node("Seq Scan", 50_000, subplan("Materialize", 50_000, "SubPlan 10"), Filter="(NOT (hashed SubPlan 1))"),
            True,
        ),
        # deeper in the plan, under a join
        (
            node("Hash Join", 10, node("Seq Scan", 9_000, subplan("Materialize", 9_000), Filter="(NOT (SubPlan 1))")),
            True,
        ),
        # a correlated subquery runs again per row (no Materialize): not this check's
        (node("Seq Scan", 50_000, subplan("Aggregate", 1), Filter="(x > (SubPlan 1))"), False),
        (node("Seq Scan", 1_000_000), False),
    ],
    ids=[
        "pg15-rescans",
        "pg15-hashed",
        "pg17-small",
        "pg17-rescans",
        "pg17-hashed",
        "other-name",
        "nested",
        "correlated",
        "none",
    ],
)
def test_a_plan_rescans_a_materialised_subquery_past_the_limit(plan: dict[str, Any], rescans: bool) -> None:
    assert RESCAN_WORK <= 50_000 * 50_000
    assert _rescans(plan) is rescans


def run(uri: str, *statements: str) -> None:
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@pytest.fixture(scope="module")
def small_memory_uri(postgres_uri: str, pg_schema: str) -> str:
    """The server, with 64 kB of ``work_mem`` for the gateway's connections, and two tables of ``ROWS`` keys."""
    run(
        postgres_uri,
        f"CREATE TABLE {pg_schema}.a AS SELECT g AS id FROM generate_series(1, {ROWS}) g",
        f"CREATE TABLE {pg_schema}.b AS SELECT g AS id FROM generate_series(6, {ROWS + 5}) g",
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


def test_the_source_is_not_sent_what_it_would_rescan(connector: PostgresConnector, pg_schema: str) -> None:
    big = f"SELECT count(*) FROM {pg_schema}.a WHERE NOT a.id IN (SELECT b.id FROM {pg_schema}.b AS b)"
    assert not connector.accepts(big)
    assert connector.accepts(big.replace(f"{pg_schema}.b AS b", f"{pg_schema}.few AS b"))  # hashed in 64 kB
    assert connector.accepts(big.replace("NOT a.id IN", "a.id IN"))  # a semi join
    assert connector.accepts(f"SELECT count(*) FROM {pg_schema}.a")  # no subquery: not asked
    assert not connector.accepts("SELECT 1 FROM no_such_table WHERE x NOT IN (SELECT 1)")  # unknown: federated


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
    finally:
        engine.close()
