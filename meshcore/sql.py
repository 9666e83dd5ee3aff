"""SQL text both the gateway and the connectors write."""

from __future__ import annotations

from importlib import metadata


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted identifier (standard SQL: DataFusion, PostgreSQL, SQLite,
    DuckDB), a double quote inside it doubled."""
    return '"' + name.replace('"', '""') + '"'


ENGINE = f"DataFusion {metadata.version('datafusion')}"
"""The SQL engine this build plans with, as a Meshgate gateway reports it after its own version
(``0.1.0 (DataFusion 55.0.0)``): another gateway that reports the same engine plans every query this
one writes for it (``connectors/flightsql.py`` does not ask it first)."""
