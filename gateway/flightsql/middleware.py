"""Who is calling: the per-call identity the server turns into a CallerContext.

Authentication is not implemented yet. When it is, it plugs in here:
:meth:`CallerMiddlewareFactory.start_call` sees the request headers (``authorization``,
cookies) before any handler runs, validates them, and either records the user on the
:class:`CallerMiddleware` or rejects the call with ``flight.FlightUnauthenticatedError``.
"""

from __future__ import annotations

from typing import Any

import pyarrow.flight as flight

from gateway.api import CallerContext

CALLER_MIDDLEWARE = "meshgate.caller"


class CallerMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    """Per-call state: the authenticated user, once authentication exists."""

    def __init__(self, user: str | None = None) -> None:
        super().__init__()
        self.user = user


class CallerMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Creates the :class:`CallerMiddleware` of each call (no authentication yet)."""

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> CallerMiddleware:
        return CallerMiddleware()


def caller_context(context: Any) -> CallerContext:
    """Build the CallerContext of a ``flight.ServerCallContext``.

    The user comes from the caller middleware when authentication set one, else from the
    call's peer identity (set by a Flight auth handler), else ``None``.
    """
    middleware = context.get_middleware(CALLER_MIDDLEWARE)
    user = middleware.user if isinstance(middleware, CallerMiddleware) else None
    if user is None:
        identity = context.peer_identity()
        user = identity.decode("utf-8", errors="replace") if identity else None
    return CallerContext(user=user, attributes={"peer": str(context.peer())})
