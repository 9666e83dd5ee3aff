"""The catalog pages: domains, search, and a product's page, each as the signed-in user sees the mesh.

A product the user may not read answers the same 404 as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.api import CallerContext
from gateway.errors import MeshgateError
from gateway.web import charts, lineage, queries
from gateway.web.pages import render
from gateway.web.session import caller_of
from meshcore.sql import quote_identifier

if TYPE_CHECKING:
    from gateway.catalog import Product
    from gateway.web.app import WebState

SAMPLE_ROWS = 20
MAX_SEARCH = 200
"""A search text longer than this is cut (it is matched as plain text, never as a pattern)."""

Page = Callable[[Request, CallerContext], Response]


def signed_in(state: WebState, page: Page) -> Callable[[Request], Response]:
    """``page`` for a signed-in caller; a redirect to the sign-in page otherwise."""

    def endpoint(request: Request) -> Response:
        caller = caller_of(request, state)
        if caller is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return page(request, caller)

    return endpoint


def not_found(request: Request, state: WebState, caller: CallerContext | None) -> Response:
    """The one 404 page: for a path that does not exist and for a product the caller may not read."""
    admin = caller is not None and queries.is_admin(state.engine, caller)
    return render(request, state, "not_found.html", {}, caller=caller, admin=admin, status_code=404)


def failed(request: Request, state: WebState, caller: CallerContext | None, error: Exception) -> Response:
    """The error page: a Meshgate error's message as the caller may see it (503), else a bare 500."""
    if isinstance(error, MeshgateError) and caller is not None:
        message, status = str(state.engine.shown_error(error, caller)), 503
    else:  # uvicorn logs the traceback (as "Exception in ASGI application")
        message, status = "The gateway could not answer this page; its log says why.", 500
    context = {"message": message}
    return render(request, state, "error.html", context, caller=caller, status_code=status)


def routes(state: WebState) -> list[BaseRoute]:
    engine = state.engine

    def frame(request: Request, caller: CallerContext, name: str, context: dict[str, Any]) -> Response:
        return render(request, state, name, context, caller=caller, admin=queries.is_admin(engine, caller))

    def domains(request: Request, caller: CallerContext) -> Response:
        listed = queries.rows(engine, "SELECT * FROM system.domains ORDER BY domain", caller)
        counts: dict[str, int] = {}
        for row in queries.products(engine, caller):
            counts[row["domain"]] = counts.get(row["domain"], 0) + 1
        return frame(request, caller, "domains.html", {"domains": listed, "counts": counts})

    def domain_page(request: Request, caller: CallerContext) -> Response:
        name = request.path_params["domain"]
        listed = [d for d in queries.rows(engine, "SELECT * FROM system.domains", caller) if d["domain"] == name]
        if not listed:
            return not_found(request, state, caller)
        products = [p for p in queries.products(engine, caller) if p["domain"] == name]
        return frame(request, caller, "domain.html", {"domain": listed[0], "products": products})

    def search(request: Request, caller: CallerContext) -> Response:
        text = request.query_params.get("q", "").strip()[:MAX_SEARCH]
        products = queries.products(engine, caller)
        hits: list[dict[str, Any]] = []
        if text:
            needle = text.lower()
            columns = queries.rows(engine, "SELECT * FROM system.columns ORDER BY domain, product, ordinal", caller)
            by_product: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for column in columns:
                matched = [
                    value
                    for value in (column["column"], column["description"], *(column["tags"] or []))
                    if value and needle in value.lower()
                ]
                if matched:
                    by_product.setdefault((column["domain"], column["product"]), []).append(column)
            for row in products:
                key = (row["domain"], row["product"])
                fields = (row["domain"], row["product"], f"{row['domain']}.{row['product']}", row["description"])
                own = any(value and needle in value.lower() for value in fields)
                tags = [tag for tag in row["tags"] or [] if needle in tag.lower()]
                if own or tags or key in by_product:
                    hits.append({**row, "matched_columns": by_product.get(key, []), "matched_tags": tags})
        else:
            hits = [{**row, "matched_columns": [], "matched_tags": []} for row in products]
        return frame(request, caller, "search.html", {"q": text, "hits": hits, "searched": bool(text)})

    def product_page(request: Request, caller: CallerContext) -> Response:
        domain, name = request.path_params["domain"], request.path_params["product"]
        row = queries.product(engine, caller, domain, name)
        found = engine.catalog.find(domain, name) if row is not None else None
        access = engine.access(caller, found) if found is not None else None
        if row is None or found is None or access is None:
            return not_found(request, state, caller)
        qualified = f"{domain}.{name}"
        where = f"domain = {queries.literal(domain)} AND product = {queries.literal(name)}"
        columns = queries.rows(engine, f"SELECT * FROM system.columns WHERE {where} ORDER BY ordinal", caller)
        quality = queries.rows(engine, f"SELECT * FROM system.quality WHERE {where} ORDER BY checked_at", caller)
        declared = found.declared
        contract = declared is not None and declared.columns is not None
        sample, sample_error = _sample(state, caller, domain, name, declared is not None and declared.catalog_sample)
        age, age_error = _data_age(state, caller, found, {c["column"] for c in columns})
        visible = {p["product"] for p in queries.products(engine, caller) if p["domain"] == domain}
        siblings = [p for p in engine.catalog.domain(domain).products.values() if p.name in visible]
        admin = queries.is_admin(engine, caller)
        log = queries.rows(engine, "SELECT * FROM system.query_log", caller)
        readers = lineage.readers(log, qualified)
        context = {
            "p": row,
            "qualified": qualified,
            "columns": columns,
            "masks": dict(access.masks),
            "row_filtered": access.row_filter is not None,
            "contract": contract,
            "drift": row["drift"] or [],
            "declared_columns": {c.name: c for c in (declared.columns or ())} if declared is not None else {},
            "checks": _latest_checks(quality),
            "chart": charts.quality_history(quality),
            "sample": sample,
            "sample_error": sample_error,
            "sample_on": declared is not None and declared.catalog_sample,
            "age": age,
            "age_error": age_error,
            "upstream": lineage.upstream(found, siblings),
            "is_sql": found.source.sql is not None,
            "readers": readers,
            "reader_users": sorted({r["user"] for r in readers if r["user"]}) if admin else [],
            "snippet": _snippets(state.flight_uri, caller, qualified, request.url.hostname),
        }
        return frame(request, caller, "product.html", context)

    return [
        Route("/", signed_in(state, domains)),
        Route("/domains/{domain}", signed_in(state, domain_page)),
        Route("/search", signed_in(state, search)),
        Route("/products/{domain}/{product}", signed_in(state, product_page)),
    ]


