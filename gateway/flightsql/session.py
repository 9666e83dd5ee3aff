"""Flight sessions: per-client options carried by the ``arrow_flight_session_id`` cookie.

A client sets options with the ``SetSessionOptions`` action (the JDBC driver sets the
catalog that way; ADBC's ``adbc.connection.db_schema`` and ``adbc.flight.sql.session.option.*``
connection options too, with ``adbc.flight.sql.rpc.with_cookie_middleware=true``). The
first such call creates the session and answers it in a ``set-cookie`` header; the client
sends the cookie back on every later call. :class:`SessionMiddlewareFactory` reads it
before any handler runs; the server turns the session's options into the call's
:class:`~gateway.api.CallerContext` (``default_catalog``/``default_schema``, so that
``SELECT * FROM customers`` reads ``sales.customers`` after ``schema=sales``) and its
statement timeout. ``CloseSession`` forgets the session and expires the cookie.

Options (anything else is answered INVALID_NAME, a wrong value INVALID_VALUE):

- ``catalog``: the mesh catalog's name (there is only one).
- ``schema``: a domain, where unqualified product names resolve.
- ``statement_timeout``: seconds (a number, or a string holding one); 0 turns the
  server's default off for this session, as PostgreSQL's ``statement_timeout`` does.

A valueless option erases it. Sessions live in a bounded, expiring store: one unused for
``ttl`` seconds is dropped, and a session belongs to the user who created it.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow.flight as flight

from gateway.api import CallerContext, QueryEngine
from gateway.errors import NotFoundError
from gateway.flightsql import flight_pb2 as fpb
from gateway.flightsql import thread_state
from gateway.flightsql.handles import HandleRegistry

log = logging.getLogger(__name__)

SESSION_MIDDLEWARE = "meshgate.session"
SESSION_COOKIE = "arrow_flight_session_id"

CATALOG = "catalog"
SCHEMA = "schema"
STATEMENT_TIMEOUT = "statement_timeout"
OPTIONS = (CATALOG, SCHEMA, STATEMENT_TIMEOUT)
# The most a SqlInfo int32 of milliseconds can report.
MAX_TIMEOUT_SECONDS = (2**31 - 1) / 1000

_INVALID_NAME = fpb.SetSessionOptionsResult.INVALID_NAME
_INVALID_VALUE = fpb.SetSessionOptionsResult.INVALID_VALUE


class NoSessionError(NotFoundError):
    """``CloseSession`` on a call without a session.

    The ADBC driver sends one at every disconnect, so it is routine: logged at DEBUG (``quiet``).
    """

    quiet = True


class SessionMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    """Per-call state: the session cookie the call carried, if any."""

    def __init__(self, session_id: str | None) -> None:
        super().__init__()
        self.session_id = session_id

    def call_completed(self, exception: Any) -> None:
        thread_state.completed()


class SessionMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Reads the session cookie of every call."""

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> SessionMiddleware:
        return thread_state.started(lambda: SessionMiddleware(cookie(headers, SESSION_COOKIE)))


def cookie(headers: dict[str, list[Any]], name: str) -> str | None:
    """The value of cookie ``name`` in the ``cookie`` request headers (the last one wins).

    >>> cookie({"cookie": ["a=1; arrow_flight_session_id=abc"]}, "arrow_flight_session_id")
    'abc'
    """
    found = None
    for line in headers.get("cookie", []):
        text = line.decode("latin-1") if isinstance(line, bytes) else str(line)
        for part in text.split(";"):
            key, equals, value = part.strip().partition("=")
            if equals and key.strip() == name:
                value = value.strip()
                found = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
    return found


@dataclass
class Session:
    """One client's session: who owns it and the options it set."""

    user: str | None
    options: dict[str, str | float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, str | float]:
        with self.lock:
            return dict(self.options)


