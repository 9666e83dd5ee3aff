"""Authentication through real clients: the ADBC Flight SQL driver and pyarrow.flight.

A gateway with users runs in-process on a CSV mesh; every negative case is checked for
what the client gets (UNAUTHENTICATED and a clear message), for the log line the server
writes, and for the engine never being reached.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_flightsql import DatabaseOptions
from adbc_driver_manager import Error as AdbcError

from gateway.api import CallerContext
from gateway.auth import Authenticator, Identity, User, hash_password
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql import commands
from gateway.flightsql import flight_sql_pb2 as pb
from gateway.flightsql.server import FlightSqlServer
from tests.support.gateway import Credentials, connect, serving

KEY = b"s" * 32
ALICE = Credentials("alice", "wonderland")
BOB = Credentials("bob", "builder")
USERS = [
    User(ALICE.user, hash_password(ALICE.password), ("analysts", "sales"), {"region": "eu"}),
    User(BOB.user, hash_password(BOB.password)),
]
SQL = "SELECT count(*) AS n FROM ref.kinds"


class RecordingEngine:
    """The real engine, noting who each query came from."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.callers: list[CallerContext] = []

    def prepare(self, sql: str, caller: CallerContext) -> Any:
        self.callers.append(caller)
        return self.engine.prepare(sql, caller)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("auth-mesh")
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n2,two\n")
    (folder / "mesh.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n")
    return folder / "mesh.yaml"


def _serve(mesh: Path, authenticator: Authenticator) -> Iterator[tuple[str, RecordingEngine]]:
    engine = RecordingEngine(Engine.from_config(load_config(mesh)))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0", authenticator=authenticator)
    try:
        with serving(server):
            yield f"grpc://127.0.0.1:{server.port}", engine
    finally:
        engine.engine.catalog.close()


@pytest.fixture(scope="module")
def gateway(mesh: Path) -> Iterator[tuple[str, RecordingEngine]]:
    yield from _serve(mesh, Authenticator(USERS, key=KEY, token_ttl_seconds=600))


@pytest.fixture
def uri(gateway: tuple[str, RecordingEngine]) -> str:
    return gateway[0]


@pytest.fixture
def engine(gateway: tuple[str, RecordingEngine]) -> RecordingEngine:
    gateway[1].callers.clear()
    return gateway[1]


def run(uri: str, credentials: Credentials | None = None, **options: str) -> pa.Table:
    with connect(uri, credentials, **options) as connection, connection.cursor() as cursor:
        cursor.execute(SQL)
        table: pa.Table = cursor.fetch_arrow_table()
        return table


def refusal(uri: str, credentials: Credentials | None = None, **options: str) -> str:
    """What the ADBC driver raises for a refused call (it must be refused)."""
    with pytest.raises(AdbcError) as error:
        run(uri, credentials, **options)
    return str(error.value)


def bearer(token: str) -> dict[str, str]:
    return {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}


# -- the way in ------------------------------------------------------------------------------


def test_a_user_logs_in_and_the_engine_sees_who_is_asking(uri: str, engine: RecordingEngine) -> None:
    assert run(uri, ALICE).to_pylist() == [{"n": 3}]
    assert {caller.user for caller in engine.callers} == {"alice"}
    attributes = engine.callers[-1].attributes
    assert attributes["groups"] == "analysts,sales" and attributes["region"] == "eu"
    assert attributes["peer"].startswith("ipv4:127.0.0.1:")

    assert run(uri, BOB).to_pylist() == [{"n": 3}]
    assert engine.callers[-1].user == "bob" and engine.callers[-1].attributes["groups"] == ""


def test_the_handshake_answers_a_signed_expiring_bearer_token(uri: str) -> None:
    with flight.connect(uri) as client:
        name, value = client.authenticate_basic_token(ALICE.user, ALICE.password)
        assert name == b"authorization" and value.startswith(b"Bearer ")
        token = value.decode()[len("Bearer ") :]
        claims = jwt.decode(token, KEY, algorithms=["HS256"])
        assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 600
        assert claims["groups"] == ["analysts", "sales"] and claims["attributes"] == {"region": "eu"}
        options = flight.FlightCallOptions(headers=[(name, value)])
        assert {action.type for action in client.list_actions(options=options)} >= {"CreatePreparedStatement"}


# -- negative cases --------------------------------------------------------------------------


