"""The demo mesh: deterministic, typed, joinable, and described by valid config."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import datafusion
import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from connectors.registry import registry
from gateway import demo
from gateway.demo import EXAMPLE_QUERIES, write_demo_mesh


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo written once with the default seed; tests only read it."""
    directory = tmp_path_factory.mktemp("demo")
    write_demo_mesh(directory)
    return directory


@pytest.fixture(scope="module")
def sales(mesh: Path) -> sqlite3.Connection:
    return sqlite3.connect(mesh / "data" / "sales.db")


@pytest.fixture(scope="module")
def finance(mesh: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(mesh / "data" / "finance.duckdb"), read_only=True)


def shipments(mesh: Path) -> pa.Table:
    return pq.read_table(mesh / "data" / "logistics" / "shipments.parquet")


def duck_count(connection: duckdb.DuckDBPyConnection, sql: str) -> int:
    (value,) = connection.sql(sql).fetchall()[0]
    return int(value)


def snapshot(directory: Path) -> dict[str, Any]:
    """Every file of a demo mesh as comparable content (tables as rows)."""
    content: dict[str, Any] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        key = str(path.relative_to(directory))
        if path.suffix == ".db":
            with sqlite3.connect(path) as connection:
                content[key] = {t: connection.execute(f"SELECT * FROM {t}").fetchall() for t in ("customers", "orders")}
        elif path.suffix == ".parquet":
            content[key] = pq.read_table(path).to_pylist()
        elif path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as connection:
                content[key] = {t: connection.sql(f"SELECT * FROM {t}").fetchall() for t in ("invoices", "payments")}
        else:
            content[key] = path.read_bytes()
    return content


def test_same_seed_writes_the_same_mesh(mesh: Path, tmp_path: Path) -> None:
    again = snapshot(write_demo_mesh(tmp_path).parent)
    assert again == snapshot(mesh)
    assert len(again) == 10


def test_another_seed_writes_other_data(mesh: Path, tmp_path: Path) -> None:
    other = snapshot(write_demo_mesh(tmp_path, seed=8).parent)
    first = snapshot(mesh)
    assert other.keys() == first.keys()
    assert other["data/sales.db"] != first["data/sales.db"]
    assert other["data/logistics/shipments.parquet"] != first["data/logistics/shipments.parquet"]
    assert other["config/sales.yaml"] == first["config/sales.yaml"]


def test_rewriting_a_directory_replaces_the_previous_mesh(tmp_path: Path) -> None:
    write_demo_mesh(tmp_path, seed=8)
    first = snapshot(tmp_path)
    write_demo_mesh(tmp_path, seed=9)
    write_demo_mesh(tmp_path, seed=8)
    assert snapshot(tmp_path) == first


def test_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    write_demo_mesh(tmp_path)
    assert time.perf_counter() - started < 2


def test_row_counts(mesh: Path, sales: sqlite3.Connection, finance: duckdb.DuckDBPyConnection) -> None:
    def count(sql: str) -> int:
        (value,) = sales.execute(sql).fetchone()
        return int(value)

    assert count("SELECT count(*) FROM customers") == 300
    assert count("SELECT count(*) FROM orders") == 1200
    shipped = count("SELECT count(*) FROM orders WHERE status IN ('shipped', 'delivered', 'returned')")
    assert 900 < shipped < 1200
    assert shipments(mesh).num_rows == shipped
    assert pq.read_table(mesh / "data" / "logistics" / "warehouses.parquet").num_rows == 8
    invoices = duck_count(finance, "SELECT count(*) FROM invoices")
    assert invoices == count("SELECT count(*) FROM orders WHERE status <> 'cancelled'")
    paid = duck_count(finance, "SELECT count(*) FROM invoices WHERE paid")
    assert paid < duck_count(finance, "SELECT count(*) FROM payments") < 2 * paid
    rates = pacsv.read_csv(mesh / "data" / "reference" / "exchange_rates.csv")
    assert rates.num_rows == 5 * 182


