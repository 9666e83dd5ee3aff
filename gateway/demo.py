"""The built-in demo mesh: four small domains on four kinds of source, ready to join.

``write_demo_mesh(directory)`` writes, deterministically for a seed and in well under
a second, a mesh of an online shop::

    config/   sales.yaml  logistics.yaml  finance.yaml  reference.yaml
    data/     sales.db (SQLite)  logistics/*.parquet  finance.duckdb  reference/*.csv
    README.txt

``sales`` holds customers and orders; ``logistics`` ships orders; ``finance``
invoices and collects them (DuckDB, or CSV files when the ``duckdb`` package is
missing); ``reference`` publishes daily exchange rates. ``shipments.order_id`` and
``invoices.order_id`` refer to ``orders.order_id``, so cross-domain joins line up.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
import sqlite3
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

EXAMPLE_QUERIES: list[str] = [
    "SELECT c.country, count(*) AS shipments\n"
    "FROM sales.orders o\n"
    "JOIN logistics.shipments s ON s.order_id = o.order_id\n"
    "JOIN sales.customers c USING (customer_id)\n"
    "GROUP BY 1 ORDER BY 2 DESC",
    "SELECT w.city, s.carrier, count(*) AS delivered,\n"
    "       round(avg(extract(epoch FROM s.delivered_at) - extract(epoch FROM s.shipped_at)) / 3600, 1) AS avg_hours\n"
    "FROM logistics.shipments s\n"
    "JOIN logistics.warehouses w ON w.warehouse_id = s.warehouse_id\n"
    "WHERE s.delivered_at IS NOT NULL\n"
    "GROUP BY w.city, s.carrier ORDER BY avg_hours",
    "SELECT c.segment, count(*) AS open_invoices, sum(i.amount) AS open_amount\n"
    "FROM finance.invoices i\n"
    "JOIN sales.orders o ON o.order_id = i.order_id\n"
    "JOIN sales.customers c ON c.customer_id = o.customer_id\n"
    "WHERE NOT i.paid AND o.status = 'delivered'\n"
    "GROUP BY c.segment ORDER BY open_amount DESC",
    "SELECT CAST(date_trunc('month', i.issued_on) AS DATE) AS month,\n"
    "       round(sum(i.amount * r.usd_per_unit), 2) AS revenue_usd\n"
    "FROM finance.invoices i\n"
    "JOIN reference.exchange_rates r ON r.currency = i.currency AND r.rate_date = i.issued_on\n"
    "GROUP BY 1 ORDER BY 1",
    "SELECT v.name, v.country, v.lifetime_value, count(s.shipment_id) AS shipments, sum(s.cost) AS shipping_cost\n"
    "FROM sales.vip_customers v\n"
    "JOIN sales.orders o ON o.customer_id = v.customer_id\n"
    "LEFT JOIN logistics.shipments s ON s.order_id = o.order_id\n"
    "GROUP BY v.name, v.country, v.lifetime_value\n"
    "ORDER BY v.lifetime_value DESC LIMIT 10",
]

START = dt.date(2024, 1, 1)
DAYS = 182  # orders, invoices and exchange rates cover the first half of 2024
N_CUSTOMERS = 300
N_ORDERS = 1200
VIP_THRESHOLD = 5000

FIRST_NAMES = (
    "Anna", "Zoë", "Łukasz", "José", "Søren", "Chloé", "François", "Björn", "Inès", "Mateo",
    "Olivia", "Liam", "Noah", "Emma", "Sofia", "Jakub", "Małgorzata", "Siobhán", "Seán", "Åsa",
    "Jürgen", "Élodie", "Oliver", "Amelia", "James", "Hannah", "Lucas", "Maja", "Wojciech", "Niamh",
    "Pablo", "Lucía", "Erik", "Ingrid", "Grace", "Ethan", "Mia", "Leon", "Clara", "Tomás",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "O'Brien", "Kowalski", "Nowak", "Wiśniewska", "García", "Fernández",
    "Dubois", "Lefèvre", "Andersson", "Johansson", "Smith", "Jones", "Murphy", "Kelly", "Brown",
    "Taylor", "Martínez", "Moreau", "Schäfer", "Lindqvist", "Kaczmarek", "Walsh", "Nguyễn",
    "da Silva", "van den Berg", "D'Angelo", "Øberg", "Ó Súilleabháin",
)  # fmt: skip
# country: (currency, relative share of customers)
COUNTRIES = {
    "DE": ("EUR", 24), "FR": ("EUR", 16), "PL": ("PLN", 14), "GB": ("GBP", 14),
    "US": ("USD", 14), "SE": ("SEK", 8), "ES": ("EUR", 6), "IE": ("EUR", 4),
}  # fmt: skip
USD_PER_UNIT = {"EUR": 1.09, "GBP": 1.27, "PLN": 0.25, "SEK": 0.096, "USD": 1.0}
WAREHOUSES = (
    (1, "Berlin", "DE", 42_000), (2, "Lyon", "FR", 25_000), (3, "Poznań", "PL", 30_000),
    (4, "Manchester", "GB", 28_000), (5, "Newark", "US", 50_000), (6, "Göteborg", "SE", 12_000),
    (7, "Zaragoza", "ES", 18_000), (8, "Dublin", "IE", 9_000),
)  # fmt: skip
CARRIERS = {"DE": "DHL", "FR": "GLS", "PL": "InPost", "GB": "DPD", "US": "UPS", "SE": "PostNord"}
ORDER_STATUSES = {"delivered": 70, "shipped": 10, "pending": 8, "cancelled": 7, "returned": 5}
SHIPPED_STATUSES = ("shipped", "delivered", "returned")
_ASCII_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "'": "", " ": ""})


@dataclass(frozen=True)
class DemoProduct:
    """A product as the demo declares it in YAML."""

    name: str
    description: str
    source: str | None = None
    sql: str | None = None
    catalog_sample: bool = False  # the web catalog shows a sample of its rows


@dataclass(frozen=True)
class DemoDomain:
    """A demo domain: its YAML document and where its data lives."""

    name: str
    owner: str
    description: str
    connector: dict[str, str]
    products: tuple[DemoProduct, ...]


def write_demo_mesh(directory: Path, *, seed: int = 7) -> Path:
    """Write the demo mesh into ``directory`` and return its config directory.

    The same ``seed`` always gives the same data. Files of an earlier run are
    replaced.
    """
    rng = random.Random(seed)
    config_dir, data_dir = directory / "config", directory / "data"
    config_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)

    customers, orders = _sales_rows(rng)
    shipments = _shipments(rng, customers, orders)
    invoices, payments = _finance_rows(rng, orders)
    domains = (
        _write_sales(data_dir / "sales.db", customers, orders),
        _write_logistics(data_dir / "logistics", shipments),
        _write_finance(data_dir, invoices, payments),
        _write_reference(data_dir / "reference", _exchange_rates(rng)),
    )
    for domain in domains:
        _write_yaml(config_dir / f"{domain.name}.yaml", domain)
    (directory / "README.txt").write_text(_readme(domains), encoding="utf-8")
    return config_dir


# --- rows ----------------------------------------------------------------------------


def _sales_rows(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Customers and their orders; ``lifetime_value`` sums non-cancelled orders."""
    customers = [_customer(rng, customer_id) for customer_id in range(1, N_CUSTOMERS + 1)]
    # A few heavy buyers and some customers who never ordered.
    weights = [0.0 if rng.random() < 0.08 else rng.paretovariate(1.5) for _ in customers]
    buyers = rng.choices(customers, weights=weights, k=N_ORDERS)
    orders = [_order(rng, 100_001 + index, buyer) for index, buyer in enumerate(buyers)]
    totals: dict[int, Decimal] = {}
    for order in (o for o in orders if o["status"] != "cancelled"):
        totals[order["customer_id"]] = totals.get(order["customer_id"], Decimal("0.00")) + order["total_amount"]
    for customer in customers:
        customer["lifetime_value"] = totals.get(customer["customer_id"])
    return customers, orders


