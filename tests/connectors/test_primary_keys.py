"""Primary keys: read from each SQL source, served by GetPrimaryKeys through a real gateway.

The same tables exist in PostgreSQL, SQLite and DuckDB: a single-column key, a
composite key declared in another order than its columns, a mixed-case quoted table,
a table without a key and a view. Files and products defined by SQL have no key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flightsql import FlightSQLClient, TableRef

from connectors.base import SourceObject
from connectors.registry import open_connector
from gateway.api import CallerContext
from gateway.config import ConnectorConfig, load_config
from gateway.engine import Engine
from gateway.flightsql import commands, metadata
from gateway.flightsql import flight_sql_pb2 as pb
from tests.support.gateway import serve_in_process

SQL_KINDS = ("postgres", "sqlite", "duckdb")

TABLES = [
    "CREATE TABLE single (id INTEGER PRIMARY KEY, name VARCHAR(20))",
    "CREATE TABLE composite (a INTEGER, b VARCHAR(10), c INTEGER, PRIMARY KEY (c, a))",
    'CREATE TABLE "Mixed Case" ("Key Col" INTEGER PRIMARY KEY, v INTEGER)',
    "CREATE TABLE keyless (x INTEGER)",
    "CREATE VIEW single_view AS SELECT * FROM single",
]
# Declared product name -> (source table, its key).
PRODUCTS = {
    "single": ("single", ("id",)),
    "composite": ("composite", ("c", "a")),
    "mixed": ('"Mixed Case"', ("Key Col",)),
    "keyless": ("keyless", ()),
    "single_view": ("single_view", ()),
}


def load(kind: str, where: Path | str, schema: str | None = None) -> None:
    if kind == "postgres":
        with pg.connect(str(where), autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
            for statement in TABLES:
                cursor.execute(statement)
    elif kind == "sqlite":
        with sqlite3.connect(where) as connection:
            for statement in TABLES:
                connection.execute(statement)
            connection.execute("CREATE TABLE rowid_alias (k INTEGER PRIMARY KEY, v TEXT)")
            connection.execute("CREATE TABLE no_rowid (k TEXT, j INTEGER, PRIMARY KEY (j, k)) WITHOUT ROWID")
        connection.close()
    else:
        database = duckdb.connect(str(where))
        try:
            for statement in TABLES:
                database.execute(statement)
            database.execute("CREATE SCHEMA other")
            database.execute("CREATE TABLE other.single (z INTEGER, y INTEGER, PRIMARY KEY (y, z))")
        finally:
            database.close()


def table_name(kind: str, table: str, schema: str | None) -> str:
    return f'"{schema}".{table}' if kind == "postgres" else table


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> dict[str, ConnectorConfig]:
    folder = tmp_path_factory.mktemp("keys")
    load("postgres", postgres_uri, pg_schema)
    load("sqlite", folder / "keys.sqlite")
    load("duckdb", folder / "keys.duckdb")
    pq.write_table(pa.table({"id": [1]}), folder / "file.parquet")
    return {
        "postgres": ConnectorConfig(type="postgres", uri=postgres_uri),
        "sqlite": ConnectorConfig(type="sqlite", path=folder / "keys.sqlite"),
        "duckdb": ConnectorConfig(type="duckdb", path=folder / "keys.duckdb"),
        "parquet": ConnectorConfig(type="parquet", path=folder),
    }


@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("kind", SQL_KINDS)
def test_connector_reads_the_key_in_key_order(
    sources: dict[str, ConnectorConfig], pg_schema: str, kind: str, product: str
) -> None:
    table, key = PRODUCTS[product]
    connector = open_connector("keys", sources[kind])
    try:
        assert connector.primary_key(SourceObject(table=table_name(kind, table, pg_schema))) == key
        assert connector.primary_key(SourceObject(sql=f"SELECT * FROM {table_name(kind, table, pg_schema)}")) == ()
    finally:
        connector.close()


def test_sqlite_rowid_alias_and_without_rowid_tables(sources: dict[str, ConnectorConfig]) -> None:
    connector = open_connector("keys", sources["sqlite"])
    try:
        assert connector.primary_key(SourceObject(table="rowid_alias")) == ("k",)
        assert connector.primary_key(SourceObject(table="no_rowid")) == ("j", "k")
        assert connector.primary_key(SourceObject(table="main.no_rowid")) == ("j", "k")
    finally:
        connector.close()


def test_duckdb_resolves_schemas_like_a_query(sources: dict[str, ConnectorConfig]) -> None:
    connector = open_connector("keys", sources["duckdb"])
    try:
        assert connector.primary_key(SourceObject(table="other.single")) == ("y", "z")
        assert connector.primary_key(SourceObject(table="main.single")) == ("id",)
        assert connector.primary_key(SourceObject(table="SINGLE")) == ("id",)  # DuckDB names are case-insensitive
    finally:
        connector.close()


def test_postgres_resolves_names_like_a_query(sources: dict[str, ConnectorConfig], pg_schema: str) -> None:
    connector = open_connector("keys", sources["postgres"])
    try:
        assert connector.primary_key(SourceObject(table=f'"{pg_schema}"."Mixed Case"')) == ("Key Col",)
        assert connector.primary_key(SourceObject(table=f'"{pg_schema}".COMPOSITE')) == ("c", "a")  # folded
    finally:
        connector.close()


def test_files_have_no_key(sources: dict[str, ConnectorConfig]) -> None:
    connector = open_connector("keys", sources["parquet"])
    (found,) = connector.discover()
    assert connector.primary_key(found.source) == ()


# -- GetPrimaryKeys through the gateway -------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(sources: dict[str, ConnectorConfig], pg_schema: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("keys_mesh")
    documents = []
    for kind in SQL_KINDS:
        config = sources[kind]
        connector = f"{{type: postgres, uri: '{config.uri}'}}" if kind == "postgres" else f"{{type: {kind}, path: '{config.path}'}}"
        listed = "".join(
            f"\n      - {{name: {name}, source: '{table_name(kind, table, pg_schema)}'}}"
            for name, (table, _) in PRODUCTS.items()
        )
        listed += f"\n      - {{name: by_sql, sql: 'SELECT * FROM {table_name(kind, 'single', pg_schema)}'}}"
        documents.append(f"  - name: {kind}\n    connector: {connector}\n    products:{listed}")
    documents.append(f"  - name: files\n    connector: {{type: parquet, path: '{sources['parquet'].path}'}}")
    (folder / "mesh.yaml").write_text("domains:\n" + "\n".join(documents) + "\n")
    with serve_in_process(folder / "mesh.yaml") as uri:
        yield uri


def primary_keys(uri: str, command: pb.CommandGetPrimaryKeys) -> tuple[pa.Schema, pa.Table]:
    """GetFlightInfo then DoGet, as a raw Flight SQL client sends them."""
    with flight.connect(uri) as client:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(commands.pack(command)))
        return info.schema, client.do_get(info.endpoints[0].ticket).read_all()


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    return [tuple(row.values()) for row in table.to_pylist()]


@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("kind", SQL_KINDS)
def test_get_primary_keys(gateway: str, kind: str, product: str) -> None:
    schema, table = primary_keys(gateway, pb.CommandGetPrimaryKeys(db_schema=kind, table=product))
    assert schema.equals(metadata.PRIMARY_KEYS_SCHEMA) and table.schema.equals(metadata.PRIMARY_KEYS_SCHEMA)
    assert table.schema.names == ["catalog_name", "db_schema_name", "table_name", "column_name", "key_sequence", "key_name"]
    key = PRODUCTS[product][1]
    assert rows(table) == [("mesh", kind, product, column, i, None) for i, column in enumerate(key, start=1)]


def test_get_primary_keys_filters(gateway: str) -> None:
    everywhere = rows(primary_keys(gateway, pb.CommandGetPrimaryKeys(table="composite"))[1])
    assert everywhere == [("mesh", kind, "composite", column, i, None) for kind in sorted(SQL_KINDS)
                          for i, column in enumerate(("c", "a"), start=1)]
    assert rows(primary_keys(gateway, pb.CommandGetPrimaryKeys(catalog="mesh", table="composite"))[1]) == everywhere
    for command in (
        pb.CommandGetPrimaryKeys(catalog="other", table="composite"),
        pb.CommandGetPrimaryKeys(catalog="", table="composite"),
        pb.CommandGetPrimaryKeys(db_schema="nowhere", table="composite"),
        pb.CommandGetPrimaryKeys(db_schema="duck%", table="composite"),  # exact names, not patterns
        pb.CommandGetPrimaryKeys(table="COMPOSITE"),
        pb.CommandGetPrimaryKeys(table="comp%"),
        pb.CommandGetPrimaryKeys(db_schema="sqlite", table="by_sql"),
        pb.CommandGetPrimaryKeys(db_schema="files", table="file"),
    ):
        assert rows(primary_keys(gateway, command)[1]) == [], command


def test_flightsql_dbapi_client_reads_keys(gateway: str) -> None:
    host, port = gateway.removeprefix("grpc://").split(":")
    client = FlightSQLClient(host=host, port=int(port), insecure=True)
    try:
        info = client.get_primary_keys(TableRef(table="composite", db_schema="duckdb"))
        table = client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        client.close()
    assert table.select(["column_name", "key_sequence"]).to_pylist() == [
        {"column_name": "c", "key_sequence": 1},
        {"column_name": "a", "key_sequence": 2},
    ]


def test_a_key_partly_hidden_by_policy_is_not_reported(sources: dict[str, ConnectorConfig], tmp_path: Path) -> None:
    """A caller who cannot see every key column is told of no key (a partial key is no key)."""
    config = sources["sqlite"]
    (tmp_path / "mesh.yaml").write_text(
        "policies:\n  grants:\n"
        "    - {role: '*', on: sqlite.single}\n"
        "    - {role: '*', on: sqlite.composite, columns: [a, b]}\n"
        f"domains:\n  - name: sqlite\n    connector: {{type: sqlite, path: '{config.path}'}}\n    products:\n"
        "      - {name: single, source: single}\n      - {name: composite, source: composite}\n"
    )
    engine = Engine.from_config(load_config(tmp_path / "mesh.yaml"))
    try:
        keys = {p.name: p.primary_key for p in engine.products(CallerContext(user="alice"))}
        assert keys == {"single": ("id",), "composite": ()}
        assert {p.name: p.primary_key for p in engine.catalog.products()} == {"single": ("id",), "composite": ("c", "a")}
    finally:
        engine.catalog.close()
