"""SQLAlchemy, as Superset and notebooks use it, against `meshgate serve` with a log-in.

The dialect is flightsql-dbapi's (``datafusion://`` through its entry point; the module
``flightsql.sqlalchemy`` also registers ``datafusion+flightsql://`` when imported). It needs
SQLAlchemy 1.4 (the package requires < 2) and pandas: its cursor turns every result into a
pandas DataFrame, and the table and schema listings go through ``read_pandas``.

Two URL query keys change what it does, and Meshgate wants both:
``feature-sqlalchemy-prepared-statements=on`` sends bound parameters as ``?`` through a
prepared statement (without it, SQLAlchemy renders them into the SQL at compile time, and a
value given only at execution becomes ``NULL``); ``feature-sqlalchemy-primary-keys=on`` asks
the gateway for primary keys (without it ``get_pk_constraint`` answers ``[]``).

The gaps at the end are the dialect's (each marked ``xfail(strict=True)`` with the exact
error, so that a fixed dialect shows up); the same values pass through the ADBC driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlparse

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sqlalchemy as sa

from tests.e2e.federation_data import write_mesh
from tests.support.gateway import TEST_CREDENTIALS, Credentials, GatewayProcess, auth_yaml
from tests.support.postgres import worker_schema

SCHEMA = worker_schema("meshgate_sqlalchemy")
BOTH_FEATURES = {"feature-sqlalchemy-prepared-statements": "on", "feature-sqlalchemy-primary-keys": "on"}

pytestmark = pytest.mark.filterwarnings(
    # SQLAlchemy's Numeric result processor on a dialect without native Decimal support.
    r"ignore:Dialect datafusion\+flightsql does \*not\* support Decimal objects natively"
)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, tables: dict[str, pa.Table]
) -> Iterator[GatewayProcess]:
    config = write_mesh(tmp_path_factory.mktemp("sqlalchemy"), postgres_uri, SCHEMA, tables)
    (config / "auth.yaml").write_text(auth_yaml())
    process = GatewayProcess(config)
    yield process
    process.stop()


def url(
    gateway: GatewayProcess,
    credentials: Credentials | None = TEST_CREDENTIALS,
    features: dict[str, str] = BOTH_FEATURES,
    driver: str = "datafusion",
) -> sa.engine.URL:
    """The URL a Superset user types: ``datafusion://user:password@host:port?insecure=true&...``."""
    address = urlparse(gateway.uri)
    return sa.engine.URL.create(
        driver,
        username=credentials.user if credentials else None,
        password=credentials.password if credentials else None,
        host=address.hostname,
        port=address.port,
        query={"insecure": "true", **features},  # insecure: plain grpc://, no TLS
    )


@pytest.fixture(scope="module")
def engine(gateway: GatewayProcess) -> Iterator[sa.engine.Engine]:
    engine = sa.create_engine(url(gateway))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def orders(engine: sa.engine.Engine) -> sa.Table:
    return sa.Table("orders", sa.MetaData(), schema="sales", autoload_with=engine)


def expected(reference: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple[object, ...]]:
    return [tuple(row) for row in reference.execute(sql, list(params)).fetchall()]


def test_the_dialect_is_found_by_its_names(gateway: GatewayProcess) -> None:
    for driver in ("datafusion", "datafusion+flightsql"):
        engine = sa.create_engine(url(gateway, driver=driver))
        try:
            assert type(engine.dialect).__name__ == "DataFusionDialect"
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT 1 AS one")).scalar() == 1
        finally:
            engine.dispose()


def test_log_in_is_required(gateway: GatewayProcess) -> None:
    wrong = Credentials(TEST_CREDENTIALS.user, "not the password")
    with pytest.raises(flight.FlightUnauthenticatedError, match=r"\[Meshgate\] invalid user name or password"):
        sa.create_engine(url(gateway, wrong)).connect()
    # Without a user, the dialect sends the header `authorization: Bearer None`.
    with pytest.raises(flight.FlightUnauthenticatedError, match=r"\[Meshgate\] invalid session token"):
        sa.create_engine(url(gateway, None)).connect()