def _customer(rng: random.Random, customer_id: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    country = rng.choices(list(COUNTRIES), weights=[share for _, share in COUNTRIES.values()])[0]
    email = f"{_ascii(first)}.{_ascii(last)}{customer_id}@example.{country.lower()}".lower()
    return {
        "customer_id": customer_id,
        "name": f"{first} {last}",
        "email": None if rng.random() < 0.06 else email,
        "country": country,
        "segment": None if rng.random() < 0.05 else rng.choice(("consumer", "small_business", "enterprise")),
        "signup_date": dt.date(2022, 1, 1) + dt.timedelta(days=rng.randrange(730)),
        "lifetime_value": None,
    }


def _order(rng: random.Random, order_id: int, customer: dict[str, Any]) -> dict[str, Any]:
    order_date = START + dt.timedelta(days=rng.randrange(DAYS))
    created_at = dt.datetime.combine(order_date, dt.time()) + dt.timedelta(seconds=rng.randrange(86_400))
    return {
        "order_id": order_id,
        "customer_id": customer["customer_id"],
        "order_date": order_date,
        "created_at": created_at,
        "status": rng.choices(list(ORDER_STATUSES), weights=list(ORDER_STATUSES.values()))[0],
        "item_count": rng.randint(1, 8),
        "total_amount": _money(rng.lognormvariate(5.6, 0.8)),
        "currency": COUNTRIES[customer["country"]][0],
        "coupon_code": rng.choice(("WELCOME10", "SPRING24", "VIP")) if rng.random() < 0.15 else None,
    }


def _shipments(
    rng: random.Random, customers: list[dict[str, Any]], orders: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One shipment per shipped order, from the customer's country when it has a warehouse."""
    country_of = {c["customer_id"]: c["country"] for c in customers}
    warehouse_of = {country: warehouse_id for warehouse_id, _, country, _ in WAREHOUSES}
    shipments: list[dict[str, Any]] = []
    for order in (o for o in orders if o["status"] in SHIPPED_STATUSES):
        country = country_of[order["customer_id"]]
        shipped_at = (order["created_at"] + dt.timedelta(minutes=rng.randrange(120, 4320))).replace(tzinfo=dt.UTC)
        in_transit = order["status"] == "shipped"
        weight = round(rng.lognormvariate(1.0, 0.9), 3)
        shipments.append(
            {
                "shipment_id": 500_001 + len(shipments),
                "order_id": order["order_id"],
                "warehouse_id": warehouse_of.get(country, rng.randint(1, len(WAREHOUSES))),
                "carrier": CARRIERS.get(country, rng.choice(("DHL", "FedEx", "UPS"))),
                "shipped_at": shipped_at,
                "delivered_at": None if in_transit else shipped_at + dt.timedelta(hours=rng.randrange(10, 200)),
                "weight_kg": weight,
                "cost": _money(3.5 + weight * rng.uniform(0.8, 1.6)),
            }
        )
    return shipments


def _finance_rows(
    rng: random.Random, orders: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An invoice per non-cancelled order; paid invoices have one or two payments."""
    invoices: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    for order in (o for o in orders if o["status"] != "cancelled"):
        issued_on = order["order_date"]
        paid = rng.random() < (0.92 if issued_on.month < 6 else 0.55)
        invoice = {
            "invoice_id": 700_001 + len(invoices),
            "order_id": order["order_id"],
            "amount": order["total_amount"],
            "currency": order["currency"],
            "issued_on": issued_on,
            "due_on": issued_on + dt.timedelta(days=30),
            "paid": paid,
        }
        invoices.append(invoice)
        if paid:
            payments.extend(_payments(rng, invoice, first_id=900_001 + len(payments)))
    return invoices, payments


def _payments(rng: random.Random, invoice: dict[str, Any], first_id: int) -> list[dict[str, Any]]:
    amount: Decimal = invoice["amount"]
    parts = [amount] if rng.random() < 0.9 else [_money(float(amount) / 2), amount - _money(float(amount) / 2)]
    paid_on = invoice["issued_on"]
    payments: list[dict[str, Any]] = []
    for offset, part in enumerate(parts):
        paid_on += dt.timedelta(days=rng.randrange(0, 25))
        payments.append(
            {
                "payment_id": first_id + offset,
                "invoice_id": invoice["invoice_id"],
                "paid_on": paid_on,
                "amount": part,
                "method": None if rng.random() < 0.03 else rng.choice(("card", "bank_transfer", "paypal")),
            }
        )
    return payments


def _exchange_rates(rng: random.Random) -> list[dict[str, Any]]:
    """A daily random walk per currency: US dollars for one unit of it."""
    rates: list[dict[str, Any]] = []
    for currency, base in USD_PER_UNIT.items():
        rate = base
        for day in range(DAYS):
            if currency != "USD":
                rate *= 1 + rng.gauss(0, 0.003)
            rates.append(
                {
                    "rate_date": START + dt.timedelta(days=day),
                    "currency": currency,
                    "usd_per_unit": Decimal(f"{rate:.6f}"),
                }
            )
    return rates


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(char for char in decomposed if char.isascii())


# --- sources -------------------------------------------------------------------------

SALES_DDL = """
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    country TEXT NOT NULL,
    segment TEXT,
    signup_date DATE NOT NULL,
    lifetime_value DECIMAL(12,2)
);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    order_date DATE NOT NULL,
    created_at TIMESTAMP NOT NULL,
    status TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    total_amount DECIMAL(12,2) NOT NULL,
    currency TEXT NOT NULL,
    coupon_code TEXT
);
"""


def _write_sales(path: Path, customers: list[dict[str, Any]], orders: list[dict[str, Any]]) -> DemoDomain:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        connection.executescript(SALES_DDL)
        _insert(connection, "customers", customers)
        _insert(connection, "orders", orders)
    connection.close()
    return DemoDomain(
        name="sales",
        owner="sales-team",
        description="Customers of the web shop and the orders they place",
        connector={"type": "sqlite", "path": "../data/sales.db"},
        products=(
            DemoProduct("customers", "One row per customer; lifetime_value sums non-cancelled orders", "customers"),
            DemoProduct(
                "orders", "One row per order, amounts in the customer's currency", "orders", catalog_sample=True
            ),
            DemoProduct(
                "vip_customers",
                f"Customers whose lifetime value exceeds {VIP_THRESHOLD}",
                sql="SELECT customer_id, name, email, country, segment, lifetime_value "
                f"FROM customers WHERE lifetime_value > {VIP_THRESHOLD}",
                catalog_sample=True,
            ),
        ),
    )


def _insert(connection: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows as SQLite stores them: ISO text for dates and times, decimals as text."""
    columns = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    connection.executemany(sql, ([_sqlite_value(row[c]) for c in columns] for row in rows))


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | Decimal):
        return str(value)
    return value


