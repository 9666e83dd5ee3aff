"""Pushdown, asserted on what each source actually received and returned.

Each query joins a SQL source to a Parquet file so that it is federated (a query on one
SQL source alone would go to it whole). For every predicate kind the test checks the
SQL the source received, that the source returned exactly the rows the predicate
selects (computed by DuckDB over the same data), and that the answer is right.
"""

from __future__ import annotations

import duckdb
import pytest

from tests.e2e.test_federation import rows, same_rows
from tests.support.gateway import query, source_queries

POSTGRES_PUSHED = {
    "equals": ("x.country = 'DE'", "= 'DE'"),
    "not_equals": ("x.country <> 'DE'", "<> 'DE'"),
    "less": ("x.customer_id < 50", "< 50"),
    "less_equal": ("x.customer_id <= 50", "<= 50"),
    "greater": ("x.customer_id > 150", "> 150"),
    "greater_equal": ("x.customer_id >= 150", ">= 150"),
    "and": ("x.country = 'DE' AND x.customer_id > 100", "> 100"),
    "or": ("x.country = 'DE' OR x.segment = 'smb'", " OR "),
    "not": ("NOT (x.country = 'DE' OR x.country = 'FR')", "<> 'FR'"),
    "in_list": ("x.country IN ('DE', 'FR')", "'FR'"),
    "not_in_list": ("x.country NOT IN ('DE', 'FR')", "'FR'"),
    "between": ("x.customer_id BETWEEN 10 AND 60", "60"),
    "is_null": ("x.segment IS NULL", "IS NULL"),
    "is_not_null": ("x.segment IS NOT NULL", "IS NULL"),
    "like_prefix": ("x.name LIKE 'Zo%'", "LIKE 'Zo%'"),
    "not_like": ("x.name NOT LIKE '%1%'", "LIKE '%1%'"),
    "ilike": ("x.name ILIKE 'zoë%'", "ILIKE 'zoë%'"),
    "like_is_case_sensitive": ("x.name LIKE 'zoë%'", "LIKE 'zoë%'"),
    "substr": ("substr(x.name, 1, 3) = 'Zoë'", "SUBSTRING("),
    "strpos": ("strpos(x.name, 'O''B') > 0", "POSITION('O''B' IN"),
    "md5": ("md5(x.name) LIKE 'a%'", "MD5("),
    "length": ("length(x.name) > 14", "LENGTH("),
    "decimal": ("x.lifetime_value > 5000.50", "5000.5"),
    "timestamp_tz": ("x.signup >= TIMESTAMP '2023-06-01 00:00:00+00:00'", "2023-06-01"),
    "text_ordering_in_byte_order": ("x.name > 'T'", 'COLLATE "C"'),
    "arithmetic": ("x.customer_id + 1 > 100", "+ 1"),
    "quotes_in_literal": ("x.name LIKE 'Sean O''Brien%'", "O''Brien"),
}

KEPT_BACK = {
    "modulo": "x.customer_id % 7 = 0",
    # DataFusion upper-cases 'ß' to 'SS'; PostgreSQL does not: not an equivalent.
    "function_without_an_equivalent": "upper(x.name) LIKE 'ZO%'",
}

SQLITE_PUSHED = {
    "equals": ("x.category = 'books'", "= 'books'"),
    "less": ("x.product_id < 20", "< 20"),
    "in_list": ("x.category IN ('toys', 'tools')", "'tools'"),
    "between": ("x.product_id BETWEEN 5 AND 25", "25"),
    "like_is_case_sensitive": ("x.name LIKE 'Product%'", "LIKE 'Product%'"),
    "like": ("x.name LIKE 'product 1%'", "LIKE 'product 1%'"),
    "length": ("length(x.name) > 14", "LENGTH("),
    "decimal": ("x.price > 100.5", "100.5"),
    "text_ordering": ("x.name > 'product 5'", "> 'product 5'"),
    "not_null_or": ("x.category IS NOT NULL AND (x.product_id < 10 OR x.product_id > 50)", " OR "),
}


