"""Statement lifecycle against a real gateway over a real PostgreSQL source.

A stopped query must stop where it runs: each test looks in ``pg_stat_activity`` for the
PostgreSQL backend running its query and checks it is gone within seconds. Each test has
a slow product of its own (``pg_sleep`` with a distinct duration) so that the backends can
be told apart. Clients: the ADBC Flight SQL driver (Go, with its cookie middleware for
sessions) and raw ``pyarrow.flight`` for the actions ADBC does not expose.

Raw pyarrow clients read streams that end CANCELLED with ``read_chunk()``, in the main
thread: pyarrow's ``FlightStreamReader.read_all()`` turns a CANCELLED status into a
simulated Ctrl-C (``FlightCancelledError`` is an ``ArrowCancelled``), which reaches the
main thread as ``KeyboardInterrupt`` when another thread was reading.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pg
import pyarrow.flight as flight
import pytest

from gateway.catalog import MeshCatalog
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql import commands
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.server import FlightSqlServer
from tests.support.gateway import serving

COOKIES = {"adbc.flight.sql.rpc.with_cookie_middleware": "true"}
SESSION_OPTION = "adbc.flight.sql.session.option."
# One slow product per test, sleeping for a duration that marks its backend: distinct per
# product, and per test run (so that runs sharing the PostgreSQL server cannot be confused).
_RUN = random.randrange(100, 1000)
SLOW = {
    name: f"3{i}.{_RUN}1"
    for i, name in enumerate(
        [
            "slow_cancel",
            "slow_federated",
            "slow_whole",
            "slow_timeout",
            "slow_session",
            "slow_gone_raw",
            "slow_gone_adbc",
        ]
    )
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(
            f'CREATE TABLE "{pg_schema}".customers AS'
            " SELECT g AS customer_id, 'customer ' || g AS name FROM generate_series(1, 3) g"
        )
    directory = tmp_path_factory.mktemp("lifecycle")
    (directory / "kinds").mkdir()
    (directory / "kinds" / "kinds.csv").write_text("g,label\n1,one\n2,two\n3,three\n")
    slow = "".join(
        f"      - name: {name}\n        sql: SELECT g FROM generate_series(1, 3) g, pg_sleep({seconds}) s\n"
        for name, seconds in SLOW.items()
    )
    config = directory / "mesh.yaml"
    config.write_text(
        f"""domains:
  - name: sales
    connector: {{type: postgres, uri: '{postgres_uri}'}}
    products:
      - {{name: customers, source: '{pg_schema}.customers'}}
{slow}  - name: files
    connector: {{type: csv, path: kinds}}
"""
    )
    return config


@contextmanager
def gateway(config: Path, **options: Any) -> Iterator[tuple[str, FlightSqlServer]]:
    """A real engine and server on a free loopback port (in this process), with ``options``."""
    catalog = MeshCatalog(load_config(config))
    server = FlightSqlServer(Engine(catalog), "grpc://127.0.0.1:0", **options)
    try:
        with serving(server):
            yield f"grpc://127.0.0.1:{server.port}", server
    finally:
        catalog.close()


def backends(postgres_uri: str, product: str) -> list[tuple[int, str]]:
    """(pid, state) of the PostgreSQL backends running ``product``'s query right now."""
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state FROM pg_stat_activity"
            " WHERE query ILIKE $1 AND state <> 'idle' AND pid <> pg_backend_pid()",
            (f"%pg_sleep({SLOW[product]})%",),
        )
        return [(int(pid), str(state)) for pid, state in cursor.fetchall()]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} not reached in {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def running(postgres_uri: str, product: str) -> Callable[[], bool]:
    return lambda: [state for _pid, state in backends(postgres_uri, product)] == ["active"]


def stopped(postgres_uri: str, product: str) -> Callable[[], bool]:
    return lambda: backends(postgres_uri, product) == []


def statement(client: flight.FlightClient, sql: str) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(commands.pack(pb.CommandStatementQuery(query=sql))))


def cancel_flight_info(client: flight.FlightClient, info: flight.FlightInfo) -> int:
    request = fpb.CancelFlightInfoRequest(info=fpb.FlightInfo.FromString(info.serialize()))
    (answer,) = client.do_action(flight.Action("CancelFlightInfo", request.SerializeToString()))
    status: int = fpb.CancelFlightInfoResult.FromString(answer.body.to_pybytes()).status
    return status


def drain(reader: flight.FlightStreamReader) -> None:
    while True:
        try:
            reader.read_chunk()
        except StopIteration:
            return


# -- CancelFlightInfo -------------------------------------------------------------------------