SHIPMENTS_SCHEMA = pa.schema(
    [
        pa.field("shipment_id", pa.int64(), nullable=False),
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("warehouse_id", pa.int64(), nullable=False),
        pa.field("carrier", pa.string(), nullable=False),
        pa.field("shipped_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("delivered_at", pa.timestamp("us", tz="UTC")),
        pa.field("weight_kg", pa.float64(), nullable=False),
        pa.field("cost", pa.decimal128(10, 2), nullable=False),
    ]
)
WAREHOUSES_SCHEMA = pa.schema(
    [
        pa.field("warehouse_id", pa.int64(), nullable=False),
        pa.field("city", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("capacity", pa.int32(), nullable=False),
    ]
)


def _write_logistics(folder: Path, shipments: list[dict[str, Any]]) -> DemoDomain:
    folder.mkdir(exist_ok=True)
    warehouses = [dict(zip(WAREHOUSES_SCHEMA.names, row, strict=True)) for row in WAREHOUSES]
    pq.write_table(pa.Table.from_pylist(shipments, SHIPMENTS_SCHEMA), folder / "shipments.parquet")
    pq.write_table(pa.Table.from_pylist(warehouses, WAREHOUSES_SCHEMA), folder / "warehouses.parquet")
    return DemoDomain(
        name="logistics",
        owner="logistics-team",
        description="Shipments of orders from our warehouses to customers",
        connector={"type": "parquet", "path": "../data/logistics"},
        products=(
            DemoProduct("shipments", "One row per shipped order; delivered_at is NULL in transit", "shipments.parquet"),
            DemoProduct("warehouses", "Our warehouses and their capacity in parcels a day", "warehouses.parquet"),
        ),
    )


INVOICES_SCHEMA = pa.schema(
    [
        pa.field("invoice_id", pa.int64(), nullable=False),
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("amount", pa.decimal128(12, 2), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("issued_on", pa.date32(), nullable=False),
        pa.field("due_on", pa.date32(), nullable=False),
        pa.field("paid", pa.bool_(), nullable=False),
    ]
)
PAYMENTS_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.int64(), nullable=False),
        pa.field("invoice_id", pa.int64(), nullable=False),
        pa.field("paid_on", pa.date32(), nullable=False),
        pa.field("amount", pa.decimal128(12, 2), nullable=False),
        pa.field("method", pa.string()),
    ]
)
FINANCE_DDL = """
CREATE TABLE invoices (
    invoice_id BIGINT PRIMARY KEY,
    order_id BIGINT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    currency VARCHAR NOT NULL,
    issued_on DATE NOT NULL,
    due_on DATE NOT NULL,
    paid BOOLEAN NOT NULL
);
CREATE TABLE payments (
    payment_id BIGINT PRIMARY KEY,
    invoice_id BIGINT NOT NULL REFERENCES invoices (invoice_id),
    paid_on DATE NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    method VARCHAR
);
"""


