"""Pushdown translation as data: SQL in, each source's SQL (and what is kept back) out.

``tests/fixtures/pushdown.sql`` holds one block per predicate: ``WHERE <predicate>``
over the table below, then one line per connector kind with the WHERE clause that
kind receives, followed by ``|| kept:`` and the conjuncts DataFusion keeps for itself.
The capabilities are each connector's real, declared ones.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from datafusion import SessionContext

from connectors.base import SqlCapabilities
from connectors.duckdb import DuckdbConnector
from connectors.flightsql import DATAFUSION, OTHER
from connectors.mysql import MysqlConnector
from connectors.postgres import PostgresConnector
from connectors.sqlite import SqliteConnector
from gateway.engine import planning_context
from gateway.pushdown import translate

FIXTURES = Path(__file__).parent / "fixtures" / "pushdown.sql"
CONNECTORS: dict[str, SqlCapabilities] = {
    "postgres": PostgresConnector.capabilities,
    "sqlite": SqliteConnector.capabilities,
    "duckdb": DuckdbConnector.capabilities,
    "mysql": MysqlConnector.capabilities,
    # A remote Flight SQL server that says it runs DataFusion (Meshgate, roapi), and any other one.
    "flightsql": DATAFUSION,
    "flightsql_other": OTHER,
}
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("n", pa.int32()),
        ("name", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("f", pa.float64()),
        ("d", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("tsn", pa.timestamp("us")),
        ("b", pa.bool_()),
    ]
)


def load_cases() -> list[tuple[str, dict[str, str]]]:
    cases = []
    for block in FIXTURES.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line and not line.startswith("#")]
        if not lines:
            continue
        assert lines[0].startswith("WHERE "), f"a block must start with WHERE: {lines[0]!r}"
        expected = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in lines[1:])
        cases.append((lines[0].removeprefix("WHERE "), expected))
    return cases


@pytest.fixture(scope="module")
def context() -> SessionContext:
    ctx = planning_context()
    ctx.remove_optimizer_rule("common_sub_expression_eliminate")  # as for every query of a SQL source (without_cse)
    ctx.register_record_batches("t", [[pa.RecordBatch.from_pylist([], schema=SCHEMA)]])
    return ctx


def render(context: SessionContext, predicate: str, capabilities: SqlCapabilities) -> str:
    node = context.sql(f"SELECT * FROM t WHERE {predicate}").optimized_logical_plan()
    while type(node.to_variant()).__name__ != "Filter":
        (node,) = node.inputs()
    result = translate([node.to_variant().predicate()], SCHEMA, capabilities)
    pushed = result.predicate.sql(dialect=capabilities.dialect) if result.predicate is not None else ""
    return pushed + (f"  || kept: {' AND '.join(result.kept)}" if result.kept else "")


CASES = load_cases()


def test_fixture_file_covers_every_connector_kind() -> None:
    assert len(CASES) >= 25
    for predicate, expected in CASES:
        assert set(expected) == set(CONNECTORS), predicate


@pytest.mark.parametrize(("predicate", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_pushdown_fixture(context: SessionContext, predicate: str, expected: dict[str, str]) -> None:
    for kind, capabilities in CONNECTORS.items():
        assert render(context, predicate, capabilities).strip() == expected[kind].strip(), kind
