"""Who is calling: authentication of every call, and the CallerContext handlers pass on.

Authentication is header-based, as the Flight SQL drivers (ADBC, JDBC, ODBC) expect:

- ``Handshake`` carries ``authorization: Basic <base64 user:password>``; the password is
  checked (:meth:`gateway.auth.Authenticator.login`) and the answer's headers carry
  ``authorization: Bearer <token>``, which the drivers keep and send on every later call.
- Every other call must carry a valid ``authorization: Bearer <token>``. Passwords are
  accepted on the handshake only, so that each call does not pay for (or allow guessing
  through) the slow password hash.

:meth:`CallerMiddlewareFactory.start_call` runs before any handler, so a refused call
never reaches the server's code: it ends with UNAUTHENTICATED (through
``gateway.errors.to_flight_error``) and a log line giving the reason. Without an
:class:`~gateway.auth.Authenticator` every call is let through anonymously (tests, and the
``--no-auth`` demo); the CLI decides when that is allowed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pyarrow.flight as flight

from gateway.api import CallerContext
from gateway.auth import MISSING_CREDENTIALS, Authenticator, Identity, parse_basic
from gateway.errors import AuthenticationError, to_flight_error
from gateway.flightsql import thread_state
from gateway.flightsql.rpc import client_error

log = logging.getLogger(__name__)

CALLER_MIDDLEWARE = "meshgate.caller"
AUTHORIZATION = "authorization"


class CallerMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    """Per-call state: the authenticated identity, and a token to send back after log-in."""

    def __init__(self, identity: Identity | None = None, token: str | None = None) -> None:
        super().__init__()
        self.identity = identity
        self._token = token
        self.trace_parent: str | None = None  # a valid W3C traceparent header of the call

    @property
    def user(self) -> str | None:
        return self.identity.user if self.identity is not None else None

    def sending_headers(self) -> dict[str, str]:
        return {AUTHORIZATION: f"Bearer {self._token}"} if self._token else {}

    def call_completed(self, exception: Any) -> None:
        thread_state.completed()


class CallerMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Authenticates each call (when given an authenticator) and creates its middleware."""

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        super().__init__()
        self.authenticator = authenticator

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> CallerMiddleware:
        return thread_state.started(lambda: self._start(info, headers))

    def _start(self, info: Any, headers: dict[str, list[Any]]) -> CallerMiddleware:
        middleware = self._identify(info, headers)
        middleware.trace_parent = trace_parent(headers)
        return middleware

    def _identify(self, info: Any, headers: dict[str, list[Any]]) -> CallerMiddleware:
        if self.authenticator is None:
            return CallerMiddleware()
        try:
            return self._authenticate(self.authenticator, info.method, headers)
        except AuthenticationError as error:
            raise to_flight_error(error) from None
        except Exception as error:  # anything else would reach the client with the server's traceback
            raise client_error(error) from None

    @staticmethod
    def _authenticate(
        authenticator: Authenticator, method: flight.FlightMethod, headers: dict[str, list[Any]]
    ) -> CallerMiddleware:
        values = headers.get(AUTHORIZATION) or []
        value = values[0] if values else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        scheme, _, credentials = value.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and credentials.strip():
            return CallerMiddleware(authenticator.verify(credentials.strip()))
        if scheme == "basic" and method == flight.FlightMethod.HANDSHAKE:
            # No peer: pyarrow (26) gives ServerMiddlewareFactory.start_call and the handshake's
            # ServerAuthHandler no call context, so the client's address is unknown here (only
            # handlers' ServerCallContext.peer() has it). Log-in events carry no address, and the
            # per-address limit of Authenticator.login does not apply to Flight log-ins.
            token, identity = authenticator.login(*parse_basic(credentials), peer=None)
            return CallerMiddleware(identity, token)
        if scheme == "basic":
            log.warning("call refused: %s with a password instead of a token", method.name)
            raise AuthenticationError(
                "[Meshgate] send the user name and password with the Flight handshake, then the bearer token it returns"
            )
        log.warning("call refused: %s without credentials", method.name)
        raise AuthenticationError(MISSING_CREDENTIALS)


class HeaderHandshake(flight.ServerAuthHandler):  # type: ignore[misc]
    """Lets ``Handshake`` succeed: the real check is :class:`CallerMiddlewareFactory`'s.

    Without an auth handler pyarrow answers ``Handshake`` with UNIMPLEMENTED, and the
    drivers give up before they read the bearer token from its headers.
    """

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> bytes:
        thread_state.hold()  # the first callback of every call but the handshake (thread_state.py)
        return b""


def caller_context(context: Any) -> CallerContext:
    """Build the CallerContext of a ``flight.ServerCallContext``.

    The user and their attributes (including ``groups``, comma-separated) come from the
    authenticated identity; without one, the user is the call's peer identity (set by a
    Flight auth handler) or ``None``. ``attributes["peer"]`` is always the client address.
    """
    middleware = context.get_middleware(CALLER_MIDDLEWARE)
    peer = str(context.peer())
    identity = middleware.identity if isinstance(middleware, CallerMiddleware) else None
    traced = middleware.trace_parent if isinstance(middleware, CallerMiddleware) else None
    if identity is not None:
        attributes = {**identity.caller_attributes(), "peer": peer}
        return CallerContext(user=identity.user, attributes=attributes, trace_parent=traced)
    raw = context.peer_identity()
    user = raw.decode("utf-8", errors="replace") if raw else None
    return CallerContext(user=user, attributes={"peer": peer}, trace_parent=traced)


_TRACE_PARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def trace_parent(headers: dict[str, list[Any]]) -> str | None:
    """The call's ``traceparent`` header if it is one (W3C Trace Context); anything else is ignored."""
    values = headers.get("traceparent") or []
    value = values[0] if len(values) == 1 else None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value if isinstance(value, str) and _TRACE_PARENT.fullmatch(value) and value[:2] != "ff" else None