def _load_duckdb() -> ModuleType | None:
    try:
        return importlib.import_module("duckdb")
    except ImportError:
        return None


def _write_finance(data_dir: Path, invoices: list[dict[str, Any]], payments: list[dict[str, Any]]) -> DemoDomain:
    """Finance on DuckDB when it imports, else on CSV files."""
    tables = {
        "invoices": pa.Table.from_pylist(invoices, INVOICES_SCHEMA),
        "payments": pa.Table.from_pylist(payments, PAYMENTS_SCHEMA),
    }
    path = data_dir / "finance.duckdb"
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    duckdb = _load_duckdb()
    descriptions = {
        "invoices": "One invoice per non-cancelled order, in the order's currency",
        "payments": "Payments received; an invoice may be paid in two parts",
    }
    if duckdb is None:
        folder = data_dir / "finance"
        folder.mkdir(exist_ok=True)
        for name, table in tables.items():
            pacsv.write_csv(table, folder / f"{name}.csv")
        connector = {"type": "csv", "path": "../data/finance"}
        products = tuple(DemoProduct(name, text, f"{name}.csv") for name, text in descriptions.items())
    else:
        _write_duckdb(duckdb, path, tables)
        connector = {"type": "duckdb", "path": "../data/finance.duckdb"}
        products = (
            *(DemoProduct(name, text, f"main.{name}") for name, text in descriptions.items()),
            DemoProduct(
                "open_invoices",
                "Unpaid invoices; days_overdue counts from due_on to 2024-07-01 (negative: not due yet)",
                sql="SELECT invoice_id, order_id, amount, currency, due_on, "
                "date_diff('day', due_on, DATE '2024-07-01') AS days_overdue FROM main.invoices WHERE NOT paid",
            ),
        )
    return DemoDomain(
        name="finance",
        owner="finance-team",
        description="Invoices and payments for every order",
        connector=connector,
        products=products,
    )


