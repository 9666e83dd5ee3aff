"""Exact catalog metadata: each source's NOT NULL columns reach Flight SQL clients.

The same table in PostgreSQL, SQLite and DuckDB has a primary key, a NOT NULL column and a
nullable one; through the ADBC Flight SQL driver, ``adbc_get_table_schema`` and
``adbc_get_objects`` report them as the source declares them, with contract descriptions as
remarks. A mask that can produce NULL makes the column nullable for that caller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pytest

from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer
from tests.support.gateway import connect, serving

DDL = "CREATE TABLE things (id INTEGER PRIMARY KEY, code VARCHAR(10) NOT NULL, note VARCHAR(20))"
EXPECTED = {"id": False, "code": False, "note": True}


@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Path:
    folder = tmp_path_factory.mktemp("nullability")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(DDL.replace("things", f'"{pg_schema}".things'))
    with sqlite3.connect(folder / "lite.db") as connection:
        connection.execute(DDL)
        connection.execute("CREATE TABLE keyed (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    connection.close()
    database = duckdb.connect(str(folder / "duck.duckdb"))
    database.execute(DDL)
    database.close()
    (folder / "mesh.yaml").write_text(
        f"""domains:
  - name: pg
    connector: {{type: postgres, uri: "{postgres_uri}"}}
    products:
      - name: things
        source: '"{pg_schema}".things'
        columns:
          - {{name: code, type: string, description: The stock code}}
  - name: lite
    connector: {{type: sqlite, path: lite.db}}
  - name: duck
    connector: {{type: duckdb, path: {folder / "duck.duckdb"}}}
"""
    )
    return folder


@pytest.fixture(scope="module")
def gateway(mesh_folder: Path) -> Iterator[str]:
    engine = Engine.from_config(load_config(mesh_folder))
    server = FlightSqlServer(engine, "grpc://127.0.0.1:0")
    with serving(server):
        yield f"grpc://127.0.0.1:{server.port}"
    engine.close()


def columns_of(gateway: str, domain: str, table: str) -> dict[str, dict[str, object]]:
    with connect(gateway) as connection:
        objects = connection.adbc_get_objects(depth="columns", db_schema_filter=domain, table_name_filter=table)
        (catalog,) = objects.read_all().to_pylist()
    (schema,) = catalog["catalog_db_schemas"]
    (found,) = schema["db_schema_tables"]
    return {c["column_name"]: c for c in found["table_columns"]}


@pytest.mark.parametrize("domain", ["pg", "lite"])
def test_not_null_and_key_columns_are_reported_as_the_source_declares_them(gateway: str, domain: str) -> None:
    with connect(gateway) as connection:
        schema = connection.adbc_get_table_schema("things", db_schema_filter=domain)
    assert {field.name: field.nullable for field in schema} == EXPECTED
    # The XDBC keys ADBC drivers fill adbc_get_objects from travel with each column ...
    assert {field.name: field.metadata[b"XDBC_NULLABLE"] for field in schema} == {
        k: b"1" if v else b"0" for k, v in EXPECTED.items()
    }
    assert {field.name: field.metadata[b"XDBC_IS_NULLABLE"] for field in schema} == {
        k: b"YES" if v else b"NO" for k, v in EXPECTED.items()
    }
    columns = columns_of(gateway, domain, "things")
    assert [c["ordinal_position"] for c in columns.values()] == [1, 2, 3]
    assert {c["xdbc_scope_schema"] for c in columns.values()} == {domain}
    assert {name: c["xdbc_type_name"] for name, c in columns.items()} == {
        "id": "INTEGER" if domain == "pg" else "BIGINT",
        "code": "VARCHAR",
        "note": "VARCHAR",
    }
    # ... but the ADBC Flight SQL driver (1.13, and its source as of 2026-08) reads only the
    # Flight SQL keys into adbc_get_objects: xdbc_nullable and remarks stay NULL there.
    assert {c["xdbc_nullable"] for c in columns.values()} == {None}


def test_contract_descriptions_are_remarks(gateway: str) -> None:
    with connect(gateway) as connection:
        schema = connection.adbc_get_table_schema("things", db_schema_filter="pg")
    assert schema.field("code").metadata[b"ARROW:FLIGHT:SQL:REMARKS"] == b"The stock code"
    assert b"ARROW:FLIGHT:SQL:REMARKS" not in schema.field("id").metadata


def test_a_mask_that_can_give_null_makes_the_column_nullable(mesh_folder: Path) -> None:
    from gateway.api import CallerContext

    (mesh_folder.parent / "masked").mkdir(exist_ok=True)
    masked = mesh_folder.parent / "masked"
    (masked / "duck.yaml").write_text(
        f"domains:\n  - name: duck\n    connector: {{type: duckdb, path: {mesh_folder / 'duck.duckdb'}}}\n"
    )
    (masked / "platform.yaml").write_text(
        "policies:\n  grants:\n    - {role: '*', on: '*'}\n  masks:\n    - {on: duck.things.code, mask: 'null'}\n"
    )
    engine = Engine.from_config(load_config(masked))
    try:
        (info,) = [p for p in engine.products(CallerContext(user="ann")) if p.name == "things"]
    finally:
        engine.close()
    assert {field.name: field.nullable for field in info.schema} == {"id": False, "code": True, "note": True}


def test_sqlite_keeps_the_key_of_a_without_rowid_table_from_null(gateway: str) -> None:
    with connect(gateway) as connection:
        schema = connection.adbc_get_table_schema("keyed", db_schema_filter="lite")
    assert {field.name: field.nullable for field in schema} == {"k": False, "v": True}