def test_cancel_flight_info_stops_the_postgres_backend_of_a_running_query(mesh: Path, postgres_uri: str) -> None:
    with gateway(mesh) as (uri, server), flight.connect(uri) as client:
        info = statement(client, "SELECT * FROM sales.slow_cancel")  # the whole query goes to PostgreSQL
        reader = client.do_get(info.endpoints[0].ticket)
        wait_for(running(postgres_uri, "slow_cancel"), what="the PostgreSQL query running")

        started = time.monotonic()
        assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_CANCELLED
        with pytest.raises(flight.FlightCancelledError, match=r"\[Meshgate\] the query was cancelled"):
            drain(reader)

        assert time.monotonic() - started < 5
        wait_for(stopped(postgres_uri, "slow_cancel"), timeout=5, what="the PostgreSQL backend stopping")
        wait_for(lambda: server._statements.active() == 0, timeout=5, what="no statement left")
        assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_NOT_CANCELLABLE


@pytest.mark.parametrize(
    ("product", "sql"),
    [
        pytest.param(
            "slow_federated",
            "SELECT s.g, k.label FROM sales.slow_federated s JOIN files.kinds k ON k.g = s.g",
            id="federated",
        ),
        pytest.param("slow_whole", "SELECT * FROM sales.slow_whole", id="whole"),
    ],
)
def test_a_statement_runs_from_get_flight_info_and_cancel_flight_info_before_do_get_stops_it(
    mesh: Path, postgres_uri: str, product: str, sql: str
) -> None:
    """A federated query's source scans, and a query sent whole to its source, start with the
    statement: the source answers while the client takes the ticket and comes back for the rows."""
    with gateway(mesh) as (uri, server), flight.connect(uri) as client:
        info = statement(client, sql)  # no DoGet yet
        wait_for(running(postgres_uri, product), what="the PostgreSQL query running before its DoGet")

        assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_CANCELLED

        wait_for(stopped(postgres_uri, product), timeout=5, what="the PostgreSQL backend stopping")
        assert server._statements.active() == 0
        with pytest.raises(flight.FlightCancelledError, match=r"\[Meshgate\] the query was cancelled"):
            drain(client.do_get(info.endpoints[0].ticket))


# -- statement timeout ------------------------------------------------------------------------


def test_the_statement_timeout_stops_a_slow_query_and_its_backend(mesh: Path, postgres_uri: str) -> None:
    with (
        gateway(mesh, statement_timeout=1.5) as (uri, server),
        flightsql.connect(uri) as connection,
        connection.cursor() as cursor,
    ):
        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cursor.execute("SELECT * FROM sales.slow_timeout")
            cursor.fetch_arrow_table()
        elapsed = time.monotonic() - started

        assert "[Meshgate] statement timeout: the query ran longer than 1.5 s and was cancelled" in str(raised.value)
        assert "DEADLINE_EXCEEDED" in str(raised.value) or "TIMEOUT" in str(raised.value).upper()
        assert 1.5 <= elapsed < 6
        wait_for(stopped(postgres_uri, "slow_timeout"), timeout=5, what="the PostgreSQL backend stopping")
        wait_for(lambda: server._statements.active() == 0, timeout=5, what="no statement left")
        # The connection keeps working, and quick queries are not affected.
        cursor.execute("SELECT count(*) AS n FROM sales.customers")
        assert cursor.fetch_arrow_table().column("n").to_pylist() == [3]


def test_a_session_sets_its_own_statement_timeout_through_adbc(mesh: Path, postgres_uri: str) -> None:
    with (
        gateway(mesh) as (uri, _server),
        flightsql.connect(uri, db_kwargs=COOKIES) as connection,
        connection.cursor() as cursor,
    ):
        connection.adbc_connection.set_options(**{f"{SESSION_OPTION}statement_timeout": "1"})
        options = json.loads(connection.adbc_connection.get_option("adbc.flight.sql.session.options"))
        assert options == {"catalog": "mesh", "statement_timeout": 1.0}

        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error, match=r"statement timeout: the query ran longer than 1 s"):
            cursor.execute("SELECT * FROM sales.slow_session")
            cursor.fetch_arrow_table()

        assert time.monotonic() - started < 6
        wait_for(stopped(postgres_uri, "slow_session"), timeout=5, what="the PostgreSQL backend stopping")


# -- sessions through ADBC --------------------------------------------------------------------


