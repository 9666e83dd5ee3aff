"""Rendering: the Jinja2 environment (autoescaped) and the page frame every template shares."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.api import CallerContext

if TYPE_CHECKING:
    from gateway.web.app import WebState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape is on for .html templates
templates.env.autoescape = True


def render(
    request: Request,
    state: WebState,
    name: str,
    context: dict[str, Any],
    *,
    caller: CallerContext | None,
    admin: bool = False,
    status_code: int = 200,
) -> Response:
    """Render template ``name`` with the frame's variables (who is signed in, the CSRF token)."""
    from gateway.web.session import csrf_token

    frame = {
        "caller": caller,
        "admin": admin,
        "auth": state.authenticator is not None,
        "csrf": csrf_token(request),
        "catalog": state.engine.catalog_name,
    }
    return templates.TemplateResponse(request, name, {**frame, **context}, status_code=status_code)


def routes(state: WebState) -> list[BaseRoute]:
    """The stylesheet and the one small script, served by the gateway itself (no CDN)."""
    return [Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