def _write_duckdb(duckdb: ModuleType, path: Path, tables: dict[str, pa.Table]) -> None:
    connection = duckdb.connect(str(path))
    try:
        connection.execute(FINANCE_DDL)
        for name, table in tables.items():
            connection.register("incoming", table)
            connection.execute(f"INSERT INTO {name} SELECT * FROM incoming")
            connection.unregister("incoming")
    finally:
        connection.close()


RATES_SCHEMA = pa.schema(
    [
        pa.field("rate_date", pa.date32(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("usd_per_unit", pa.decimal128(12, 6), nullable=False),
    ]
)


def _write_reference(folder: Path, rates: list[dict[str, Any]]) -> DemoDomain:
    folder.mkdir(exist_ok=True)
    pacsv.write_csv(pa.Table.from_pylist(rates, RATES_SCHEMA), folder / "exchange_rates.csv")
    return DemoDomain(
        name="reference",
        owner="data-platform",
        description="Reference data shared by every domain",
        connector={"type": "csv", "path": "../data/reference"},
        products=(
            DemoProduct("exchange_rates", "Daily rates: US dollars for one unit of currency", "exchange_rates.csv"),
        ),
    )


# --- config and README -----------------------------------------------------------------


def _write_yaml(path: Path, domain: DemoDomain) -> None:
    document = {
        "domains": [
            {
                "name": domain.name,
                "owner": domain.owner,
                "description": domain.description,
                "connector": domain.connector,
                "products": [_product_yaml(product) for product in domain.products],
            }
        ]
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")


def _product_yaml(product: DemoProduct) -> dict[str, str | bool]:
    entry: dict[str, str | bool] = {"name": product.name}
    entry |= {"source": product.source} if product.source is not None else {"sql": product.sql or ""}
    entry["description"] = product.description
    if product.catalog_sample:
        entry["catalog_sample"] = True
    return entry


def _readme(domains: tuple[DemoDomain, ...]) -> str:
    lines = [
        "Meshgate demo mesh",
        "==================",
        "",
        "config/ holds one YAML file per domain; data/ holds the sources they point to.",
        "SQL names a data product as domain.product.",
        "",
        "Domains and products",
        "--------------------",
    ]
    for domain in domains:
        lines.append(f"{domain.name} ({domain.connector['type']}, owner {domain.owner}): {domain.description}")
        lines.extend(f"  {domain.name}.{p.name}: {p.description}" for p in domain.products)
    lines += ["", "Example queries", "---------------"]
    for query in EXAMPLE_QUERIES:
        lines += ["", query + ";"]
    return "\n".join(lines) + "\n"
