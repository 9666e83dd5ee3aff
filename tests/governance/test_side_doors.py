"""More attempts around the policies, on every source kind: each checks the rows or the error it gets.

The mesh (tests/governance/mesh.py) filters rows on PostgreSQL (``sales.customers``: the
caller's country), SQLite (``inventory.products``: no tools; ``inventory.order_items``: a
filter SQLite cannot evaluate exactly, ``quantity % 5 <> 0``) and Parquet
(``logistics.shipments``: no DHL), masks with a keyed hash, ``null``, ``last4`` and a
platform tag rule on a pinned classification, and restricts columns (carol, gina).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from gateway.engine import Engine
from gateway.errors import MeshgateError, NotFoundError
from tests.governance.conftest import Run
from tests.governance.mesh import USERS

Expected = Callable[[dict[str, pa.Table]], Any]


def rows(tables: dict[str, pa.Table], name: str, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return [r for r in tables[name].to_pylist() if keep(r)]


def products_seen(t: dict[str, pa.Table]) -> list[dict[str, Any]]:
    return rows(t, "inventory.products", lambda r: r["category"] != "tools")


def shipments_seen(t: dict[str, pa.Table]) -> list[dict[str, Any]]:
    return rows(t, "logistics.shipments", lambda r: r["carrier"] != "DHL")


def customers_seen(t: dict[str, pa.Table]) -> list[dict[str, Any]]:
    return rows(t, "sales.customers", lambda r: r["country"] == "DE")


def items_seen(t: dict[str, pa.Table]) -> list[dict[str, Any]]:
    return rows(t, "inventory.order_items", lambda r: r["quantity"] % 5 != 0 and r["product_id"] != 7)


# One count per attempt: (user, SQL returning one count n, the count the policies allow).
ROW_FILTER_ATTEMPTS: dict[str, tuple[str, str, Expected]] = {}
SHAPES = {
    "direct": "SELECT count(*) AS n FROM {t}",
    "or_true": "SELECT count(*) AS n FROM {t} WHERE {c} = {v} OR 1 = 1",
    "not_filter": "SELECT count(*) AS n FROM {t} WHERE NOT ({c} <> {v})",
    "cte": "WITH x AS (SELECT * FROM {t}) SELECT count(*) AS n FROM x",
    "derived": "SELECT count(*) AS n FROM (SELECT {c} FROM {t}) d",
    "scalar_subquery": "SELECT (SELECT count(*) FROM {t}) AS n",
    "subquery_expression": "SELECT count(*) AS n FROM {t} WHERE {k} >= (SELECT min({k}) FROM {t})",
    "in_subquery": "SELECT count(*) AS n FROM {t} WHERE {k} IN (SELECT {k} FROM {t})",
    "exists": "SELECT count(*) AS n FROM {t} a WHERE EXISTS (SELECT 1 FROM {t} b WHERE b.{k} = a.{k})",
    "union_all": "SELECT count(*) AS n FROM (SELECT {k} FROM {t} UNION ALL SELECT {k} FROM {t} WHERE false) u",
    "self_join": "SELECT count(*) AS n FROM {t} a JOIN {t} b ON a.{k} = b.{k}",
    "window": "SELECT max(r) AS n FROM (SELECT row_number() OVER (ORDER BY {k}) AS r FROM {t}) w",
    "group_having": "SELECT coalesce(sum(m), 0) AS n FROM (SELECT count(*) AS m FROM {t} GROUP BY {c} HAVING count(*) > 0) g",
    "distinct_key": "SELECT count(DISTINCT {k}) AS n FROM {t}",
    "filter_clause": "SELECT count(*) FILTER (WHERE {c} = {v}) AS n FROM {t}",
    "case_on_filtered": "SELECT sum(CASE WHEN {c} = {v} THEN 1 ELSE 0 END) AS n FROM {t}",
}
# (user, product, filtered column, a value the filter hides, key column, what the user may see)
TARGETS = {
    "postgres": ("alice", "sales.customers", "country", "'FR'", "customer_id", customers_seen),
    "sqlite": ("alice", "inventory.products", "category", "'tools'", "product_id", products_seen),
    "parquet": ("carol", "logistics.shipments", "carrier", "'DHL'", "shipment_id", shipments_seen),
}


def _expected(shape: str, seen: Callable[[dict[str, pa.Table]], list[dict[str, Any]]]) -> Expected:
    if shape in {"not_filter", "filter_clause", "case_on_filtered"}:
        return lambda t: 0  # they ask for the hidden value: never seen
    return lambda t: len(seen(t))


for source, (user, table, column, hidden, key, seen) in TARGETS.items():
    for shape, template in SHAPES.items():
        sql = template.format(t=table, c=column, v=hidden, k=key)
        ROW_FILTER_ATTEMPTS[f"{source}-{shape}"] = (user, sql, _expected(shape, seen))


@pytest.mark.parametrize("name", sorted(ROW_FILTER_ATTEMPTS))
def test_row_filters_hold_in_every_shape_on_every_source(run: Run, tables: dict[str, pa.Table], name: str) -> None:
    user, sql, expected = ROW_FILTER_ATTEMPTS[name]
    result = run(user, sql)
    assert int(result.column("n")[0].as_py() or 0) == expected(tables), sql


# ---------------------------------------------------------------- masks and tag rules

MASK_ATTEMPTS: dict[str, tuple[str, str, Callable[[pa.Table, dict[str, pa.Table]], bool]]] = {
    "last4_shows_only_four": (
        "alice",
        "SELECT price FROM inventory.products",
        lambda r, t: all(v.startswith("****") and len(v) <= 8 for v in r.column(0).to_pylist()),
    ),
    "last4_predicate_sees_masked_values": (
        "alice",
        "SELECT count(*) AS n FROM inventory.products WHERE CAST(price AS VARCHAR) LIKE '1%'",
        lambda r, t: r.column(0).to_pylist() == [0],
    ),
    "last4_max_is_masked": (
        "alice",
        "SELECT max(price) AS m FROM inventory.products",
        lambda r, t: str(r.column(0)[0].as_py()).startswith("****"),
    ),
    "tag_rule_redacts_pinned_column": (
        "alice",
        "SELECT DISTINCT name FROM inventory.products",
        lambda r, t: r.column(0).to_pylist() == ["****"],
    ),
    "tag_rule_like_probe": (
        "alice",
        "SELECT count(*) AS n FROM inventory.products WHERE name LIKE 'product%'",
        lambda r, t: r.column(0).to_pylist() == [0],
    ),
    "tag_rule_length_probe": (
        "alice",
        "SELECT max(length(name)) AS n FROM inventory.products",
        lambda r, t: r.column(0).to_pylist() == [4],
    ),
    "tag_rule_join_on_masked": (
        "alice",
        "SELECT count(*) AS n FROM inventory.products p JOIN inventory.products q ON p.name = q.name"
        " WHERE p.product_id = 1",
        lambda r, t: r.column(0).to_pylist() == [len(products_seen(t))] or r.column(0).to_pylist() == [0],
    ),
    "hash_equals_plain_sha256": (
        "alice",
        "SELECT count(*) AS n FROM sales.customers c WHERE c.name = encode(sha256(c.country), 'hex')"
        " OR name IN (SELECT encode(sha256(x), 'hex') FROM (VALUES ('Zoë Keller 1'), ('Tom Smith 2')) v(x))",
        lambda r, t: r.column(0).to_pylist() == [0],
    ),
    "hash_equals_clear_value": (
        "alice",
        "SELECT count(*) AS n FROM sales.customers WHERE name LIKE '% %'",
        lambda r, t: r.column(0).to_pylist() == [0],
    ),
    "hash_is_64_hex": (
        "alice",
        "SELECT name FROM sales.customers LIMIT 3",
        lambda r, t: all(re.fullmatch(r"[0-9a-f]{64}", v) for v in r.column(0).to_pylist()),
    ),
    "null_mask_aggregates": (
        "alice",
        "SELECT count(lifetime_value) AS n, sum(lifetime_value) AS s FROM sales.customers",
        lambda r, t: r.to_pylist() == [{"n": 0, "s": None}],
    ),
    "null_mask_window": (
        "alice",
        "SELECT max(v) AS m FROM (SELECT max(lifetime_value) OVER () AS v FROM sales.customers) w",
        lambda r, t: r.column(0).to_pylist() == [None],
    ),
    "null_mask_order_by_leaks_nothing": (
        "alice",
        "SELECT customer_id FROM sales.customers ORDER BY lifetime_value DESC, customer_id LIMIT 3",
        lambda r, t: r.column(0).to_pylist() == sorted(c["customer_id"] for c in customers_seen(t))[:3],
    ),
    "admin_sees_clear_price": (
        "root",
        "SELECT count(*) AS n FROM inventory.products WHERE CAST(price AS VARCHAR) NOT LIKE '****%'",
        lambda r, t: r.column(0).to_pylist() == [t["inventory.products"].num_rows],
    ),
}


@pytest.mark.parametrize("name", sorted(MASK_ATTEMPTS))
def test_masks_and_tag_rules_hold(run: Run, tables: dict[str, pa.Table], name: str) -> None:
    user, sql, holds = MASK_ATTEMPTS[name]
    result = run(user, sql)
    assert holds(result, tables), (sql, result.to_pylist()[:5])


# ---------------------------------------------------------------- columns not granted

HIDDEN_COLUMNS = {
    "gina_product_id": ("gina", "SELECT product_id FROM inventory.order_items"),
    "gina_product_id_in_where": ("gina", "SELECT count(*) FROM inventory.order_items WHERE product_id = 7"),
    "gina_product_id_in_subquery": (
        "gina",
        "SELECT (SELECT max(product_id) FROM inventory.order_items) AS m",
    ),
    "gina_star_in_cte": ("gina", "WITH x AS (SELECT * FROM inventory.order_items) SELECT product_id FROM x"),
    "carol_weight_in_order": ("carol", "SELECT shipment_id FROM logistics.shipments ORDER BY weight_kg"),
    "carol_shipped_at_in_group": ("carol", "SELECT count(*) FROM logistics.shipments GROUP BY shipped_at"),
}


@pytest.mark.parametrize("name", sorted(HIDDEN_COLUMNS))
def test_columns_not_granted_are_unknown(run: Run, name: str) -> None:
    user, sql = HIDDEN_COLUMNS[name]
    with pytest.raises(MeshgateError, match=r"product_id|weight_kg|shipped_at"):
        run(user, sql)


def test_a_restricted_star_has_only_granted_columns(run: Run, tables: dict[str, pa.Table]) -> None:
    got = run("gina", "SELECT * FROM inventory.order_items")
    assert got.schema.names == ["order_id", "quantity"]
    assert got.num_rows == len(items_seen(tables))


# ---------------------------------------------------------------- what sources are asked


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM sales.customers WHERE customer_id > (SELECT min(customer_id) FROM sales.customers)",
        "SELECT count(*) AS n FROM sales.customers a JOIN sales.customers b USING (customer_id)",
        "SELECT count(*) AS n FROM sales.customers WHERE customer_id IN (SELECT customer_id FROM sales.orders)",
        "SELECT name FROM sales.customers UNION SELECT name FROM sales.customers",
    ],
    ids=["scalar_subquery", "self_join", "semi_join", "union"],
)
def test_every_source_query_carries_the_row_filter(engine: Engine, sql: str) -> None:
    execution = engine.run(sql, USERS["alice"])
    execution.read_all()
    customers = [q.sql for q in execution.source_queries if q.product == "sales.customers"]
    assert customers and all("'DE'" in text for text in customers), customers
    orders = [q.sql for q in execution.source_queries if q.product == "sales.orders"]
    assert all("'cancelled'" in text for text in orders), orders


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM inventory.order_items",
        "SELECT count(*) FROM inventory.order_items a JOIN inventory.order_items b USING (order_id)",
        "SELECT count(*) FROM inventory.order_items WHERE order_id > (SELECT min(order_id) FROM inventory.order_items)",
    ],
    ids=["star", "self_join", "scalar_subquery"],
)
def test_sources_are_never_asked_for_columns_the_caller_may_not_see(engine: Engine, sql: str) -> None:
    execution = engine.run(sql, USERS["gina"])
    execution.read_all()
    texts = [q.sql for q in execution.source_queries]
    assert texts, "inventory.order_items lives in SQLite: every read is a source query"
    for text in texts:
        # product_id is read only because the row filter needs it, and the filter's exact part goes with it
        assert "product_id" not in text or '"product_id" <> 7' in text, text
        assert '"product_id" <> 7' in text, text


def test_explain_analyze_counts_only_rows_the_caller_may_see(run: Run, tables: dict[str, pa.Table]) -> None:
    allowed = len(products_seen(tables))
    assert allowed < tables["inventory.products"].num_rows
    for where in (
        "product_id >= (SELECT min(product_id) FROM inventory.products)",
        "category = 'tools'",
        "product_id > 0",
    ):
        plan = run("alice", f"EXPLAIN ANALYZE SELECT count(*) FROM inventory.products WHERE {where}").to_pylist()
        sources = [r["plan"] for r in plan if r["plan_type"].startswith("source_query")]
        counts = [int(n) for text in sources for n in re.findall(r"rows=(\d+)", text)]
        assert counts and all(n <= allowed for n in counts), plan


def test_explain_analyze_hides_counts_where_the_filter_stays_in_the_gateway(run: Run) -> None:
    plan = run("gina", "EXPLAIN ANALYZE SELECT count(*) FROM inventory.order_items WHERE order_id < 100").to_pylist()
    (source,) = [r["plan"] for r in plan if r["plan_type"].startswith("source_query")]
    assert "rows=(hidden" in source and not re.search(r"rows=\d", source), source


@pytest.mark.parametrize("user", ["alice", "gina"])
def test_explain_shows_sources_to_owners_and_admins_only(run: Run, user: str) -> None:
    sql = "EXPLAIN SELECT * FROM inventory.order_items"
    text = "\n".join(r["plan_type"] + " " + r["plan"] for r in run(user, sql).to_pylist())
    assert "inventory.db" not in text and "SELECT" not in text and "source_query[inventory/sqlite]" in text
    admin = "\n".join(r["plan_type"] + " " + r["plan"] for r in run("root", sql).to_pylist())
    assert "inventory.db" in admin and "SELECT" in admin


# ---------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW TABLES",
        "SELECT table_catalog, table_schema, table_name FROM information_schema.tables",
        "SELECT table_catalog, table_schema FROM information_schema.columns",
        "SELECT catalog_name, schema_name FROM information_schema.schemata",
        "SELECT routine_name FROM information_schema.routines",
    ],
    ids=["show_tables", "tables", "columns", "schemata", "routines"],
)
def test_listings_never_show_the_raw_catalog_or_the_mask_function(run: Run, sql: str) -> None:
    listed = run("alice", sql).to_pylist()
    text = repr(listed)
    assert "__raw" not in text and "meshgate_mask" not in text, text[:500]


def test_show_columns_of_a_granted_product_works(run: Run) -> None:
    got = run("carol", "SHOW COLUMNS FROM logistics.shipments")
    assert sorted(got.column("column_name").to_pylist()) == ["carrier", "order_id", "shipment_id"]


def test_unknown_product_errors_name_only_readable_products(run: Run) -> None:
    with pytest.raises(MeshgateError) as raised:
        run("alice", "SELECT * FROM sales.ordrs")
    message = str(raised.value)
    assert "customers" in message and "orders" in message and "big_spenders" not in message
    with pytest.raises(MeshgateError) as raised:
        run("alice", "SELECT * FROM logistics.nope")
    assert "shipments" not in str(raised.value)


def test_engine_unknown_product_is_a_not_found_error(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match=r"unknown data product 'logistics.nope' \(domain 'logistics' has: none"):
        engine.run("SELECT * FROM logistics.nope", USERS["alice"])


# ---------------------------------------------------------------- parameters, sessions, system tables


def test_parameters_cannot_widen_a_row_filter(engine: Engine) -> None:
    query = engine.prepare("SELECT count(*) AS n FROM inventory.products WHERE category = $1 OR $2 = 1", USERS["alice"])
    batch = pa.record_batch([pa.array(["tools"]), pa.array([1])], names=["$1", "$2"])
    result = engine.execute(query, USERS["alice"], batch).read_all()
    tables_seen = engine.run("SELECT count(*) AS n FROM inventory.products", USERS["alice"]).read_all()
    assert result.column("n").to_pylist() == tables_seen.column("n").to_pylist()


@pytest.mark.parametrize(
    "sql",
    [
        "SET datafusion.execution.target_partitions = 1",
        "CREATE VIEW v AS SELECT * FROM sales.customers",
        "COPY (SELECT * FROM sales.customers) TO '/tmp/out.csv'",
        "INSERT INTO sales.orders SELECT * FROM sales.orders",
        "DELETE FROM sales.customers",
    ],
    ids=["set", "create_view", "copy", "insert", "delete"],
)
def test_statements_that_change_anything_are_refused_cleanly(run: Run, sql: str) -> None:
    with pytest.raises(MeshgateError) as raised:
        run("alice", sql)
    assert "read-only" in str(raised.value) and "Traceback" not in str(raised.value)


@pytest.mark.parametrize(
    ("user", "sql", "check"),
    [
        ("carol", "SELECT DISTINCT product FROM system.columns", lambda r: r == [{"product": "shipments"}]),
        ("gina", "SELECT DISTINCT policy FROM system.policies WHERE policy LIKE 'row filter%'", lambda r: len(r) == 1),
        ("eve", "SELECT count(*) AS n FROM system.policies", lambda r: r == [{"n": 0}]),
        ("eve", "SELECT count(*) AS n FROM system.quality", lambda r: r == [{"n": 0}]),
        ("alice", "SELECT count(*) AS n FROM system.query_log WHERE \"user\" <> 'alice'", lambda r: r == [{"n": 0}]),
        ("alice", "SELECT count(*) AS n FROM system.events WHERE \"user\" <> 'alice'", lambda r: r == [{"n": 0}]),
    ],
    ids=["columns", "own_policies", "no_policies", "no_quality", "own_queries", "own_events"],
)
def test_system_tables_show_only_what_applies_to_the_caller(run: Run, user: str, sql: str, check: Any) -> None:
    got = run(user, sql).to_pylist()
    assert check(got), got


def test_source_locations_in_errors_are_for_owners_and_admins(tmp_path: Path) -> None:
    from gateway.api import CallerContext
    from gateway.config import load_config
    from gateway.errors import SourceUnavailableError

    (tmp_path / "pay.yaml").write_text(
        "domains:\n  - name: pay\n    owner: pay-team\n"
        "    connector: {type: postgres, uri: 'postgresql://payer:s3cret@127.0.0.1:1/ledger'}\n"
    )
    (tmp_path / "ref.csv").write_text("code\na\n")
    (tmp_path / "ref.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: ref.csv}\n")
    (tmp_path / "platform.yaml").write_text(
        "policies:\n  roles: {admin: [root], analyst: [alice], payers: ['group:pay-team']}\n"
        "  grants:\n    - {role: analyst, on: '*'}\n    - {role: admin, on: '*'}\n"
    )
    engine = Engine.from_config(load_config(tmp_path))
    try:
        for who in (CallerContext(user="alice"), CallerContext(user="pam", attributes={"groups": "pay-team"})):
            with pytest.raises(SourceUnavailableError) as raised:
                engine.run("SELECT * FROM pay.entries", who)
            message = str(raised.value)
            (listed,) = engine.run("SELECT error FROM system.domains WHERE domain = 'pay'", who).read_all().to_pylist()
            if who.user == "alice":
                assert message == "[pay/postgres] the source cannot be reached right now", message
                assert listed["error"] == message
            else:
                assert "127.0.0.1:1" in message and "s3cret" not in message, message
                assert "127.0.0.1:1" in listed["error"]
    finally:
        engine.close()
