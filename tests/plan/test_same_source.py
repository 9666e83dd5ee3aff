"""The same-source rule (gateway/plan/same_source.py) as data, on real SQLite, PostgreSQL and Parquet.

``tests/fixtures/plan/same_source.sql`` holds the cases: SQL in, each pushed sub-plan's source
query out. Every case's answer must equal the same query's with the rule off and DuckDB's.
"""

from __future__ import annotations

import decimal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine
from gateway.plan import build_side, same_source
from gateway.plan.same_source import DERIVED_SCHEMA

FIXTURES = Path(__file__).parent.parent / "fixtures" / "plan" / "same_source.sql"

CUSTOMERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "name": ["Ana", "Émile", "Zoe", "paid", "Bo"],
        "country": ["FR", "FR", "DE", "US", None],
    }
)
ORDERS = pa.table(
    {
        "id": pa.array(range(1, 11), pa.int64()),
        "customer_id": pa.array([1, 1, 2, 3, 3, 3, 4, 5, 9, None], pa.int64()),
        "total": pa.array([10.0, 25.5, 30.0, 5.0, 21.0, 99.0, 1.0, 40.0, 50.0, 60.0]),
        "status": ["paid", "open", "paid", "paid", "open", "paid", "paid", "PAID", "paid", None],
    }
)
PAYMENTS = pa.table(
    {
        "order_id": pa.array([1, 1, 2, 3, 6, 8], pa.int64()),
        "amount": pa.array([5.0, 5.5, 25.5, 30.0, 99.0, 40.0]),
    }
)
SUPPLIERS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["acme", "bolt", "brick"]})
SUPPLIES = pa.table(  # both tables' columns are declared NOT NULL in SQLite
    {
        "supplier_id": pa.array([1, 1, 2, 3, 4], pa.int64()),
        "item": ["nail", "screw", "nut", "stone", "glue"],
        "qty": pa.array([5, 2, 7, 1, 3], pa.int64()),
    }
)
COUNTRIES = pa.table({"code": ["FR", "DE", "US"], "name": ["France", "Germany", "United States"]})
EVENTS = pa.table(
    {
        "id": pa.array(range(1, 9), pa.int64()),
        "kind": pa.array([1, 2, 1, 3, 2, 1, None, 3], pa.int32()),
        "label": ["a", "A", "a", "b", "B", "a", "c", None],
        "amount": pa.array([5, 7, 11, 13, 17, 19, 23, 29], pa.int64()),
        "price": pa.array(
            [decimal.Decimal(v) for v in ("0.10", "0.20", "0.30", "12345678.91", "0.05", "0.07", "1.00", "2.50")],
            pa.decimal128(10, 2),
        ),
    }
)
ACCOUNTS = pa.table({"id": pa.array([1, 2, 3], pa.int32()), "owner": ["ops", "sales", "hr"]})
INVOICES = pa.table(
    {
        "account_id": pa.array([1, 1, 2, 3, 3], pa.int32()),
        "amount": pa.array([100, 250, 75, 20, 5], pa.int64()),
        "issued": pa.array(["2024-01-15", "2024-02-01", "2024-03-10", "2024-01-31", "2024-02-29"]).cast(pa.date32()),
    }
)


def load_cases() -> list[tuple[str, list[str]]]:
    cases = []
    for block in FIXTURES.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line and not line.startswith("#")]
        if lines:
            cases.append((lines[0], lines[1:]))
    return cases


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    """The mesh's folder: shop (SQLite), ref (Parquet), ana (DuckDB) and sales (PostgreSQL) in mesh.yaml."""
    directory = tmp_path_factory.mktemp("same_source")
    with sqlite3.connect(directory / "shop.db") as connection:
        connection.execute("CREATE TABLE customers (id INTEGER, name TEXT, country TEXT)")
        connection.execute("CREATE TABLE orders (id INTEGER, customer_id INTEGER, total REAL, status TEXT)")
        connection.execute("CREATE TABLE payments (order_id INTEGER, amount REAL)")
        connection.execute("CREATE TABLE suppliers (id INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL)")
        connection.execute(
            "CREATE TABLE supplies (supplier_id INTEGER NOT NULL, item TEXT NOT NULL, qty INTEGER NOT NULL)"
        )
        tables = (
            ("customers", CUSTOMERS),
            ("orders", ORDERS),
            ("payments", PAYMENTS),
            ("suppliers", SUPPLIERS),
            ("supplies", SUPPLIES),
        )
        for name, table in tables:
            marks = ", ".join("?" * table.num_columns)
            connection.executemany(
                f"INSERT INTO {name} VALUES ({marks})", [tuple(r.values()) for r in table.to_pylist()]
            )
    (directory / "ref").mkdir()
    pq.write_table(COUNTRIES, directory / "ref" / "countries.parquet")
    with duckdb.connect(str(directory / "ana.duckdb")) as connection:
        connection.register("incoming", EVENTS)
        connection.execute("CREATE TABLE events AS SELECT * FROM incoming")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.adbc_ingest("accounts", ACCOUNTS, db_schema_name=pg_schema)
        cursor.adbc_ingest("invoices", INVOICES, db_schema_name=pg_schema)
    (directory / "mesh.yaml").write_text(
        f"""domains:
  - name: shop
    connector: {{type: sqlite, path: shop.db}}
  - name: ref
    connector: {{type: parquet, path: ref}}
  - name: ana
    connector: {{type: duckdb, path: ana.duckdb}}
  - name: sales
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: accounts, source: {pg_schema}.accounts}}
      - {{name: invoices, source: {pg_schema}.invoices}}
"""
    )
    return directory


