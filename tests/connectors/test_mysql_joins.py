"""Joins of MySQL/MariaDB products sent to the server as one query (gateway/plan/same_source.py):
the same answers as DuckDB and as the gateway with the rule off, text compared byte for byte,
and never for a product a policy restricts.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import Engine, EngineSettings
from gateway.errors import SourceError
from gateway.plan.same_source import DERIVED_SCHEMA
from tests.support.gateway import query, serve_in_process, source_queries
from tests.support.mysql import connect

pytestmark = pytest.mark.mariadb

CUSTOMERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "name": ["Ana", "Émile", "Zoe", "paid", "Bo"],
        "country": ["FR", "FR", "DE", "US", None],
    }
)
ORDERS = pa.table(
    {
        "id": pa.array(range(1, 10), pa.int64()),
        "customer_id": pa.array([1, 1, 2, 3, 3, 4, 5, None, 9], pa.int64()),
        "total": pa.array(
            [Decimal(v) for v in ("10.00", "25.50", "30.00", "5.00", "21.00", "1.00", "40.00", "7.00", "50.00")],
            pa.decimal128(10, 2),
        ),
        "status": ["paid", "open", "paid ", "PAID", "paid", None, "Paid", "paid", "paid"],
    }
)
LEDGER = [
    (1, 1, Decimal("123456789012345678.91")),
    (2, 1, Decimal("0.07")),
    (3, 2, Decimal("-98765432109876543.21")),
    (4, 2, Decimal("99999999999999999.99")),
]
COUNTRIES = pa.table({"code": ["FR", "DE", "US"], "cname": ["France", "Germany", "United States"]})


@pytest.fixture(scope="module")
def mesh(mysql_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shop (MySQL, the server's case-insensitive PAD SPACE collation) and ref (Parquet)."""
    with connect(mysql_uri) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(20), country CHAR(2))")
        cursor.execute("CREATE TABLE fa (id INT PRIMARY KEY, b BOOLEAN)")
        cursor.execute("CREATE TABLE fb (id INT PRIMARY KEY, b BOOLEAN)")
        cursor.execute("INSERT INTO fa VALUES (1, 1), (2, 2)")
        cursor.execute("INSERT INTO fb VALUES (1, 1), (2, 1)")
        cursor.execute("CREATE TABLE ledger (id BIGINT PRIMARY KEY, account BIGINT, amount DECIMAL(30, 2))")
        cursor.executemany("INSERT INTO ledger VALUES (%s, %s, %s)", LEDGER)
        cursor.execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, total DECIMAL(10, 2), status VARCHAR(10))"
        )
        for name, table in (("customers", CUSTOMERS), ("orders", ORDERS)):
            marks = ", ".join(["%s"] * table.num_columns)
            cursor.executemany(f"INSERT INTO {name} VALUES ({marks})", [tuple(r.values()) for r in table.to_pylist()])
    directory = tmp_path_factory.mktemp("mysql_joins")
    (directory / "ref").mkdir()
    pq.write_table(COUNTRIES, directory / "ref" / "countries.parquet")
    (directory / "mesh.yaml").write_text(
        f"domains:\n  - name: shop\n    connector: {{type: mysql, uri: '{mysql_uri}'}}\n"
        f"  - name: ref\n    connector: {{type: parquet, path: {directory / 'ref'}}}\n"
    )
    (directory / "policies.yaml").write_text(
        """policies:
  roles: {analyst: [ana], admin: [root], viewer: [vic]}
  grants:
    - {role: admin, on: "*"}
    - {role: analyst, on: "shop.*"}
    - {role: analyst, on: "ref.*"}
    - {role: viewer, on: "shop.*"}
  row_filters:
    - {on: shop.orders, where: "status = 'open'", except: [admin]}
  masks:
    - {on: shop.customers.name, mask: redact, except: [admin, analyst]}
"""
    )
    return directory


@pytest.fixture(scope="module")
def engines(mesh: Path) -> Iterator[tuple[Engine, Engine]]:
    on = Engine.from_config(load_config(mesh))
    off = Engine(on.catalog, EngineSettings(plan_rules=False))
    yield on, off
    on.close()


@pytest.fixture(scope="module")
def reference() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for schema, tables in {"shop": {"customers": CUSTOMERS, "orders": ORDERS}, "ref": {"countries": COUNTRIES}}.items():
        connection.execute(f"CREATE SCHEMA {schema}")
        for name, table in tables.items():
            connection.register("incoming", table)
            connection.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM incoming")
            connection.unregister("incoming")
    yield connection
    connection.close()


def pushed(engine: Engine, sql: str, caller: CallerContext | None = None) -> list[str]:
    planned = engine._plan(sql, caller or CallerContext(user="root"))
    return [str(s.product.source.sql) for (schema, _), s in planned.scans.items() if schema == DERIVED_SCHEMA]


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=repr)


