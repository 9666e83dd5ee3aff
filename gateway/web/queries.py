"""What the pages show, read as the signed-in user: SQL over ``system.*`` through ``Engine.run``.

Every list here comes from the engine's own checks (the system tables, ``Engine.products``,
``Engine.access``), never from a second reading of the policies.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gateway.api import CallerContext
from gateway.system_tables import sees_everything

if TYPE_CHECKING:
    from gateway.engine import Engine

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
"""Domain and product names as the config allows them: safe inside a quoted identifier or literal."""


def rows(engine: Engine, sql: str, caller: CallerContext) -> list[dict[str, Any]]:
    """Run ``sql`` as ``caller`` (governed and audited like any client's query); its rows as dicts."""
    execution = engine.run(sql, caller)
    try:
        result: list[dict[str, Any]] = execution.read_all().to_pylist()
        return result
    finally:
        execution.close()


def is_admin(engine: Engine, caller: CallerContext) -> bool:
    return sees_everything(engine, caller)


def literal(name: str) -> str:
    """A domain or product name as a SQL string literal (``name`` must match :data:`NAME`)."""
    if not NAME.match(name):
        raise ValueError(f"not a name: {name!r}")
    return f"'{name}'"


def products(engine: Engine, caller: CallerContext) -> list[dict[str, Any]]:
    return rows(engine, "SELECT * FROM system.products ORDER BY domain, product", caller)


def product(engine: Engine, caller: CallerContext, domain: str, name: str) -> dict[str, Any] | None:
    """The product as ``caller`` sees it in ``system.products``; None when absent or not visible."""
    if not NAME.match(domain) or not NAME.match(name):
        return None
    found = rows(
        engine,
        f"SELECT * FROM system.products WHERE domain = {literal(domain)} AND product = {literal(name)}",
        caller,
    )
    return found[0] if found else None
