"""Fixtures: a real DataFusion engine behind an in-process Flight SQL server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from datafusion_test_engine import DataFusionEngine
from google.protobuf.message import Message

from gateway.flightsql import FlightSqlServer, commands

LARGE_ROWS = 2_000_000

ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "customer": pa.array(["Zoë Ångström", "O'Brien", 'He said "hi" 👋', None], pa.string()),
        "amount": pa.array([Decimal("12.50"), Decimal("-3.10"), None, Decimal("1000000.01")], pa.decimal128(12, 2)),
        "ordered_at": pa.array(
            [
                datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
                datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
                None,
                datetime(1999, 12, 31, 0, 0, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="Europe/Paris"),
        ),
        "payload": pa.array([b"\x00\x01", b"", None, b"\xff"], pa.binary()),
        "express": pa.array([True, False, None, True]),
    }
)

# Stored as views, as Parquet sources deliver them: the engine must hand out classic types.
NOTES = pa.table(
    {
        "order_id": pa.array([1, 2, 4], pa.int64()),
        "text": pa.array(["fragile", None, "ünïcödé"], pa.string_view()),
        "blob": pa.array([b"a", None, b"c"], pa.binary_view()),
    }
)

EMPLOYEES = pa.table(
    {
        "id": pa.array([10, 11], pa.int32()),
        "name": ["Ada", "Grace"],
        "salary": pa.array([Decimal("1234.5678"), None], pa.decimal128(10, 4)),
        "hired": pa.array([date(2020, 1, 2), date(2021, 3, 4)], pa.date32()),
    }
)


def make_engine() -> DataFusionEngine:
    return DataFusionEngine(
        tables={
            "sales": {"orders": ORDERS, "notes": NOTES},
            "sales_eu": {"orders_eu": ORDERS.slice(0, 2)},
            "hr": {"employees": EMPLOYEES},
        },
        views={
            "sales": {"big_orders": "SELECT id, amount FROM sales.orders WHERE amount > 100"},
            "bench": {"numbers": f"SELECT value AS n FROM generate_series(1, {LARGE_ROWS})"},
        },
        owners={"sales": "sales-team"},
    )


@pytest.fixture
def engine() -> DataFusionEngine:
    return make_engine()


@pytest.fixture
def server(engine: DataFusionEngine) -> Iterator[FlightSqlServer]:
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    yield server
    server.shutdown()


@pytest.fixture
def uri(server: FlightSqlServer) -> str:
    return f"grpc://127.0.0.1:{server.port}"


@pytest.fixture
def conn(uri: str) -> Iterator[flightsql_dbapi.Connection]:
    with flightsql_dbapi.connect(uri, autocommit=True) as connection:
        yield connection


@pytest.fixture
def client(uri: str) -> Iterator[flight.FlightClient]:
    with flight.connect(uri) as flight_client:
        yield flight_client


def flight_info(
    client: flight.FlightClient, command: Message, options: flight.FlightCallOptions | None = None
) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(commands.pack(command)), options)


def fetch(
    client: flight.FlightClient, command: Message, options: flight.FlightCallOptions | None = None
) -> tuple[flight.FlightInfo, pa.Table]:
    """GetFlightInfo then DoGet of its single endpoint, as a raw Flight SQL client does."""
    info = flight_info(client, command, options)
    assert len(info.endpoints) == 1
    return info, client.do_get(info.endpoints[0].ticket, options).read_all()