ROOT = CallerContext(user="root")
CASES = [
    # Text in the join's filter compares by bytes: not 'PAID', 'Paid' nor 'paid ' (PAD SPACE would take them).
    "SELECT c.name, o.total, k.cname FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    " JOIN ref.countries k ON k.code = c.country WHERE o.status = 'paid'",
    "SELECT c.name, o.status FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    " JOIN ref.countries k ON k.code = c.country WHERE o.status >= 'P' AND o.status < 'q' AND c.name <> 'ana'",
    "SELECT c.name, o.total FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    " JOIN ref.countries k ON k.code = c.country WHERE o.status LIKE 'paid%' AND o.total > 6",
    "SELECT o.id, o.status FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    " JOIN ref.countries k ON k.code = c.country WHERE (o.status IN ('paid ', 'Paid') OR o.total < 6) AND c.country <> 'fr'",
]


GROUPED = [
    # A decimal sum, a count and min/max sent as a derived table, joined with customers in MySQL.
    "SELECT c.name, t.n, t.spent, t.low, t.high, k.cname FROM (SELECT customer_id, count(*) AS n, sum(total) AS spent,"
    " min(total) AS low, max(id) AS high FROM shop.orders GROUP BY customer_id) t"
    " JOIN shop.customers c ON c.id = t.customer_id JOIN ref.countries k ON k.code = c.country",
    # HAVING on a count of distinct values, and no group keys at all.
    "SELECT t.customer_id, t.d, k.cname FROM (SELECT customer_id, count(DISTINCT total) AS d FROM shop.orders"
    " GROUP BY customer_id HAVING count(DISTINCT total) > 1) t JOIN ref.countries k ON k.code = 'FR'",
    "SELECT t.n, t.s, k.cname FROM (SELECT count(*) AS n, sum(total) AS s FROM shop.orders WHERE total > 1000) t"
    " JOIN ref.countries k ON k.code = 'DE'",
    # Grouped by text in the binary, no-pad collation: 'paid', 'paid ', 'Paid' and 'PAID' apart.
    "SELECT t.status, t.n, k.cname FROM (SELECT status, count(*) AS n, count(DISTINCT status) AS d FROM shop.orders"
    " GROUP BY status) t JOIN ref.countries k ON k.code = 'FR'",
    # Text ordered by its bytes: 'PAID' < 'Paid' < 'open' < 'paid' < 'paid '.
    "SELECT t.lo, t.hi, k.cname FROM (SELECT min(status) AS lo, max(status) AS hi FROM shop.orders) t"
    " JOIN ref.countries k ON k.code = 'FR'",
    "SELECT t.status, t.id, k.cname FROM (SELECT status, id FROM shop.orders ORDER BY status DESC NULLS LAST, id LIMIT 3) t"
    " JOIN ref.countries k ON k.code = 'FR'",
]


NARROWED = [
    # One table through a LIKE (by bytes: 'paid' and 'paid ', not 'Paid') on a column nothing else reads.
    "SELECT o.id, o.total, k.cname FROM shop.orders o JOIN ref.countries k ON k.code = 'FR' WHERE o.status LIKE 'paid%'",
]


@pytest.mark.parametrize(
    ("sql", "sends"),
    [(sql, "join") for sql in CASES] + [(sql, "grouping") for sql in GROUPED] + [(sql, "narrowed") for sql in NARROWED],
)
def test_a_pushed_sub_plan_answers_as_duckdb_and_as_the_federated_plan(
    engines: tuple[Engine, Engine], reference: duckdb.DuckDBPyConnection, sql: str, sends: str
) -> None:
    on, off = engines
    (sent,) = pushed(on, sql)
    if sends == "join":
        assert "INNER JOIN" in sent and "`customers`" in sent and "`orders`" in sent, sent
    elif sends == "narrowed":
        assert "LIKE" in sent and "status" not in sent.split(" FROM ")[0], sent  # not fetched
    else:
        assert any(word in sent for word in ("GROUP BY", "COUNT(*)", "MIN(", "LIMIT")), sent
    answer = rows(on.run(sql, ROOT).read_all())
    assert answer == rows(off.run(sql, ROOT).read_all())
    assert answer == sorted(reference.execute(sql).fetchall(), key=repr)


def test_a_pushed_grouping_reads_decimals_exactly(engines: tuple[Engine, Engine]) -> None:
    """Sums and maxima of DECIMAL(30, 2) beyond a double's 15 digits arrive exact (read as text, as
    the column itself is)."""
    on, off = engines
    sql = (
        "SELECT t.account, t.total, t.largest, k.cname FROM (SELECT account, sum(amount) AS total,"
        " max(amount) AS largest FROM shop.ledger GROUP BY account) t JOIN ref.countries k ON k.code = 'FR'"
    )
    (sent,) = pushed(on, sql)
    assert "GROUP BY" in sent, sent
    answer = rows(on.run(sql, ROOT).read_all())
    expected = []
    for account in (1, 2):
        amounts = [amount for _, owner, amount in LEDGER if owner == account]
        expected.append((account, sum(amounts), max(amounts), "France"))
    assert answer == sorted(expected, key=repr)
    assert answer == rows(off.run(sql, ROOT).read_all())


