"""Browsing the mesh and failing well, through the real client against the real engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pytest

from tests.support.gateway import query, serve_in_process


def test_get_objects_lists_catalog_domains_products_and_columns(gateway: str) -> None:
    with flightsql.connect(gateway) as connection:
        objects = connection.adbc_get_objects(depth="all").read_all().to_pylist()
        (mesh,) = [catalog for catalog in objects if catalog["catalog_name"] == "mesh"]
        tables = {
            (schema["db_schema_name"], table["table_name"]): [c["column_name"] for c in table["table_columns"]]
            for schema in mesh["catalog_db_schemas"]
            for table in schema["db_schema_tables"]
        }
        assert tables[("sales", "customers")] == [
            "customer_id",
            "name",
            "country",
            "segment",
            "signup",
            "lifetime_value",
        ]
        assert ("inventory", "order_items") in tables and ("logistics", "shipments") in tables
        assert ("sales", "big_spenders") in tables
        schema = connection.adbc_get_table_schema("orders", catalog_filter="mesh", db_schema_filter="sales")
        assert schema.field("total").type == pa.decimal128(12, 2)
        assert schema.field("order_date").type == pa.date32()


def test_table_schema_carries_the_product_description(gateway: str) -> None:
    with flightsql.connect(gateway) as connection:
        schema = connection.adbc_get_table_schema("customers", catalog_filter="mesh", db_schema_filter="sales")
    metadata = schema.metadata or {}
    assert metadata.get(b"meshgate.description") == b"One row per customer"
    assert metadata.get(b"meshgate.owner") == b"sales-team"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM mesh.sales.customers",
        "SELECT count(*) AS n FROM SALES.Customers",
        'SELECT count(*) AS n FROM "sales"."customers"',
    ],
)
def test_products_are_named_domain_dot_product_case_insensitively(gateway: str, sql: str) -> None:
    assert query(gateway, sql).column("n").to_pylist() == [200]


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fragile")
    (folder / "mesh.yaml").write_text(
        f"""domains:
  - name: ok
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: numbers, sql: "SELECT g AS n FROM generate_series(1, 5) g"}}
      - {{name: failing, sql: "SELECT 1 / (g - 3) AS r FROM generate_series(1, 5) g"}}
  - name: down
    connector: {{type: postgres, uri: "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1"}}
"""
    )
    with serve_in_process(Path(folder)) as uri:
        yield uri


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "SELECT * FROM down.anything",
            r"\[down/postgres:postgresql://postgres@127.0.0.1:1/test.*\].*(connect|refused)",
        ),
        ("SELECT r FROM ok.failing", r"\[ok/postgres:.*\].*division by zero"),
        ("SELECT * FROM ok.numbers WHERE", r"SQL syntax error"),
        ("SELECT x FROM ok.numbers", r"No field named x"),
        ("SELECT * FROM ok.nothing", r"unknown data product 'ok.nothing' \(domain 'ok' has: failing, numbers\)"),
        ("SELECT * FROM nowhere.numbers", r"unknown domain 'nowhere'"),
    ],
)
def test_errors_reach_the_client_and_the_server_keeps_serving(fragile: str, sql: str, message: str) -> None:
    with pytest.raises(adbc_driver_manager.Error, match=message) as raised:
        query(fragile, sql)
    assert "Traceback" not in str(raised.value)
    assert query(fragile, "SELECT sum(n) AS s FROM ok.numbers").column("s").to_pylist() == [15]
