"""The counted-keys rule (gateway/plan/counted_keys.py) on real SQLite, PostgreSQL and Parquet.

Each case: the SQL, then the columns each source is asked for; every answer must equal the same
query's with the rules off and DuckDB's.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from datafusion import SessionContext

from gateway.engine import Engine
from gateway.plan.counted_keys import count_join_keys
from gateway.plan.substrait_plan import to_substrait

CUSTOMERS = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "name": ["Ana", "Bo", "Cy", "Di"]})
ORDERS = pa.table(  # id and customer_id are NOT NULL in both sources; note is not
    {
        "id": pa.array([10, 11, 12, 13, 14], pa.int64()),
        "customer_id": pa.array([1, 1, 2, 9, 3], pa.int64()),
        "note": ["a", None, "c", "d", None],
    }
)

CASES = [
    # A NOT NULL column of the side the left join makes NULL: its key is counted, id is not read.
    (
        "SELECT c.id, count(o.id) AS n FROM ref.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.id",
        {"shop": ["customer_id"]},
    ),
    # The same in PostgreSQL, with a condition in the join, and a right join.
    (
        "SELECT c.name, count(o.id) FROM sales.orders o RIGHT JOIN ref.customers c ON o.customer_id = c.id"
        " AND o.note <> 'c' GROUP BY c.name",
        {"sales": ["customer_id"]},
    ),
    # A column that may be NULL is counted as it is.
    (
        "SELECT c.id, count(o.note) FROM ref.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.id",
        {"shop": ["customer_id", "note"]},
    ),
    # So is a distinct count (values, not rows), and a count of the side the join keeps.
    (
        "SELECT c.id, count(DISTINCT o.id) FROM ref.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id"
        " GROUP BY c.id",
        {"shop": ["id", "customer_id"]},
    ),
    (
        "SELECT o.customer_id, count(o.id) FROM shop.orders o LEFT JOIN ref.customers c ON o.customer_id = c.id"
        " GROUP BY o.customer_id",
        {"shop": ["id", "customer_id"]},
    ),
]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    directory = tmp_path_factory.mktemp("counted_keys")
    with sqlite3.connect(directory / "shop.db") as connection:
        connection.execute("CREATE TABLE orders (id INTEGER NOT NULL, customer_id INTEGER NOT NULL, note TEXT)")
        connection.executemany("INSERT INTO orders VALUES (?, ?, ?)", [tuple(r.values()) for r in ORDERS.to_pylist()])
    (directory / "ref").mkdir()
    pq.write_table(CUSTOMERS, directory / "ref" / "customers.parquet")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}".orders (id BIGINT NOT NULL, customer_id BIGINT NOT NULL, note TEXT)'
        )
        cursor.adbc_ingest("orders", ORDERS, mode="append", db_schema_name=pg_schema)
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: shop
    connector: {{type: sqlite, path: shop.db}}
  - name: ref
    connector: {{type: parquet, path: ref}}
  - name: sales
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: orders, source: {pg_schema}.orders}}
"""
    )
    return directory


def columns_asked(engine: Engine, sql: str) -> dict[str, list[str]]:
    """The columns of each source query ``EXPLAIN`` lists, by domain."""
    explained = engine.run("EXPLAIN " + sql).read_all().to_pydict()
    asked: dict[str, list[str]] = {}
    for kind, text in zip(explained["plan_type"], explained["plan"], strict=True):
        if kind.startswith("source_query["):
            query = sqlglot.parse_one(text.splitlines()[0], read="postgres")
            asked[kind.removeprefix("source_query[").split("/")[0]] = [c.alias_or_name for c in query.selects]
    return asked


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


@pytest.mark.parametrize(("sql", "asked"), CASES, ids=[sql for sql, _ in CASES])
def test_counted_keys(engines: tuple[Engine, Engine], sql: str, asked: dict[str, list[str]]) -> None:
    on, off = engines
    assert columns_asked(on, sql) == asked
    answer = rows(on.run(sql).read_all())
    assert answer == rows(off.run(sql).read_all())
    reference = duckdb.connect()
    for schema, name, table in (
        ("ref", "customers", CUSTOMERS),
        ("shop", "orders", ORDERS),
        ("sales", "orders", ORDERS),
    ):
        reference.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        reference.register("incoming", table)
        reference.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM incoming")
        reference.unregister("incoming")
    assert answer == sorted(reference.execute(sql).fetchall(), key=repr)


def test_a_null_safe_join_key_is_not_counted() -> None:
    """``IS NOT DISTINCT FROM`` matches NULL keys: a matched row's key may be NULL, so its count
    would differ from the column's. Only ``=`` keys are counted (the column declared NOT NULL here)."""
    ctx = SessionContext()
    ctx.register_record_batches("c", [[pa.record_batch({"id": pa.array([1, None])})]])
    ctx.register_record_batches("o", [[pa.record_batch({"id": pa.array([10, 11]), "cid": pa.array([1, None])})]])

    def rewritten(condition: str) -> int:
        sql = f"SELECT c.id, count(o.id) FROM c LEFT JOIN o ON {condition} GROUP BY c.id"
        return count_join_keys(to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx), lambda names, column: True)

    assert rewritten("o.cid IS NOT DISTINCT FROM c.id") == 0
    assert rewritten("o.cid = c.id") == 1
