"""Sign-in, sign-out and CSRF for the web pages, through the same :class:`~gateway.auth.Authenticator`
as Flight SQL (same users, lockouts and ``login`` audit events).

The session cookie (signed with a per-process secret, HttpOnly, SameSite=Strict) holds a
random session id and a random CSRF token that every POST must send back in a form field.
The bearer token the log-in issued stays in the gateway's memory under that id (it never
reaches the browser): signing out forgets it, and a session ends when the token expires.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from cachetools import TTLCache
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.api import CallerContext
from gateway.errors import AuthenticationError

if TYPE_CHECKING:
    from gateway.web.app import WebState

MAX_FIELD = 1024
"""A user name or password longer than this is refused before any check."""

MAX_BODY = 16 * 1024
"""The largest form a POST may send."""


class Sessions:
    """Signed-in sessions: a random id -> the bearer token of its log-in (thread-safe, bounded).

    An entry is dropped at sign-out, after ``ttl`` seconds (the token's lifetime), or, when
    ``limit`` sessions are open, the oldest first.
    """

    def __init__(self, ttl: float, limit: int) -> None:
        self._tokens: TTLCache[str, str] = TTLCache(maxsize=limit, ttl=ttl)
        self._lock = threading.Lock()

    def start(self, token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[sid] = token
        return sid

    def token(self, sid: str) -> str | None:
        with self._lock:
            return self._tokens.get(sid)

    def forget(self, sid: str) -> None:
        with self._lock:
            self._tokens.pop(sid, None)


def caller_of(request: Request, state: WebState) -> CallerContext | None:
    """The signed-in caller of ``request``, or None; anonymous (no user) when the gateway runs without auth."""
    peer = _peer(request)
    if state.authenticator is None:
        return CallerContext(attributes={"peer": peer})
    sid = request.session.get("sid")
    if not isinstance(sid, str):
        return None
    token = state.sessions.token(sid)
    if token is None:
        return None
    try:
        identity = state.authenticator.verify(token)
    except AuthenticationError:
        state.sessions.forget(sid)
        return None
    return CallerContext(user=identity.user, attributes={**identity.caller_attributes(), "peer": peer})


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def form_with_csrf(request: Request) -> dict[str, str] | None:
    """The POSTed form, or None when its ``csrf`` field is missing or not this session's token.

    Only a URL-encoded form of at most :data:`MAX_BODY` bytes is read; anything else is refused
    like a bad token, before it is held in memory whole.
    """
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), max_num_fields=16, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    values = dict(pairs)
    expected = request.session.get("csrf")
    sent = values.get("csrf", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
        return None
    return values


def _peer(request: Request) -> str:
    """The client as gRPC names peers (``ipv4:ADDR:PORT``), which keys the per-address log-in limit."""
    if request.client is None:
        return "unknown"
    host, port = request.client.host, request.client.port
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _forget(request: Request, state: WebState) -> None:
    """End the request's session: its token is forgotten by the gateway, its cookie emptied."""
    sid = request.session.get("sid")
    if isinstance(sid, str):
        state.sessions.forget(sid)
    request.session.clear()


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in: never another site (``//host``, ``https://``, ``\\``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def routes(state: WebState) -> list[BaseRoute]:
    from gateway.web.pages import render

    def login_form(request: Request, error: str | None = None, status: int = 200, user: str = "") -> Response:
        return render(
            request,
            state,
            "login.html",
            {"error": error, "user": user, "next": safe_next(request.query_params.get("next"))},
            status_code=status,
            caller=None,
        )

    async def login_page(request: Request) -> Response:
        if state.authenticator is None or caller_of(request, state) is not None:
            return RedirectResponse("/", status_code=303)
        return login_form(request)

    async def login(request: Request) -> Response:
        authenticator = state.authenticator
        if authenticator is None:
            return RedirectResponse("/", status_code=303)
        form = await form_with_csrf(request)
        if form is None:
            return login_form(request, "The form expired: sign in again.", 403)
        user, password = form.get("user", ""), form.get("password", "")
        if not user or not password or len(user) > MAX_FIELD or len(password) > MAX_FIELD:
            return login_form(request, "Give a user name and a password.", 400, user[:MAX_FIELD])
        from starlette.concurrency import run_in_threadpool

        try:
            token, _ = await run_in_threadpool(authenticator.login, user, password, _peer(request))
        except AuthenticationError as error:
            message = str(error).removeprefix("[Meshgate] ")
            return login_form(request, message[:1].upper() + message[1:] + ".", 401, user)
        _forget(request, state)  # a new session at sign-in: nothing carried over from before
        request.session["sid"] = state.sessions.start(token)
        request.session["csrf"] = secrets.token_urlsafe(32)
        return RedirectResponse(safe_next(form.get("next")), status_code=303)

    async def logout(request: Request) -> Response:
        if await form_with_csrf(request) is None:
            return Response("The form expired: reload the page and sign out again.", 403, media_type="text/plain")
        _forget(request, state)
        return RedirectResponse("/login", status_code=303)

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
