"""Connector classes by configured type: the one place a ``type:`` becomes a connector."""

from __future__ import annotations

from connectors.base import Connector
from connectors.duckdb import DuckdbConnector
from connectors.files import CsvConnector, ParquetConnector
from connectors.flightsql import FlightSqlConnector
from connectors.mysql import MysqlConnector
from connectors.objects import ObjectCsvConnector, ObjectParquetConnector, is_object_uri
from connectors.postgres import PostgresConnector
from connectors.sqlite import SqliteConnector
from meshcore.config import ConnectorConfig
from meshcore.errors import ConfigError

CONNECTORS: dict[str, type[Connector]] = {
    cls.kind: cls
    for cls in (
        PostgresConnector,
        SqliteConnector,
        DuckdbConnector,
        ParquetConnector,
        CsvConnector,
        MysqlConnector,
        FlightSqlConnector,
    )
}
CONNECTORS["mariadb"] = MysqlConnector  # the same protocol and driver
OBJECT_CONNECTORS: dict[str, type[Connector]] = {"parquet": ObjectParquetConnector, "csv": ObjectCsvConnector}
"""File kinds read from object storage when their ``uri`` is ``s3://...`` (connectors/objects.py)."""


def open_connector(domain: str, config: ConnectorConfig) -> Connector:
    """The connector for ``config.type`` (connections open lazily, on first use).

    Raises:
        ConfigError: for an unknown type or a missing uri/path, naming the domain.
    """
    cls = CONNECTORS.get(config.type)
    if config.type in OBJECT_CONNECTORS and is_object_uri(config.uri):
        cls = OBJECT_CONNECTORS[config.type]
    if cls is None:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(f"domain {domain!r}: unknown connector type {config.type!r} (expected one of {known})")
    return cls(domain, config)