def test_nulls_are_present(mesh: Path, sales: sqlite3.Connection, finance: duckdb.DuckDBPyConnection) -> None:
    for table, column in [
        ("customers", "email"),
        ("customers", "segment"),
        ("customers", "lifetime_value"),
        ("orders", "coupon_code"),
    ]:
        nulls = sales.execute(f"SELECT count(*) FROM {table} WHERE {column} IS NULL").fetchone()
        assert nulls is not None and nulls[0] > 0, f"{table}.{column}"
    assert shipments(mesh).column("delivered_at").null_count > 0
    assert duck_count(finance, "SELECT count(*) FROM payments WHERE method IS NULL") > 0


def test_names_include_non_ascii_and_quotes(sales: sqlite3.Connection) -> None:
    names = [name for (name,) in sales.execute("SELECT name FROM customers")]
    assert any(name.startswith("Zoë ") for name in names)
    assert any(name.startswith("Łukasz ") for name in names)
    assert any("O'Brien" in name for name in names)
    emails = [email for (email,) in sales.execute("SELECT email FROM customers WHERE email IS NOT NULL")]
    assert all(email.isascii() and re.fullmatch(r"[a-z.]+\d+@example\.[a-z]{2}", email) for email in emails)


def test_sqlite_columns_declare_exact_types(sales: sqlite3.Connection) -> None:
    def declared(table: str) -> dict[str, str]:
        return {row[1]: row[2] for row in sales.execute(f"PRAGMA table_info({table})")}

    assert declared("customers") == {
        "customer_id": "INTEGER",
        "name": "TEXT",
        "email": "TEXT",
        "country": "TEXT",
        "segment": "TEXT",
        "signup_date": "DATE",
        "lifetime_value": "DECIMAL(12,2)",
    }
    assert declared("orders") == {
        "order_id": "INTEGER",
        "customer_id": "INTEGER",
        "order_date": "DATE",
        "created_at": "TIMESTAMP",
        "status": "TEXT",
        "item_count": "INTEGER",
        "total_amount": "DECIMAL(12,2)",
        "currency": "TEXT",
        "coupon_code": "TEXT",
    }
    created, order_date = sales.execute("SELECT created_at, order_date FROM orders LIMIT 1").fetchone()
    assert dt.datetime.fromisoformat(created).date() == dt.date.fromisoformat(order_date)


