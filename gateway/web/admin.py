"""Pages for admins only (the ``admin`` role, as ``system.query_log`` decides it): the query log with
filters, each domain's source health, and the last config reloads with their errors.

To anyone else these paths answer the same 404 as a path that does not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway.api import CallerContext
from gateway.web import queries
from gateway.web.catalog import not_found, signed_in
from gateway.web.pages import render

if TYPE_CHECKING:
    from gateway.web.app import WebState

LOG_LIMIT = 500
OUTCOMES = ("ok", "error", "denied", "cancelled")
RELOAD_EVENTS = ("config_reload", "domain_apply", "domain_remove")


def routes(state: WebState) -> list[BaseRoute]:
    engine = state.engine

    def query_log(request: Request, caller: CallerContext) -> Response:
        if not queries.is_admin(engine, caller):
            return not_found(request, state, caller)
        filters = {key: request.query_params.get(key, "").strip()[:200] for key in ("user", "outcome", "product", "q")}
        filters["system"] = "1" if request.query_params.get("system") == "1" else ""
        log = queries.rows(engine, "SELECT * FROM system.query_log ORDER BY started DESC", caller)
        shown = [row for row in log if _matches(row, filters)]
        outcomes = sorted({*OUTCOMES, *(row["outcome"] for row in log)})
        context = {"rows": shown[:LOG_LIMIT], "total": len(shown), "filters": filters, "outcomes": outcomes}
        return render(request, state, "admin_queries.html", context, caller=caller, admin=True)

    def health(request: Request, caller: CallerContext) -> Response:
        if not queries.is_admin(engine, caller):
            return not_found(request, state, caller)
        domains = queries.rows(engine, "SELECT * FROM system.domains ORDER BY domain", caller)
        probed = {s.name: s for s in state.probe.states()}
        events = queries.rows(engine, "SELECT * FROM system.events ORDER BY at DESC", caller)
        reloads = [e for e in events if e["kind"] in RELOAD_EVENTS]
        context = {"domains": domains, "probed": probed, "reloads": reloads[:100]}
        return render(request, state, "admin_health.html", context, caller=caller, admin=True)

    return [
        Route("/admin/queries", signed_in(state, query_log)),
        Route("/admin/health", signed_in(state, health)),
    ]


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    """Plain-text filters (never patterns): user and outcome exact, product and SQL text contained;
    queries of ``system.*`` tables alone (the catalog pages' own among them) only when asked for."""
    products = row["products"] or []
    if not filters["system"] and products and all(p.startswith("system.") for p in products):
        return False
    if filters["user"] and (row["user"] or "") != filters["user"]:
        return False
    if filters["outcome"] and row["outcome"] != filters["outcome"]:
        return False
    if filters["product"] and not any(filters["product"].lower() in p.lower() for p in products):
        return False
    return not filters["q"] or filters["q"].lower() in row["sql"].lower()
