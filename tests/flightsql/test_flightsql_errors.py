"""What clients see of server errors, and why the mapping is what it is.

pyarrow turns any non-Flight exception raised by a handler into a status whose message
ends with ". Detail: Python exception: Traceback ..." (the whole server-side traceback,
file paths included). Only ``flight.FlightError`` subclasses travel without it, and they
exist for a fixed set of codes: INTERNAL, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN (server
error), UNAUTHENTICATED, PERMISSION_DENIED and UNAVAILABLE. There is no clean way to send
INVALID_ARGUMENT or UNIMPLEMENTED from Python. The first tests pin that pyarrow behaviour
(if it changes, the mapping in gateway.errors can be revisited).
"""

from __future__ import annotations

from collections.abc import Iterator

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from gateway.errors import PlanningError, to_flight_error

MESSAGE = "Error during planning: table 'mesh.sales.nope' not found [sales/postgres]"


class Raising(flight.FlightServerBase):
    """A bare Flight server whose GetFlightInfo raises what the descriptor names."""

    errors = {
        "ArrowInvalid": pa.ArrowInvalid(MESSAGE),
        "NotImplementedError": NotImplementedError(MESSAGE),
        "FlightServerError": flight.FlightServerError(MESSAGE),
        "FlightError": flight.FlightError(MESSAGE),
    }

    def get_flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> None:
        raise self.errors[descriptor.command.decode()]


@pytest.fixture(scope="module")
def raising() -> Iterator[flight.FlightClient]:
    server = Raising("grpc://127.0.0.1:0")
    with flight.connect(f"grpc://127.0.0.1:{server.port}") as client:
        yield client
    server.shutdown()


def message_for(client: flight.FlightClient, kind: str) -> tuple[type[BaseException], str]:
    with pytest.raises(pa.ArrowException) as failure:
        client.get_flight_info(flight.FlightDescriptor.for_command(kind.encode()))
    return type(failure.value), str(failure.value)


def test_pyarrow_appends_the_python_traceback_to_non_flight_errors(raising: flight.FlightClient) -> None:
    for kind, client_type in (("ArrowInvalid", pa.ArrowInvalid), ("NotImplementedError", pa.ArrowNotImplementedError)):
        seen_type, message = message_for(raising, kind)
        assert seen_type is client_type
        assert message.startswith(MESSAGE + ". Detail: Python exception: Traceback (most recent call last):")


def test_flight_errors_travel_without_a_traceback(raising: flight.FlightClient) -> None:
    assert message_for(raising, "FlightServerError") == (flight.FlightServerError, MESSAGE + ". Detail: Failed")
    assert message_for(raising, "FlightError") == (flight.FlightServerError, "Flight error: " + MESSAGE)


# The Flight SQL server raises exactly what gateway.errors.to_flight_error returns.
CLEAN_PLANNING_ERRORS = isinstance(to_flight_error(PlanningError(MESSAGE)), flight.FlightError)


@pytest.mark.xfail(
    not CLEAN_PLANNING_ERRORS,
    strict=True,
    reason="to_flight_error maps PlanningError to pa.ArrowInvalid, which pyarrow sends with the "
    "server traceback appended; the proposed change maps it to flight.FlightServerError",
)
def test_bad_sql_reaches_the_adbc_client_without_a_traceback(uri: str) -> None:
    with flightsql_dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error) as failure:
            cursor.execute("SELECT * FROM sales.orders WHERE")
        message = str(failure.value)
        assert "Expected: an expression" in message
        assert "Traceback" not in message and "Python exception" not in message
