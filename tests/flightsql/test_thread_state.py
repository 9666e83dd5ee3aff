"""One Python thread state a call (gateway/flightsql/thread_state.py), through real clients.

A call's callbacks share the thread state its first one made (what a callback leaves in a
thread-local is still there in the handler), and no thread state outlives its call,
whatever the call's end: answered, refused at log-in, failed in the handler, or a stream
the client stopped reading. A thread state that outlived its call would stay in the
interpreter for good (gRPC ends its idle threads; Python does not reclaim their states).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow.flight as flight
import pytest
from conftest import fetch, flight_info, make_engine
from datafusion_test_engine import DataFusionEngine
from test_flightsql_protocol import COUNT_NUMBERS

from gateway.auth import Authenticator, User, hash_password
from gateway.flightsql import FlightSqlServer, thread_state
from gateway.flightsql import flight_sql_pb2 as pb
from tests.support.gateway import Credentials, serving

ALICE = Credentials("alice", "wonderland")
AUTHENTICATOR = Authenticator([User(ALICE.user, hash_password(ALICE.password))], key=b"k" * 32)

_head = ctypes.pythonapi.PyInterpreterState_ThreadHead
_head.argtypes, _head.restype = [ctypes.c_void_p], ctypes.c_void_p
_next = ctypes.pythonapi.PyThreadState_Next
_next.argtypes, _next.restype = [ctypes.c_void_p], ctypes.c_void_p
_interpreter = ctypes.pythonapi.PyInterpreterState_Get
_interpreter.argtypes, _interpreter.restype = [], ctypes.c_void_p


def foreign_thread_states() -> int:
    """Thread states of threads ``threading`` does not list (gRPC's while they run Python, and
    any started with ``_thread`` directly, as pytest-xdist's execnet does)."""
    count, state = 0, _head(_interpreter())
    while state:
        count, state = count + 1, _next(state)
    return count - sum(1 for t in threading.enumerate() if not isinstance(t, threading._DummyThread))


def settled(expected: int, wait: float = 10.0) -> int:
    """The count once down to ``expected`` (a call's thread may still be finishing), or after ``wait``."""
    deadline = time.monotonic() + wait
    while (count := foreign_thread_states()) > expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


class Marks(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Leaves a mark in a thread-local when a call starts; the server's handler reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        self.local.mark = info.method
        return None


class MarkReadingServer(FlightSqlServer):
    def __init__(self, engine: DataFusionEngine, *, users: bool) -> None:
        self.marks = Marks()
        self.users = users
        self.seen: list[tuple[Any, bool]] = []
        authenticator = AUTHENTICATOR if users else None
        super().__init__(engine, "grpc://127.0.0.1:0", middleware={"marks": self.marks}, authenticator=authenticator)

    def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        self.seen.append((getattr(self.marks.local, "mark", None), thread_state.held()))
        return super().get_flight_info(context, descriptor)

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def call_options(self) -> flight.FlightCallOptions:
        """Options carrying a bearer token when the server has users."""
        if not self.users:
            return flight.FlightCallOptions()
        with flight.connect(self.uri) as connection:
            header = connection.authenticate_basic_token(ALICE.user, ALICE.password)
        return flight.FlightCallOptions(headers=[header])


@pytest.fixture(params=[False, True], ids=["without users", "with users"])
def served(request: pytest.FixtureRequest) -> Iterator[MarkReadingServer]:
    with serving(MarkReadingServer(make_engine(), users=request.param)) as server:
        yield server


def test_a_calls_handler_sees_what_its_first_callback_left(served: MarkReadingServer) -> None:
    kwargs = ALICE.db_kwargs() if served.users else {}
    with (
        flightsql_dbapi.connect(served.uri, db_kwargs=kwargs, autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) AS n FROM hr.employees")
        assert cursor.fetchall() == [(2,)]
    assert served.seen
    assert all(seen == (flight.FlightMethod.GET_FLIGHT_INFO, True) for seen in served.seen)


def test_no_thread_state_outlives_its_call(served: MarkReadingServer) -> None:
    before = foreign_thread_states()
    options = served.call_options()
    with flight.connect(served.uri) as client:
        for _ in range(3):
            # answered
            _, table = fetch(client, pb.CommandStatementQuery(query="SELECT id FROM hr.employees"), options)
            assert table.num_rows == 2
            # failed in the handler
            with pytest.raises(flight.FlightError, match="no_such_table"):
                fetch(client, pb.CommandStatementQuery(query="SELECT * FROM no_such_table"), options)
            # a stream the client stops reading after its first batch
            info = flight_info(client, pb.CommandStatementQuery(query=COUNT_NUMBERS), options)
            reader = client.do_get(info.endpoints[0].ticket, options)
            reader.read_chunk()
            reader.cancel()
            # a list of actions
            assert list(client.list_actions(options))
            if served.users:
                # refused at log-in: no token, a wrong password, a password on a plain call
                with pytest.raises(flight.FlightUnauthenticatedError):
                    fetch(client, pb.CommandStatementQuery(query="SELECT 1"))
                with flight.connect(served.uri) as other, pytest.raises(flight.FlightUnauthenticatedError):
                    other.authenticate_basic_token(ALICE.user, "not the password")
    assert settled(before) <= before
