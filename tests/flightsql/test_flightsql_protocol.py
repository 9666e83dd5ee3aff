"""The protocol as a raw Flight client sees it: statements, prepared statements, errors, lifecycle."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import ORDERS, fetch, flight_info, make_engine
from datafusion_test_engine import DataFusionEngine
from flightsql import FlightSQLClient, TableRef
from flightsql import connect as flightsql_connect
from flightsql.dbapi import ParameterRecordBuilder
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message

from gateway.flightsql import FlightSqlServer, commands
from gateway.flightsql import flight_sql_pb2 as pb
from tests.support.errors import assert_clean

COUNT_NUMBERS = "SELECT n FROM bench.numbers"


def action(client: flight.FlightClient, kind: str, request: Message | None = None) -> list[bytes]:
    body = commands.pack(request) if request is not None else b""
    return [result.body.to_pybytes() for result in client.do_action(flight.Action(kind, body))]


M = TypeVar("M", bound=Message)


def unpack_as(data: bytes, cls: type[M]) -> M:
    wrapper = any_pb2.Any.FromString(data)
    message = cls()
    assert wrapper.Unpack(message), wrapper.type_url
    return message


def prepare(client: flight.FlightClient, sql: str) -> pb.ActionCreatePreparedStatementResult:
    (answer,) = action(client, "CreatePreparedStatement", pb.ActionCreatePreparedStatementRequest(query=sql))
    return unpack_as(answer, pb.ActionCreatePreparedStatementResult)


def bind(client: flight.FlightClient, handle: bytes, parameters: pa.RecordBatch) -> bytes:
    descriptor = flight.FlightDescriptor.for_command(
        commands.pack(pb.CommandPreparedStatementQuery(prepared_statement_handle=handle))
    )
    writer, metadata = client.do_put(descriptor, parameters.schema)
    writer.write_batch(parameters)
    writer.done_writing()
    answer = metadata.read()
    writer.close()
    return answer.to_pybytes()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_statement_query_flight_info_ticket_and_stream(client: flight.FlightClient) -> None:
    info, table = fetch(client, pb.CommandStatementQuery(query="SELECT * FROM sales.orders ORDER BY id"))

    assert info.schema.equals(ORDERS.schema)
    assert info.endpoints[0].locations == []
    assert isinstance(commands.unpack(info.endpoints[0].ticket.ticket), pb.TicketStatementQuery)
    assert table.equals(ORDERS)


def test_statement_get_schema_plans_without_running(client: flight.FlightClient, engine: DataFusionEngine) -> None:
    command = pb.CommandStatementQuery(query="SELECT id, customer AS who FROM sales.orders")
    schema = client.get_schema(flight.FlightDescriptor.for_command(commands.pack(command))).schema

    assert schema.names == ["id", "who"] and schema.field("who").type == pa.string()
    assert engine.executions == []


def test_a_statement_ticket_is_single_use(client: flight.FlightClient) -> None:
    info = flight_info(client, pb.CommandStatementQuery(query="SELECT 1 AS one"))
    assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"one": 1}]
    with pytest.raises(pa.ArrowException, match="unknown or expired statement handle"):
        client.do_get(info.endpoints[0].ticket).read_all()


def test_prepared_statement_lifecycle(client: flight.FlightClient, engine: DataFusionEngine) -> None:
    prepared = prepare(client, "SELECT id, customer FROM sales.orders WHERE id >= $1 AND customer <> $2")
    handle = prepared.prepared_statement_handle
    assert pa.ipc.read_schema(pa.py_buffer(prepared.dataset_schema)).names == ["id", "customer"]
    parameter_schema = pa.ipc.read_schema(pa.py_buffer(prepared.parameter_schema))
    assert parameter_schema.types == [pa.int64(), pa.string()]

    answer = pb.DoPutPreparedStatementResult.FromString(bind(client, handle, pa.record_batch({"a": [2], "b": ["x"]})))
    assert answer.prepared_statement_handle == handle
    command = pb.CommandPreparedStatementQuery(prepared_statement_handle=handle)
    assert fetch(client, command)[1].to_pylist() == [
        {"id": 2, "customer": "O'Brien"},
        {"id": 3, "customer": 'He said "hi" 👋'},
    ]
    # Reusable, with new parameters.
    bind(client, handle, pa.record_batch({"a": [4], "b": ["x"]}))
    assert fetch(client, command)[1].num_rows == 0
    schema = client.get_schema(flight.FlightDescriptor.for_command(commands.pack(command))).schema
    assert schema.names == ["id", "customer"]

    assert (
        action(
            client, "ClosePreparedStatement", pb.ActionClosePreparedStatementRequest(prepared_statement_handle=handle)
        )
        == []
    )
    with pytest.raises(pa.ArrowException, match="unknown or expired prepared statement handle"):
        flight_info(client, command)
    assert [e.parameters for e in engine.executions] == [{"1": 2, "2": "x"}, {"1": 4, "2": "x"}]


def test_binding_zero_rows_gives_an_empty_result(client: flight.FlightClient, engine: DataFusionEngine) -> None:
    handle = prepare(client, "SELECT id FROM sales.orders WHERE id = $1").prepared_statement_handle
    bind(client, handle, pa.record_batch({"a": pa.array([], pa.int64())}))

    _info, table = fetch(client, pb.CommandPreparedStatementQuery(prepared_statement_handle=handle))

    assert table.num_rows == 0 and table.schema.names == ["id"]
    assert engine.executions == []


def test_running_without_binding_the_parameters_fails_cleanly(client: flight.FlightClient) -> None:
    handle = prepare(client, "SELECT id FROM sales.orders WHERE id = $1").prepared_statement_handle
    with pytest.raises(pa.ArrowException, match=r"1 parameter\(s\) \(\$1\.\.\$1\) and none were bound"):
        flight_info(client, pb.CommandPreparedStatementQuery(prepared_statement_handle=handle))


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (pb.CommandStatementUpdate(query="DELETE FROM sales.orders"), "read-only: CommandStatementUpdate"),
        (
            pb.CommandPreparedStatementUpdate(prepared_statement_handle=b"x"),
            "read-only: CommandPreparedStatementUpdate",
        ),
        (pb.CommandStatementIngest(table="orders"), "read-only: CommandStatementIngest"),
        (pb.CommandGetCatalogs(), "CommandGetCatalogs cannot be sent with DoPut"),
    ],
)
def test_writes_through_do_put_are_refused(client: flight.FlightClient, command: Message, message: str) -> None:
    descriptor = flight.FlightDescriptor.for_command(commands.pack(command))
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(pa.ArrowException, match=message) as failure:
        writer, reader = client.do_put(descriptor, schema)
        writer.write_batch(pa.record_batch({"id": [1]}, schema=schema))
        writer.done_writing()
        reader.read()
        writer.close()
    # UNKNOWN with the message alone: pyarrow cannot send UNIMPLEMENTED without the traceback.
    assert type(failure.value) is flight.FlightServerError
    assert_clean(str(failure.value))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: flight_info(c, pb.CommandStatementUpdate(query="DELETE FROM x")), "read-only"),
        (lambda c: flight_info(c, pb.CommandStatementSubstraitPlan()), "read-only"),
        (lambda c: flight_info(c, pb.TicketStatementQuery()), "TicketStatementQuery cannot be used to query"),
        (
            lambda c: flight_info(c, pb.CommandStatementQuery(query="SELECT 1", transaction_id=b"t")),
            "transactions are not supported",
        ),
        (lambda c: c.get_flight_info(flight.FlightDescriptor.for_path("sales", "orders")), "only command descriptors"),
        (lambda c: c.get_flight_info(flight.FlightDescriptor.for_command(b"SELECT 1")), "not a Flight SQL command"),
        (
            lambda c: c.get_flight_info(flight.FlightDescriptor.for_command(_packed(timestamp_pb2.Timestamp()))),
            r"unknown command: google\.protobuf\.Timestamp",
        ),
        (
            lambda c: c.do_get(flight.Ticket(commands.pack(pb.CommandStatementQuery(query="SELECT 1")))).read_all(),
            "cannot be used",
        ),
        (lambda c: action(c, "BeginTransaction", pb.ActionBeginTransactionRequest()), "transactions are not supported"),
        (lambda c: action(c, "CreatePreparedSubstraitPlan"), "Substrait plans are not supported"),
        (lambda c: action(c, "DropEverything"), "unknown action 'DropEverything'"),
        (lambda c: list(c.list_flights()), "ListFlights is not supported"),
        (lambda c: c.do_exchange(flight.FlightDescriptor.for_command(b"x"))[1].read_all(), "DoExchange"),
        (
            lambda c: action(c, "CreatePreparedStatement", pb.CommandGetCatalogs()),
            "expected ActionCreatePreparedStatementRequest",
        ),
    ],
)
def test_unsupported_requests_get_a_clear_error(
    client: flight.FlightClient, call: Callable[[flight.FlightClient], object], message: str
) -> None:
    # UNKNOWN with the message alone: pyarrow cannot send UNIMPLEMENTED without the traceback.
    with pytest.raises(flight.FlightServerError, match=message) as failure:
        call(client)
    assert type(failure.value) is flight.FlightServerError
    assert_clean(str(failure.value))
    assert fetch(client, pb.CommandGetCatalogs())[1].num_rows == 1  # still serving


def _packed(message: Message) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def test_list_actions_names_what_is_supported(client: flight.FlightClient) -> None:
    kinds = {kind.type for kind in client.list_actions()}
    assert kinds == {
        "CreatePreparedStatement",
        "ClosePreparedStatement",
        "CancelQuery",
        "CancelFlightInfo",
        "SetSessionOptions",
        "GetSessionOptions",
        "CloseSession",
    }


def test_unexpected_engine_failures_become_internal_errors_and_the_server_keeps_serving(
    client: flight.FlightClient,
    engine: DataFusionEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sql: str, caller: object) -> None:
        raise RuntimeError("planner exploded")

    monkeypatch.setattr(engine, "prepare", broken)
    with caplog.at_level("ERROR", logger="gateway.flightsql.rpc"), pytest.raises(flight.FlightInternalError) as failure:
        flight_info(client, pb.CommandStatementQuery(query="SELECT 1"))
    monkeypatch.undo()
    found = re.fullmatch(r"internal error \(reference ([0-9a-f]{12})\)\. Detail: Internal", str(failure.value))
    assert found, str(failure.value)
    assert "planner exploded" not in str(failure.value)
    assert_clean(str(failure.value))
    # The server's log has the whole story under the same reference.
    (logged,) = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "planner exploded"
    assert fetch(client, pb.CommandStatementQuery(query="SELECT 1 AS one"))[1].to_pylist() == [{"one": 1}]


def test_an_error_while_streaming_reaches_the_client_after_the_first_batches(
    client: flight.FlightClient, engine: DataFusionEngine
) -> None:
    sql = f"SELECT CAST(CASE WHEN n > {1_000_000} THEN 'oops' ELSE '1' END AS INT) AS v FROM bench.numbers"
    info = flight_info(client, pb.CommandStatementQuery(query=sql))
    reader = client.do_get(info.endpoints[0].ticket)
    received = 0
    with pytest.raises(flight.FlightServerError, match=r"\[mesh/datafusion\] .*oops") as failure:
        for chunk in reader:
            received += chunk.data.num_rows
    assert 0 < received < 1_000_000
    assert "Traceback" not in str(failure.value)
    wait_for(lambda: engine.executions[-1].closed)
    assert fetch(client, pb.CommandStatementQuery(query="SELECT 2 AS two"))[1].to_pylist() == [{"two": 2}]


def test_cancel_query_stops_a_running_stream(client: flight.FlightClient, engine: DataFusionEngine) -> None:
    info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
    reader = client.do_get(info.endpoints[0].ticket)
    reader.read_chunk()

    (answer,) = action(client, "CancelQuery", pb.ActionCancelQueryRequest(info=info.serialize()))

    result = unpack_as(answer, pb.ActionCancelQueryResult)
    assert result.result == pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
    with pytest.raises(flight.FlightCancelledError, match="cancelled"):
        for _chunk in reader:
            pass
    wait_for(lambda: engine.executions[-1].closed)
    assert engine.executions[-1].cancelled
    assert engine.executions[-1].batches < 245
    (again,) = action(client, "CancelQuery", pb.ActionCancelQueryRequest(info=info.serialize()))
    assert (
        unpack_as(again, pb.ActionCancelQueryResult).result == pb.ActionCancelQueryResult.CANCEL_RESULT_NOT_CANCELLABLE
    )


def test_cancel_before_do_get_releases_the_started_query(client: flight.FlightClient, engine: DataFusionEngine) -> None:
    info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
    action(client, "CancelQuery", pb.ActionCancelQueryRequest(info=info.serialize()))

    assert engine.executions[-1].cancelled and engine.executions[-1].closed
    with pytest.raises(flight.FlightCancelledError, match=r"^\[Meshgate\] the query was cancelled"):
        client.do_get(info.endpoints[0].ticket).read_all()


def test_a_client_that_goes_away_mid_stream_cancels_the_query(uri: str, engine: DataFusionEngine) -> None:
    with flight.connect(uri) as client:
        info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()
        reader.cancel()

    wait_for(lambda: engine.executions[-1].closed)
    assert engine.executions[-1].cancelled
    assert engine.executions[-1].batches < 245


def serve(**options: float) -> Iterator[tuple[FlightSqlServer, DataFusionEngine]]:
    engine = make_engine()
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", **options)
    yield server, engine
    server.shutdown()


@pytest.fixture
def expiring_server() -> Iterator[tuple[FlightSqlServer, DataFusionEngine]]:
    yield from serve(statement_ttl=0.3)


@pytest.fixture
def bounded_server() -> Iterator[tuple[FlightSqlServer, DataFusionEngine]]:
    yield from serve(max_statements=2)


def test_statements_expire_and_their_queries_are_released(
    expiring_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = expiring_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        stale = flight_info(client, pb.CommandStatementQuery(query="SELECT 1 AS one"))
        time.sleep(0.5)
        flight_info(client, pb.CommandStatementQuery(query="SELECT 2 AS two"))  # purges expired ones

        assert engine.executions[0].cancelled and engine.executions[0].closed
        with pytest.raises(pa.ArrowException, match="unknown or expired statement handle"):
            client.do_get(stale.endpoints[0].ticket).read_all()


def test_the_statement_registry_is_bounded(bounded_server: tuple[FlightSqlServer, DataFusionEngine]) -> None:
    server, engine = bounded_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        infos = [flight_info(client, pb.CommandStatementQuery(query=f"SELECT {i} AS i")) for i in range(3)]

        assert engine.executions[0].cancelled and engine.executions[0].closed
        with pytest.raises(pa.ArrowException, match="unknown or expired statement handle"):
            client.do_get(infos[0].endpoints[0].ticket).read_all()
        assert [client.do_get(i.endpoints[0].ticket).read_all().to_pylist() for i in infos[1:]] == [
            [{"i": 1}],
            [{"i": 2}],
        ]


# -- caller identity ---------------------------------------------------------------------


class NameIsTokenAuth(flight.ServerAuthHandler):
    """Test-only Flight auth handler: the handshake payload is the user name."""

    def authenticate(self, outgoing: flight.ServerAuthSender, incoming: flight.ServerAuthReader) -> None:
        outgoing.write(incoming.read())

    def is_valid(self, token: bytes) -> bytes:
        return token


class NameClientAuth(flight.ClientAuthHandler):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name.encode()
        self.token = b""

    def authenticate(self, outgoing: flight.ClientAuthSender, incoming: flight.ClientAuthReader) -> None:
        outgoing.write(self.name)
        self.token = incoming.read()

    def get_token(self) -> bytes:
        return self.token


def logged_in(server: FlightSqlServer, name: str) -> flight.FlightClient:
    client = flight.connect(f"grpc://127.0.0.1:{server.port}")
    client.authenticate(NameClientAuth(name))
    return client


def test_the_caller_is_the_peer_identity_and_owns_its_prepared_statements() -> None:
    engine = make_engine()
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", auth_handler=NameIsTokenAuth())
    try:
        alice, bob = logged_in(server, "alice"), logged_in(server, "bob")

        handle = prepare(alice, "SELECT 1 AS one").prepared_statement_handle
        command = pb.CommandPreparedStatementQuery(prepared_statement_handle=handle)
        assert fetch(alice, command)[1].to_pylist() == [{"one": 1}]
        with pytest.raises(pa.ArrowException, match="unknown or expired prepared statement handle"):
            flight_info(bob, command)

        assert {caller.user for caller in engine.callers} == {"alice"}
        assert engine.executions[-1].user == "alice"
        alice.close()
        bob.close()
    finally:
        server.shutdown()


def test_a_user_who_floods_the_server_with_prepared_statements_drops_only_their_own() -> None:
    """Found 2026-12-05: the registries were one LRU, so any user could evict every other user's statements."""
    engine = make_engine()
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", auth_handler=NameIsTokenAuth(), max_statements=4)
    try:
        alice, bob = logged_in(server, "alice"), logged_in(server, "bob")
        kept = pb.CommandPreparedStatementQuery(
            prepared_statement_handle=prepare(bob, "SELECT 2 AS two").prepared_statement_handle
        )

        flood = [prepare(alice, f"SELECT {i} AS i").prepared_statement_handle for i in range(10)]

        assert fetch(bob, kept)[1].to_pylist() == [{"two": 2}]
        newest = pb.CommandPreparedStatementQuery(prepared_statement_handle=flood[-1])
        assert fetch(alice, newest)[1].to_pylist() == [{"i": 9}]
        with pytest.raises(pa.ArrowException, match="unknown or expired prepared statement handle"):
            flight_info(alice, pb.CommandPreparedStatementQuery(prepared_statement_handle=flood[0]))
        alice.close()
        bob.close()
    finally:
        server.shutdown()


