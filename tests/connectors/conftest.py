"""The conformance dataset loaded into each kind of source, with a connector on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from connectors import conformance
from connectors.base import Connector, SourceObject
from connectors.registry import open_connector
from gateway.config import ConnectorConfig, load_config
from tests.conformance import data
from tests.support.gateway import serve_in_process

BUILT_IN_KINDS = (*data.KINDS, *data.SERVER_KINDS, "flightsql")
"""The kinds the suite loads its dataset into itself (tests/conformance/data.py)."""


@dataclass
class Loaded:
    """A connector over the conformance dataset, where the dataset lives in it, and what it must return."""

    kind: str
    connector: Connector
    source: SourceObject
    product: str
    expected: pa.Table


def plugin_loaders() -> dict[str, EntryPoint]:
    """The conformance loaders installed plugins declare, by kind (connectors/conformance.py)."""
    return {ep.name: ep for ep in entry_points(group=conformance.GROUP) if ep.name not in BUILT_IN_KINDS}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``loaded`` runs for the kinds ``--connector`` names, else for every kind with conformance data."""
    if "conformance_kind" not in metafunc.fixturenames:
        return
    plugins = plugin_loaders()
    chosen: list[str] = metafunc.config.getoption("connector") or [*BUILT_IN_KINDS, *sorted(plugins)]
    for kind in chosen:
        if kind not in BUILT_IN_KINDS and kind not in plugins:
            raise pytest.UsageError(
                f"--connector {kind}: no conformance data for this kind (built-in: {', '.join(BUILT_IN_KINDS)};"
                f" installed plugins with a {conformance.GROUP!r} loader: {', '.join(sorted(plugins)) or 'none'})"
            )
    metafunc.parametrize("conformance_kind", chosen, scope="module")


@contextmanager
def plugin_source(kind: str, folder: Path) -> Iterator[Loaded]:
    """The dataset loaded by the plugin's own loader, its settings read as a mesh config reads them."""
    made = plugin_loaders()[kind].load()(data.conformance_table(), data.TABLE, folder)
    with made if isinstance(made, AbstractContextManager) else nullcontext(made) as loaded:
        assert isinstance(loaded, conformance.ConformanceSource), f"{kind}'s loader returned {loaded!r}"
        mesh = {"domains": [{"name": "conformance", "connector": {"type": kind, **loaded.settings}}]}
        (folder / "mesh.yaml").write_text(yaml.safe_dump(mesh))
        config = load_config(folder / "mesh.yaml").domains[0].connector
        connector = open_connector("conformance", config)
        expected = loaded.expected if loaded.expected is not None else data.conformance_table()
        try:
            yield Loaded(kind, connector, SourceObject(table=loaded.source), loaded.product, expected)
        finally:
            connector.close()


@pytest.fixture(scope="module")
def loaded(conformance_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    kind = conformance_kind
    folder = tmp_path_factory.mktemp(kind)
    if kind not in BUILT_IN_KINDS:
        with plugin_source(kind, folder) as found:
            yield found
        return
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
            yield Loaded(kind, connector, source, product, data.expected(kind))
            connector.close()
        return
    elif kind in ("sqlite", "duckdb"):
        path = folder / f"data.{kind}"
        (data.load_sqlite if kind == "sqlite" else data.load_duckdb)(path)
        config = ConnectorConfig(type=kind, path=path)
        source = SourceObject(table=data.TABLE)
    elif kind in ("delta", "iceberg"):
        (data.load_delta if kind == "delta" else data.load_iceberg)(folder / data.TABLE)
        config = ConnectorConfig(type=kind, path=folder)
        source = SourceObject(table=data.TABLE)
    else:
        file = Path(f"{data.TABLE}.{kind}")
        (data.load_parquet if kind == "parquet" else data.load_csv)(folder / file)
        config = ConnectorConfig(type=kind, path=folder)
        source = SourceObject(table=file.as_posix())
    connector = open_connector("conformance", config)
    yield Loaded(kind, connector, source, product, data.expected(kind))
    connector.close()
