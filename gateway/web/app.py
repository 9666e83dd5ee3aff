"""The web app: one Starlette application assembled from the route lists of its modules.

Each concern is a module with a ``routes(state) -> list[BaseRoute]`` function; :data:`ROUTES`
lists them in order. Adding an endpoint from another module is one line in that tuple.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from gateway.errors import MeshgateError
from gateway.web import admin, catalog, health, metrics, pages, session

if TYPE_CHECKING:
    from gateway.auth import Authenticator
    from gateway.engine import Engine
    from gateway.telemetry.metrics import Metrics

SESSION_COOKIE = "meshgate_session"
MAX_SESSIONS = 10_000
"""Signed-in browser sessions kept at once; beyond it the oldest is signed out."""

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self';"
        b" form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

HSTS: tuple[bytes, bytes] = (b"strict-transport-security", b"max-age=31536000")
"""Sent over HTTPS only: browsers then refuse plain HTTP (and certificate errors) for this host for a year."""


@dataclass
class WebState:
    """What every route module may use: the engine, the authenticator, and where Flight SQL is served.

    ``authenticator`` is None only for ``serve --demo --no-auth``: then every page is seen as
    the anonymous caller, as Flight SQL clients see the mesh then.
    """

    engine: Engine
    authenticator: Authenticator | None
    flight_uri: str
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    session_max_age: int = 8 * 3600
    metrics: Metrics | None = None  # /metrics (gateway/web/metrics.py): served with a token only
    metrics_token: str | None = None
    https: bool = False  # served over TLS: the cookie is Secure and HSTS is sent

    @cached_property
    def sessions(self) -> session.Sessions:
        """Signed-in sessions, forgotten at sign-out or after the token's lifetime."""
        ttl = self.authenticator.token_ttl_seconds if self.authenticator is not None else self.session_max_age
        return session.Sessions(ttl, MAX_SESSIONS)

    @cached_property
    def probe(self) -> health.DomainProbe:
        """Whether each domain's source answers now (``/readyz`` and the admin's source health)."""
        return health.DomainProbe(self.engine)


RouteModule = Callable[[WebState], Sequence[BaseRoute]]

ROUTES: tuple[RouteModule, ...] = (
    health.routes,
    metrics.routes,
    session.routes,
    catalog.routes,
    admin.routes,
    pages.routes,
)
"""The route modules, in order (first match wins)."""


def create_app(state: WebState, modules: Sequence[RouteModule] = ROUTES) -> Starlette:
    """The ASGI app: every module's routes, signed session cookies, security headers on every answer."""
    routes = [route for module in modules for route in module(state)]
    middleware = [
        Middleware(SecurityHeaders, headers=(*SECURITY_HEADERS, HSTS) if state.https else SECURITY_HEADERS),
        Middleware(
            SessionMiddleware,
            secret_key=state.session_secret,  # per process: a restart signs everyone out
            session_cookie=SESSION_COOKIE,
            max_age=min(state.session_max_age, state.authenticator.token_ttl_seconds)
            if state.authenticator is not None
            else state.session_max_age,
            same_site="strict",
            https_only=state.https,  # Secure: the browser never sends the cookie over plain HTTP
        ),
    ]

    async def not_found(request: Request, error: Exception) -> Response:
        return catalog.not_found(request, state, session.caller_of(request, state))

    def refused(request: Request, error: Exception) -> Response:
        return catalog.failed(request, state, session.caller_of(request, state), error)

    handlers: dict[Any, ExceptionHandler] = {404: not_found, MeshgateError: refused, Exception: refused}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.web = state
    return app


class SecurityHeaders:
    """Adds ``headers`` (:data:`SECURITY_HEADERS`) to every response (errors and static files too)."""

    def __init__(self, app: ASGIApp, headers: tuple[tuple[bytes, bytes], ...] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