def test_no_token_is_unauthenticated(uri: str, engine: RecordingEngine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    message = refusal(uri)
    assert "UNAUTHENTICATED" in message
    assert "[Meshgate] authentication required: connect with a user name and password" in message
    assert engine.callers == []
    assert "call refused: DO_ACTION without credentials" in caplog.text


def test_wrong_password_is_unauthenticated(uri: str, engine: RecordingEngine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    message = refusal(uri, Credentials("alice", "Wonderland"))
    assert "UNAUTHENTICATED" in message and "[Meshgate] invalid user name or password" in message
    assert "log-in refused for user 'alice': wrong password" in caplog.text
    unknown = refusal(uri, Credentials("mallory", "wonderland"))
    assert "[Meshgate] invalid user name or password" in unknown  # the same answer: user names stay secret
    assert "log-in refused for user 'mallory': unknown user" in caplog.text
    assert engine.callers == []


def test_expired_token_is_unauthenticated(uri: str, engine: RecordingEngine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    issued_an_hour_ago = Authenticator(USERS, key=KEY, token_ttl_seconds=3599, clock=lambda: time.time() - 3600)
    message = refusal(uri, **bearer(issued_an_hour_ago.issue(Identity("alice"))))
    assert "UNAUTHENTICATED" in message
    assert "[Meshgate] the session token has expired: connect again with a user name and password" in message
    assert "token refused: expired (user 'alice')" in caplog.text
    assert engine.callers == []


def test_a_token_works_until_it_expires(mesh: Path) -> None:
    for uri, _ in _serve(mesh, Authenticator(USERS, key=KEY, token_ttl_seconds=2)):
        with flight.connect(uri) as client:
            options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(ALICE.user, ALICE.password)])
            assert list(client.list_actions(options=options))
            time.sleep(3.1)
            with pytest.raises(flight.FlightUnauthenticatedError, match="the session token has expired"):
                list(client.list_actions(options=options))
            fresh = flight.FlightCallOptions(headers=[client.authenticate_basic_token(ALICE.user, ALICE.password)])
            assert list(client.list_actions(options=fresh))


def test_token_signed_with_another_key_is_unauthenticated(
    uri: str, engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    forged = Authenticator(USERS, key=b"another key, same claims........").issue(Identity("alice", ("admin",)))
    message = refusal(uri, **bearer(forged))
    assert "UNAUTHENTICATED" in message
    assert "[Meshgate] invalid session token: connect again with a user name and password" in message
    assert "token refused: Signature verification failed (claims user 'alice')" in caplog.text
    assert engine.callers == []
    genuine = Authenticator(USERS, key=KEY).issue(Identity("alice"))
    assert run(uri, **bearer(genuine)).num_rows == 1  # the same header with a token signed by the gateway's key


def test_a_password_on_a_call_other_than_the_handshake_is_refused(uri: str, engine: RecordingEngine) -> None:
    basic = base64.b64encode(f"{ALICE.user}:{ALICE.password}".encode()).decode()
    message = refusal(uri, **{DatabaseOptions.AUTHORIZATION_HEADER.value: f"Basic {basic}"})
    assert "UNAUTHENTICATED" in message and "send the user name and password with the Flight handshake" in message
    assert engine.callers == []


@pytest.mark.parametrize(
    "call",
    [
        "list_actions",
        "list_flights",
        "get_flight_info",
        "get_schema",
        "do_get",
        "do_action",
        "do_put",
    ],
)
def test_every_rpc_but_the_handshake_needs_a_token(uri: str, engine: RecordingEngine, call: str) -> None:
    command = flight.FlightDescriptor.for_command(commands.pack(pb.CommandStatementQuery(query=SQL)))
    ticket = flight.Ticket(commands.pack(pb.TicketStatementQuery(statement_handle=b"x")))
    action = flight.Action("CreatePreparedStatement", commands.pack(pb.ActionCreatePreparedStatementRequest(query=SQL)))
    calls = {
        "list_actions": lambda c: list(c.list_actions()),
        "list_flights": lambda c: list(c.list_flights()),
        "get_flight_info": lambda c: c.get_flight_info(command),
        "get_schema": lambda c: c.get_schema(command),
        "do_get": lambda c: c.do_get(ticket).read_all(),
        "do_action": lambda c: list(c.do_action(action)),
        "do_put": lambda c: c.do_put(command, pa.schema([("a", pa.int64())]))[0].close(),
    }
    # pyarrow's client turns GetSchema's UNAUTHENTICATED into a plain OSError; the message is the same.
    refused = (
        (flight.FlightUnauthenticatedError, OSError) if call == "get_schema" else flight.FlightUnauthenticatedError
    )
    with flight.connect(uri) as client, pytest.raises(refused, match=r"authentication required.*Unauthenticated"):
        calls[call](client)
    assert engine.callers == []