def test_parquet_and_duckdb_types(mesh: Path, finance: duckdb.DuckDBPyConnection) -> None:
    schema = shipments(mesh).schema
    assert schema.field("shipped_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("delivered_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("delivered_at").nullable
    assert schema.field("cost").type == pa.decimal128(10, 2)
    assert schema.field("weight_kg").type == pa.float64()
    warehouses = pq.read_schema(mesh / "data" / "logistics" / "warehouses.parquet")
    assert warehouses.names == ["warehouse_id", "city", "country", "capacity"]
    types = dict(finance.sql("SELECT column_name, data_type FROM information_schema.columns").fetchall())
    assert types["amount"] == "DECIMAL(12,2)"
    assert types["issued_on"] == "DATE"
    assert types["paid"] == "BOOLEAN"


def test_cross_domain_keys_line_up(mesh: Path, sales: sqlite3.Connection, finance: duckdb.DuckDBPyConnection) -> None:
    orders = {row[0]: row[1:] for row in sales.execute("SELECT order_id, status, total_amount, currency FROM orders")}
    shipped = shipments(mesh).to_pylist()
    assert Counter(orders[s["order_id"]][0] for s in shipped).keys() == {"shipped", "delivered", "returned"}
    assert len({s["order_id"] for s in shipped}) == len(shipped)
    assert all((s["delivered_at"] is None) == (orders[s["order_id"]][0] == "shipped") for s in shipped)
    assert all(s["delivered_at"] is None or s["delivered_at"] > s["shipped_at"] for s in shipped)

    invoices = finance.sql("SELECT order_id, amount, currency FROM invoices").fetchall()
    for order_id, amount, currency in invoices:
        status, total, order_currency = orders[order_id]
        assert status != "cancelled"
        assert (amount, currency) == (Decimal(str(total)).quantize(Decimal("0.01")), order_currency)

    unbalanced = finance.sql(
        "SELECT i.invoice_id FROM invoices i LEFT JOIN payments p USING (invoice_id) "
        "GROUP BY i.invoice_id, i.amount, i.paid "
        "HAVING coalesce(sum(p.amount), 0) <> CASE WHEN i.paid THEN i.amount ELSE 0 END"
    ).fetchall()
    assert unbalanced == []


def test_lifetime_value_sums_non_cancelled_orders(sales: sqlite3.Connection) -> None:
    mismatched = sales.execute(
        "SELECT c.customer_id FROM customers c LEFT JOIN orders o "
        "ON o.customer_id = c.customer_id AND o.status <> 'cancelled' "
        "GROUP BY c.customer_id, c.lifetime_value "
        "HAVING (c.lifetime_value IS NULL) <> (count(o.order_id) = 0) "
        "OR abs(coalesce(c.lifetime_value, 0) - coalesce(sum(o.total_amount), 0)) > 0.005"
    ).fetchall()
    assert mismatched == []


def load_yaml(mesh: Path) -> dict[str, dict[str, Any]]:
    domains: dict[str, dict[str, Any]] = {}
    for path in sorted((mesh / "config").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert set(document) == {"domains"}
        for domain in document["domains"]:
            domains[domain["name"]] = domain | {"file": path}
    return domains


def test_yaml_follows_the_contract(mesh: Path) -> None:
    domains = load_yaml(mesh)
    assert sorted(domains) == ["finance", "logistics", "reference", "sales"]
    assert {name: d["connector"]["type"] for name, d in domains.items()} == {
        "sales": "sqlite",
        "logistics": "parquet",
        "finance": "duckdb",
        "reference": "csv",
    }
    for name, domain in domains.items():
        assert domain["file"].stem == name
        assert domain["owner"] and domain["description"]
        assert set(domain["connector"]) == {"type", "path"} and domain["connector"]["type"] in registry().names
        location = domain["file"].parent / domain["connector"]["path"]
        assert location.exists(), location
        for product in domain["products"]:
            assert product["description"], f"{name}.{product['name']}"
            assert set(product) - {"catalog_sample"} in (
                {"name", "source", "description"},
                {"name", "sql", "description"},
            )
            if domain["connector"]["type"] in ("parquet", "csv"):
                assert (location / product["source"]).is_file()


def test_sql_products_run_on_their_sources(mesh: Path, sales: sqlite3.Connection) -> None:
    products = {(d, p["name"]): p for d, domain in load_yaml(mesh).items() for p in domain["products"]}
    vips = sales.execute(products["sales", "vip_customers"]["sql"]).fetchall()
    assert 3 <= len(vips) < 50
    assert all(row[-1] > demo.VIP_THRESHOLD for row in vips)
    with duckdb.connect(str(mesh / "data" / "finance.duckdb"), read_only=True) as connection:
        open_invoices = connection.sql(products["finance", "open_invoices"]["sql"]).fetchall()
        unpaid = duck_count(connection, "SELECT count(*) FROM invoices WHERE NOT paid")
    assert len(open_invoices) == unpaid > 0


# --- the example queries, run by DataFusion over every product as the YAML declares it ---

SQLITE_TYPES = {"INTEGER": pa.int64(), "TEXT": pa.string(), "DATE": pa.date32(), "TIMESTAMP": pa.timestamp("us")}


def sqlite_product(path: Path, product: dict[str, Any]) -> pa.Table:
    """A SQLite product as Arrow, typed by the columns' declared types."""
    with sqlite3.connect(path) as connection:
        declared = {
            column: decl
            for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for _, column, decl, *_ in connection.execute(f"PRAGMA table_info({table})")
        }
        cursor = connection.execute(product.get("sql") or f"SELECT * FROM {product['source']}")
        names = [d[0] for d in cursor.description]
        columns = list(zip(*cursor.fetchall(), strict=True))
    return pa.table({name: sqlite_array(values, declared[name]) for name, values in zip(names, columns, strict=True)})


def sqlite_array(values: tuple[Any, ...], decl: str) -> pa.Array:
    if match := re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", decl):
        scale = Decimal(1).scaleb(-int(match[2]))
        decimals = [None if v is None else Decimal(str(v)).quantize(scale) for v in values]
        return pa.array(decimals, pa.decimal128(int(match[1]), int(match[2])))
    parse = {"DATE": dt.date.fromisoformat, "TIMESTAMP": dt.datetime.fromisoformat}.get(decl)
    return pa.array([v if v is None or parse is None else parse(v) for v in values], SQLITE_TYPES[decl])


def product_table(domain: dict[str, Any], product: dict[str, Any]) -> pa.Table:
    connector = domain["connector"]
    location = domain["file"].parent / connector["path"]
    if connector["type"] == "sqlite":
        return sqlite_product(location, product)
    if connector["type"] == "parquet":
        return pq.read_table(location / product["source"])
    if connector["type"] == "csv":
        return pacsv.read_csv(location / product["source"])
    with duckdb.connect(str(location), read_only=True) as connection:
        return connection.sql(product.get("sql") or f"SELECT * FROM {product['source']}").to_arrow_table()


def datafusion_mesh(mesh: Path) -> datafusion.SessionContext:
    ctx = datafusion.SessionContext()
    for name, domain in load_yaml(mesh).items():
        ctx.sql(f"CREATE SCHEMA {name}").collect()
        for product in domain["products"]:
            ctx.from_arrow(product_table(domain, product), f"{name}.{product['name']}")
    return ctx


def test_example_queries_return_rows(mesh: Path) -> None:
    ctx = datafusion_mesh(mesh)
    for query in EXAMPLE_QUERIES:
        result = ctx.sql(query).to_arrow_table()
        assert result.num_rows > 0, query
        assert all(column.null_count < len(column) for column in result.columns), query
    readme = (mesh / "README.txt").read_text(encoding="utf-8")
    assert all(query in readme for query in EXAMPLE_QUERIES)


def test_shipments_by_country_counts_every_shipment(mesh: Path) -> None:
    result = datafusion_mesh(mesh).sql(EXAMPLE_QUERIES[0]).to_arrow_table()
    assert sum(result.column("shipments").to_pylist()) == shipments(mesh).num_rows


def test_finance_falls_back_to_csv_without_duckdb(mesh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_demo_mesh(tmp_path)
    monkeypatch.setattr(demo, "_load_duckdb", lambda: None)
    write_demo_mesh(tmp_path)
    finance = load_yaml(tmp_path)["finance"]
    assert finance["connector"] == {"type": "csv", "path": "../data/finance"}
    assert [p["name"] for p in finance["products"]] == ["invoices", "payments"]
    assert not (tmp_path / "data" / "finance.duckdb").exists()
    invoices = pacsv.read_csv(
        tmp_path / "data" / "finance" / "invoices.csv",
        convert_options=pacsv.ConvertOptions(column_types={"amount": pa.decimal128(12, 2)}),
    )
    with duckdb.connect(str(mesh / "data" / "finance.duckdb"), read_only=True) as connection:
        expected = connection.sql("SELECT * FROM invoices").to_arrow_table()
    assert invoices.to_pylist() == expected.to_pylist()
    ctx = datafusion_mesh(tmp_path)
    assert all(ctx.sql(query).to_arrow_table().num_rows > 0 for query in EXAMPLE_QUERIES[:4])
