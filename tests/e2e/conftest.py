"""One mesh and one running gateway shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest

from tests.e2e.federation_data import build_tables, write_mesh
from tests.support.gateway import serve_in_process
from tests.support.postgres import worker_schema

SCHEMA = worker_schema("meshgate_federation")


@pytest.fixture(scope="package")
def tables() -> dict[str, pa.Table]:
    return build_tables()


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, tables: dict[str, pa.Table]) -> Iterator[str]:
    config = write_mesh(tmp_path_factory.mktemp("federation"), postgres_uri, SCHEMA, tables)
    with serve_in_process(config) as uri:
        yield uri


@pytest.fixture(scope="package")
def reference(tables: dict[str, pa.Table]) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for qualified, table in tables.items():
        schema, name = qualified.split(".")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        connection.register("incoming", table)
        connection.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM incoming")
        connection.unregister("incoming")
    connection.execute(
        "CREATE VIEW sales.big_spenders AS SELECT customer_id, name, lifetime_value FROM sales.customers"
        " WHERE lifetime_value > 5000"
    )
    yield connection
    connection.close()
