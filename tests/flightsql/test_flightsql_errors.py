"""What clients see of server errors, and why the mapping is what it is.

pyarrow (26) turns any non-Flight exception raised by a handler into a status whose message
ends with ". Detail: Python exception: Traceback ..." (the whole server-side traceback,
file paths and exception class names included). Only ``flight.FlightError`` subclasses
travel without it, and they exist for a fixed set of codes: INTERNAL, DEADLINE_EXCEEDED,
CANCELLED, UNKNOWN (server error), UNAUTHENTICATED, PERMISSION_DENIED and UNAVAILABLE.
There is no clean way to send INVALID_ARGUMENT or UNIMPLEMENTED from Python: not with a
``FlightError`` subclass that is also a ``NotImplementedError`` (it goes out as UNKNOWN),
not with ``extra_info``, not with an ``ArrowException`` subclass, not by clearing
``__traceback__``. The first tests pin that pyarrow behaviour, status code and message
text, through a raw gRPC client (if it changes, the mapping in gateway.errors can be
revisited); the last ones pin what the gateway's mapping sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import adbc_driver_manager
import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from gateway import errors
from gateway.errors import to_flight_error
from tests.support.errors import assert_clean

MESSAGE = "Error during planning: table 'mesh.sales.nope' not found [sales/postgres]"
TRACEBACK = ". Detail: Python exception: Traceback (most recent call last):"


class FlightNotImplemented(flight.FlightError, NotImplementedError):
    """A Flight error that is also a NotImplementedError: does it go out as UNIMPLEMENTED?"""


def _without_traceback() -> BaseException:
    error = NotImplementedError(MESSAGE)
    error.__traceback__ = None
    return error


ERRORS: dict[str, Callable[[], BaseException]] = {
    "ArrowInvalid": lambda: pa.ArrowInvalid(MESSAGE),
    "ValueError": lambda: ValueError(MESSAGE),
    "NotImplementedError": lambda: NotImplementedError(MESSAGE),
    "ArrowNotImplementedError": lambda: pa.ArrowNotImplementedError(MESSAGE),
    "NotImplementedError without __traceback__": _without_traceback,
    "KeyError": lambda: KeyError(MESSAGE),
    "RuntimeError": lambda: RuntimeError(MESSAGE),
    "FlightServerError": lambda: flight.FlightServerError(MESSAGE),
    "FlightServerError with extra_info": lambda: flight.FlightServerError(MESSAGE, b"INVALID_ARGUMENT"),
    "FlightError": lambda: flight.FlightError(MESSAGE),
    "FlightError and NotImplementedError": lambda: FlightNotImplemented(MESSAGE),
    "FlightInternalError": lambda: flight.FlightInternalError(MESSAGE),
    "FlightUnavailableError": lambda: flight.FlightUnavailableError(MESSAGE),
    "FlightUnauthorizedError": lambda: flight.FlightUnauthorizedError(MESSAGE),
    "FlightUnauthenticatedError": lambda: flight.FlightUnauthenticatedError(MESSAGE),
    "FlightTimedOutError": lambda: flight.FlightTimedOutError(MESSAGE),
    "FlightCancelledError": lambda: flight.FlightCancelledError(MESSAGE),
}


class Raising(flight.FlightServerBase):
    """A bare Flight server whose GetFlightInfo raises what the descriptor names."""

    def get_flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> None:
        raise ERRORS[descriptor.command.decode()]()


@pytest.fixture(scope="module")
def raising() -> Iterator[tuple[flight.FlightClient, grpc.Channel]]:
    server = Raising("grpc://127.0.0.1:0")
    with (
        flight.connect(f"grpc://127.0.0.1:{server.port}") as client,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield client, channel
    server.shutdown()


def message_for(client: flight.FlightClient, kind: str) -> tuple[type[BaseException], str]:
    with pytest.raises(pa.ArrowException) as failure:
        client.get_flight_info(flight.FlightDescriptor.for_command(kind.encode()))
    return type(failure.value), str(failure.value)


def status_for(channel: grpc.Channel, kind: str) -> tuple[grpc.StatusCode, str]:
    """The gRPC status as any client (the ADBC driver, in Go) receives it."""
    call = channel.unary_unary(
        "/arrow.flight.protocol.FlightService/GetFlightInfo",
        request_serializer=lambda body: body,
        response_deserializer=lambda body: body,
    )
    with pytest.raises(grpc.RpcError) as failure:
        call(flight.FlightDescriptor.for_command(kind.encode()).serialize(), timeout=10)
    return failure.value.code(), failure.value.details()


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("ArrowInvalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("ValueError", grpc.StatusCode.INVALID_ARGUMENT),
        ("NotImplementedError", grpc.StatusCode.UNIMPLEMENTED),
        ("ArrowNotImplementedError", grpc.StatusCode.UNIMPLEMENTED),
        ("NotImplementedError without __traceback__", grpc.StatusCode.UNIMPLEMENTED),
        ("KeyError", grpc.StatusCode.NOT_FOUND),
        ("RuntimeError", grpc.StatusCode.UNKNOWN),
    ],
)
def test_pyarrow_appends_the_python_traceback_to_non_flight_errors(
    raising: tuple[flight.FlightClient, grpc.Channel], kind: str, code: grpc.StatusCode
) -> None:
    seen_code, details = status_for(raising[1], kind)
    assert seen_code == code
    assert TRACEBACK in details and 'File "' in details and ".py" in details
    assert f"{type(ERRORS[kind]()).__name__}: " in details  # the exception's class, by name


def test_the_pyarrow_client_sees_the_traceback_too(raising: tuple[flight.FlightClient, grpc.Channel]) -> None:
    for kind, client_type in (("ArrowInvalid", pa.ArrowInvalid), ("NotImplementedError", pa.ArrowNotImplementedError)):
        seen_type, message = message_for(raising[0], kind)
        assert seen_type is client_type
        assert message.startswith(MESSAGE + TRACEBACK)


@pytest.mark.parametrize(
    ("kind", "code", "details"),
    [
        ("FlightServerError", grpc.StatusCode.UNKNOWN, MESSAGE + ". Detail: Failed"),
        ("FlightServerError with extra_info", grpc.StatusCode.UNKNOWN, MESSAGE + ". Detail: Failed"),
        ("FlightError", grpc.StatusCode.UNKNOWN, "Flight error: " + MESSAGE),
        ("FlightError and NotImplementedError", grpc.StatusCode.UNKNOWN, "Flight error: " + MESSAGE),
        ("FlightInternalError", grpc.StatusCode.INTERNAL, MESSAGE + ". Detail: Internal"),
        ("FlightUnavailableError", grpc.StatusCode.UNAVAILABLE, MESSAGE + ". Detail: Unavailable"),
        ("FlightUnauthorizedError", grpc.StatusCode.PERMISSION_DENIED, MESSAGE + ". Detail: Unauthorized"),
        ("FlightUnauthenticatedError", grpc.StatusCode.UNAUTHENTICATED, MESSAGE + ". Detail: Unauthenticated"),
        ("FlightTimedOutError", grpc.StatusCode.DEADLINE_EXCEEDED, MESSAGE + ". Detail: TimedOut"),
        ("FlightCancelledError", grpc.StatusCode.CANCELLED, MESSAGE + ". Detail: Cancelled"),
    ],
)
def test_flight_errors_travel_without_a_traceback_for_a_fixed_set_of_codes(
    raising: tuple[flight.FlightClient, grpc.Channel], kind: str, code: grpc.StatusCode, details: str
) -> None:
    assert status_for(raising[1], kind) == (code, details)


def test_the_pyarrow_client_sees_flight_errors_as_sent(raising: tuple[flight.FlightClient, grpc.Channel]) -> None:
    client = raising[0]
    assert message_for(client, "FlightServerError") == (flight.FlightServerError, MESSAGE + ". Detail: Failed")
    assert message_for(client, "FlightError") == (flight.FlightServerError, "Flight error: " + MESSAGE)


# The Flight SQL server raises exactly what gateway.errors.to_flight_error returns.
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.PlanningError(MESSAGE), flight.FlightServerError),
        (errors.NotFoundError(MESSAGE), flight.FlightServerError),
        (errors.ConfigError(MESSAGE), flight.FlightServerError),
        (errors.SourceError("sales", "postgres", MESSAGE), flight.FlightServerError),
        (errors.NotSupportedError(MESSAGE), flight.FlightServerError),
        (errors.InvalidRequestError(MESSAGE), flight.FlightServerError),
        (errors.SourceUnavailableError("sales", "postgres", MESSAGE), flight.FlightUnavailableError),
        (errors.PermissionDeniedError(MESSAGE), flight.FlightUnauthorizedError),
        (errors.AuthenticationError(MESSAGE), flight.FlightUnauthenticatedError),
        (errors.QueryTimeoutError(MESSAGE), flight.FlightTimedOutError),
        (errors.QueryCancelledError(MESSAGE), flight.FlightCancelledError),
    ],
)
def test_every_gateway_error_maps_to_a_flight_error_with_its_message(
    error: errors.MeshgateError, expected: type[flight.FlightError]
) -> None:
    mapped = to_flight_error(error)
    assert type(mapped) is expected
    assert str(mapped).endswith(MESSAGE)


@pytest.mark.parametrize(
    "error", [RuntimeError("secret detail"), RecursionError("maximum recursion depth"), KeyError("x"), ValueError("")]
)
def test_an_unexpected_error_maps_to_internal_with_a_reference_only(error: BaseException) -> None:
    mapped = to_flight_error(error)
    assert type(mapped) is flight.FlightInternalError
    reference = errors.internal_reference(error)
    assert str(mapped) == f"internal error (reference {reference})"
    assert errors.internal_reference(error) == reference  # the same for the log line and the audit log
    assert_clean(str(mapped))


def test_bad_sql_reaches_the_adbc_client_without_a_traceback(uri: str) -> None:
    with flightsql_dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.OperationalError) as failure:
            cursor.execute("SELECT * FROM sales.orders WHERE")
        message = str(failure.value)
        assert message.startswith("UNKNOWN: ") and "Expected: an expression" in message
        assert_clean(message)
