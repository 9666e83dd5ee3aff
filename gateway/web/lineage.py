"""Lineage for the product page: which products of its domain a ``sql:`` product reads, and which
queries read it (from the query log the caller may see)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

if TYPE_CHECKING:
    from gateway.catalog import Product

DIALECTS = {"postgres": "postgres", "sqlite": "sqlite", "duckdb": "duckdb", "mysql": "mysql", "mariadb": "mysql"}


def upstream(product: Product, siblings: list[Product]) -> list[str]:
    """The products among ``siblings`` (same domain) whose source tables ``product``'s SQL reads, by name.

    Empty for products that are a table or file; a query that does not parse reads nothing known.
    """
    if product.source.sql is None:
        return []
    try:
        tree = sqlglot.parse_one(product.source.sql, read=DIALECTS.get(product.connector.config.type))
    except sqlglot.errors.SqlglotError:
        return []
    read = {_table_name(table) for table in tree.find_all(exp.Table)}
    unqualified = {name.rsplit(".", 1)[-1] for name in read}
    found = []
    for sibling in siblings:
        if sibling.name == product.name or sibling.source.table is None:
            continue
        table = sibling.source.table.lower()
        if table in read or table.rsplit(".", 1)[-1] in unqualified:
            found.append(sibling.name)
    return sorted(found)


def _table_name(table: exp.Table) -> str:
    parts = [part for part in (table.db, table.name) if part]
    return ".".join(parts).lower()


def readers(query_log: list[dict[str, Any]], qualified: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest queries of ``query_log`` that read product ``qualified`` (``domain.product``)."""
    found = [row for row in query_log if qualified in (row.get("products") or [])]
    found.sort(key=lambda row: row["started"], reverse=True)
    return found[:limit]