def test_reflection(engine: sa.engine.Engine) -> None:
    inspector = sa.inspect(engine)
    assert {"inventory", "logistics", "sales"} <= set(inspector.get_schema_names())
    assert inspector.get_table_names(schema="sales") == ["big_spenders", "customers", "orders"]
    assert inspector.get_table_names(schema="inventory") == ["order_items", "products"]
    assert inspector.get_table_names(schema="logistics") == ["shipments"]

    def columns(table: str, schema: str) -> list[tuple[str, type, bool]]:
        return [(c["name"], type(c["type"]), c["nullable"]) for c in inspector.get_columns(table, schema=schema)]

    # Nullability is the source's NOT NULL (here the primary keys); types follow the Arrow types.
    assert columns("orders", "sales") == [
        ("order_id", sa.BIGINT, False),
        ("customer_id", sa.INTEGER, True),
        ("order_date", sa.DATE, True),
        ("status", sa.TEXT, True),
        ("total", sa.DECIMAL, True),
    ]
    assert columns("customers", "sales")[0] == ("customer_id", sa.INTEGER, False)
    assert columns("customers", "sales")[4] == ("signup", sa.TIMESTAMP, True)
    assert columns("products", "inventory")[0] == ("product_id", sa.BIGINT, False)  # SQLite rowid alias
    assert columns("shipments", "logistics") == [
        ("shipment_id", sa.BIGINT, True),
        ("order_id", sa.BIGINT, True),
        ("carrier", sa.TEXT, True),
        ("shipped_at", sa.TIMESTAMP, True),
        ("weight_kg", sa.FLOAT, True),
    ]
    assert inspector.get_pk_constraint("orders", schema="sales")["constrained_columns"] == ["order_id"]
    assert inspector.get_pk_constraint("customers", schema="sales")["constrained_columns"] == ["customer_id"]
    assert inspector.get_pk_constraint("shipments", schema="logistics")["constrained_columns"] == []
    with engine.connect() as connection:
        assert engine.dialect.has_table(connection, "orders", schema="sales")
        assert not engine.dialect.has_table(connection, "no_such_table", schema="sales")


def test_a_table_loaded_from_the_gateway(orders: sa.Table) -> None:
    assert [c.name for c in orders.primary_key] == ["order_id"]
    assert [(c.name, c.nullable) for c in orders.columns][:2] == [("order_id", False), ("customer_id", True)]


def test_select_with_a_filter_and_bound_parameters(
    engine: sa.engine.Engine, orders: sa.Table, reference: duckdb.DuckDBPyConnection
) -> None:
    query = (
        sa.select(orders.c.order_id, orders.c.customer_id, orders.c.total)
        .where(orders.c.status == sa.bindparam("status"), orders.c.total > sa.bindparam("at_least"))
        .order_by(orders.c.order_id)
        .limit(5)
    )
    assert "sales.orders.status = ? AND sales.orders.total > ?" in str(query.compile(engine))
    with engine.connect() as connection:
        rows = connection.execute(query, {"status": "paid", "at_least": 250.5}).fetchall()
    assert [tuple(row) for row in rows] == expected(
        reference,
        "SELECT order_id, customer_id, total FROM sales.orders WHERE status = ? AND total > ? ORDER BY order_id LIMIT 5",
        "paid",
        250.5,
    )


def test_a_cross_domain_select(
    engine: sa.engine.Engine, orders: sa.Table, reference: duckdb.DuckDBPyConnection
) -> None:
    shipments = sa.Table("shipments", sa.MetaData(), schema="logistics", autoload_with=engine)
    query = (
        sa.select(orders.c.status, sa.func.count().label("n"))
        .join_from(orders, shipments, shipments.c.order_id == orders.c.order_id)
        .where(shipments.c.carrier == sa.bindparam("carrier"))
        .group_by(orders.c.status)
        .order_by(orders.c.status)
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"carrier": "DHL"}).fetchall()
    assert [tuple(row) for row in rows] == expected(
        reference,
        "SELECT o.status, count(*) FROM sales.orders o JOIN logistics.shipments s ON s.order_id = o.order_id"
        " WHERE s.carrier = ? GROUP BY o.status ORDER BY o.status",
        "DHL",
    )


def test_text_queries(engine: sa.engine.Engine, reference: duckdb.DuckDBPyConnection) -> None:
    sql = (
        "SELECT carrier, count(*) AS n FROM logistics.shipments WHERE weight_kg > {} GROUP BY carrier ORDER BY carrier"
    )
    with engine.connect() as connection:
        result = connection.execute(sa.text(sql.format(":weight")), {"weight": 10.0})
        assert list(result.keys()) == ["carrier", "n"]
        assert [tuple(row) for row in result] == expected(reference, sql.format("?"), 10.0)
        plain = "SELECT customer_id FROM sales.customers WHERE name LIKE 'Sean O''Brien%' ORDER BY customer_id"
        assert [tuple(row) for row in connection.execute(sa.text(plain))] == expected(reference, plain)


