"""Enforcing policies at planning time: one governed view per product a query reads.

The engine gives each query a hidden catalog (an unguessable name) holding the raw
products, and the domain schemas hand out only *governed views* over them: granted
columns, masks applied, row filters in the WHERE clause. DataFusion inlines the views,
so row filters are pushed down to the sources with the rest of the query, and a
predicate on a masked column compares masked values. A product the engine did not
prepare a view for cannot be resolved at all: access fails closed.

    >>> view_sql('__raw', "sales", "customers", schema, access)  # doctest: +SKIP
    SELECT "id", encode(sha256(CAST("email" AS VARCHAR)), 'hex') AS "email"
    FROM "__raw"."sales"."customers" WHERE (region = 'eu')
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp, parse
from sqlglot.errors import SqlglotError

from gateway.policy import Access


def referenced_products(sql: str, catalog: str, default_domain: str | None) -> set[tuple[str, str]] | None:
    """The ``(domain, product)`` pairs ``sql`` names; None when it cannot be read.

    Unquoted names are lower-cased as DataFusion does; names of CTEs are not products;
    a one-part name belongs to the session's default domain.
    """
    try:
        statements = parse(sql, read="postgres")
    except SqlglotError:
        return None
    found: set[tuple[str, str]] = set()
    for statement in statements:
        if statement is None:
            continue
        ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
        for table in statement.find_all(exp.Table):
            parts = [_normalise(part) for part in table.parts]
            if not parts or (len(parts) == 1 and parts[0] in ctes):
                continue
            if len(parts) == 3 and parts[0] != catalog:
                continue
            if len(parts) >= 2:
                found.add((parts[-2], parts[-1]))
            elif default_domain is not None:
                found.add((default_domain, parts[0]))
    return found


def _normalise(identifier: exp.Expr) -> str:
    name = identifier.name
    return name if isinstance(identifier, exp.Identifier) and identifier.quoted else name.lower()


def view_sql(raw_catalog: str, domain: str, product: str, schema: pa.Schema, access: Access) -> str:
    """The governed view of one product for one caller, in DataFusion SQL."""
    projections = [_projection(name, schema.field(name).type, access.masks.get(name)) for name in access.columns]
    source = f"{_quote(raw_catalog)}.{_quote(domain)}.{_quote(product)}"
    sql = f"SELECT {', '.join(projections) or '1 AS no_granted_columns'} FROM {source}"
    if access.row_filter is not None:
        sql += f" WHERE {access.row_filter}"
    return sql


def governed_schema(schema: pa.Schema, access: Access) -> pa.Schema:
    """The schema a caller sees: granted columns, masked ones with the mask's type."""
    fields = []
    for name in access.columns:
        field = schema.field(name)
        mask = access.masks.get(name)
        if mask in ("hash", "last4") or (mask == "redact" and _is_text(field.type)):
            field = field.with_type(pa.string())
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


def _projection(name: str, kind: pa.DataType, mask: str | None) -> str:
    column = _quote(name)
    if mask is None:
        return column
    if mask == "hash":
        expression = f"encode(sha256(CAST({column} AS VARCHAR)), 'hex')"
    elif mask == "last4":
        expression = (
            f"CASE WHEN {column} IS NULL THEN NULL ELSE concat('****', right(CAST({column} AS VARCHAR), 4)) END"
        )
    elif mask == "redact" and _is_text(kind):
        expression = f"CASE WHEN {column} IS NULL THEN NULL ELSE '****' END"
    else:  # "null", and "redact" of a value that is not text: a NULL of the column's own type
        expression = f"CASE WHEN FALSE THEN {column} END"
    return f"{expression} AS {column}"


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
