"""Cross-domain SQL through a real Flight SQL client, checked against DuckDB on the same data.

Sales live in PostgreSQL, inventory in SQLite, logistics in Parquet. The reference
answer for every query is computed independently by DuckDB over the very Arrow
tables the sources were loaded from.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tests.support.gateway import query, source_queries


def normalise(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows in a canonical order, numbers as floats (compare them with :func:`same_rows`)."""
    return sorted(
        (tuple(normalise(v) for v in row.values()) for row in table.to_pylist()),
        key=lambda row: tuple((v is None, round(v, 4) if isinstance(v, float) else str(v)) for v in row),
    )


def same_rows(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    """Equal row by row; floats within 1e-6 (engines differ in the last digit of averages)."""
    if len(got) != len(expected):
        return False
    for left, right in zip(got, expected, strict=True):
        if len(left) != len(right):
            return False
        for a, b in zip(left, right, strict=True):
            if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6):
                    return False
            elif a != b:
                return False
    return True


CROSS_DOMAIN = {
    "three_sources_join_aggregate": """
        SELECT c.country, p.category, count(*) AS items, sum(i.quantity) AS qty,
               sum(i.quantity * p.price) AS revenue
        FROM sales.orders o
        JOIN sales.customers c ON c.customer_id = o.customer_id
        JOIN inventory.order_items i ON i.order_id = o.order_id
        JOIN inventory.products p ON p.product_id = i.product_id
        JOIN logistics.shipments s ON s.order_id = o.order_id
        WHERE o.status <> 'cancelled' AND o.order_date >= DATE '2024-03-01' AND s.carrier IN ('DHL', 'UPS')
        GROUP BY c.country, p.category""",
    "left_join_keeps_unshipped_orders": """
        SELECT o.order_id, o.status, s.carrier, s.weight_kg
        FROM sales.orders o LEFT JOIN logistics.shipments s ON s.order_id = o.order_id
        WHERE o.total > 1500""",
    "semi_join_across_sources": """
        SELECT count(*) AS n, sum(total) AS total FROM sales.orders
        WHERE order_id IN (SELECT order_id FROM logistics.shipments WHERE carrier = 'La Poste')""",
    "anti_join_across_sources": """
        SELECT o.status, count(*) AS n FROM sales.orders o
        WHERE NOT EXISTS (SELECT 1 FROM logistics.shipments s WHERE s.order_id = o.order_id)
        GROUP BY o.status""",
    "union_of_domains": """
        SELECT name, 'customer' AS kind FROM sales.customers WHERE country = 'DE'
        UNION ALL SELECT name, 'product' FROM inventory.products WHERE category = 'books'""",
    "timestamps_with_time_zone_across_sources": """
        SELECT s.carrier, count(*) AS n, min(s.shipped_at) AS first_shipped, max(c.signup) AS last_signup
        FROM logistics.shipments s
        JOIN sales.orders o ON o.order_id = s.order_id
        JOIN sales.customers c ON c.customer_id = o.customer_id
        WHERE s.shipped_at >= TIMESTAMP '2024-06-01 00:00:00+00:00' AND c.signup < TIMESTAMP '2023-12-01 00:00:00+00:00'
        GROUP BY s.carrier""",
    "nulls_group_and_coalesce": """
        SELECT coalesce(c.segment, 'unknown') AS segment, count(DISTINCT c.customer_id) AS customers,
               sum(i.quantity) AS qty
        FROM sales.customers c JOIN sales.orders o ON o.customer_id = c.customer_id
        JOIN inventory.order_items i ON i.order_id = o.order_id
        GROUP BY 1""",
    "cte_window_across_sources": """
        WITH shipped AS (
            SELECT o.customer_id, count(*) AS shipments, sum(s.weight_kg) AS kg
            FROM sales.orders o JOIN logistics.shipments s ON s.order_id = o.order_id GROUP BY 1)
        SELECT c.country, c.customer_id, shipped.shipments,
               rank() OVER (PARTITION BY c.country ORDER BY shipped.kg DESC, c.customer_id) AS heaviest
        FROM shipped JOIN sales.customers c ON c.customer_id = shipped.customer_id""",
    "sql_defined_product_joined_to_parquet": """
        SELECT b.name, count(s.shipment_id) AS shipments
        FROM sales.big_spenders b JOIN sales.orders o ON o.customer_id = b.customer_id
        LEFT JOIN logistics.shipments s ON s.order_id = o.order_id GROUP BY b.name""",
    # SQLite computes on decimals in floating point: DataFusion computes this one exactly.
    "sqlite_decimal_average_stays_exact": """
        SELECT p.category, avg(p.price) AS avg_price, sum(i.quantity * p.price) AS revenue
        FROM inventory.order_items i JOIN inventory.products p ON p.product_id = i.product_id
        GROUP BY p.category""",
}

