"""A small cross-domain dataset: sales in PostgreSQL, inventory in SQLite, logistics in Parquet."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.UTC
COUNTRIES = ["DE", "FR", "US", "PL", "JP"]
NAMES = ["Zoë Keller", "Łukasz Nowak", "Sean O'Brien", "Ana Núñez", "Wei Zhang", "Aiko Tanaka", "Tom Smith"]


def build_tables(seed: int = 11) -> dict[str, pa.Table]:
    rng = random.Random(seed)
    customers = pa.table(
        {
            "customer_id": pa.array(range(1, 201), pa.int32()),
            "name": [f"{rng.choice(NAMES)} {i}" for i in range(1, 201)],
            "country": [rng.choice(COUNTRIES) for _ in range(200)],
            "segment": [None if i % 7 == 0 else rng.choice(["retail", "smb", "enterprise"]) for i in range(200)],
            "signup": pa.array(
                [dt.datetime(2023, 1, 1, tzinfo=UTC) + dt.timedelta(hours=rng.randrange(0, 9000)) for _ in range(200)],
                pa.timestamp("us", tz="UTC"),
            ),
            "lifetime_value": pa.array(
                [Decimal(rng.randrange(0, 1_000_000)) / 100 for _ in range(200)], pa.decimal128(12, 2)
            ),
        }
    )
    orders = pa.table(
        {
            "order_id": pa.array(range(1, 2001), pa.int64()),
            "customer_id": pa.array([rng.randrange(1, 201) for _ in range(2000)], pa.int32()),
            "order_date": pa.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(0, 365)) for _ in range(2000)], pa.date32()
            ),
            "status": [rng.choice(["open", "paid", "shipped", "cancelled"]) for _ in range(2000)],
            "total": pa.array([Decimal(rng.randrange(100, 200_000)) / 100 for _ in range(2000)], pa.decimal128(12, 2)),
        }
    )
    products = pa.table(
        {
            "product_id": pa.array(range(1, 61), pa.int64()),
            "name": [f"product {i} «{rng.choice(['red', 'blue', 'green'])}»" for i in range(1, 61)],
            "category": [rng.choice(["books", "garden", "toys", "tools"]) for _ in range(60)],
            "price": pa.array([Decimal(rng.randrange(100, 20_000)) / 100 for _ in range(60)], pa.decimal128(10, 2)),
        }
    )
    order_items = pa.table(
        {
            "order_id": pa.array([1 + i // 3 for i in range(6000)], pa.int64()),
            "product_id": pa.array([rng.randrange(1, 61) for _ in range(6000)], pa.int64()),
            "quantity": pa.array([rng.randrange(1, 6) for _ in range(6000)], pa.int64()),
        }
    )
    shipped = [i for i in range(1, 2001) if rng.random() < 0.8]
    shipments = pa.table(
        {
            "shipment_id": pa.array(range(1, len(shipped) + 1), pa.int64()),
            "order_id": pa.array(shipped, pa.int64()),
            "carrier": [rng.choice(["DHL", "UPS", "FedEx", "La Poste"]) for _ in shipped],
            "shipped_at": pa.array(
                [
                    dt.datetime(2024, 1, 2, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(0, 500_000))
                    for _ in shipped
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "weight_kg": pa.array([round(rng.uniform(0.1, 40), 3) for _ in shipped], pa.float64()),
        }
    )
    return {
        "sales.customers": customers,
        "sales.orders": orders,
        "inventory.products": products,
        "inventory.order_items": order_items,
        "logistics.shipments": shipments,
    }


def load_postgres(uri: str, schema: str, tables: dict[str, pa.Table]) -> None:
    with pg.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        cursor.execute(f'CREATE SCHEMA "{schema}"')
        cursor.execute(
            f'CREATE TABLE "{schema}".customers (customer_id int4 PRIMARY KEY, name text, country text,'
            " segment text, signup timestamptz, lifetime_value numeric(12,2))"
        )
        cursor.execute(
            f'CREATE TABLE "{schema}".orders (order_id int8 PRIMARY KEY, customer_id int4, order_date date,'
            " status text, total numeric(12,2))"
        )
        for name in ("customers", "orders"):
            cursor.adbc_ingest(name, tables[f"sales.{name}"], mode="append", db_schema_name=schema)
        connection.commit()


def load_sqlite(path: Path, tables: dict[str, pa.Table]) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT, category TEXT, price DECIMAL(10,2))"
        )
        connection.execute("CREATE TABLE order_items (order_id INTEGER, product_id INTEGER, quantity INTEGER)")
        products = tables["inventory.products"].to_pylist()
        connection.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            [(p["product_id"], p["name"], p["category"], float(p["price"])) for p in products],
        )
        connection.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?)",
            [tuple(row.values()) for row in tables["inventory.order_items"].to_pylist()],
        )


def write_mesh(directory: Path, postgres_uri: str, schema: str, tables: dict[str, pa.Table]) -> Path:
    """Load every source and write a config directory with one YAML file per domain."""
    data = directory / "data"
    (data / "logistics").mkdir(parents=True)
    load_postgres(postgres_uri, schema, tables)
    load_sqlite(data / "inventory.db", tables)
    pq.write_table(tables["logistics.shipments"], data / "logistics" / "shipments.parquet")
    config = directory / "config"
    config.mkdir()
    (config / "sales.yaml").write_text(
        f"""domains:
  - name: sales
    owner: sales-team
    description: Customers and orders
    connector:
      type: postgres
      uri: {postgres_uri}
    products:
      - {{name: customers, source: {schema}.customers, description: One row per customer}}
      - {{name: orders, source: {schema}.orders, description: One row per order}}
      - name: big_spenders
        sql: SELECT customer_id, name, lifetime_value FROM {schema}.customers WHERE lifetime_value > 5000
"""
    )
    (config / "inventory.yaml").write_text(
        """domains:
  - name: inventory
    owner: inventory-team
    connector: {type: sqlite, path: ../data/inventory.db}
"""
    )
    (config / "logistics.yaml").write_text(
        """domains:
  - name: logistics
    owner: logistics-team
    connector: {type: parquet, path: ../data/logistics}
"""
    )
    return config
