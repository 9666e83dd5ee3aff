"""Error handling for RPC handlers: every failure leaves through ``to_flight_error`` once.

What the client then sees is pyarrow's rendering of that exception: ``flight.FlightError``
subclasses arrive with their message (plus ``. Detail: <code>``), any other exception
would arrive with the whole Python traceback appended (see ``proto/README.md``), so
nothing else may leave a handler. That includes ``BaseException`` subclasses that are
not exits: a Rust panic inside DataFusion reaches Python as ``pyo3_runtime.PanicException``.
An unexpected failure is logged here with its traceback and a reference; the client gets
the reference only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from gateway.errors import EXITS, MeshgateError, NotSupportedError, internal_reference, to_flight_error

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def client_error(error: BaseException) -> Exception:
    """Log ``error`` and map it with ``to_flight_error`` (the single mapping point)."""
    if isinstance(error, NotSupportedError):  # clients probe optional features routinely
        log.debug("request not supported: %s", error)
    elif getattr(error, "quiet", False):  # routine for clients (CloseSession without a session, at disconnect)
        log.debug("request failed: %s", error)
    elif isinstance(error, (MeshgateError, flight.FlightError)):
        log.info("request failed: %s", error)
    else:
        reference = internal_reference(error)
        log.error("unexpected error while serving a request (reference %s)", reference, exc_info=error)
    return to_flight_error(error)


def rpc(handler: Callable[P, R]) -> Callable[P, R]:
    """Wrap an RPC handler so that every exception leaves through :func:`client_error`."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        except EXITS:
            raise
        except BaseException as error:
            raise client_error(error) from None

    return wrapper


def guarded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The result-stream counterpart of :func:`rpc`: failures while streaming are mapped too."""
    try:
        yield from batches
    except EXITS:
        raise
    except BaseException as error:
        raise client_error(error) from None