def _sample(
    state: WebState, caller: CallerContext, domain: str, name: str, enabled: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """A governed sample (masks and row filters apply: it runs as the caller), when the product opts in."""
    if not enabled:
        return None, None
    try:
        execution = state.engine.run(f'SELECT * FROM "{domain}"."{name}" LIMIT {SAMPLE_ROWS}', caller)
        try:
            table = execution.read_all()
        finally:
            execution.close()
    except MeshgateError as error:
        return None, str(state.engine.shown_error(error, caller))
    rows = [[_cell(value) for value in row.values()] for row in table.to_pylist()]
    return {"names": table.column_names, "rows": rows}, None


def _data_age(
    state: WebState, caller: CallerContext, product: Product, visible: set[str]
) -> tuple[str | None, str | None]:
    """How old the newest row is that the caller can see (``max`` of the freshness column, as the caller)."""
    declared = product.declared
    if declared is None or declared.freshness is None:
        return None, None
    column = declared.freshness.column
    if column not in visible:
        return None, f"its column '{column}' is not visible to you"
    quoted = quote_identifier(column)
    try:
        found = queries.rows(
            state.engine, f'SELECT max({quoted}) AS newest FROM "{product.domain}"."{product.name}"', caller
        )
    except MeshgateError as error:
        return None, str(state.engine.shown_error(error, caller))
    newest = found[0]["newest"] if found else None
    if newest is None:
        return None, "no rows"
    if isinstance(newest, dt.datetime):
        moment = newest if newest.tzinfo else newest.replace(tzinfo=dt.UTC)
    elif isinstance(newest, dt.date):
        moment = dt.datetime.combine(newest, dt.time(), tzinfo=dt.UTC)
    else:
        return None, f"'{column}' holds no dates"
    return charts.age_text(dt.datetime.now(dt.UTC) - moment), None


def _latest_checks(quality: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for row in quality:
        latest[row["check"]] = row
    return list(latest.values())


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _snippets(flight_uri: str, caller: CallerContext, qualified: str, web_host: str | None) -> dict[str, str]:
    """Ready-to-copy client code for this product: ADBC Python and a JDBC URL, with an example query.

    A gateway bound to every interface (0.0.0.0, ::) is named by the host the browser reached it at.
    """
    parsed = urlparse(flight_uri)
    tls = parsed.scheme == "grpc+tls"
    host, port = parsed.hostname or "localhost", parsed.port or 32010
    if host in {"0.0.0.0", "::"} and web_host:
        host = web_host
        flight_uri = f"{parsed.scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    example = f"SELECT * FROM {qualified} LIMIT 10"
    user = caller.user or "USER"
    python = (
        "import os\n"
        "import adbc_driver_flightsql.dbapi as flightsql\n\n"
        "with flightsql.connect(\n"
        f"    {json.dumps(flight_uri)},\n"
        f'    db_kwargs={{"username": {json.dumps(user)}, "password": os.environ["MESHGATE_PASSWORD"]}},\n'
        ") as conn, conn.cursor() as cur:\n"
        f"    cur.execute({json.dumps(example)})\n"
        "    print(cur.fetch_arrow_table())\n"
    )
    jdbc = f"jdbc:arrow-flight-sql://{host}:{port}/?useEncryption={'true' if tls else 'false'}&user={quote(user)}"
    return {"python": python, "jdbc": jdbc, "query": example}