SINGLE_SOURCE = {
    "postgres_join_having_order_limit": """
        SELECT c.country, count(*) AS orders, sum(o.total) AS total
        FROM sales.orders o JOIN sales.customers c ON c.customer_id = o.customer_id
        WHERE o.status IN ('paid', 'shipped') GROUP BY c.country HAVING count(*) > 10
        ORDER BY total DESC LIMIT 3""",
    "postgres_window": """
        SELECT customer_id, order_id, total,
               row_number() OVER (PARTITION BY customer_id ORDER BY total DESC, order_id) AS rn
        FROM sales.orders WHERE customer_id < 20""",
    "sqlite_aggregate": """
        SELECT p.category, count(*) AS lines, sum(i.quantity) AS qty, max(i.order_id) AS last_order
        FROM inventory.order_items i JOIN inventory.products p ON p.product_id = i.product_id
        GROUP BY p.category""",
    "sqlite_null_ordering": "SELECT name, category FROM inventory.products ORDER BY category DESC, name LIMIT 7",
    # An average of decimals is sent written to give DataFusion's digits (gateway/averages.py).
    "postgres_decimal_average": """
        SELECT c.country, avg(o.total) AS avg_total, sum(o.total) AS total
        FROM sales.orders o JOIN sales.customers c ON c.customer_id = o.customer_id GROUP BY c.country""",
}


@pytest.mark.parametrize("name", sorted(CROSS_DOMAIN))
def test_cross_domain_query_matches_reference(gateway: str, reference: duckdb.DuckDBPyConnection, name: str) -> None:
    sql = CROSS_DOMAIN[name]
    got = query(gateway, sql)
    expected = reference.sql(sql).to_arrow_table()
    assert got.num_rows > 0, "a reference query must return rows to prove anything"
    assert same_rows(rows(got), rows(expected)), (rows(got)[:5], rows(expected)[:5])


@pytest.mark.parametrize("name", sorted(SINGLE_SOURCE))
def test_single_source_query_runs_whole_in_the_source(
    gateway: str, reference: duckdb.DuckDBPyConnection, name: str
) -> None:
    sql = SINGLE_SOURCE[name]
    got = query(gateway, sql)
    expected = reference.sql(sql).to_arrow_table()
    assert got.num_rows > 0
    if "ORDER BY" in sql.split("OVER")[-1] and "LIMIT" in sql:
        assert same_rows(
            [tuple(normalise(v) for v in r.values()) for r in got.to_pylist()],
            [tuple(normalise(v) for v in r.values()) for r in expected.to_pylist()],
        )
    else:
        assert same_rows(rows(got), rows(expected)), (rows(got)[:5], rows(expected)[:5])
    sent = source_queries(gateway, sql)
    assert len(sent) == 1, f"expected one whole query to one source, got {sent}"
    assert "JOIN" in sent[0][1].upper() or "GROUP BY" in sent[0][1].upper() or "ORDER BY" in sent[0][1].upper()


