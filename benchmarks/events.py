"""A synthetic ``events`` table (the same rows in PostgreSQL and in a Parquet file) and a small
``customers`` table in SQLite: the data of the pushdown, streaming and latency benchmarks.

``events`` (``rows`` rows, sorted by ``id``)::

    id           BIGINT   1..rows, primary key
    customer_id  BIGINT   uniform in 1..100000 (customers.id)
    category     VARCHAR  'cat-00'..'cat-19'
    name         VARCHAR  'name-<id>'
    amount       DOUBLE   0.00..9999.99
    created      DATE     2020-01-01 + (id mod 1461) days

``customers`` (100 000 rows): ``id``, ``region`` (10 values), ``segment`` (5 values).
The Parquet file has row groups of 128 Ki rows and a page index, so that DataFusion can
skip what a filter on ``id`` excludes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.harness import log

CUSTOMERS = 100_000
REGIONS = ("north", "south", "east", "west", "central", "coast", "mountain", "plains", "islands", "capital")
SEGMENTS = ("gold", "silver", "bronze", "retail", "wholesale")
ROW_GROUP = 128 * 1024
SEED = 20261122


@dataclass(frozen=True)
class EventsData:
    rows: int
    parquet: Path  # events.parquet
    sqlite: Path  # customers.db

    @property
    def directory(self) -> Path:
        return self.parquet.parent


def events_table(rows: int, seed: int = SEED) -> pa.Table:
    """The ``events`` rows, generated deterministically."""
    random = np.random.default_rng(seed)
    ids = pa.array(np.arange(1, rows + 1, dtype=np.int64))
    created = np.datetime64("2020-01-01") + (np.arange(1, rows + 1) % 1461).astype("timedelta64[D]")
    categories = pa.array([f"cat-{i:02d}" for i in range(20)])
    return pa.table(
        {
            "id": ids,
            "customer_id": pa.array(random.integers(1, CUSTOMERS + 1, rows, dtype=np.int64)),
            "category": pc.take(categories, pa.array(random.integers(0, 20, rows, dtype=np.int32))),
            "name": pc.binary_join_element_wise("name-", pc.cast(ids, pa.string()), ""),
            "amount": pa.array(np.round(random.random(rows) * 10_000, 2)),
            "created": pa.array(created, type=pa.date32()),
        }
    )


def customers_table(seed: int = SEED + 1) -> pa.Table:
    random = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(1, CUSTOMERS + 1, dtype=np.int64)),
            "region": pc.take(pa.array(REGIONS), pa.array(random.integers(0, len(REGIONS), CUSTOMERS))),
            "segment": pc.take(pa.array(SEGMENTS), pa.array(random.integers(0, len(SEGMENTS), CUSTOMERS))),
        }
    )


def generate(rows: int, work_dir: Path) -> EventsData:
    """Write (or reuse) ``events.parquet`` and ``customers.db`` for ``rows`` events."""
    directory = work_dir / f"events-{rows}"
    data = EventsData(rows, directory / "events.parquet", directory / "customers.db")
    directory.mkdir(parents=True, exist_ok=True)
    if not data.parquet.exists():
        log(f"writing {rows:,} events to {data.parquet}")
        building = data.parquet.with_suffix(".building")
        pq.write_table(events_table(rows), building, row_group_size=ROW_GROUP, write_page_index=True)
        building.rename(data.parquet)
    if not data.sqlite.exists():
        building = data.sqlite.with_suffix(".building")
        building.unlink(missing_ok=True)
        customers = customers_table()
        with sqlite3.connect(building) as connection:
            connection.execute("CREATE TABLE customers (id BIGINT PRIMARY KEY, region VARCHAR, segment VARCHAR)")
            connection.executemany(
                "INSERT INTO customers VALUES (?, ?, ?)", zip(*[c.to_pylist() for c in customers.columns], strict=True)
            )
        connection.close()
        building.rename(data.sqlite)
    return data


def load_postgres(data: EventsData, uri: str, schema: str) -> None:
    """``events`` into ``schema`` (which exists), with its primary key, analysed."""
    table = pq.read_table(data.parquet)
    log(f"loading {table.num_rows:,} events into PostgreSQL schema {schema}")
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{schema}".events (id BIGINT NOT NULL, customer_id BIGINT NOT NULL,'
            " category VARCHAR NOT NULL, name VARCHAR NOT NULL, amount DOUBLE PRECISION NOT NULL,"
            " created DATE NOT NULL)"
        )
        cursor.adbc_ingest("events", table, mode="append", db_schema_name=schema)
        cursor.execute(f'ALTER TABLE "{schema}".events ADD PRIMARY KEY (id)')
        cursor.execute(f'ANALYZE "{schema}".events')


def write_mesh(directory: Path, data: EventsData, pg_uri: str, pg_schema: str) -> Path:
    """sales.events (PostgreSQL), logistics.events (Parquet), crm.customers (SQLite)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sales.yaml").write_text(
        "domains:\n  - name: sales\n"
        f"    connector: {{type: postgres, uri: {_quote(pg_uri)}}}\n"
        f"    products:\n      - {{name: events, source: {_quote(pg_schema + '.events')}}}\n"
    )
    (directory / "logistics.yaml").write_text(
        "domains:\n  - name: logistics\n"
        f"    connector: {{type: parquet, path: {_quote(str(data.parquet))}}}\n"
        "    products:\n      - {name: events, source: events.parquet}\n"
    )
    (directory / "crm.yaml").write_text(
        "domains:\n  - name: crm\n"
        f"    connector: {{type: sqlite, path: {_quote(str(data.sqlite))}}}\n"
        "    products:\n      - {name: customers, source: customers}\n"
    )
    return directory


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
