"""The conformance dataset loaded into each kind of source, with a connector on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.base import Connector, SourceObject
from connectors.registry import open_connector
from gateway.config import ConnectorConfig
from tests.conformance import data
from tests.support.gateway import serve_in_process


@dataclass
class Loaded:
    """A connector over the conformance dataset, and where the dataset lives in it."""

    kind: str
    connector: Connector
    source: SourceObject
    product: str


@pytest.fixture(scope="module", params=data.KINDS + data.SERVER_KINDS + ("flightsql",))
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    kind: str = request.param
    folder = tmp_path_factory.mktemp(kind)
    product = data.TABLE
    if kind == "postgres":
        uri: str = request.getfixturevalue("postgres_uri")
        schema: str = request.getfixturevalue("pg_schema")
        data.load_postgres(uri, schema)
        config = ConnectorConfig(type=kind, uri=uri)
        source = SourceObject(table=f'"{schema}".{data.TABLE}')
        product = f"{schema}_{data.TABLE}"
    elif kind == "mysql":
        uri = request.getfixturevalue("mysql_uri")
        data.load_mysql(uri)
        config = ConnectorConfig(type=kind, uri=uri)
        source = SourceObject(table=data.TABLE)
    elif kind == "flightsql":  # a Meshgate gateway serving the dataset from DuckDB, read over Flight SQL
        data.load_duckdb(folder / "data.duckdb")
        (folder / "inner.yaml").write_text(
            "domains:\n  - name: data\n    connector: {type: duckdb, path: data.duckdb}\n"
        )
        with serve_in_process(folder / "inner.yaml") as uri:
            connector = open_connector("conformance", ConnectorConfig(type=kind, uri=uri))
            source = SourceObject(table=f'"mesh"."data"."{data.TABLE}"')
            connector.schema(source)  # as the catalog does first: the server says it is DataFusion-based
            yield Loaded(kind, connector, source, product)
            connector.close()
        return
    elif kind in ("sqlite", "duckdb"):
        path = folder / f"data.{kind}"
        (data.load_sqlite if kind == "sqlite" else data.load_duckdb)(path)
        config = ConnectorConfig(type=kind, path=path)
        source = SourceObject(table=data.TABLE)
    else:
        file = Path(f"{data.TABLE}.{kind}")
        (data.load_parquet if kind == "parquet" else data.load_csv)(folder / file)
        config = ConnectorConfig(type=kind, path=folder)
        source = SourceObject(table=file.as_posix())
    connector = open_connector("conformance", config)
    yield Loaded(kind, connector, source, product)
    connector.close()
