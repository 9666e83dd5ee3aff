"""open_connector maps each configured type to its connector, and names the domain on errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.duckdb import DuckdbConnector
from connectors.files import CsvConnector, ParquetConnector
from connectors.postgres import PostgresConnector
from connectors.registry import open_connector
from connectors.sqlite import SqliteConnector
from gateway.config import CONNECTOR_TYPES, ConnectorConfig
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("postgres", PostgresConnector),
        ("sqlite", SqliteConnector),
        ("duckdb", DuckdbConnector),
        ("parquet", ParquetConnector),
        ("csv", CsvConnector),
    ],
)
def test_each_type_opens_its_connector(kind: str, cls: type) -> None:
    config = ConnectorConfig(type=kind, uri="postgresql://h/db" if kind == "postgres" else None, path=Path("x"))
    connector = open_connector("sales", config)
    assert type(connector) is cls
    assert connector.kind == kind and connector.domain == "sales"


def test_every_configurable_type_has_a_connector() -> None:
    for kind in CONNECTOR_TYPES:
        config = ConnectorConfig(type=kind, uri="postgresql://h/db", path=Path("x"))
        assert open_connector("d", config).kind == kind


def test_unknown_types_name_domain_and_type() -> None:
    with pytest.raises(ConfigError, match=r"domain 'sales': unknown connector type 'oracle' \(expected one of csv, "):
        open_connector("sales", ConnectorConfig(type="oracle"))


@pytest.mark.parametrize("kind", ["postgres", "sqlite", "duckdb", "parquet", "csv"])
def test_a_missing_location_names_the_domain(kind: str) -> None:
    with pytest.raises(ConfigError, match=f"domain 'sales': a {kind} connector needs a (uri|path)"):
        open_connector("sales", ConnectorConfig(type=kind))