# -- flightsql-dbapi, a second independent client -------------------------------------------


def test_flightsql_dbapi_client(server: FlightSqlServer) -> None:
    client = FlightSQLClient(host="127.0.0.1", port=server.port, insecure=True)
    try:
        info = client.execute("SELECT id, customer FROM sales.orders ORDER BY id")
        table = client.do_get(info.endpoints[0].ticket).read_all()
        assert table.column("customer").to_pylist() == ORDERS.column("customer").to_pylist()
        assert table.schema.field("customer").type == pa.string()

        with client.prepare("SELECT id, customer FROM sales.orders WHERE id = $1") as statement:
            info = statement.execute(ParameterRecordBuilder((2,)).build_record())  # dense-union parameters
            assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"id": 2, "customer": "O'Brien"}]

        info = client.get_tables(db_schema_filter_pattern="hr", include_schema=True)
        tables = client.do_get(info.endpoints[0].ticket).read_all()
        assert tables.column("table_name").to_pylist() == ["employees"]
        keys = client.get_primary_keys(TableRef(table="orders", db_schema="sales"))
        assert client.do_get(keys.endpoints[0].ticket).read_all().num_rows == 0

        connection = flightsql_connect(client)
        assert [column["name"] for column in connection.flightsql_get_columns("orders", "sales")] == ORDERS.column_names
        assert connection.flightsql_get_sql_info([pb.FLIGHT_SQL_SERVER_NAME, pb.FLIGHT_SQL_SERVER_READ_ONLY]) == {
            pb.FLIGHT_SQL_SERVER_NAME: "Meshgate",
            pb.FLIGHT_SQL_SERVER_READ_ONLY: True,
        }
    finally:
        client.close()
