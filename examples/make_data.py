"""Create the example mesh's data: `python examples/make_data.py [--pg URI]`.

Writes, next to this script:

    data/inventory.db                      SQLite: warehouses, stock
    data/finance.duckdb                    DuckDB: invoices
    data/logistics/shipments/year=2024/month=M/part-0.parquet   hive-partitioned Parquet

and (re)creates the tables `customers` and `orders` in the PostgreSQL schema
`meshgate_example` of `--pg` (default: $MESHGATE_EXAMPLE_PG, else
postgresql://127.0.0.1:5432/test: the URI sales.yaml reads). Running it again starts over.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import adbc_driver_postgresql.dbapi as postgresql
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DEFAULT_PG = "postgresql://127.0.0.1:5432/test"
SCHEMA = "meshgate_example"

CUSTOMERS = [
    (1, "Ada Lovelace", "ada@example.com", "eu"),
    (2, "Grace Hopper", "grace@example.com", "us"),
    (3, "Alan Turing", "alan@example.com", "eu"),
    (4, "Katherine Johnson", "katherine@example.com", "us"),
]
ORDERS = [  # order_id, customer_id, region, ordered_on, amount
    (101, 1, "eu", dt.date(2024, 1, 15), Decimal("120.00")),
    (102, 2, "us", dt.date(2024, 1, 20), Decimal("75.50")),
    (103, 3, "eu", dt.date(2024, 2, 3), Decimal("200.00")),
    (104, 4, "us", dt.date(2024, 2, 14), Decimal("42.00")),
    (105, 1, "eu", dt.date(2024, 3, 1), Decimal("99.90")),
    (106, 2, "us", dt.date(2024, 3, 9), Decimal("310.00")),
]
SHIPMENTS = [  # shipment_id, order_id, carrier, warehouse_id, shipped_on
    (1, 101, "DHL", 1, dt.date(2024, 1, 16)),
    (2, 102, "UPS", 2, dt.date(2024, 1, 22)),
    (3, 103, "DHL", 1, dt.date(2024, 2, 5)),
    (4, 104, "FedEx", 2, dt.date(2024, 2, 15)),
    (5, 105, "UPS", 1, dt.date(2024, 3, 2)),
    (6, 106, "UPS", 2, dt.date(2024, 3, 10)),
]
WAREHOUSES = [(1, "Rotterdam", "eu"), (2, "Memphis", "us")]
STOCK = [("sku-1", 1, 40), ("sku-1", 2, 12), ("sku-2", 1, 0), ("sku-2", 2, 7)]
INVOICES = [  # invoice_id, order_id, amount, paid
    (1001, 101, Decimal("120.00"), True),
    (1002, 102, Decimal("75.50"), True),
    (1003, 103, Decimal("200.00"), False),
    (1004, 104, Decimal("42.00"), True),
    (1005, 105, Decimal("99.90"), False),
    (1006, 106, Decimal("310.00"), False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg",
        default=os.environ.get("MESHGATE_EXAMPLE_PG", DEFAULT_PG),
        help="PostgreSQL URI for the sales tables (default: $MESHGATE_EXAMPLE_PG, else %(default)s)",
    )
    args = parser.parse_args()
    data = HERE / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    write_inventory(data / "inventory.db")
    write_finance(data / "finance.duckdb")
    write_logistics(data / "logistics" / "shipments")
    write_sales(args.pg)
    print(f"wrote {data}: inventory.db, finance.duckdb, logistics/shipments/ (hive-partitioned Parquet)")
    print(f"created {SCHEMA}.customers and {SCHEMA}.orders in PostgreSQL")


def write_inventory(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE warehouses (warehouse_id INTEGER PRIMARY KEY, city TEXT, region TEXT)")
        connection.execute("CREATE TABLE stock (sku TEXT, warehouse_id INTEGER, quantity INTEGER)")
        connection.executemany("INSERT INTO warehouses VALUES (?, ?, ?)", WAREHOUSES)
        connection.executemany("INSERT INTO stock VALUES (?, ?, ?)", STOCK)
    connection.close()


def write_finance(path: Path) -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "CREATE TABLE invoices (invoice_id INTEGER PRIMARY KEY, order_id INTEGER, amount DECIMAL(10, 2),"
            " paid BOOLEAN)"
        )
        connection.executemany("INSERT INTO invoices VALUES (?, ?, ?, ?)", INVOICES)


def write_logistics(folder: Path) -> None:
    """One part file per month: ``year=2024/month=1/part-0.parquet`` ..."""
    for month in sorted({shipped.month for *_, shipped in SHIPMENTS}):
        rows = [row for row in SHIPMENTS if row[4].month == month]
        table = pa.table(
            {
                "shipment_id": pa.array([r[0] for r in rows], pa.int64()),
                "order_id": pa.array([r[1] for r in rows], pa.int64()),
                "carrier": pa.array([r[2] for r in rows], pa.string()),
                "warehouse_id": pa.array([r[3] for r in rows], pa.int64()),
                "shipped_on": pa.array([r[4] for r in rows], pa.date32()),
            }
        )
        partition = folder / "year=2024" / f"month={month}"
        partition.mkdir(parents=True)
        pq.write_table(table, partition / "part-0.parquet")


def write_sales(uri: str) -> None:
    with postgresql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {SCHEMA}")
        cursor.execute(
            f"CREATE TABLE {SCHEMA}.customers (customer_id integer PRIMARY KEY, name text NOT NULL, email text,"
            " region text NOT NULL)"
        )
        cursor.execute(
            f"CREATE TABLE {SCHEMA}.orders (order_id integer PRIMARY KEY, customer_id integer NOT NULL,"
            " region text NOT NULL, ordered_on date NOT NULL, amount numeric(10, 2) NOT NULL)"
        )
        for row in CUSTOMERS:
            cursor.execute(f"INSERT INTO {SCHEMA}.customers VALUES ($1, $2, $3, $4)", parameters=row)
        for row in ORDERS:
            cursor.execute(f"INSERT INTO {SCHEMA}.orders VALUES ($1, $2, $3, $4, $5)", parameters=row)


if __name__ == "__main__":
    main()
