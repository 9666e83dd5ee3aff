"""One error hierarchy for the whole gateway.

Every failure that can reach a client is a :class:`MeshgateError`. Its message names
what went wrong and where (file and field, SQL position, domain and source), and
:func:`to_flight_error` maps each kind to a Flight status exactly once.
"""

from __future__ import annotations

from typing import cast

import pyarrow.flight as flight


class MeshgateError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(MeshgateError):
    """A mesh configuration is invalid (names the file, domain and field)."""


class PlanningError(MeshgateError):
    """The SQL cannot be parsed or planned (names the position or the object)."""


class NotFoundError(PlanningError):
    """A catalog, domain or data product does not exist."""


class ContractError(PlanningError):
    """A data product is blocked: its source no longer matches its declared contract."""


class NotSupportedError(MeshgateError):
    """The request is valid but the gateway or a source cannot do it."""


class SourceError(MeshgateError):
    """A source rejected a query or failed while it ran (names domain and source)."""

    def __init__(self, domain: str, source: str, message: str) -> None:
        super().__init__(f"[{domain}/{source}] {message}")
        self.domain = domain
        self.source = source


class SourceUnavailableError(SourceError):
    """A source cannot be reached at all."""


class QueryCancelledError(MeshgateError):
    """The query was cancelled by the client or timed out."""


class QueryTimeoutError(QueryCancelledError):
    """The query ran longer than its statement timeout and was cancelled."""


class AuthenticationError(MeshgateError):
    """The caller could not be authenticated."""


class PermissionDeniedError(MeshgateError):
    """The caller is authenticated but may not do this."""


def to_flight_error(error: BaseException) -> Exception:
    """Map any exception to the exception a pyarrow.flight handler should raise.

    pyarrow sends ``flight.FlightError`` subclasses with their message intact but
    appends the server's Python traceback to any other exception (proto/README.md).
    SQL and configuration errors therefore go out as ``FlightServerError`` (UNKNOWN)
    with a clean message. ``NotSupportedError`` stays ``NotImplementedError``
    (UNIMPLEMENTED, traceback included) because clients act on that code: the ADBC
    driver falls back to unprepared statements. Unexpected exceptions become INTERNAL
    errors that still carry their message, so a client always learns what happened and
    the server keeps serving.
    """
    message = str(error) or type(error).__name__
    if isinstance(error, flight.FlightError):
        return cast(Exception, error)
    if isinstance(error, AuthenticationError):
        return flight.FlightUnauthenticatedError(message)
    if isinstance(error, PermissionDeniedError):
        return flight.FlightUnauthorizedError(message)
    if isinstance(error, SourceUnavailableError):
        return flight.FlightUnavailableError(message)
    if isinstance(error, QueryTimeoutError):
        return flight.FlightTimedOutError(message)
    if isinstance(error, QueryCancelledError):
        return flight.FlightCancelledError(message)
    if isinstance(error, NotSupportedError):
        return NotImplementedError(message)
    if isinstance(error, (PlanningError, ConfigError, SourceError)):
        return flight.FlightServerError(message)
    return flight.FlightInternalError(f"internal error: {type(error).__name__}: {message}")