@pytest.fixture(scope="module")
def governed(mesh: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The same mesh under policies: ana's orders are row-filtered, root reads everything."""
    directory = tmp_path_factory.mktemp("governed")
    (directory / "mesh.yaml").write_text((mesh / "mesh.yaml").read_text().replace("path: ", f"path: {mesh}/"))
    (directory / "policies.yaml").write_text(
        """policies:
  roles: {analyst: [ana], admin: [root]}
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "shop.*"}
    - {role: analyst, on: "ref.*"}
  row_filters:
    - {on: shop.orders, where: "status = 'open'", except: [admin]}
"""
    )
    engine = Engine.from_config(load_config(directory))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for schema, tables in {
        "shop": {
            "customers": CUSTOMERS,
            "orders": ORDERS,
            "payments": PAYMENTS,
            "suppliers": SUPPLIERS,
            "supplies": SUPPLIES,
        },
        "ref": {"countries": COUNTRIES},
        "sales": {"accounts": ACCOUNTS, "invoices": INVOICES},
        "ana": {"events": EVENTS},
    }.items():
        connection.execute(f"CREATE SCHEMA {schema}")
        for name, table in tables.items():
            connection.register("incoming", table)
            connection.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM incoming")
            connection.unregister("incoming")
    yield connection
    connection.close()


def pushed_queries(engine: Engine, sql: str, caller: CallerContext | None = None) -> list[str]:
    planned = engine._plan(sql, caller or CallerContext())
    return [
        f"{scan.product.domain}: {scan.product.source.sql}"
        for (schema, _), scan in planned.scans.items()
        if schema == DERIVED_SCHEMA and scan.product.source.sql is not None  # not a subquery's own read
    ]


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


@pytest.mark.parametrize(("sql", "expected"), load_cases(), ids=lambda value: value if isinstance(value, str) else "")
def test_same_source_fixture(
    engines: tuple[Engine, Engine], reference: duckdb.DuckDBPyConnection, pg_schema: str, sql: str, expected: list[str]
) -> None:
    on, off = engines
    wanted = [] if expected == ["none"] else [line.replace("{schema}", pg_schema) for line in expected]
    assert pushed_queries(on, sql) == wanted
    answer = rows(on.run(sql).read_all())
    assert answer == rows(off.run(sql).read_all())
    assert answer == sorted(reference.execute(sql).fetchall(), key=repr)


def test_explain_shows_the_pushed_join_and_the_plan_that_reads_it(engines: tuple[Engine, Engine]) -> None:
    on, _ = engines
    sql = (
        "SELECT c.name, k.name FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " JOIN ref.countries k ON k.code = c.country WHERE o.total > 20"
    )
    plan = dict(zip(*on.run("EXPLAIN " + sql).read_all().to_pydict().values(), strict=True))
    assert "customers+orders" in plan["logical_plan"] and "shop.customers" not in plan["logical_plan"]
    (shop,) = [text for kind, text in plan.items() if kind.startswith("source_query[shop/")]
    assert '"customers" AS "t0" INNER JOIN "orders" AS "t1" ON TRUE' in shop


def test_the_audit_log_names_the_products_not_the_derived_table(engines: tuple[Engine, Engine]) -> None:
    on, _ = engines
    sql = (
        "SELECT c.name, k.name FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " JOIN ref.countries k ON k.code = c.country WHERE o.total > 20"
    )
    on.run(sql).read_all()
    record = on.audit.records(None)[-1]
    assert record.sql == sql and sorted(record.products) == ["ref.countries", "shop.customers", "shop.orders"]


def test_a_sub_plan_its_source_does_not_accept_is_not_sent(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source is asked whether it can plan a sub-plan's query before it is sent one (a remote Flight
    SQL server of another version prepares it: connectors/flightsql.py); refused, its tables are
    read as they are, and the answer is the same."""
    on, off = engines
    sql = (
        "SELECT c.name, k.name FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " JOIN ref.countries k ON k.code = c.country WHERE o.total > 20"
    )
    pushed = pushed_queries(on, sql)
    assert len(pushed) == 1 and pushed[0].startswith("shop: ")
    asked: list[str] = []

    def refuse(query: str) -> bool:
        asked.append(query)
        return False

    monkeypatch.setattr(on.catalog.domain("shop").connector, "accepts", refuse)
    assert pushed_queries(on, sql) == []
    assert pushed[0].removeprefix("shop: ") in asked
    assert rows(on.run(sql).read_all()) == rows(off.run(sql).read_all())


FILTERED = (
    "SELECT c.name, o.total, k.name AS country FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    " JOIN ref.countries k ON k.code = c.country WHERE c.country = 'FR'"
)


def test_a_row_filtered_product_is_not_pushed_and_its_filter_holds(governed: Engine) -> None:
    ana = CallerContext(user="ana")
    assert [q for q in pushed_queries(governed, FILTERED, ana)] == []  # orders carries a guard for ana
    assert rows(governed.run(FILTERED, ana).read_all()) == [("Ana", 25.5, "France")]


def test_a_row_filtered_product_is_not_aggregated_in_its_source(governed: Engine) -> None:
    """An aggregate over a product a policy filters for the caller is not sent: the source would count
    rows the caller may not see."""
    sql = "SELECT t.n, t.top FROM (SELECT count(*) AS n, max(id) AS top FROM shop.orders) t JOIN ref.countries k ON k.code = 'FR'"
    ana, root = CallerContext(user="ana"), CallerContext(user="root")
    assert pushed_queries(governed, sql, ana) == []
    assert rows(governed.run(sql, ana).read_all()) == [(2, 5)]  # only the open orders
    assert [q.split(":")[0] for q in pushed_queries(governed, sql, root)] == ["shop"]
    assert rows(governed.run(sql, root).read_all()) == [(10, 10)]


def test_a_row_filtered_product_in_a_scalar_subquery_is_not_counted_in_its_source(governed: Engine) -> None:
    sql = "SELECT k.code, (SELECT count(*) FROM shop.orders) AS n FROM ref.countries k WHERE k.code = 'FR'"
    ana, root = CallerContext(user="ana"), CallerContext(user="root")
    assert pushed_queries(governed, sql, ana) == []
    assert rows(governed.run(sql, ana).read_all()) == [("FR", 2)]  # the open orders only
    assert [q.split(":")[0] for q in pushed_queries(governed, sql, root)] == ["shop"]
    assert rows(governed.run(sql, root).read_all()) == [("FR", 10)]


def test_an_unrestricted_caller_under_policies_gets_the_pushed_join(governed: Engine) -> None:
    root = CallerContext(user="root")
    assert [q.split(":")[0] for q in pushed_queries(governed, FILTERED, root)] == ["shop"]
    assert rows(governed.run(FILTERED, root).read_all()) == [
        ("Ana", 10.0, "France"),
        ("Ana", 25.5, "France"),
        ("Émile", 30.0, "France"),
    ]


class _Panic(BaseException):
    """What a Rust panic inside DataFusion reaches Python as: a BaseException, not an Exception."""


@pytest.mark.parametrize("error", [RuntimeError, _Panic])
@pytest.mark.parametrize(
    ("sql", "derived"),
    [
        (
            "SELECT c.name, k.name AS country FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
            " JOIN ref.countries k ON k.code = c.country WHERE o.total > 20",
            "customers+orders",
        ),
        (
            "SELECT x.owner FROM (SELECT owner FROM sales.accounts WHERE id IN"
            " (SELECT account_id FROM sales.invoices WHERE amount > 50)) x JOIN ref.countries k ON k.code = 'FR'",
            "accounts+invoices",
        ),
    ],
)
def test_a_rule_that_fails_leaves_the_plan_and_no_derived_scan(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch, error: type[BaseException], sql: str, derived: str
) -> None:
    """A rule that raises after same_source pushed its sub-plan, or a panic in DataFusion: the query
    runs as DataFusion planned it."""
    import gateway.plan.rules

    def broken(*_: object) -> bool:
        raise error("a rule that fails after same_source pushed its sub-plan")

    monkeypatch.setattr(gateway.plan.rules, "build_smaller", broken)
    on, off = engines
    assert split_tables(on, sql) == []  # no derived scan of any kind
    assert rows(on.run(sql).read_all()) == rows(off.run(sql).read_all())
    explained = on.run("EXPLAIN " + sql).read_all().to_pydict()
    assert not any(derived in text for text in explained["plan"])


def split_tables(engine: Engine, sql: str) -> list[str | None]:
    """The table each pushed sub-plan of ``sql`` may be read in ranges of (``SourceObject.split``)."""
    planned = engine._plan(sql, CallerContext())
    return [scan.product.source.split for (schema, _), scan in planned.scans.items() if schema == DERIVED_SCHEMA]


def test_a_pushed_join_may_be_split_on_the_biggest_table_it_inner_joins_once(
    engines: tuple[Engine, Engine], pg_schema: str
) -> None:
    on, _ = engines
    beside = " JOIN ref.countries k ON k.code = 'FR'"
    # orders holds the most rows (10, by SQLite's max(rowid); payments 6, customers 5)
    three = (
        "SELECT c.name, p.amount FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " JOIN shop.payments p ON p.order_id = o.id" + beside + " WHERE p.amount > 5"
    )
    assert split_tables(on, three) == ['"orders"']
    # a semi join's inner table is read in a subquery: only the outer one may be split
    semi = (
        "SELECT x.owner, k.name FROM (SELECT owner FROM sales.accounts WHERE id IN"
        " (SELECT account_id FROM sales.invoices WHERE amount > 50)) x" + beside
    )
    assert split_tables(on, semi) == [f"{pg_schema}.accounts"]
    # a table the query reads twice (a self-join) is never split: here orders, the biggest
    find = on.catalog.find
    customers, orders = find("shop", "customers"), find("shop", "orders")
    assert customers is not None and orders is not None
    query = same_source._Query(products=[customers, orders, orders], inner=[customers, orders])
    assert same_source._split_on(query) == '"customers"'


def test_a_cross_joined_read_that_keeps_no_column_is_rewritten(engines: tuple[Engine, Engine]) -> None:
    """The countries read keeps no column (a projection whose emit is empty). Counting its columns as
    its input's gave build_side's swap a column too many, and DataFusion's Substrait consumer
    panicked reading the plan back (the query then ran without the rules); now it is rewritten."""
    on, off = engines
    sql = (
        "SELECT x.owner FROM (SELECT owner FROM sales.accounts WHERE id IN"
        " (SELECT account_id FROM sales.invoices WHERE amount > 50)) x JOIN ref.countries k ON k.code = 'FR'"
    )
    assert split_tables(on, sql) != []  # the semi join went to PostgreSQL
    assert rows(on.run(sql).read_all()) == rows(off.run(sql).read_all()) == [("ops",), ("sales",)]


def test_a_pushed_read_of_one_table_is_estimated_as_the_filtered_read_it_replaced(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules after same_source (build side, run-time filters) see a read of one table sent with its
    LIKE as they saw the filtered scan: a LIKE's share of the table, not a filtered join's. TPC-H Q9's
    green parts, estimated at a quarter of 200,000 parts, stopped running first, and partsupp was
    fetched whole (800,000 rows instead of 42,656)."""
    import gateway.plan.rules

    seen: list[tuple[float | None, float | None]] = []
    original = dict(gateway.plan.rules.RULES)["same_source"]

    def recording(message: object, planning: gateway.plan.rules.Planning) -> bool:
        pushed = original(message, planning)  # type: ignore[arg-type]
        for (schema, table), _ in planning.scans.items():
            if schema == DERIVED_SCHEMA:
                seen.append((planning.rows(("x", DERIVED_SCHEMA, table)), planning.rows(("shop", "orders"))))
        return pushed

    rules = tuple((name, recording if name == "same_source" else rule) for name, rule in gateway.plan.rules.RULES)
    monkeypatch.setattr(gateway.plan.rules, "RULES", rules)
    on, _ = engines
    on._plan(
        "SELECT o.id, k.name FROM shop.orders o JOIN ref.countries k ON k.code = 'FR' WHERE o.status LIKE 'pa%'",
        CallerContext(),
    )
    ((derived, orders),) = seen
    assert orders is not None and derived == pytest.approx(orders * build_side.EQUAL)
