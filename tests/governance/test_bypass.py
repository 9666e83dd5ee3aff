"""Attempts to get around the policies: each must be denied or see only masked, filtered data.

The users and policies are in :mod:`tests.governance.mesh`: alice (analyst, country DE)
may read sales.customers with names hashed, lifetime_value nulled and only DE rows,
and sales.orders without cancelled orders; carol sees three columns of shipments; eve
holds no role; root is the admin.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from gateway.engine import Engine
from gateway.errors import AuthenticationError, MeshgateError, PermissionDeniedError
from tests.governance.conftest import Run
from tests.governance.mesh import USERS

HASH = re.compile(r"^[0-9a-f]{64}$")


def customers(tables: dict[str, pa.Table], **where: str) -> list[dict[str, object]]:
    rows = tables["sales.customers"].to_pylist()
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


# ---------------------------------------------------------------- denied outright

DENIED = {
    "no_role_direct": ("eve", "SELECT * FROM sales.customers"),
    "no_role_cte": ("eve", "WITH c AS (SELECT * FROM sales.customers) SELECT * FROM c"),
    "no_role_exists_subquery": ("eve", "SELECT 1 AS one WHERE EXISTS (SELECT 1 FROM sales.customers)"),
    "no_role_scalar_subquery": ("eve", "SELECT (SELECT count(*) FROM sales.orders) AS n"),
    "no_role_union": ("carol", "SELECT carrier FROM logistics.shipments UNION ALL SELECT name FROM sales.customers"),
    "no_role_join": ("carol", "SELECT s.carrier FROM logistics.shipments s JOIN sales.orders o USING (order_id)"),
    "no_grant_on_other_domain": ("alice", "SELECT * FROM logistics.shipments"),
    "anonymous": ("anonymous", "SELECT count(*) FROM inventory.products"),
    "explain_does_not_bypass": ("eve", "EXPLAIN SELECT * FROM sales.customers"),
    "catalog_qualified": ("eve", "SELECT * FROM mesh.sales.customers"),
    "quoted_and_upper_case": ("eve", 'SELECT * FROM "sales"."customers" c, SALES.ORDERS o'),
    "in_subquery": (
        "carol",
        "SELECT shipment_id FROM logistics.shipments WHERE order_id IN (SELECT order_id FROM sales.orders)",
    ),
}


@pytest.mark.parametrize("name", sorted(DENIED))
def test_denied(run: Run, name: str) -> None:
    user, sql = DENIED[name]
    with pytest.raises((PermissionDeniedError, AuthenticationError), match=r"access denied|authentication required"):
        run(user, sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT weight_kg FROM logistics.shipments",
        "SELECT count(*) FROM logistics.shipments WHERE weight_kg > 10",
        "SELECT shipment_id FROM logistics.shipments ORDER BY shipped_at",
    ],
)
def test_columns_not_granted_cannot_be_named(run: Run, sql: str) -> None:
    with pytest.raises(MeshgateError, match=r"weight_kg|shipped_at"):
        run("carol", sql)


def test_raw_products_cannot_be_reached_by_name(run: Run) -> None:
    for sql in [
        "SELECT * FROM __raw.sales.customers",
        "SELECT * FROM information_schema.tables WHERE table_catalog LIKE '__raw%' AND table_schema <> 'information_schema'",
    ]:
        try:
            result = run("alice", sql)
        except MeshgateError:
            continue
        assert result.num_rows == 0, sql


# ---------------------------------------------------------------- masked and filtered


def test_star_returns_only_granted_columns(run: Run) -> None:
    got = run("carol", "SELECT * FROM logistics.shipments")
    assert got.schema.names == ["shipment_id", "order_id", "carrier"]
    assert got.num_rows > 0


def test_names_are_hashed_and_rows_filtered(run: Run, tables: dict[str, pa.Table]) -> None:
    got = run("alice", "SELECT customer_id, name, country, lifetime_value FROM sales.customers")
    expected = customers(tables, country="DE")
    assert sorted(got.column("customer_id").to_pylist()) == sorted(r["customer_id"] for r in expected)
    assert all(HASH.match(name) for name in got.column("name").to_pylist() if name is not None)
    assert set(got.column("country").to_pylist()) == {"DE"}
    assert set(got.column("lifetime_value").to_pylist()) == {None}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT count(*) AS n FROM sales.customers WHERE country = 'FR'", 0),
        ("SELECT count(*) AS n FROM sales.customers WHERE country = 'FR' OR 1 = 1", "DE"),
        ("SELECT count(*) AS n FROM sales.customers WHERE country <> 'DE'", 0),
        ("SELECT count(*) AS n FROM mesh.sales.customers", "DE"),
        ('SELECT count(*) AS n FROM "sales"."customers"', "DE"),
        ("SELECT count(*) AS n FROM SALES.CUSTOMERS", "DE"),
        ("SELECT count(*) AS n FROM (SELECT * FROM sales.customers) c", "DE"),
        ("WITH x AS (SELECT * FROM sales.customers) SELECT count(*) AS n FROM x", "DE"),
        ("SELECT (SELECT count(*) FROM sales.customers) AS n", "DE"),
        ("SELECT count(*) AS n FROM sales.customers c1 JOIN sales.customers c2 USING (customer_id)", "DE"),
        (
            "SELECT count(*) AS n FROM (SELECT customer_id FROM sales.customers UNION SELECT customer_id"
            " FROM sales.customers WHERE country = 'US') u",
            "DE",
        ),
    ],
)
def test_row_filter_holds_on_every_route(run: Run, tables: dict[str, pa.Table], sql: str, expected: object) -> None:
    want = len(customers(tables, country="DE")) if expected == "DE" else expected
    assert run("alice", sql).column("n").to_pylist() == [want]


def test_predicates_on_masked_columns_see_masked_values(run: Run, tables: dict[str, pa.Table]) -> None:
    real = customers(tables, country="DE")[0]["name"]
    escaped = str(real).replace("'", "''")
    assert run("alice", f"SELECT count(*) AS n FROM sales.customers WHERE name = '{escaped}'").column(
        "n"
    ).to_pylist() == [0]
    assert run("alice", "SELECT count(*) AS n FROM sales.customers WHERE name LIKE 'Zo%'").column("n").to_pylist() == [
        0
    ]
    assert run("alice", "SELECT count(*) AS n FROM sales.customers WHERE lifetime_value > 0").column(
        "n"
    ).to_pylist() == [0]


def test_aggregates_and_windows_over_masked_columns_leak_nothing(run: Run) -> None:
    row = run("alice", "SELECT max(lifetime_value) AS m, min(name) AS first FROM sales.customers").to_pylist()[0]
    assert row["m"] is None and HASH.match(str(row["first"]))
    ranks = run("alice", "SELECT lifetime_value, rank() OVER (ORDER BY lifetime_value) AS r FROM sales.customers")
    assert set(ranks.column("lifetime_value").to_pylist()) == {None} and set(ranks.column("r").to_pylist()) == {1}


def test_joins_keep_every_policy(run: Run, tables: dict[str, pa.Table]) -> None:
    got = run(
        "alice",
        "SELECT c.country, c.name, o.status FROM sales.orders o JOIN sales.customers c ON c.customer_id = o.customer_id",
    )
    assert set(got.column("country").to_pylist()) == {"DE"}
    assert "cancelled" not in set(got.column("status").to_pylist())
    assert all(HASH.match(n) for n in got.column("name").to_pylist() if n is not None)
    de = {r["customer_id"] for r in customers(tables, country="DE")}
    expected = [o for o in tables["sales.orders"].to_pylist() if o["customer_id"] in de and o["status"] != "cancelled"]
    assert got.num_rows == len(expected)


def test_domain_policy_hides_cancelled_orders(run: Run) -> None:
    assert run("alice", "SELECT count(*) AS n FROM sales.orders WHERE status = 'cancelled'").column(
        "n"
    ).to_pylist() == [0]
    assert (
        run("root", "SELECT count(*) AS n FROM sales.orders WHERE status = 'cancelled'").column("n").to_pylist()[0] > 0
    )


def test_group_membership_and_attributes(run: Run, tables: dict[str, pa.Table]) -> None:
    assert run("dave", "SELECT count(*) AS n FROM sales.customers").column("n").to_pylist() == [
        len(customers(tables, country="FR"))
    ]
    # An analyst without the attribute the filter needs sees nothing (fail closed).
    assert run("frank", "SELECT count(*) AS n FROM sales.customers").column("n").to_pylist() == [0]


def test_exempt_roles_see_clear_values(run: Run, tables: dict[str, pa.Table]) -> None:
    bob = run("bob", "SELECT name, lifetime_value FROM sales.customers")
    assert sorted(bob.column("name").to_pylist(), key=str) == sorted(
        (r["name"] for r in customers(tables, country="US")), key=str
    )
    assert set(bob.column("lifetime_value").to_pylist()) == {None}
    root = run("root", "SELECT count(*) AS n, max(lifetime_value) AS m FROM sales.customers").to_pylist()[0]
    assert root["n"] == 200 and root["m"] is not None


def test_explain_shows_the_policies_and_runs_governed(run: Run, tables: dict[str, pa.Table]) -> None:
    explained = run("alice", "EXPLAIN SELECT name FROM sales.customers")
    plan = "\n".join(explained.column("plan").to_pylist() + explained.column("plan_type").to_pylist())
    assert "meshgate_mask_hash_" in plan and "sha256" not in plan and 'Utf8("DE")' in plan
    # The source's SQL and location are for the domain's owners and admins only.
    assert "SELECT" not in plan and "postgresql://" not in plan and "source_query[sales/postgres]" in plan
    analyzed = run("alice", "EXPLAIN ANALYZE SELECT name FROM sales.customers").to_pylist()
    (source,) = [r["plan"] for r in analyzed if r["plan_type"].startswith("source_query[sales/")]
    assert "SELECT" not in source
    # The row filter is part of the source's query, so its row count is one alice may see.
    assert f"rows={len(customers(tables, country='DE'))} " in source
    admin = run("root", "EXPLAIN ANALYZE SELECT name FROM sales.customers WHERE country = 'DE'").to_pylist()
    (source,) = [r["plan"] for r in admin if r["plan_type"].startswith("source_query[sales/postgres:postgresql://")]
    assert "'DE'" in source and "SELECT" in source


def test_prepared_parameters_cannot_widen_the_filter(engine: Engine) -> None:
    query = engine.prepare("SELECT count(*) AS n FROM sales.customers WHERE country = $1", USERS["alice"])
    result = engine.execute(query, USERS["alice"], pa.record_batch([pa.array(["FR"])], names=["$1"])).read_all()
    assert result.column("n").to_pylist() == [0]


def test_discovery_shows_only_what_a_caller_may_read(engine: Engine, run: Run) -> None:
    carol = {(p.domain, p.name): p.schema.names for p in engine.products(USERS["carol"])}
    assert carol == {("logistics", "shipments"): ["shipment_id", "order_id", "carrier"]}
    alice = {(p.domain, p.name): p.schema for p in engine.products(USERS["alice"])}
    assert set(alice) == {
        ("sales", "customers"),
        ("sales", "orders"),
        ("inventory", "products"),
        ("inventory", "order_items"),
    }
    assert alice[("sales", "customers")].field("name").type == pa.string()
    assert engine.products(USERS["eve"]) == []
    listed = run("alice", "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = 'mesh'")
    assert ("logistics", "shipments") not in set(
        zip(listed.column(0).to_pylist(), listed.column(1).to_pylist(), strict=True)
    )
    columns = run("carol", "SELECT column_name FROM information_schema.columns WHERE table_name = 'shipments'")
    assert sorted(columns.column(0).to_pylist()) == ["carrier", "order_id", "shipment_id"]
