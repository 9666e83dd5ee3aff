"""SQL text both the gateway and the connectors write."""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted identifier (standard SQL: DataFusion, PostgreSQL, SQLite,
    DuckDB), a double quote inside it doubled."""
    return '"' + name.replace('"', '""') + '"'
