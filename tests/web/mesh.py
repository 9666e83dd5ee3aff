"""A small governed mesh for the web catalog's tests: three domains, two users with different grants.

``alice`` (role analyst) reads the ``sales`` and ``web`` domains, with ``sales.customers.email``
hashed and only German customers' rows; ``root`` (role admin) reads everything, ``hr`` included,
which alice must never see.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.gateway import Credentials, auth_yaml

ALICE = Credentials("alice", "alice-catalog-password")
ROOT = Credentials("root", "root-catalog-password")

CUSTOMERS = [
    (1, "Anna Schmidt", "anna@example.de", "DE"),
    (2, "Jean Dupont", "jean@example.fr", "FR"),
    (3, "Jonas Weber", "jonas@example.de", "DE"),
    (4, "Mary Smith", "mary@example.com", "US"),
]

CONFIG = """catalog: shop
domains:
  - name: sales
    owner: sales-team
    description: Customers of the web shop and their orders
    connector: {type: sqlite, path: ../data/sales.db}
    products:
      - name: customers
        source: customers
        description: One row per customer
        version: "1.2.0"
        tags: [customer-data]
        catalog_sample: true
        primary_key: [customer_id]
        columns:
          - {name: customer_id, type: int64, description: Customer number}
          - {name: name, type: string, description: Full name}
          - {name: email, type: string, description: Where we write to, tags: [pii]}
          - {name: country, type: string, description: ISO country code}
        checks:
          - {name: ids_unique, unique: [customer_id]}
          - {name: has_rows, row_count: {min: 1}}
          - {name: at_most_two, row_count: {max: 2}}
      - name: orders
        source: orders
        description: Orders placed by customers
        columns:
          - {name: order_id, type: int64}
          - {name: customer_id, type: int64}
          - {name: amount, type: double}
          - {name: currency, type: string, description: Not in the source yet}
      - name: big_orders
        sql: SELECT order_id, customer_id, amount FROM orders WHERE amount > 100
        description: Orders above 100
  - name: web
    owner: web-team
    description: Clickstream of the shop's pages
    connector: {type: parquet, path: ../data/web}
    products:
      - name: visits
        source: visits.parquet
        description: Page visits, one row each
        tags: [clickstream]
        freshness: {max_age: 1d, column: seen_at}
  - name: hr
    owner: hr-team
    description: People and pay
    connector: {type: csv, path: ../data/hr}
    products:
      - name: salaries
        source: salaries.csv
        description: Secret salary bands
policies:
  roles:
    analyst: [alice]
    admin: [root]
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "sales.*"}
    - {role: analyst, on: "web.*"}
  masks:
    - {on: sales.customers.email, mask: hash, except: [admin]}
  row_filters:
    - {on: sales.customers, where: "country = 'DE'", except: [admin]}
"""


def write_catalog_mesh(directory: Path) -> Path:
    """Write the mesh under ``directory``; answers the config file."""
    data = directory / "data"
    (data / "web").mkdir(parents=True)
    (data / "hr").mkdir()
    with sqlite3.connect(data / "sales.db") as db:
        db.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT, email TEXT, country TEXT)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", CUSTOMERS)
        db.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id INTEGER, amount REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, 1 + i % 4, 40.0 * i) for i in range(1, 9)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    visits = pa.table(
        {
            "visit_id": pa.array([1, 2, 3], pa.int64()),
            "page": ["/", "/shoes", "/cart"],
            "seen_at": pa.array([now - dt.timedelta(hours=h) for h in (30, 6, 2)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(visits, data / "web" / "visits.parquet")
    (data / "hr" / "salaries.csv").write_text("person,band\nanna,B3\njonas,C1\n")
    config = directory / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(CONFIG + auth_yaml(ALICE, ROOT))
    return config / "mesh.yaml"