def federated(table: str, predicate: str) -> str:
    return f"SELECT x.* FROM {table} x JOIN logistics.shipments s ON s.shipment_id = x.{_key(table)} WHERE {predicate}"


def _key(table: str) -> str:
    return "customer_id" if table == "sales.customers" else "product_id"


def check_pushed(gateway: str, reference: duckdb.DuckDBPyConnection, table: str, predicate: str, fragment: str) -> None:
    sql = federated(table, predicate)
    assert same_rows(rows(query(gateway, sql)), rows(reference.sql(sql).to_arrow_table()))
    domain = table.split(".")[0]
    sent = [(text, count) for label, text, count in source_queries(gateway, sql) if label.startswith(domain + "/")]
    assert len(sent) == 1, sent
    text, returned = sent[0]
    assert "WHERE" in text and fragment in text, text
    ((expected,),) = reference.sql(f"SELECT count(*) FROM {table} x WHERE {predicate}").fetchall()
    assert returned == expected, f"source returned {returned} rows, the predicate selects {expected}: {text}"


@pytest.mark.parametrize("name", sorted(POSTGRES_PUSHED))
def test_postgres_pushdown(gateway: str, reference: duckdb.DuckDBPyConnection, name: str) -> None:
    predicate, fragment = POSTGRES_PUSHED[name]
    check_pushed(gateway, reference, "sales.customers", predicate, fragment)


@pytest.mark.parametrize("name", sorted(SQLITE_PUSHED))
def test_sqlite_pushdown(gateway: str, reference: duckdb.DuckDBPyConnection, name: str) -> None:
    predicate, fragment = SQLITE_PUSHED[name]
    check_pushed(gateway, reference, "inventory.products", predicate, fragment)


@pytest.mark.parametrize("name", sorted(KEPT_BACK))
def test_predicates_a_source_cannot_evaluate_stay_in_datafusion(
    gateway: str, reference: duckdb.DuckDBPyConnection, name: str
) -> None:
    sql = federated("sales.customers", KEPT_BACK[name])
    got = query(gateway, sql)
    assert same_rows(rows(got), rows(reference.sql(sql).to_arrow_table()))
    assert got.num_rows > 0
    (sent,) = [(text, n) for label, text, n in source_queries(gateway, sql) if label.startswith("sales/")]
    assert "WHERE" not in sent[0] and sent[1] == 200, sent


@pytest.mark.parametrize(
    ("where", "fragment"),
    [("x.country = 'DE'", "= 'DE'"), ("x.name LIKE '%a%'", "LIKE '%a%'")],
    ids=["nothing-kept-back", "a-filter-datafusion-keeps-too"],
)
def test_limit_reaches_the_source(gateway: str, where: str, fragment: str) -> None:
    """With nothing kept back, or above a LIKE that DataFusion evaluates above the scan (and the
    source too): the LIMIT reaches the source (DataFusion 55 hands it over as an expression)."""
    sql = (
        f"SELECT x.name FROM sales.customers x WHERE {where} UNION ALL SELECT carrier FROM logistics.shipments LIMIT 5"
    )
    got = query(gateway, sql)
    assert got.num_rows == 5
    sent = [(text, n) for label, text, n in source_queries(gateway, sql) if label.startswith("sales/")]
    assert sent and all(fragment in text and "LIMIT 5" in text and n <= 5 for text, n in sent), sent


def test_partly_pushable_filter_keeps_the_rest_and_stays_correct(
    gateway: str, reference: duckdb.DuckDBPyConnection
) -> None:
    predicate = "x.country = 'DE' AND x.customer_id % 3 = 0"
    sql = federated("sales.customers", predicate)
    assert same_rows(rows(query(gateway, sql)), rows(reference.sql(sql).to_arrow_table()))
    (sent,) = [(text, n) for label, text, n in source_queries(gateway, sql) if label.startswith("sales/")]
    assert "= 'DE'" in sent[0] and "%" not in sent[0]
    ((de,),) = reference.sql("SELECT count(*) FROM sales.customers WHERE country = 'DE'").fetchall()
    assert sent[1] == de