def test_the_session_schema_makes_unqualified_names_resolve(mesh: Path, pg_schema: str) -> None:
    with gateway(mesh) as (uri, _server), flightsql.connect(uri, db_kwargs=COOKIES) as connection:
        with connection.cursor() as cursor, pytest.raises(adbc_driver_manager.Error, match="unknown data product"):
            cursor.execute("SELECT count(*) AS n FROM customers")

        connection.adbc_connection.set_options(**{"adbc.connection.catalog": "mesh", "adbc.connection.db_schema": "sales"})

        assert (connection.adbc_current_catalog, connection.adbc_current_db_schema) == ("mesh", "sales")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) AS n FROM customers")
            assert cursor.fetch_arrow_table().column("n").to_pylist() == [3]
            cursor.execute("SELECT name FROM customers WHERE customer_id = $1", (2,))  # prepared, with a parameter
            assert cursor.fetch_arrow_table().column("name").to_pylist() == ["customer 2"]
            cursor.execute("SELECT count(*) AS n FROM sales.customers c JOIN files.kinds k ON k.g = c.customer_id")
            assert cursor.fetch_arrow_table().column("n").to_pylist() == [3]  # qualified names still work
            cursor.execute("SELECT count(*) AS n FROM customers c JOIN files.kinds k ON k.g = c.customer_id")
            assert cursor.fetch_arrow_table().column("n").to_pylist() == [3]  # federated, unqualified
            # PostgreSQL is asked for the product's own table, not for a bare "customers".
            cursor.execute("EXPLAIN SELECT name FROM customers WHERE customer_id = 2")
            plans = dict(zip(*cursor.fetch_arrow_table().to_pydict().values(), strict=True))
            (sent,) = [plan for kind, plan in plans.items() if kind.startswith("source_query[sales/")]
            assert f"{pg_schema}.customers" in sent.replace('"', "")


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("adbc.connection.db_schema", "no_such_domain", "'schema' (invalid value)"),
        ("adbc.connection.catalog", "elsewhere", "'catalog' (invalid value)"),
        (f"{SESSION_OPTION}statement_timeout", "-3", "'statement_timeout' (invalid value)"),
        (f"{SESSION_OPTION}statement_timeout", "soon", "'statement_timeout' (invalid value)"),
        (f"{SESSION_OPTION}colour", "blue", "'colour' (invalid name)"),
        ("adbc.flight.sql.session.optionbool.schema", "true", "'schema' (invalid value)"),
    ],
)
def test_bad_session_options_are_rejected_through_adbc(mesh: Path, option: str, value: str, reason: str) -> None:
    with gateway(mesh) as (uri, server), flightsql.connect(uri, db_kwargs=COOKIES) as connection:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match=re.escape(f"Could not set option(s) {reason}")):
            connection.adbc_connection.set_options(**{option: value})
        assert len(server._sessions) == 0
        assert json.loads(connection.adbc_connection.get_option("adbc.flight.sql.session.options")) == {"catalog": "mesh"}


def test_closing_an_adbc_connection_closes_its_session_and_leaves_nothing_behind(mesh: Path) -> None:
    with gateway(mesh) as (uri, server):
        connection = flightsql.connect(uri, db_kwargs=COOKIES)
        connection.adbc_connection.set_options(**{"adbc.connection.db_schema": "sales"})
        with connection.cursor() as cursor:
            cursor.execute("SELECT customer_id FROM sales.customers WHERE customer_id > $1", (1,))
            assert cursor.fetch_arrow_table().num_rows == 2
        assert len(server._sessions) == 1

        connection.close()  # ADBC sends CloseSession

        assert len(server._sessions) == 0
        assert server._statements.active() == 0
        assert len(server._statements._prepared) == 0


# -- clients that go away ---------------------------------------------------------------------


def test_a_raw_client_that_disconnects_mid_query_stops_the_postgres_backend(mesh: Path, postgres_uri: str) -> None:
    with gateway(mesh) as (uri, server):
        client = flight.connect(uri)
        info = statement(client, "SELECT * FROM sales.slow_gone_raw")
        reader = client.do_get(info.endpoints[0].ticket)
        wait_for(running(postgres_uri, "slow_gone_raw"), what="the PostgreSQL query running")

        reader.cancel()
        client.close()  # gone while the query has not produced a row yet

        wait_for(stopped(postgres_uri, "slow_gone_raw"), timeout=5, what="the PostgreSQL backend stopping")
        wait_for(lambda: server._statements.active() == 0, timeout=5, what="no statement left")


def test_an_adbc_client_that_closes_mid_query_stops_the_postgres_backend(mesh: Path, postgres_uri: str) -> None:
    with gateway(mesh) as (uri, server):
        connection = flightsql.connect(uri, db_kwargs=COOKIES)
        cursor = connection.cursor()
        cursor.execute("SELECT * FROM sales.slow_gone_adbc")  # the driver starts reading in the background
        wait_for(running(postgres_uri, "slow_gone_adbc"), what="the PostgreSQL query running")

        cursor.close()
        connection.close()

        wait_for(stopped(postgres_uri, "slow_gone_adbc"), timeout=5, what="the PostgreSQL backend stopping")
        wait_for(lambda: server._statements.active() == 0, timeout=5, what="no statement left")
        assert len(server._sessions) == 0
