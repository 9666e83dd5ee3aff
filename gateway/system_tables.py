"""``system.*``: the mesh described as tables, as the caller is allowed to see it.

    SELECT * FROM system.products;      -- the products I may read
    SELECT * FROM system.columns WHERE product = 'orders';
    SELECT * FROM system.policies;      -- what applies to me, product by product
    SELECT * FROM system.query_log;     -- my queries (every query for the platform admin role)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from gateway.api import CallerContext

if TYPE_CHECKING:
    from gateway.engine import Engine

SYSTEM_SCHEMA = "system"
ADMIN_ROLE = "admin"


def _domains(engine: Engine, caller: CallerContext) -> pa.Table:
    rows = [
        {
            "domain": d.name,
            "owner": d.config.owner,
            "description": d.config.description,
            "source": d.config.connector.type,
            "status": "offline" if d.error is not None else "online",
            "error": str(d.error) if d.error is not None else None,
        }
        for d in engine.catalog.domains()
    ]
    return pa.Table.from_pylist(rows, schema=_schema("domain", "owner", "description", "source", "status", "error"))


def _products(engine: Engine, caller: CallerContext) -> pa.Table:
    rows = [
        {
            "domain": p.domain,
            "product": p.name,
            "description": p.description,
            "owner": engine.catalog.domain(p.domain).config.owner,
            "columns": len(p.schema),
        }
        for p in engine.products(caller)
    ]
    schema = _schema("domain", "product", "description", "owner").append(pa.field("columns", pa.int64()))
    return pa.Table.from_pylist(rows, schema=schema)


def _columns(engine: Engine, caller: CallerContext) -> pa.Table:
    rows = [
        {
            "domain": p.domain,
            "product": p.name,
            "column": field.name,
            "ordinal": i + 1,
            "type": str(field.type),
            "nullable": field.nullable,
        }
        for p in engine.products(caller)
        for i, field in enumerate(p.schema)
    ]
    schema = pa.schema(
        [
            ("domain", pa.string()),
            ("product", pa.string()),
            ("column", pa.string()),
            ("ordinal", pa.int64()),
            ("type", pa.string()),
            ("nullable", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _policies(engine: Engine, caller: CallerContext) -> pa.Table:
    rows: list[dict[str, str]] = []
    for p in engine.catalog.products():
        access = engine.policies.access(caller, p.domain, p.name, p.schema)
        if access is None:
            continue
        rows.extend({"domain": p.domain, "product": p.name, "policy": applied} for applied in access.applied)
    return pa.Table.from_pylist(rows, schema=_schema("domain", "product", "policy"))


def _query_log(engine: Engine, caller: CallerContext) -> pa.Table:
    everyone = not engine.policies.enabled or ADMIN_ROLE in engine.policies.roles_of(caller)
    return engine.audit.table(caller.user, everyone=everyone)


def _schema(*names: str) -> pa.Schema:
    return pa.schema([(name, pa.string()) for name in names])


TABLES: dict[str, Callable[[Engine, CallerContext], pa.Table]] = {
    "domains": _domains,
    "products": _products,
    "columns": _columns,
    "policies": _policies,
    "query_log": _query_log,
}
