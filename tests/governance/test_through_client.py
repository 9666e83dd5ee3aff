"""What only a client can show: prepared statements, catalog commands and system tables per user.

Every bypass attempt of test_bypass.py also runs through the client (its ``run`` fixture);
the ``gateway`` fixture (tests/governance/conftest.py) is a `meshgate serve` process whose
users log in with their own passwords, groups and attributes.
"""

from __future__ import annotations

import adbc_driver_manager
import pyarrow as pa
import pytest

from tests.governance.mesh import credentials
from tests.support.gateway import connect, query


def run(uri: str, user: str, sql: str) -> pa.Table:
    return query(uri, sql, credentials(user))


def test_filters_cannot_probe_masked_values_and_explain_shows_the_policy(gateway: str) -> None:
    assert run(gateway, "alice", "SELECT count(*) AS n FROM sales.customers WHERE name LIKE 'Zo%'").column(
        0
    ).to_pylist() == [0]
    plan = "\n".join(run(gateway, "alice", "EXPLAIN SELECT name FROM sales.customers").column("plan").to_pylist())
    assert "meshgate_mask_hash_" in plan and "sha256" not in plan and 'Utf8("DE")' in plan


def test_prepared_statement_with_parameters_is_governed(gateway: str) -> None:
    with connect(gateway, credentials("alice")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM sales.customers WHERE country = $1", ("FR",))
        assert cursor.fetch_arrow_table().column("n").to_pylist() == [0]


def test_catalog_commands_show_only_granted_products_and_columns(gateway: str) -> None:
    with connect(gateway, credentials("carol")) as connection:
        objects = connection.adbc_get_objects(depth="all").read_all().to_pylist()
    tables = {
        (schema["db_schema_name"], table["table_name"]): [c["column_name"] for c in table["table_columns"] or []]
        for catalog in objects
        if catalog["catalog_name"] == "mesh"
        for schema in catalog["catalog_db_schemas"] or []
        for table in schema["db_schema_tables"] or []
    }
    assert tables == {("logistics", "shipments"): ["shipment_id", "order_id", "carrier"]}


def test_system_tables_through_the_client(gateway: str) -> None:
    assert run(gateway, "carol", "SELECT product FROM system.products").column(0).to_pylist() == ["shipments"]
    run(gateway, "eve", "SELECT 1 AS one")
    for user in ("eve", "carol"):  # a refusal of each, whatever ran before on this gateway
        with pytest.raises(adbc_driver_manager.Error, match="access denied"):
            run(gateway, user, "SELECT count(*) FROM sales.orders")
    mine = run(gateway, "eve", 'SELECT DISTINCT "user" FROM system.query_log').column(0).to_pylist()
    assert mine == ["eve"]
    log = run(gateway, "root", "SELECT \"user\", outcome, error FROM system.query_log WHERE outcome = 'denied'")
    assert {"eve", "carol"} <= set(log.column("user").to_pylist())