def test_the_server_receives_one_query_with_the_join(mesh: Path, reference: duckdb.DuckDBPyConnection) -> None:
    sql = CASES[0]
    expected = sorted(reference.execute(sql).fetchall(), key=repr)
    assert expected == [("Ana", Decimal("10.00"), "France"), ("Zoe", Decimal("21.00"), "Germany")]
    plain = mesh / "plain"
    plain.mkdir(exist_ok=True)
    (plain / "mesh.yaml").write_text((mesh / "mesh.yaml").read_text())  # without the policies: no sign-in
    with serve_in_process(plain) as uri:
        assert rows(query(uri, sql)) == expected
        sent = [(label, text, count) for label, text, count in source_queries(uri, sql) if label.startswith("shop/")]
    ((_, text, count),) = sent
    assert "INNER JOIN" in text and "COLLATE utf8mb4_nopad_bin" in text and count == 2, sent


def test_a_row_filtered_product_is_never_part_of_a_pushed_join(engines: tuple[Engine, Engine]) -> None:
    on, _ = engines
    sql = (
        "SELECT c.name, o.total FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " JOIN ref.countries k ON k.code = c.country WHERE c.country = 'FR'"
    )
    ana = CallerContext(user="ana")
    assert pushed(on, sql, ana) == []  # orders carries ana's row filter
    assert rows(on.run(sql, ana).read_all()) == [("Ana", Decimal("25.50"))]
    assert len(pushed(on, sql, ROOT)) == 1
    assert rows(on.run(sql, ROOT).read_all()) == [
        ("Ana", Decimal("10.00")),
        ("Ana", Decimal("25.50")),
        ("Émile", Decimal("30.00")),
    ]


def test_a_self_join_of_a_row_filtered_product_is_not_pushed_and_sees_only_its_rows(
    engines: tuple[Engine, Engine],
) -> None:
    on, _ = engines
    sql = "SELECT count(*) AS n FROM shop.orders a JOIN shop.orders b ON a.id = b.id WHERE a.total > 0"
    ana = CallerContext(user="ana")
    assert pushed(on, sql, ana) == []
    assert on.run(sql, ana).read_all().to_pylist() == [{"n": 1}]  # the one open order
    assert on.run(sql, ROOT).read_all().to_pylist() == [{"n": 9}]


def test_a_query_under_a_mask_is_not_pushed_and_stays_masked(engines: tuple[Engine, Engine]) -> None:
    on, _ = engines
    sql = (
        "SELECT c.name, o.total FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
        " WHERE o.total > 6 AND c.name = 'Ana'"
    )
    vic = CallerContext(user="vic")
    assert pushed(on, sql, vic) == []
    assert on.run(sql, vic).read_all().to_pylist() == []  # the filter sees the masked '****'
    masked = "SELECT c.name FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id WHERE o.total > 6"
    assert {r["name"] for r in on.run(masked, vic).read_all().to_pylist()} == {"****"}


def test_a_boolean_holding_two_fails_the_join_on_every_route(engines: tuple[Engine, Engine]) -> None:
    """MySQL's BOOLEAN is a TINYINT: joined by the server, 2 would just not equal 1."""
    sql = (
        "SELECT a.id, k.cname FROM shop.fa a JOIN shop.fb b ON a.b = b.b"
        " JOIN ref.countries k ON k.code = 'FR' WHERE a.id > 0"
    )
    for engine in engines:
        assert pushed(engine, sql) == []
        with pytest.raises(SourceError, match="column 'b': a BOOLEAN"):
            engine.run(sql, ROOT).read_all()
    whole = "SELECT a.id FROM shop.fa a JOIN shop.fb b ON a.b = b.b WHERE a.id > 0"  # MySQL's products only
    for engine in engines:
        assert engine._plan(whole, ROOT).routed is None
        with pytest.raises(SourceError, match="column 'b': a BOOLEAN"):
            engine.run(whole, ROOT).read_all()


def test_a_whole_query_carries_the_callers_row_filter_and_a_mask_keeps_it_federated(
    engines: tuple[Engine, Engine],
) -> None:
    on, _ = engines
    sql = "SELECT o.id, o.status FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id"
    ana, vic = CallerContext(user="ana"), CallerContext(user="vic")
    assert on._plan(sql, ana).routed is not None
    assert rows(on.run(sql, ana).read_all()) == [(2, "open")]  # the one open order
    assert len(rows(on.run(sql, ROOT).read_all())) == 7
    masked = "SELECT c.name FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id WHERE o.id = 2"
    assert on._plan(masked, vic).routed is None
    assert rows(on.run(masked, vic).read_all()) == [("****",)]


def test_a_whole_query_of_mysql_products_goes_to_mysql(engines: tuple[Engine, Engine]) -> None:
    """Its decimal sum is read as text and converted exactly (tests/connectors/test_mysql_whole.py)."""
    on, _ = engines
    sql = "SELECT sum(o.total) AS s FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id WHERE o.total > 6"
    planned = on._plan(sql, ROOT)
    assert planned.routed is not None and "SUM(" in planned.routed[1]
    assert on.run(sql, ROOT).read_all().to_pylist() == [{"s": Decimal("126.50")}]
