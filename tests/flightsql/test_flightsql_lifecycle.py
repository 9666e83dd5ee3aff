"""Statement lifecycle on the protocol: CancelFlightInfo, sessions, statement timeouts.

Raw ``pyarrow.flight`` clients against the server with the in-memory DataFusion engine
(the PostgreSQL side, backends included, is in tests/lifecycle/). The Flight actions
carry plain serialized Flight.proto messages, not ``Any``-wrapped ones; the session
travels in the ``arrow_flight_session_id`` cookie, kept here by a small cookie jar.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import flight_info, make_engine
from datafusion_test_engine import DataFusionEngine
from test_flightsql_protocol import COUNT_NUMBERS, NameClientAuth, NameIsTokenAuth, wait_for
from test_flightsql_protocol import serve as served

from gateway.flightsql import FlightSqlServer, commands
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.session import SESSION_COOKIE, cookie
from gateway.flightsql.sql_info import MESHGATE_STATEMENT_TIMEOUT
from gateway.flightsql.statements import Deadlines
from tests.support.errors import assert_clean

INVALID_NAME = fpb.SetSessionOptionsResult.INVALID_NAME
INVALID_VALUE = fpb.SetSessionOptionsResult.INVALID_VALUE


# -- a raw client that keeps cookies ----------------------------------------------------------


class CookieJar(flight.ClientMiddlewareFactory):
    """Keeps the cookies a server sets (``Max-Age=0`` deletes one) and sends them back."""

    def __init__(self) -> None:
        super().__init__()
        self.cookies: dict[str, str] = {}
        self.received: list[str] = []

    def start_call(self, info: Any) -> flight.ClientMiddleware:
        return _CookieMiddleware(self)


class _CookieMiddleware(flight.ClientMiddleware):
    def __init__(self, jar: CookieJar) -> None:
        super().__init__()
        self.jar = jar

    def sending_headers(self) -> dict[str, str]:
        if not self.jar.cookies:
            return {}
        return {"cookie": "; ".join(f"{name}={value}" for name, value in self.jar.cookies.items())}

    def received_headers(self, headers: dict[str, list[str]]) -> None:
        for line in headers.get("set-cookie", []):
            self.jar.received.append(line)
            pair, *attributes = [part.strip() for part in line.split(";")]
            name, _, value = pair.partition("=")
            if any(attribute.lower() == "max-age=0" for attribute in attributes):
                self.jar.cookies.pop(name, None)
            else:
                self.jar.cookies[name] = value


def flight_action(client: flight.FlightClient, kind: str, request: Any, result_type: type[Any]) -> Any:
    (answer,) = client.do_action(flight.Action(kind, request.SerializeToString()))
    return result_type.FromString(answer.body.to_pybytes())


def set_options(client: flight.FlightClient, **options: Any) -> dict[str, int]:
    request = fpb.SetSessionOptionsRequest()
    for name, value in options.items():
        option = request.session_options[name]
        if value is None:
            option.SetInParent()  # valueless: erase
        elif isinstance(value, bool):
            option.bool_value = value
        elif isinstance(value, int):
            option.int64_value = value
        elif isinstance(value, float):
            option.double_value = value
        elif isinstance(value, list):
            option.string_list_value.values.extend(value)
        else:
            option.string_value = value
    result = flight_action(client, "SetSessionOptions", request, fpb.SetSessionOptionsResult)
    return {name: error.value for name, error in result.errors.items()}


def get_options(client: flight.FlightClient) -> dict[str, Any]:
    result = flight_action(client, "GetSessionOptions", fpb.GetSessionOptionsRequest(), fpb.GetSessionOptionsResult)
    return {name: getattr(value, value.WhichOneof("option_value")) for name, value in result.session_options.items()}


def close_session(client: flight.FlightClient) -> int:
    result = flight_action(client, "CloseSession", fpb.CloseSessionRequest(), fpb.CloseSessionResult)
    status: int = result.status
    return status


def cancel_flight_info(client: flight.FlightClient, info: flight.FlightInfo) -> int:
    request = fpb.CancelFlightInfoRequest(info=fpb.FlightInfo.FromString(info.serialize()))
    status: int = flight_action(client, "CancelFlightInfo", request, fpb.CancelFlightInfoResult).status
    return status


def sql_info(client: flight.FlightClient, *ids: int) -> dict[int, Any]:
    info = flight_info(client, pb.CommandGetSqlInfo(info=list(ids)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    return dict(zip(table.column("info_name").to_pylist(), table.column("value").to_pylist(), strict=True))


@pytest.fixture
def jar() -> CookieJar:
    return CookieJar()


@pytest.fixture
def session_client(uri: str, jar: CookieJar) -> Iterator[flight.FlightClient]:
    with flight.connect(uri, middleware=[jar]) as connected:
        yield connected


def serve(engine: DataFusionEngine, **options: Any) -> FlightSqlServer:
    return FlightSqlServer(engine, "grpc://127.0.0.1:0", **options)


# -- CancelFlightInfo -------------------------------------------------------------------------


def test_cancel_flight_info_stops_a_running_stream_then_reports_not_cancellable(
    client: flight.FlightClient, engine: DataFusionEngine, server: FlightSqlServer
) -> None:
    info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
    reader = client.do_get(info.endpoints[0].ticket)
    reader.read_chunk()

    assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_CANCELLED

    with pytest.raises(flight.FlightCancelledError, match=r"\[Meshgate\] the query was cancelled"):
        for _chunk in reader:
            pass
    wait_for(lambda: engine.executions[-1].closed)
    assert engine.executions[-1].cancelled and engine.executions[-1].batches < 245
    assert server._statements.active() == 0
    # Finished now: nothing left to cancel, and the client should not retry.
    assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_NOT_CANCELLABLE


def test_cancel_flight_info_before_do_get_releases_the_query_and_do_get_says_so(
    client: flight.FlightClient, engine: DataFusionEngine, server: FlightSqlServer
) -> None:
    info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))

    assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_CANCELLED

    assert engine.executions[-1].cancelled and engine.executions[-1].closed
    assert server._statements.active() == 0
    with pytest.raises(flight.FlightCancelledError, match=r"^\[Meshgate\] the query was cancelled"):
        client.do_get(info.endpoints[0].ticket).read_all()


def test_nothing_to_cancel_is_not_cancellable(client: flight.FlightClient) -> None:
    finished = flight_info(client, pb.CommandStatementQuery(query="SELECT 1 AS one"))
    client.do_get(finished.endpoints[0].ticket).read_all()
    metadata = flight_info(client, pb.CommandGetCatalogs())
    made_up = flight.FlightInfo(
        pa.schema([]),
        flight.FlightDescriptor.for_command(b""),
        [
            flight.FlightEndpoint(commands.pack(pb.TicketStatementQuery(statement_handle=b"0" * 16)), []),
            flight.FlightEndpoint(b"not a flight sql ticket", []),
        ],
        -1,
        -1,
    )

    for info in (finished, metadata, made_up):
        assert cancel_flight_info(client, info) == fpb.CANCEL_STATUS_NOT_CANCELLABLE


def test_a_malformed_cancel_request_is_refused_by_name(client: flight.FlightClient) -> None:
    with pytest.raises(flight.FlightServerError, match=r"\[Flight\] malformed CancelFlightInfoRequest") as failure:
        list(client.do_action(flight.Action("CancelFlightInfo", b"\xff\xff\xff")))
    assert_clean(str(failure.value))


def test_only_the_caller_who_started_a_query_can_cancel_it() -> None:
    engine = make_engine()
    server = serve(engine, auth_handler=NameIsTokenAuth())
    try:
        alice, bob = (flight.connect(f"grpc://127.0.0.1:{server.port}") for _ in range(2))
        alice.authenticate(NameClientAuth("alice"))
        bob.authenticate(NameClientAuth("bob"))
        info = flight_info(alice, pb.CommandStatementQuery(query=COUNT_NUMBERS))

        assert cancel_flight_info(bob, info) == fpb.CANCEL_STATUS_NOT_CANCELLABLE
        assert not engine.executions[-1].cancelled
        assert cancel_flight_info(alice, info) == fpb.CANCEL_STATUS_CANCELLED
        assert engine.executions[-1].cancelled
        alice.close()
        bob.close()
    finally:
        server.shutdown()


# -- sessions ---------------------------------------------------------------------------------


def test_set_session_options_creates_a_session_whose_schema_names_resolve_against(
    session_client: flight.FlightClient, jar: CookieJar, engine: DataFusionEngine, server: FlightSqlServer
) -> None:
    flight_info(session_client, pb.CommandGetCatalogs())
    assert jar.cookies == {}  # no session until an option is set

    assert set_options(session_client, catalog="mesh", schema="hr") == {}

    assert list(jar.cookies) == [SESSION_COOKIE] and len(server._sessions) == 1
    assert get_options(session_client) == {"catalog": "mesh", "schema": "hr"}
    flight_info(session_client, pb.CommandStatementQuery(query="SELECT 1 AS one"))
    assert (engine.callers[-1].default_catalog, engine.callers[-1].default_schema) == ("mesh", "hr")
    # The same cookie stays in use: options accumulate in one session.
    cookie_before = jar.cookies[SESSION_COOKIE]
    assert set_options(session_client, statement_timeout=30) == {}
    assert jar.cookies[SESSION_COOKIE] == cookie_before
    assert get_options(session_client) == {"catalog": "mesh", "schema": "hr", "statement_timeout": 30.0}
    # A valueless option erases it.
    assert set_options(session_client, schema=None) == {}
    assert get_options(session_client) == {"catalog": "mesh", "statement_timeout": 30.0}
    flight_info(session_client, pb.CommandStatementQuery(query="SELECT 1 AS one"))
    assert engine.callers[-1].default_schema is None


def test_bad_option_names_and_values_are_reported_not_accepted(
    session_client: flight.FlightClient, server: FlightSqlServer
) -> None:
    errors = set_options(
        session_client,
        colour="blue",
        catalog="elsewhere",
        schema="no_such_domain",
        statement_timeout=-1,
    )

    assert errors == {
        "colour": INVALID_NAME,
        "catalog": INVALID_VALUE,
        "schema": INVALID_VALUE,
        "statement_timeout": INVALID_VALUE,
    }
    assert len(server._sessions) == 0  # nothing was set: no session
    for option, value in [
        ("schema", True),
        ("schema", ["hr"]),
        ("catalog", 1),
        ("statement_timeout", "soon"),
        ("statement_timeout", float("nan")),
        ("statement_timeout", True),
    ]:
        assert set_options(session_client, **{option: value}) == {option: INVALID_VALUE}, (option, value)
    # Good and bad together: the good ones are set.
    assert set_options(session_client, schema="sales", colour="blue") == {"colour": INVALID_NAME}
    assert get_options(session_client)["schema"] == "sales"


def test_get_session_options_without_a_session_gives_the_defaults_and_creates_none(
    session_client: flight.FlightClient, jar: CookieJar, server: FlightSqlServer
) -> None:
    assert get_options(session_client) == {"catalog": "mesh"}
    assert jar.cookies == {} and len(server._sessions) == 0


def test_close_session_forgets_it_and_expires_the_cookie(
    uri: str, session_client: flight.FlightClient, jar: CookieJar, server: FlightSqlServer
) -> None:
    set_options(session_client, schema="hr")
    stale = jar.cookies[SESSION_COOKIE]

    assert close_session(session_client) == fpb.CloseSessionResult.CLOSED

    assert jar.cookies == {} and f"{SESSION_COOKIE}=; Max-Age=0" in jar.received
    assert len(server._sessions) == 0
    # Without the cookie the client is session-less again.
    assert get_options(session_client) == {"catalog": "mesh"}
    with pytest.raises(flight.FlightServerError, match="no session to close"):
        close_session(session_client)
    # A client that still sends the old cookie is told its session is gone, every time.
    replay = flight.FlightCallOptions(headers=[(b"cookie", f"{SESSION_COOKIE}={stale}".encode())])
    with flight.connect(uri) as other:
        for _ in range(2):
            with pytest.raises(flight.FlightServerError, match=r"unknown or expired session"):
                other.get_flight_info(
                    flight.FlightDescriptor.for_command(commands.pack(pb.CommandStatementQuery(query="SELECT 1"))),
                    replay,
                )
        with pytest.raises(flight.FlightServerError, match=r"unknown or expired session"):
            list(other.do_action(flight.Action("GetSessionOptions", b""), replay))


def test_a_dead_cookie_is_dropped_and_set_session_options_starts_afresh(
    session_client: flight.FlightClient, jar: CookieJar, server: FlightSqlServer
) -> None:
    jar.cookies[SESSION_COOKIE] = "00" * 16  # a session the server never had (or forgot)

    with pytest.raises(flight.FlightServerError, match="unknown or expired session"):
        flight_info(session_client, pb.CommandGetCatalogs())
    assert jar.cookies == {}  # the error answer expired the cookie
    flight_info(session_client, pb.CommandGetCatalogs())  # so the next call works

    jar.cookies[SESSION_COOKIE] = "not hex at all"
    assert set_options(session_client, schema="hr") == {}
    assert jar.cookies[SESSION_COOKIE] != "not hex at all" and len(server._sessions) == 1
    assert get_options(session_client)["schema"] == "hr"


def test_sessions_expire_and_are_bounded() -> None:
    engine = make_engine()
    server = serve(engine, session_ttl=0.3, max_sessions=2)
    try:
        jars = [CookieJar() for _ in range(3)]
        clients = [flight.connect(f"grpc://127.0.0.1:{server.port}", middleware=[jar]) for jar in jars]
        for client in clients:
            set_options(client, schema="hr")
        assert len(server._sessions) == 2  # the least recently used was dropped
        with pytest.raises(flight.FlightServerError, match="unknown or expired session"):
            get_options(clients[0])
        time.sleep(0.5)
        assert len(server._sessions) == 0
        with pytest.raises(flight.FlightServerError, match="unknown or expired session"):
            get_options(clients[2])
        for client in clients:
            client.close()
    finally:
        server.shutdown()


def test_a_session_belongs_to_the_user_who_created_it() -> None:
    engine = make_engine()
    server = serve(engine, auth_handler=NameIsTokenAuth())
    try:
        alice_jar = CookieJar()
        alice = flight.connect(f"grpc://127.0.0.1:{server.port}", middleware=[alice_jar])
        alice.authenticate(NameClientAuth("alice"))
        set_options(alice, schema="hr")
        stolen = flight.FlightCallOptions(
            headers=[(b"cookie", f"{SESSION_COOKIE}={alice_jar.cookies[SESSION_COOKIE]}".encode())]
        )
        bob = flight.connect(f"grpc://127.0.0.1:{server.port}")
        bob.authenticate(NameClientAuth("bob"))

        with pytest.raises(flight.FlightServerError, match="unknown or expired session"):
            list(bob.do_action(flight.Action("GetSessionOptions", b""), stolen))
        with pytest.raises(flight.FlightServerError, match="unknown or expired session"):
            list(bob.do_action(flight.Action("CloseSession", b""), stolen))
        assert get_options(alice)["schema"] == "hr"  # still alice's
        alice.close()
        bob.close()
    finally:
        server.shutdown()


def blocked_in_write(execution: Any) -> None:
    """Wait until ``execution`` stops making batches: its stream waits on a client that reads no more."""
    made = -1
    while made != execution.batches:
        made = execution.batches
        time.sleep(0.3)
    assert made < 240, "the whole result was sent: nothing is left to block on"


def test_close_session_cancels_the_queries_the_session_still_runs(
    session_client: flight.FlightClient, engine: DataFusionEngine, server: FlightSqlServer
) -> None:
    set_options(session_client, schema="hr")
    waiting = flight_info(session_client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
    streaming = flight_info(session_client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
    reader = session_client.do_get(streaming.endpoints[0].ticket)
    reader.read_chunk()
    assert server._statements.active() == 2
    blocked_in_write(engine.executions[-1])  # the client reads no more: the server's writes fill up

    close_session(session_client)

    wait_for(lambda: server._statements.active() == 0)
    assert all(e.cancelled and e.closed for e in engine.executions[-2:])
    with pytest.raises(flight.FlightCancelledError, match="its session was closed"):
        for _chunk in reader:
            pass
    with pytest.raises(flight.FlightCancelledError, match="its session was closed"):
        session_client.do_get(waiting.endpoints[0].ticket).read_all()


def test_cookie_parsing() -> None:
    headers = {"cookie": ["other=1; arrow_flight_session_id=abc", 'x=2;arrow_flight_session_id="q"']}
    assert cookie(headers, SESSION_COOKIE) == "q"
    assert cookie({"cookie": ["arrow_flight_session_idx=1; a=b"]}, SESSION_COOKIE) is None
    assert cookie({}, SESSION_COOKIE) is None


# -- statement timeout ------------------------------------------------------------------------


@pytest.fixture
def timeout_server() -> Iterator[tuple[FlightSqlServer, DataFusionEngine]]:
    yield from served(statement_timeout=0.5, statement_ttl=120)


def test_a_query_streaming_past_the_statement_timeout_is_cancelled_with_a_timeout_error(
    timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = timeout_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()
        time.sleep(0.8)  # a slow consumer: the query outlives its timeout

        with pytest.raises(flight.FlightTimedOutError) as raised:
            for _chunk in reader:
                pass

    assert str(raised.value).startswith("[Meshgate] statement timeout: the query ran longer than 0.5 s")
    assert "Traceback" not in str(raised.value)
    wait_for(lambda: engine.executions[-1].closed)
    assert engine.executions[-1].cancelled and engine.executions[-1].batches < 245
    assert server._statements.active() == 0


def test_a_statement_not_read_within_its_timeout_is_released_and_says_why(
    timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = timeout_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
        wait_for(lambda: engine.executions[-1].closed, timeout=3)
        assert engine.executions[-1].cancelled
        assert server._statements.active() == 0
        with pytest.raises(flight.FlightTimedOutError, match=r"statement timeout: the query ran longer than 0\.5 s"):
            client.do_get(info.endpoints[0].ticket).read_all()


def test_a_query_that_finishes_in_time_is_not_affected(
    timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = timeout_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        for _ in range(3):
            info = flight_info(client, pb.CommandStatementQuery(query="SELECT id FROM sales.orders"))
            assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 4
        time.sleep(0.7)  # their deadlines pass: nothing left to cancel
    assert not any(e.cancelled for e in engine.executions)
    assert server._statements.active() == 0


def test_the_session_statement_timeout_overrides_the_servers(
    timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = timeout_server
    jar = CookieJar()
    with flight.connect(f"grpc://127.0.0.1:{server.port}", middleware=[jar]) as client:
        assert sql_info(client, MESHGATE_STATEMENT_TIMEOUT, pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT) == {
            MESHGATE_STATEMENT_TIMEOUT: 500,
            pb.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: 120_000,  # the handle lifetime, as the spec defines it
        }
        assert get_options(client) == {"catalog": "mesh", "statement_timeout": 0.5}

        assert set_options(client, statement_timeout=0) == {}  # no limit for this session
        assert sql_info(client, MESHGATE_STATEMENT_TIMEOUT) == {MESHGATE_STATEMENT_TIMEOUT: 0}
        info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
        time.sleep(0.8)
        assert client.do_get(info.endpoints[0].ticket).read_all().num_rows == 2_000_000

        assert set_options(client, statement_timeout="0.25") == {}  # a string holding seconds, as ADBC sends
        assert sql_info(client, MESHGATE_STATEMENT_TIMEOUT) == {MESHGATE_STATEMENT_TIMEOUT: 250}
        # Ten million rows: a fast machine made and sent all two million of COUNT_NUMBERS within 0.25 s
        # (gRPC's window took them while the client slept), and nothing was left to time out.
        longer = f"SELECT n FROM ({COUNT_NUMBERS}) AS numbers, (VALUES (1), (2), (3), (4), (5)) AS copies(k)"
        info = flight_info(client, pb.CommandStatementQuery(query=longer))
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()
        time.sleep(0.4)
        with pytest.raises(flight.FlightTimedOutError, match=r"longer than 0\.25 s"):
            reader.read_all()
    assert engine.executions[-1].cancelled


def test_without_a_timeout_nothing_is_reported_or_cancelled(client: flight.FlightClient) -> None:
    assert sql_info(client, MESHGATE_STATEMENT_TIMEOUT) == {MESHGATE_STATEMENT_TIMEOUT: 0}
    assert get_options(client) == {"catalog": "mesh"}


def test_deadlines_fire_once_in_order_and_forget_what_ended_in_time() -> None:
    fired: list[tuple[bytes, float]] = []
    done = threading.Event()

    def fire(handle: bytes, seconds: float) -> None:
        fired.append((handle, seconds))
        if handle == b"last":
            done.set()

    deadlines = Deadlines(fire)
    now = time.monotonic()
    deadlines.add(b"b", now + 0.2, 0.2)
    deadlines.add(b"a", now + 0.1, 0.1)
    for i in range(500):  # many statements that end in time: their entries are compacted away
        deadlines.add(str(i).encode(), now + 60, 60)
        deadlines.discard(str(i).encode())
    deadlines.add(b"gone", now + 0.15, 0.15)
    deadlines.discard(b"gone")
    deadlines.add(b"last", now + 0.3, 0.3)

    assert done.wait(5)
    assert fired == [(b"a", 0.1), (b"b", 0.2), (b"last", 0.3)]
    assert len(deadlines._heap) < 100
    deadlines.close()


def test_a_re_armed_deadline_fires_once_at_its_latest_time() -> None:
    fired: list[tuple[bytes, float, float]] = []
    deadlines = Deadlines(lambda handle, seconds: fired.append((handle, seconds, time.monotonic())))
    start = time.monotonic()
    deadlines.add(b"stream", start + 0.05, 0.05)
    deadlines.add(b"stream", start + 0.3, 0.3)  # its next batch: later, so the thread is not woken for it
    time.sleep(0.6)
    deadlines.close()
    assert [(handle, seconds) for handle, seconds, _at in fired] == [(b"stream", 0.3)]
    assert fired[0][2] - start >= 0.3


# -- client timeout ------------------------------------------------------------------------------


@pytest.fixture
def client_timeout_server() -> Iterator[tuple[FlightSqlServer, DataFusionEngine]]:
    yield from served(client_timeout=0.5)


def test_a_client_that_reads_no_more_has_its_query_stopped_and_is_told_why(
    client_timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = client_timeout_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS))
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()
        started = time.monotonic()
        wait_for(lambda: server._statements.active() == 0)  # while the server's write still waits on it
        assert 0.5 <= time.monotonic() - started < 3
        assert engine.executions[-1].cancelled and engine.executions[-1].closed
        with pytest.raises(flight.FlightCancelledError, match=r"its client read nothing for 0\.5 s \(client timeout\)"):
            for _chunk in reader:
                pass
    assert engine.executions[-1].batches < 240


def test_a_slow_client_that_keeps_reading_gets_its_whole_result(
    client_timeout_server: tuple[FlightSqlServer, DataFusionEngine],
) -> None:
    server, engine = client_timeout_server
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        info = flight_info(client, pb.CommandStatementQuery(query=f"SELECT n FROM bench.numbers LIMIT {300_000}"))
        reader = client.do_get(info.endpoints[0].ticket)
        rows = 0
        for chunk in reader:
            rows += chunk.data.num_rows
            time.sleep(0.1)  # reads on, a batch at a time, slower than the server makes them
    assert rows == 300_000
    assert not engine.executions[-1].cancelled
    assert server._statements.active() == 0


# -- through the ADBC driver (Go) ---------------------------------------------------------------


def test_cancel_flight_info_takes_a_flight_info_serialized_by_the_go_client(
    conn: Any, client: flight.FlightClient, engine: DataFusionEngine, server: FlightSqlServer
) -> None:
    import adbc_driver_manager

    with conn.cursor() as cursor:
        # A partition is the FlightInfo of GetFlightInfo, marshalled by arrow-go.
        (partition,), _schema = cursor.adbc_execute_partitions(COUNT_NUMBERS)
        request = fpb.CancelFlightInfoRequest(info=fpb.FlightInfo.FromString(partition))

        (answer,) = client.do_action(flight.Action("CancelFlightInfo", request.SerializeToString()))

        assert fpb.CancelFlightInfoResult.FromString(answer.body.to_pybytes()).status == fpb.CANCEL_STATUS_CANCELLED
        assert engine.executions[-1].cancelled and engine.executions[-1].closed
        assert server._statements.active() == 0
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"CANCELLED.*the query was cancelled"):
            cursor.adbc_read_partition(partition).read_all()


def test_poll_flight_info_is_not_served(conn: Any, uri: str) -> None:
    """pyarrow 26 has no Python hook for PollFlightInfo: its C++ base answers UNIMPLEMENTED.

    If this starts failing, pyarrow grew the hook: implement PollFlightInfo.
    """
    import adbc_driver_manager
    import grpc

    with conn.cursor() as cursor:  # ADBC's incremental execution polls
        cursor.adbc_statement.set_options(**{"adbc.statement.exec.incremental": "true"})
        with pytest.raises(adbc_driver_manager.NotSupportedError, match="NYI"):
            cursor.adbc_execute_partitions("SELECT 1 AS one")
    assert not hasattr(flight.FlightServerBase, "poll_flight_info")

    descriptor = flight.FlightDescriptor.for_command(commands.pack(pb.CommandStatementQuery(query="SELECT 1")))
    with grpc.insecure_channel(uri.removeprefix("grpc://")) as channel:
        poll = channel.unary_unary(
            "/arrow.flight.protocol.FlightService/PollFlightInfo",
            request_serializer=lambda body: body,
            response_deserializer=lambda body: body,
        )
        with pytest.raises(grpc.RpcError) as raised:
            poll(descriptor.serialize(), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
