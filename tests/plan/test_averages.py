"""gateway/averages.py: averages of decimals written for a source to give DataFusion's digits."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlglot import parse_one

from gateway.averages import exact_averages

TABLES = {
    "sales": {
        "orders": pa.schema(
            [
                ("id", pa.int64()),
                ("total", pa.decimal128(12, 2)),
                ("rate", pa.decimal128(38, 36)),
                ("n", pa.int32()),
                ("big", pa.decimal256(60, 40)),
            ]
        )
    }
}


def rewritten(sql: str) -> str | None:
    tree = exact_averages(parse_one(sql, read="postgres"), TABLES)
    return None if tree is None else tree.sql("postgres")


def test_an_average_of_a_decimal_is_a_truncating_division_of_its_sum() -> None:
    assert rewritten("SELECT avg(o.total) AS a FROM sales.orders AS o") == (
        "SELECT DIV(SUM(o.total) * 1000000, COUNT(o.total)) * CAST('0.000001' AS DECIMAL(38, 6)) AS a "
        "FROM sales.orders AS o"
    )


def test_the_scale_stops_at_38() -> None:
    assert rewritten("SELECT avg(orders.rate) FROM sales.orders") == (
        f"SELECT DIV(SUM(orders.rate) * {10**38}, COUNT(orders.rate)) * CAST('0.{'0' * 37}1' AS DECIMAL(38, 38)) "
        "FROM sales.orders"
    )


def test_an_average_in_a_subquery_is_rewritten_too() -> None:
    sql = "SELECT o.id FROM sales.orders AS o WHERE o.total > (SELECT avg(i.total) FROM sales.orders AS i)"
    assert "DIV(SUM(i.total) * 1000000, COUNT(i.total))" in (rewritten(sql) or "")


def test_a_column_of_unknown_type_is_refused() -> None:
    assert rewritten("SELECT avg(total) FROM sales.orders") is None  # unqualified: sqlglot does not type it


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT avg(o.n) FROM sales.orders AS o",  # DataFusion averages integers in floating point
        "SELECT avg(o.big) FROM sales.orders AS o",  # a 256-bit decimal's average has other bounds
        "SELECT avg(DISTINCT o.total) FROM sales.orders AS o",
        "SELECT avg(o.total * 2) FROM sales.orders AS o",  # not a column: its type is not followed
        "SELECT avg(o.total) OVER (PARTITION BY o.id) FROM sales.orders AS o",
        "SELECT sum(o.total) / count(*) FROM sales.orders AS o",
    ],
)
def test_what_datafusion_would_round_otherwise_is_refused(sql: str) -> None:
    assert rewritten(sql) is None


def test_outside_a_decimal_result_other_averages_are_left_as_they_are() -> None:
    sql = "SELECT avg(o.n) AS a, count(*) FROM sales.orders AS o WHERE o.total > (SELECT avg(i.total) FROM sales.orders AS i)"
    tree = exact_averages(parse_one(sql, read="postgres"), TABLES, strict=False)
    assert tree is not None
    text = tree.sql("postgres")
    assert "AVG(o.n)" in text and "DIV(SUM(i.total) * 1000000, COUNT(i.total))" in text
