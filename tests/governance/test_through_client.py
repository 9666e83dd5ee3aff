"""The policies through a real client: each user logs in over Flight and gets only what they may see.

A `meshgate serve` process runs the governed mesh of :mod:`tests.governance.mesh` with an
``auth:`` section giving each user a password, groups and attributes; the queries go
through the ADBC Flight SQL driver with each user's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_manager
import pyarrow as pa
import pytest

from gateway.auth import hash_password
from tests.e2e.federation_data import build_tables
from tests.governance.mesh import write_governed_mesh
from tests.governance.test_bypass import DENIED
from tests.support.gateway import Credentials, GatewayProcess, connect, query

SCHEMA = "meshgate_governance_client"
HASH = re.compile(r"^[0-9a-f]{64}$")
USERS = {
    "alice": ("DE", []),
    "dave": ("FR", ["analysts"]),
    "bob": ("US", []),
    "carol": ("DE", []),
    "root": (None, []),
    "eve": ("DE", []),
}


def credentials(user: str) -> Credentials:
    return Credentials(user, f"{user}-secret-password")


def auth_section() -> str:
    lines = ["auth:", "  users:"]
    for user, (country, groups) in USERS.items():
        lines.append(f"    - name: {user}")
        lines.append(f"      password_hash: '{hash_password(credentials(user).password)}'")
        if groups:
            lines.append(f"      groups: [{', '.join(groups)}]")
        if country:
            lines.append(f"      attributes: {{country: {country}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return build_tables()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, tables: dict[str, pa.Table]) -> Iterator[str]:
    config = write_governed_mesh(tmp_path_factory.mktemp("governed-client"), postgres_uri, SCHEMA, tables)
    (Path(config) / "auth.yaml").write_text(auth_section())
    process = GatewayProcess(config, credentials=credentials("root"))
    yield process.uri
    process.stop()


def run(uri: str, user: str, sql: str) -> pa.Table:
    return query(uri, sql, credentials(user))


@pytest.mark.parametrize("name", sorted(DENIED))
def test_denied_through_the_client(gateway: str, name: str) -> None:
    user, sql = DENIED[name]
    if user == "anonymous":
        with pytest.raises(adbc_driver_manager.Error, match=r"authentication required|UNAUTHENTICATED"):
            query(gateway, sql, None)
        return
    with pytest.raises(adbc_driver_manager.Error, match=r"access denied"):
        run(gateway, user, sql)


def test_masks_and_row_filters_through_the_client(gateway: str, tables: dict[str, pa.Table]) -> None:
    got = run(gateway, "alice", "SELECT customer_id, name, country, lifetime_value FROM sales.customers")
    expected = [r for r in tables["sales.customers"].to_pylist() if r["country"] == "DE"]
    assert sorted(got.column("customer_id").to_pylist()) == sorted(r["customer_id"] for r in expected)
    assert all(HASH.match(n) for n in got.column("name").to_pylist() if n is not None)
    assert set(got.column("lifetime_value").to_pylist()) == {None}
    dave = run(gateway, "dave", "SELECT DISTINCT country FROM sales.customers")
    assert dave.column(0).to_pylist() == ["FR"]
    root = run(gateway, "root", "SELECT count(*) AS n FROM sales.customers WHERE lifetime_value IS NOT NULL")
    assert root.column("n").to_pylist()[0] > 0


def test_filters_cannot_probe_masked_values_and_explain_shows_the_policy(gateway: str) -> None:
    assert run(gateway, "alice", "SELECT count(*) AS n FROM sales.customers WHERE name LIKE 'Zo%'").column(
        0
    ).to_pylist() == [0]
    plan = "\n".join(run(gateway, "alice", "EXPLAIN SELECT name FROM sales.customers").column("plan").to_pylist())
    assert "sha256" in plan and "'DE'" in plan


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
    mine = run(gateway, "eve", 'SELECT DISTINCT "user" FROM system.query_log').column(0).to_pylist()
    assert mine == ["eve"]
    log = run(gateway, "root", "SELECT \"user\", outcome, error FROM system.query_log WHERE outcome = 'denied'")
    assert {"eve", "carol"} <= set(log.column("user").to_pylist())
