"""``/metrics``: the gateway's Prometheus metrics (``gateway/telemetry/metrics.py``).

Served only with ``serve --metrics-token-file``, and only to a scraper that sends that
token as ``Authorization: Bearer <token>`` (Prometheus: ``authorization.credentials_file``).
Metrics name domains and show how much each is used, which not every user of the
catalog pages may know; a token of its own keeps a scraper's credentials from being a
password that can also run queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.telemetry.metrics import scrape_allowed

if TYPE_CHECKING:
    from gateway.web.app import WebState


def routes(state: WebState) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        if state.metrics is None or state.metrics_token is None:
            return PlainTextResponse(
                "metrics are off: start the gateway with --metrics-token-file to serve them\n", status_code=404
            )
        if not scrape_allowed(request.headers.get("authorization"), state.metrics_token):
            return PlainTextResponse(
                "a bearer token is needed: Authorization: Bearer <the token of --metrics-token-file>\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="meshgate metrics"'},
            )
        body, media_type = await run_in_threadpool(state.metrics.exposition, request.headers.get("accept"))
        return Response(body, headers={"content-type": media_type})

    return [Route("/metrics", metrics, methods=["GET"])]