class Sessions:
    """The sessions of one server: a bounded, expiring store, and the session actions.

    Args:
        engine: validates ``catalog`` and ``schema`` values (the caller's view of the mesh).
        statement_timeout: the server's default, reported when a session sets none.
        ttl: seconds an unused session lives.
        maxsize: most sessions held (the least recently used is dropped beyond it).
    """

    def __init__(self, engine: QueryEngine, *, statement_timeout: float | None, ttl: float, maxsize: int) -> None:
        self._engine = engine
        self.default_timeout = statement_timeout
        self._store: HandleRegistry[Session] = HandleRegistry(
            "session", maxsize=maxsize, ttl=ttl, owner=lambda session: session.user
        )

    def __len__(self) -> int:
        return len(self._store)

    # -- the session of a call -----------------------------------------------------------

    def current(self, context: Any, caller: CallerContext) -> tuple[str, Session] | None:
        """The call's session (id and state), None without a cookie.

        A cookie naming no live session of this caller (expired, closed, another user's, or
        from before a restart) is an error, not silently ignored: the options the client
        relies on are gone. The answer expires the cookie, so the next call starts afresh.
        """
        session_id, session = self._lookup(context, caller)
        if session_id is None:
            return None
        if session is None:
            _expire_cookie(context)
            raise NotFoundError(
                f"[Meshgate] unknown or expired session ({SESSION_COOKIE}): its options are gone;"
                " set them again (the next call starts without a session)"
            )
        return session_id, session

    def caller(self, context: Any, caller: CallerContext) -> CallerContext:
        """``caller`` with the default catalog and schema of the call's session."""
        current = self.current(context, caller)
        if current is None:
            return caller
        options = current[1].snapshot()
        catalog, schema = options.get(CATALOG), options.get(SCHEMA)
        return replace(
            caller,
            default_catalog=catalog if isinstance(catalog, str) else caller.default_catalog,
            default_schema=schema if isinstance(schema, str) else caller.default_schema,
        )

    def statement_timeout(self, context: Any, caller: CallerContext) -> float | None:
        """Seconds a statement of this call may run: the session's, else the server's (None: no limit)."""
        current = self.current(context, caller)
        if current is not None:
            value = current[1].snapshot().get(STATEMENT_TIMEOUT)
            if isinstance(value, float):
                return value or None
        return self.default_timeout

    # -- actions ---------------------------------------------------------------------------

    def set_options(
        self, context: Any, caller: CallerContext, request: fpb.SetSessionOptionsRequest
    ) -> fpb.SetSessionOptionsResult:
        """Validate and set each option; the result names those that were not set and why."""
        result = fpb.SetSessionOptionsResult()
        accepted: dict[str, str | float | None] = {}
        for name, value in request.session_options.items():
            error, parsed = self._parse(name, value, caller)
            if error is not None:
                result.errors[name].value = error
            else:
                accepted[name] = parsed
        _session_id, found = self._lookup(context, caller)
        if found is not None:
            session = found
        elif not accepted:
            return result  # nothing to keep: no session is created
        else:  # no cookie, or a dead one: this call starts a new session (its cookie replaces the old)
            session = Session(caller.user)
            context.add_header("set-cookie", f"{SESSION_COOKIE}={self._store.add(session).hex()}")
            log.info("session created for %s", caller.user or "an anonymous caller")
        with session.lock:
            for name, parsed in accepted.items():
                if parsed is None:
                    session.options.pop(name, None)
                else:
                    session.options[name] = parsed
        return result

    def get_options(self, context: Any, caller: CallerContext) -> fpb.GetSessionOptionsResult:
        """The options in force: the session's, over the catalog and the server's timeout.

        A call without a session gets the defaults (no session is created).
        """
        current = self.current(context, caller)
        options: dict[str, str | float] = {CATALOG: self._engine.catalog_name}
        if self.default_timeout is not None:
            options[STATEMENT_TIMEOUT] = self.default_timeout
        if current is not None:
            options.update(current[1].snapshot())
        result = fpb.GetSessionOptionsResult()
        for name, value in options.items():
            if isinstance(value, str):
                result.session_options[name].string_value = value
            else:
                result.session_options[name].double_value = value
        return result

    def close(self, context: Any, caller: CallerContext) -> tuple[str, fpb.CloseSessionResult]:
        """Forget the call's session and expire its cookie; returns the id that was closed."""
        current = self.current(context, caller)
        if current is None:
            raise NoSessionError(f"[Meshgate] no session to close: the call carries no {SESSION_COOKIE} cookie")
        session_id, _session = current
        self._store.discard(bytes.fromhex(session_id))
        _expire_cookie(context)
        log.info("session closed for %s", caller.user or "an anonymous caller")
        return session_id, fpb.CloseSessionResult(status=fpb.CloseSessionResult.CLOSED)

    # -- internals -------------------------------------------------------------------------

    def _lookup(self, context: Any, caller: CallerContext) -> tuple[str | None, Session | None]:
        """(the call's session cookie, its live session of this caller or None)."""
        session_id = _session_id(context)
        if session_id is None:
            return None, None
        try:
            session = self._store.get(bytes.fromhex(session_id))
        except (ValueError, NotFoundError):
            return session_id, None
        return session_id, session if session.user == caller.user else None

    def _parse(
        self, name: str, value: fpb.SessionOptionValue, caller: CallerContext
    ) -> tuple[fpb.SetSessionOptionsResult.ErrorValue | None, Any]:
        """(error, parsed value); a valueless option parses to None (erase it)."""
        if name not in OPTIONS:
            return _INVALID_NAME, None
        kind = value.WhichOneof("option_value")
        if kind is None:
            return None, None
        if name == STATEMENT_TIMEOUT:
            seconds = _seconds(value, kind)
            return (None, seconds) if seconds is not None else (_INVALID_VALUE, None)
        if kind != "string_value":
            return _INVALID_VALUE, None
        text = value.string_value
        if name == CATALOG:
            return (None, text) if text == self._engine.catalog_name else (_INVALID_VALUE, None)
        domains = {domain.name for domain in self._engine.domains(caller)}
        return (None, text) if text in domains else (_INVALID_VALUE, None)


def _seconds(value: fpb.SessionOptionValue, kind: str) -> float | None:
    """A timeout in seconds from an int64, double or numeric string value; None if invalid."""
    raw: Any
    if kind == "int64_value":
        raw = value.int64_value
    elif kind == "double_value":
        raw = value.double_value
    elif kind == "string_value":
        raw = value.string_value
    else:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_TIMEOUT_SECONDS else None


def _session_id(context: Any) -> str | None:
    middleware = context.get_middleware(SESSION_MIDDLEWARE)
    return middleware.session_id if isinstance(middleware, SessionMiddleware) else None


def _expire_cookie(context: Any) -> None:
    context.add_header("set-cookie", f"{SESSION_COOKIE}=; Max-Age=0")
