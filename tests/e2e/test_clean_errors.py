"""Every refusal reaches the client as a clean message, and the gateway keeps serving.

A real engine (PostgreSQL and SQLite sources) behind an in-process Flight SQL server, and
real clients: the ADBC Flight SQL DB-API and a raw ``pyarrow.flight`` client, which can
send what no driver would (malformed commands, parameters that are not UTF-8). Each
answer is checked for its status and for what must never be in it: a traceback, a server
file path, a Python exception class name (``tests/support/errors.py``).

pyarrow cannot send INVALID_ARGUMENT or UNIMPLEMENTED without the server's traceback
(``tests/flightsql/test_flightsql_errors.py``), so refusals arrive as UNKNOWN: a
``FlightServerError`` for pyarrow, an ``OperationalError`` starting ``UNKNOWN:`` for ADBC.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message

from gateway.api import CallerContext
from gateway.config import load_config
from gateway.engine import MAX_NESTING, Engine
from gateway.errors import PlanningError
from gateway.flightsql import FlightSqlServer, commands
from gateway.flightsql import flight_sql_pb2 as pb
from tests.support.errors import assert_clean
from tests.support.gateway import serving

PARAMETER_QUERY = "SELECT id, name FROM pg.people WHERE name = $1"
DEEP = "SELECT " + "(" * 1500 + "1" + ")" * 1500
OVERSIZED = "SELECT '" + "x" * (2 << 20) + "' AS big"
TOO_DEEP = rf"query too deeply nested \(at most {MAX_NESTING} levels of parentheses\)"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    directory = tmp_path_factory.mktemp("clean-errors")
    with pg.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {pg_schema}.people AS SELECT g AS id, 'name ' || g AS name FROM generate_series(1, 5) g"
        )
        connection.commit()
    with sqlite3.connect(directory / "local.db") as connection:
        connection.execute("CREATE TABLE items (id INTEGER, label TEXT)")
        connection.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(1, 4)])
    domains = f"""domains:
  - name: pg
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - {{name: people, source: {pg_schema}.people}}
  - name: local
    connector: {{type: sqlite, path: local.db}}
