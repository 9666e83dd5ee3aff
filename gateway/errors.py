"""The error hierarchy (``meshcore/errors.py``), mapped to Flight statuses once.

Every failure that can reach a client is a :class:`MeshgateError`. Its message names
what went wrong and where (file and field, SQL position, domain and source), and
:func:`to_flight_error` maps each kind to a Flight status exactly once.

What a client sees of an exception raised in a ``pyarrow.flight`` handler (pyarrow 26,
measured; the table is in ``proto/README.md``, the tests in
``tests/flightsql/test_flightsql_errors.py``): only ``flight.FlightError`` subclasses
travel clean (``message. Detail: <code name>``), and only for INTERNAL, UNKNOWN
(``FlightServerError``), UNAVAILABLE, PERMISSION_DENIED, UNAUTHENTICATED, CANCELLED and
DEADLINE_EXCEEDED. Any other exception (``ValueError``/``pa.ArrowInvalid`` for
INVALID_ARGUMENT, ``NotImplementedError`` for UNIMPLEMENTED, ``KeyError`` for NOT_FOUND)
is sent with the server's formatted Python traceback appended to its message, file paths
and exception class names included, and neither ``extra_info``, an ``ArrowException`` or
``FlightError`` subclass, nor a cleared ``__traceback__`` avoids that. So nothing but
Flight errors leaves the gateway, and requests that would deserve INVALID_ARGUMENT or
UNIMPLEMENTED (bad SQL, read-only refusals, unsupported or malformed protocol requests,
bad parameters) get UNKNOWN with their message intact.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import cast

import pyarrow.flight as flight

from meshcore.errors import (
    AuthenticationError as AuthenticationError,
)
from meshcore.errors import (
    ConfigError as ConfigError,
)
from meshcore.errors import (
    ContractError as ContractError,
)
from meshcore.errors import (
    GatewayBusyError as GatewayBusyError,
)
from meshcore.errors import (
    InvalidRequestError as InvalidRequestError,
)
from meshcore.errors import (  # the hierarchy lives below gateway and connectors
    MeshgateError as MeshgateError,
)
from meshcore.errors import (
    NotFoundError as NotFoundError,
)
from meshcore.errors import (
    NotSupportedError as NotSupportedError,
)
from meshcore.errors import (
    PermissionDeniedError as PermissionDeniedError,
)
from meshcore.errors import (
    PlanningError as PlanningError,
)
from meshcore.errors import (
    QueryCancelledError as QueryCancelledError,
)
from meshcore.errors import (
    QueryTimeoutError as QueryTimeoutError,
)
from meshcore.errors import (
    ResourceLimitError as ResourceLimitError,
)
from meshcore.errors import (
    SourceError as SourceError,
)
from meshcore.errors import (
    SourceUnavailableError as SourceUnavailableError,
)

EXITS = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""Exceptions that end a thread or generator rather than report a failure: never mapped."""

_REFERENCE = "meshgate_reference"


def internal_reference(error: BaseException) -> str:
    """A short id for an unexpected ``error``: made once, then kept on the exception.

    The server logs the traceback with it, and the client and the audit log get
    :func:`internal_message`, so a report can be matched to the log line.
    """
    reference = getattr(error, _REFERENCE, None)
    if not isinstance(reference, str):
        reference = uuid.uuid4().hex[:12]
        with contextlib.suppress(AttributeError):  # an exception type without a __dict__
            setattr(error, _REFERENCE, reference)
    return reference


def internal_message(error: BaseException) -> str:
    """What a client is told of an unexpected error: nothing of the Python exception itself.

    >>> class Boom(Exception): ...
    >>> error = Boom("secret detail")
    >>> internal_message(error) == f"internal error (reference {internal_reference(error)})"
    True
    """
    return f"internal error (reference {internal_reference(error)})"


MAX_MESSAGE_BYTES = 8192
"""A status message travels in gRPC metadata (16 KiB at most), where every byte that is not printable
ASCII is percent-encoded (3 characters): messages that quote client text are cut to this size as sent."""


def bounded(message: str) -> str:
    """``message``, cut to :data:`MAX_MESSAGE_BYTES` as gRPC sends it, with a note of what was left out.

    >>> bounded("x" * 9000)[-40:]
    'xxxxxxxxxxx... (808 more characters cut)'
    >>> len(bounded("é" * 3000))
    1395
    """
    sent = 0
    for position, char in enumerate(message):
        sent += 1 if " " <= char <= "~" else 3 * len(char.encode("utf-8", "surrogatepass"))
        if sent > MAX_MESSAGE_BYTES:
            return f"{message[:position]}... ({len(message) - position} more characters cut)"
    return message


def to_flight_error(error: BaseException) -> Exception:
    """Map any exception to the ``flight.FlightError`` a pyarrow.flight handler should raise.

    Only Flight errors reach a client without the server's traceback (see the module
    docstring), so every kind maps to one: SQL, configuration, source, read-only and
    protocol errors to ``FlightServerError`` (UNKNOWN) with their message kept; the
    errors with a Flight code of their own to it (UNAUTHENTICATED, PERMISSION_DENIED,
    UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED). Clients that act on UNIMPLEMENTED still
    work: the ADBC driver falls back from a prepared to a plain statement only when
    CreatePreparedStatement answers UNIMPLEMENTED, and the gateway prepares every query
    it can run, so a refusal reaches the client from the prepare step instead.
    Anything unexpected becomes INTERNAL with :func:`internal_message` only: the class
    and message of the Python exception stay in the server's log, under the same reference.
    """
    if isinstance(error, flight.FlightError):
        return cast(Exception, error)
    if not isinstance(error, MeshgateError):
        return flight.FlightInternalError(internal_message(error))
    message = bounded(str(error) or "the request failed")
    if isinstance(error, AuthenticationError):
        return flight.FlightUnauthenticatedError(message)
    if isinstance(error, PermissionDeniedError):
        return flight.FlightUnauthorizedError(message)
    if isinstance(error, (SourceUnavailableError, GatewayBusyError)):
        return flight.FlightUnavailableError(message)
    if isinstance(error, QueryTimeoutError):
        return flight.FlightTimedOutError(message)
    if isinstance(error, QueryCancelledError):
        return flight.FlightCancelledError(message)
    return flight.FlightServerError(message)