# The dialect's gaps. The gateway answers each of these correctly through the ADBC driver.


@pytest.mark.xfail(
    strict=True,
    reason="without feature-sqlalchemy-prepared-statements=on the dialect's LiteralBindCompiler renders "
    "parameters into the SQL when compiling, so a value given at execution becomes NULL "
    "(SAWarning: Bound parameter 'status' rendering literal NULL) and the query finds no rows",
)
@pytest.mark.filterwarnings("ignore:Bound parameter 'status' rendering literal NULL")
def test_execution_time_parameters_without_prepared_statements(gateway: GatewayProcess, orders: sa.Table) -> None:
    engine = sa.create_engine(url(gateway, features={}))
    try:
        with engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(orders).where(orders.c.status == sa.bindparam("status"))
            assert connection.execute(query, {"status": "paid"}).scalar() > 0
    finally:
        engine.dispose()


@pytest.mark.xfail(
    strict=True,
    raises=sa.exc.DBAPIError,
    reason="flightsql-dbapi binds only int, float, str, bytes and bool: "
    '(flightsql.exceptions.Error) unable to map "date" type to PyArrow datatype (also Decimal, datetime, None)',
)
def test_date_parameters(engine: sa.engine.Engine) -> None:
    with engine.connect() as connection:
        sql = sa.text("SELECT count(*) FROM sales.orders WHERE order_date >= :since")
        assert connection.execute(sql, {"since": dt.date(2024, 6, 1)}).scalar() > 0


@pytest.mark.xfail(
    strict=True,
    reason="the dialect's cursor converts results through pandas: NULL text and floats come back as nan, "
    "NULL timestamps as NaT (integers and booleans as None)",
)
def test_nulls_come_back_as_none(engine: sa.engine.Engine) -> None:
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT CAST(NULL AS varchar) AS s, CAST(NULL AS double) AS f, CAST(NULL AS timestamp) AS t")
        ).one()
    assert tuple(row) == (None, None, None)


@pytest.mark.xfail(
    strict=True,
    reason="the dialect's cursor converts results through pandas (date_as_object=False): "
    "a DATE comes back as a datetime (a pandas Timestamp when the result has other columns), not a date",
)
def test_dates_come_back_as_dates(engine: sa.engine.Engine) -> None:
    with engine.connect() as connection:
        value = connection.execute(sa.text("SELECT DATE '2024-02-14' AS d")).scalar()
    assert type(value) is dt.date


@pytest.mark.xfail(
    strict=True,
    reason="the dialect does not declare native Decimal support, so SQLAlchemy turns typed Numeric results "
    "(a reflected DECIMAL column) into floats and back: 123456789012345678.91 becomes 123456789012345680.00",
)
def test_typed_decimals_keep_their_digits(engine: sa.engine.Engine) -> None:
    value = sa.literal_column("CAST('123456789012345678.91' AS DECIMAL(20, 2))", type_=sa.Numeric(20, 2))
    with engine.connect() as connection:
        assert connection.execute(sa.select(value)).scalar() == Decimal("123456789012345678.91")


@pytest.mark.xfail(
    strict=True,
    raises=IndexError,
    reason="get_columns of a table that does not exist reads row 0 of an empty GetTables result: "
    "IndexError: index out of bounds (not NoSuchTableError)",
)
def test_columns_of_a_missing_table(engine: sa.engine.Engine) -> None:
    with pytest.raises(sa.exc.NoSuchTableError):
        sa.inspect(engine).get_columns("no_such_table", schema="sales")


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason=f"pandas {pd.__version__} needs SQLAlchemy 2 for read_sql and flightsql-dbapi requires SQLAlchemy < 2 "
    "(TypeError: Query must be a string unless using sqlalchemy.); fetch with the connection instead",
)
@pytest.mark.filterwarnings("ignore:pandas only supports SQLAlchemy connectable")
def test_pandas_read_sql(engine: sa.engine.Engine) -> None:
    frame = pd.read_sql(sa.text("SELECT status FROM sales.orders LIMIT 3"), engine)
    assert len(frame) == 3