"""
    (directory / "mesh.yaml").write_text(domains)
    governed = directory / "governed"
    governed.mkdir()
    (governed / "local.db").write_bytes((directory / "local.db").read_bytes())
    policies = "policies:\n  roles:\n    analyst: [alice]\n  grants:\n    - {role: analyst, on: '*'}\n"
    (governed / "mesh.yaml").write_text(domains + policies)
    return directory


@pytest.fixture(scope="module")
def gateway(mesh: Path) -> Iterator[tuple[str, Engine]]:
    engine = Engine.from_config(load_config(mesh / "mesh.yaml"))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    with serving(server):
        yield f"grpc://127.0.0.1:{server.port}", engine
    engine.close()


@pytest.fixture
def uri(gateway: tuple[str, Engine]) -> str:
    return gateway[0]


@pytest.fixture
def engine(gateway: tuple[str, Engine]) -> Engine:
    return gateway[1]


@pytest.fixture
def client(uri: str) -> Iterator[flight.FlightClient]:
    with flight.connect(uri) as raw:
        yield raw


def still_serving(uri: str) -> None:
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM pg.people p JOIN local.items i ON p.id = i.id")
        assert cursor.fetchall() == [(3,)]


def refused_by_adbc(uri: str, sql: str, message: str) -> str:
    """Run ``sql`` through the ADBC driver (it prepares first); the clean UNKNOWN error it gets."""
    with (
        flightsql.connect(uri, autocommit=True) as connection,
        connection.cursor() as cursor,
        pytest.raises(adbc_driver_manager.OperationalError, match=message) as failure,
    ):
        cursor.execute(sql)
    text = str(failure.value)
    assert text.startswith("UNKNOWN: [FlightSQL] "), text
    assert_clean(text)
    return text


def refused_by_flight(call: Callable[[], object], message: str) -> str:
    """Make a raw Flight call; the clean UNKNOWN error (FlightServerError) it gets."""
    with pytest.raises(flight.FlightServerError, match=message) as failure:
        call()
    assert type(failure.value) is flight.FlightServerError
    text = str(failure.value)
    assert_clean(text)
    return text


def descriptor(command: Message | bytes) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(command if isinstance(command, bytes) else commands.pack(command))


def packed_as(type_url: str, value: bytes) -> bytes:
    return any_pb2.Any(type_url=type_url, value=value).SerializeToString()


# -- SQL the read-only mesh refuses, and SQL no parser should recurse into --------------

SQL_REFUSALS = [
    pytest.param("CREATE TABLE pg.evil AS SELECT 1 AS x", r"read-only", id="DDL"),
    pytest.param("INSERT INTO pg.people (id) VALUES (99)", r"read-only", id="DML-insert"),
    pytest.param("DELETE FROM pg.people", r"read-only", id="DML-delete"),
    pytest.param("COPY (SELECT 1) TO '/tmp/meshgate-clean-errors.csv'", r"read-only", id="COPY"),
    pytest.param("SET datafusion.execution.batch_size = 1", r"read-only", id="SET"),
    pytest.param(DEEP, TOO_DEEP, id="deep-nesting"),
    # Within the parentheses limit, but past DataFusion's own parser limit.
    pytest.param(
        "SELECT * FROM " + "(SELECT * FROM " * 25 + "pg.people" + ") t" * 25,
        r"query too deeply nested \(the SQL parser stops at 50 levels\)",
        id="deep-subqueries",
    ),
    pytest.param(
        "SELECT " + "- " * 100 + "1", r"query too deeply nested \(the SQL parser stops at 50 levels\)", id="deep-unary"
    ),
    pytest.param(
        OVERSIZED, rf"query text too long: {len(OVERSIZED):,} bytes \(at most 1,048,576 bytes, 1 MiB\)", id="oversized"
    ),
    # Found by the fuzzer (seed 20261206): DataFusion reads ``:name`` and ``$name`` as placeholders,
    # which the parameter schema took for numbers (INTERNAL, "invalid literal for int()").
    pytest.param(
        'SELECT:"id" FROM pg.people LIMIT 2',
        r"parameter ':id' is not supported: number them \$1, \$2 \.\.\. \(or write \? in order\)",
        id="named-placeholder",
    ),
    pytest.param(
        "SELECT id FROM pg.people WHERE id = $first", r"parameter '\$first' is not supported", id="dollar-name"
    ),
]


@pytest.mark.parametrize(("sql", "message"), SQL_REFUSALS)
def test_refused_sql_gets_a_clean_error_through_the_adbc_driver(uri: str, sql: str, message: str) -> None:
    refused_by_adbc(uri, sql, message)
    assert not Path("/tmp/meshgate-clean-errors.csv").exists()
    still_serving(uri)


@pytest.mark.parametrize(("sql", "message"), SQL_REFUSALS)
def test_refused_sql_gets_a_clean_error_through_a_raw_flight_client(
    uri: str, client: flight.FlightClient, sql: str, message: str
) -> None:
    refused_by_flight(lambda: client.get_flight_info(descriptor(pb.CommandStatementQuery(query=sql))), message)
    still_serving(uri)


def test_a_too_deeply_nested_query_is_in_the_audit_log_as_an_error(uri: str, engine: Engine) -> None:
    refused_by_adbc(uri, DEEP, TOO_DEEP)
    record = next(r for r in reversed(engine.audit.records()) if r.sql == DEEP)
    assert record.outcome == "error"
    assert record.error is not None and re.fullmatch(TOO_DEEP, record.error)


def test_nesting_up_to_the_limit_still_runs(uri: str) -> None:
    nested = "(" * MAX_NESTING + "41 + 1" + ")" * MAX_NESTING
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {nested} AS answer, '((((' AS text")
        assert cursor.fetchall() == [(42, "((((")]


def test_a_parser_out_of_stack_is_a_clean_planning_error_and_audited(mesh: Path) -> None:
    """Nesting without parentheses passes the text check; sqlglot (which reads the text
    first when policies are in force) then runs out of Python stack (compiled by mypyc, it
    parses a few hundred levels that interpreted code could not, and still stops cleanly)."""
    governed = Engine.from_config(load_config(mesh / "governed" / "mesh.yaml"))
    try:
        sql = "SELECT " + "NOT " * 2500 + "true"
        with pytest.raises(PlanningError, match=r"^query too deeply nested for the SQL parser$"):
            governed.prepare(sql, CallerContext(user="alice"))
        (record,) = [r for r in governed.audit.records(everyone=True) if r.sql.startswith("SELECT NOT NOT")]
        assert (record.outcome, record.error) == ("error", "query too deeply nested for the SQL parser")
        assert governed.prepare("SELECT count(*) AS n FROM pg.people", CallerContext(user="alice")).schema.names == [
            "n"
        ]
    finally:
        governed.close()


# -- protocol requests that are malformed, unknown or not supported --------------------

PROTOCOL_REFUSALS: list[object] = [
    pytest.param(
        lambda c: list(c.do_action(flight.Action("DropEverything", b""))),
        r"\[Flight SQL\] unknown action 'DropEverything'",
        id="unknown-action",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(packed_as("type.googleapis.com/google.protobuf.Timestamp", b""))),
        r"\[Flight SQL\] unknown command: google\.protobuf\.Timestamp",
        id="unknown-command",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(packed_as("type.googleapis.com/arrow.flight.protocol.sql.Nope", b""))),
        r"\[Flight SQL\] unknown command: arrow\.flight\.protocol\.sql\.Nope",
        id="unknown-flight-sql-command",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(b"\xff\xff\xff")),
        r"\[Flight SQL\] the request is not a Flight SQL command: its bytes do not decode as a google\.protobuf\.Any",
        id="malformed-any",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(any_pb2.Any(value=b"\x0a\x01x").SerializeToString())),
        r"\[Flight SQL\] the request is not a Flight SQL command: its google\.protobuf\.Any has no type URL",
        id="any-without-type-url",
    ),
    pytest.param(
        lambda c: c.get_flight_info(
            descriptor(
                packed_as("type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery", b"\x0a\x05\xff")
            )
        ),
        r"\[Flight SQL\] malformed CommandStatementQuery: its bytes do not decode",
        id="malformed-command-body",
    ),
    pytest.param(
        lambda c: c.get_flight_info(
            descriptor(
                packed_as("type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery", b"\x0a\x01\xff")
            )
        ),
        r"\[Flight SQL\] malformed CommandStatementQuery: its bytes do not decode \(a string field must be valid UTF-8\)",
        id="query-not-utf8",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(b"")),
        r"\[Flight SQL\] empty request: expected a Flight SQL command",
        id="empty-command",
    ),
    pytest.param(
        lambda c: c.get_flight_info(flight.FlightDescriptor.for_path("pg", "people")),
        r"\[Flight SQL\] only command descriptors are supported",
        id="path-descriptor",
    ),
    pytest.param(
        lambda c: c.do_get(flight.Ticket(b"\xff\xff")).read_all(),
        r"\[Flight SQL\] the request is not a Flight SQL command",
        id="malformed-ticket",
    ),
    pytest.param(
        lambda c: c.do_get(flight.Ticket(b"")).read_all(),
        r"\[Flight SQL\] empty request",
        id="empty-ticket",
    ),
    pytest.param(
        lambda c: c.do_get(
            flight.Ticket(commands.pack(pb.TicketStatementQuery(statement_handle=b"made up")))
        ).read_all(),
        r"unknown or expired statement handle",
        id="unknown-ticket-handle",
    ),
    pytest.param(
        lambda c: list(
            c.do_action(flight.Action("BeginTransaction", commands.pack(pb.ActionBeginTransactionRequest())))
        ),
        r"read-only: transactions are not supported",
        id="begin-transaction",
    ),
    pytest.param(
        lambda c: c.get_flight_info(descriptor(pb.CommandStatementQuery(query="SELECT 1", transaction_id=b"t"))),
        r"read-only: transactions are not supported",
        id="query-in-a-transaction",
    ),
    pytest.param(
        lambda c: list(c.do_action(flight.Action("CreatePreparedStatement", b"\xff\xff"))),
        r"\[Flight SQL\] the request is not a Flight SQL command",
        id="malformed-action-body",
    ),
    pytest.param(
        lambda c: list(c.do_action(flight.Action("CreatePreparedStatement", commands.pack(pb.CommandGetCatalogs())))),
        r"\[Flight SQL\] expected ActionCreatePreparedStatementRequest, got CommandGetCatalogs",
        id="wrong-action-message",
    ),
    pytest.param(
        lambda c: list(c.do_action(flight.Action("CancelFlightInfo", b"\xff\xff\xff"))),
        r"\[Flight\] malformed CancelFlightInfoRequest: the action body does not decode as one",
        id="malformed-flight-action",
    ),
]


@pytest.mark.parametrize(("call", "message"), PROTOCOL_REFUSALS)
def test_refused_protocol_requests_get_a_clean_error(
    uri: str, client: flight.FlightClient, call: Callable[[flight.FlightClient], object], message: str
) -> None:
    refused_by_flight(lambda: call(client), message)
    still_serving(uri)


# -- parameters --------------------------------------------------------------------------


def prepare(client: flight.FlightClient, sql: str) -> bytes:
    request = pb.ActionCreatePreparedStatementRequest(query=sql)
    (result,) = client.do_action(flight.Action("CreatePreparedStatement", commands.pack(request)))
    answer = pb.ActionCreatePreparedStatementResult()
    assert any_pb2.Any.FromString(result.body.to_pybytes()).Unpack(answer)
    return answer.prepared_statement_handle


def bind(client: flight.FlightClient, handle: bytes, batch: pa.RecordBatch) -> None:
    writer, reader = client.do_put(
        descriptor(pb.CommandPreparedStatementQuery(prepared_statement_handle=handle)), batch.schema
    )
    with writer:
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()


def not_utf8(kind: pa.DataType | None = None) -> pa.Array:
    """One value whose bytes are 0xff 0xfe: what any client can put in a string column."""
    kind = kind or pa.string()
    if kind == pa.string_view():
        view = struct.pack("<i12s", 2, b"\xff\xfe")
        return pa.Array.from_buffers(kind, 1, [None, pa.py_buffer(view)])
    offsets = pa.array([0, 2], pa.int64() if kind == pa.large_string() else pa.int32()).buffers()[1]
    return pa.Array.from_buffers(kind, 1, [None, offsets, pa.py_buffer(b"\xff\xfe")])


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(pa.array([2**31 - 1, -(2**31), None], pa.int32()).view(pa.date32()), id="date32"),
        pytest.param(pa.array([2**63 - 1, -(2**63), 0], pa.int64()).view(pa.duration("s")), id="duration"),
        pytest.param(pa.array([2**62, -(2**62), 0], pa.int64()).view(pa.timestamp("s")), id="timestamp"),
    ],
)
def test_union_parameters_beyond_pythons_dates_are_bound_as_they_came(
    uri: str, client: flight.FlightClient, values: pa.Array
) -> None:
    """Found by the fuzzer (seed 20261205): unwrapping a one-type union went through Python values,
    which no date or duration this far out fits, and the bind failed as an unexpected error."""
    union = pa.UnionArray.from_dense(
        pa.array([0, 1, 0, 0], pa.int8()), pa.array([0, 0, 1, 2], pa.int32()), [values, pa.nulls(1)]
    )
    handle = prepare(client, "SELECT $1 AS x")
    bind(client, handle, pa.record_batch([union], names=["$1"]))
    info = client.get_flight_info(descriptor(pb.CommandPreparedStatementQuery(prepared_statement_handle=handle)))
    column = client.do_get(info.endpoints[0].ticket).read_all().column("x").combine_chunks()
    assert column.type == values.type
    raw = pa.int32() if values.type == pa.date32() else pa.int64()
    expected = values.view(raw).to_pylist()
    assert column.view(raw).to_pylist() == [expected[0], None, expected[1], expected[2]]
    still_serving(uri)


@pytest.mark.parametrize(
    ("column", "shown"),
    [
        pytest.param(not_utf8(), "parameter $1", id="string"),
        pytest.param(not_utf8(pa.large_string()), "parameter $1", id="large_string"),
        pytest.param(not_utf8(pa.string_view()), "parameter $1", id="string_view"),
        pytest.param(  # flightsql-dbapi sends each parameter as a one-row dense union
            pa.UnionArray.from_dense(pa.array([0], pa.int8()), pa.array([0], pa.int32()), [not_utf8()]),
            "parameter $1",
            id="dense-union",
        ),
    ],
)
def test_a_string_parameter_that_is_not_utf8_is_refused_at_do_put(
    uri: str, client: flight.FlightClient, engine: Engine, column: pa.Array, shown: str
) -> None:
    handle = prepare(client, PARAMETER_QUERY)
    batch = pa.record_batch([column], names=["$1"])
    text = refused_by_flight(
        lambda: bind(client, handle, batch), rf"{re.escape(shown)} is not valid UTF-8: (.*: )?Invalid UTF8 sequence"
    )
    assert "0xff" not in text  # the value is not echoed
    # Nothing stays bound: running the statement now asks for its parameters.
    query = descriptor(pb.CommandPreparedStatementQuery(prepared_statement_handle=handle))
    refused_by_flight(lambda: client.get_flight_info(query), r"1 parameter\(s\) \(\$1\.\.\$1\) and none were bound")
    still_serving(uri)
    # A good value on the same statement works.
    bind(client, handle, pa.record_batch([pa.array(["name 2"])], names=["$1"]))
    info = client.get_flight_info(query)
    assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"id": 2, "name": "name 2"}]


def test_a_bad_parameter_is_named_by_position_and_name(client: flight.FlightClient) -> None:
    handle = prepare(client, "SELECT id FROM pg.people WHERE id = $1 AND name = $2")
    batch = pa.record_batch([pa.array([1]), not_utf8()], names=["id", "who"])
    refused_by_flight(lambda: bind(client, handle, batch), r"parameter \$2 \('who'\) is not valid UTF-8")


def test_the_wrong_number_of_parameters_is_refused_at_do_put(uri: str, client: flight.FlightClient) -> None:
    handle = prepare(client, PARAMETER_QUERY)
    batch = pa.record_batch([pa.array(["name 1"]), pa.array([2])], names=["$1", "$2"])
    refused_by_flight(
        lambda: bind(client, handle, batch),
        r"the prepared statement has 1 parameter\(s\) \(\$1\.\.\$1\), but 2 parameter column\(s\) were bound",
    )
    still_serving(uri)


def test_the_wrong_number_of_parameters_through_the_adbc_driver(uri: str) -> None:
    with flightsql.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"1 parameter\(s\).*but 2") as failure:
            cursor.execute(PARAMETER_QUERY, ("name 1", "extra"))
        assert_clean(str(failure.value))
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"none were bound") as failure:
            cursor.execute("SELECT id FROM pg.people WHERE id = $1")
        assert_clean(str(failure.value))
        cursor.execute(PARAMETER_QUERY, ("name 3",))
        assert cursor.fetchall() == [(3, "name 3")]


# -- the unexpected -------------------------------------------------------------------------


class FakePanic(BaseException):
    """Stands for ``pyo3_runtime.PanicException``: a Rust panic reaches Python as a BaseException."""


@pytest.mark.parametrize(
    "error", [ValueError("secret detail in /srv/gateway/engine.py"), FakePanic("secret panic detail")], ids=repr
)
def test_an_unexpected_failure_gives_a_reference_that_the_log_and_the_audit_log_share(
    uri: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: BaseException,
) -> None:
    def broken(sql: str, caller: CallerContext) -> None:
        raise error

    monkeypatch.setattr(engine, "_prepare", broken)
    sql = f"SELECT 1 AS unexpected_{type(error).__name__.lower()}"
    with (
        caplog.at_level(logging.ERROR, logger="gateway.flightsql.rpc"),
        flightsql.connect(uri, autocommit=True) as connection,
        connection.cursor() as cursor,
        pytest.raises(adbc_driver_manager.InternalError) as failure,
    ):
        cursor.execute(sql)
    monkeypatch.undo()

    text = str(failure.value)
    found = re.fullmatch(
        r"INTERNAL: \[FlightSQL\] internal error \(reference ([0-9a-f]{12})\)\. Detail: Internal .*", text
    )
    assert found, text
    assert "secret" not in text
    assert_clean(text)
    reference = found.group(1)
    (logged,) = [r for r in caplog.records if reference in r.getMessage()]
    assert logged.exc_info is not None and logged.exc_info[1] is error
    record = next(r for r in reversed(engine.audit.records()) if r.sql == sql)
    assert (record.outcome, record.error) == ("error", f"internal error (reference {reference})")
    still_serving(uri)


def test_an_unexpected_failure_while_authenticating_is_clean(mesh: Path) -> None:
    """A fault inside the authenticator (here: its token check breaks) must not send the traceback."""
    from gateway.auth import Authenticator, User, hash_password

    class BrokenVerify(Authenticator):
        def verify(self, token: str) -> object:  # type: ignore[override]
            raise OSError(f"disk gone while checking {token[:4]}")

    authenticator = BrokenVerify([User("ann", hash_password("ann-password-1"))])
    engine = Engine.from_config(load_config(mesh))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", authenticator=authenticator)
    client = flight.FlightClient(f"grpc://127.0.0.1:{server.port}")
    try:
        header = client.authenticate_basic_token("ann", "ann-password-1")
        with pytest.raises(flight.FlightInternalError) as raised:
            list(client.list_actions(flight.FlightCallOptions(headers=[header])))
        assert "internal error (reference" in str(raised.value)
        assert_clean(str(raised.value))
        assert "disk gone" not in str(raised.value)
    finally:
        client.close()
        server.shutdown()
        engine.close()