def test_a_decimal_average_in_postgres_has_datafusions_digits(gateway: str, tables: dict[str, pa.Table]) -> None:
    """DataFusion truncates ``avg`` of a decimal to 4 more digits; PostgreSQL's own ``avg`` rounds (and has
    more): the whole query must answer DataFusion's value exactly, in DataFusion's type."""
    sql = "SELECT customer_id, avg(total) AS a FROM sales.orders WHERE total IS NOT NULL GROUP BY customer_id"
    sent = source_queries(gateway, sql)
    assert len(sent) == 1 and "DIV(" in sent[0][1], sent
    got = query(gateway, sql)
    total = tables["sales.orders"].schema.field("total").type
    assert got.schema.field("a").type == pa.decimal128(min(38, total.precision + 4), total.scale + 4)
    sums: dict[int, list[decimal.Decimal]] = {}
    for row in tables["sales.orders"].to_pylist():
        if row["total"] is not None:
            sums.setdefault(row["customer_id"], []).append(row["total"])
    step = decimal.Decimal(1).scaleb(-(total.scale + 4))
    truncated = {k: (sum(v) / len(v)).quantize(step, rounding=decimal.ROUND_DOWN) for k, v in sums.items()}
    rounded = {k: (sum(v) / len(v)).quantize(step, rounding=decimal.ROUND_HALF_EVEN) for k, v in sums.items()}
    assert truncated != rounded, "the data must hold an average that rounding would change"
    assert {r["customer_id"]: r["a"] for r in got.to_pylist()} == truncated


def test_an_average_compared_in_postgres_has_datafusions_digits(gateway: str, tables: dict[str, pa.Table]) -> None:
    """An average that is compared, not returned: the whole query gets DataFusion's truncated average too."""
    sql = (
        "SELECT count(*) AS n FROM sales.orders o"
        " WHERE o.total > (SELECT avg(i.total) FROM sales.orders i WHERE i.customer_id < 50)"
    )
    sent = source_queries(gateway, sql)
    assert len(sent) == 1 and "DIV(" in sent[0][1], sent
    totals = [r["total"] for r in tables["sales.orders"].to_pylist() if r["total"] is not None]
    chosen = [
        r["total"]
        for r in tables["sales.orders"].to_pylist()
        if r["total"] is not None and r["customer_id"] is not None and r["customer_id"] < 50
    ]
    scale = tables["sales.orders"].schema.field("total").type.scale + 4
    average = (sum(chosen) / len(chosen)).quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_DOWN)
    assert query(gateway, sql).column("n").to_pylist() == [sum(1 for t in totals if t > average)]


def test_each_source_gets_only_its_columns_and_filters(gateway: str, tables: dict[str, pa.Table]) -> None:
    sql = """
        SELECT c.name, s.carrier FROM sales.customers c
        JOIN sales.orders o ON o.customer_id = c.customer_id
        JOIN logistics.shipments s ON s.order_id = o.order_id
        JOIN inventory.order_items i ON i.order_id = o.order_id
        WHERE c.country = 'JP' AND i.quantity >= 4"""
    sent = {label.split("/")[0]: (text, count) for label, text, count in source_queries(gateway, sql)}
    assert set(sent) == {"sales", "inventory", "logistics"}, sent
    # The Parquet file is joined in the gateway's DuckDB with the Japanese customers' orders,
    # computed first (gateway/plan/file_subplans.py): its two columns only.
    shipments_sql = sent["logistics"][0]
    assert '"shipments"."carrier"' in shipments_sql and "READ_PARQUET(" in shipments_sql, shipments_sql
    assert not re.search(r'"shipments"\."(?!carrier"|order_id")', shipments_sql), shipments_sql
    sales_sql = [text for label, text, _ in source_queries(gateway, sql) if label.startswith("sales")]
    assert any("'JP'" in text and "lifetime_value" not in text and "signup" not in text for text in sales_sql)
    inventory_sql, inventory_rows = sent["inventory"]
    assert '"quantity" >= 4' in inventory_sql and '"product_id"' not in inventory_sql
    quantities = tables["inventory.order_items"].column("quantity").to_pylist()
    # At most the rows of its own filter: the Japanese customers' order keys, computed first,
    # may filter it too (a run-time filter, gateway/plan/runtime_filter.py).
    assert inventory_rows == sum(1 for q in quantities if q >= 4) or (
        inventory_rows < sum(1 for q in quantities if q >= 4) and '"order_id" IN (' in inventory_sql
    ), inventory_sql
