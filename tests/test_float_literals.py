"""gateway.planner.float_literals: decimal-point constants in arithmetic sent whole are typed as
DataFusion types them (DOUBLE); compared arithmetic with one keeps the query federated (None)."""

from __future__ import annotations

import pytest
from sqlglot import parse_one

from gateway.planner import float_literals

CASES = [
    ("SELECT i * 1.1 FROM t", "SELECT i * CAST(1.1 AS DOUBLE) FROM t"),
    ("SELECT sum(p * (1 - 0.05)) FROM t", "SELECT SUM(p * (1 - CAST(0.05 AS DOUBLE))) FROM t"),
    ("SELECT i * -1.5 FROM t", "SELECT i * -CAST(1.5 AS DOUBLE) FROM t"),
    ("SELECT 1.5, -0.5 FROM t WHERE m >= 0.3 AND f > -0.5", "SELECT 1.5, -0.5 FROM t WHERE m >= 0.3 AND f > -0.5"),
    ("SELECT i FROM t WHERE i * 2 > 3", "SELECT i FROM t WHERE i * 2 > 3"),
    ("SELECT id FROM t WHERE m >= 0.1 + 0.2", None),
    ("SELECT id FROM t WHERE m BETWEEN 0.06 - 0.01 AND 0.07", None),
    ("SELECT id FROM t WHERE i IN (SELECT j * 0.5 FROM u)", "SELECT id FROM t WHERE i IN (SELECT j * CAST(0.5 AS DOUBLE) FROM u)"),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[case[0] for case in CASES])
def test_float_literals(sql: str, expected: str | None) -> None:
    typed = float_literals(parse_one(sql, read="postgres"))
    assert (typed.sql("duckdb") if typed is not None else None) == expected
