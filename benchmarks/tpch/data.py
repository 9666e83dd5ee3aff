"""TPC-H data spread over four domains, and the mesh config that names it.

``tpchgen-cli`` writes the eight tables as Parquet; from those:

=============  ==========================  ===============================================
domain         source                      tables
=============  ==========================  ===============================================
sales          PostgreSQL (a fresh schema) customer, orders
logistics      a Parquet file              lineitem
procurement    a SQLite file               part, partsupp, supplier
reference      CSV files                   nation, region
=============  ==========================  ===============================================

Column types are the Parquet ones, declared exactly in each database: ``BIGINT``/``INTEGER``
keys and counts, ``DECIMAL(15,2)`` money and quantities, ``DATE`` dates. Text is declared
``VARCHAR``: the spec's fixed-width ``CHAR(n)`` columns would be blank-padded by PostgreSQL,
while the generated Parquet (the reference) holds them unpadded. Primary keys as in the spec.
"""

from __future__ import annotations

import decimal
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from benchmarks.harness import executable, log

TABLES = ("customer", "orders", "lineitem", "part", "partsupp", "supplier", "nation", "region")
DOMAINS: dict[str, tuple[str, ...]] = {
    "sales": ("customer", "orders"),
    "logistics": ("lineitem",),
    "procurement": ("part", "partsupp", "supplier"),
    "reference": ("nation", "region"),
}
DOMAIN_OF = {table: domain for domain, tables in DOMAINS.items() for table in tables}
PRIMARY_KEYS = {
    "customer": ("c_custkey",),
    "orders": ("o_orderkey",),
    "part": ("p_partkey",),
    "partsupp": ("ps_partkey", "ps_suppkey"),
    "supplier": ("s_suppkey",),
}


@dataclass(frozen=True)
class TpchData:
    """Where the generated data lives."""

    sf: float
    parquet: Path  # the eight tables as Parquet: the reference, the ceiling, and logistics' source
    csv: Path  # nation.csv and region.csv
    sqlite: Path  # part, partsupp, supplier


def sf_label(sf: float) -> str:
    return f"{sf:g}".replace(".", "_")


def generate(sf: float, work_dir: Path) -> TpchData:
    """Generate (or reuse) the Parquet, CSV and SQLite files for scale factor ``sf``."""
    root = work_dir / f"tpch-sf{sf_label(sf)}"
    data = TpchData(sf, root / "parquet", root / "csv", root / "procurement.db")
    if not (data.parquet / ".complete").exists():
        tool = executable("tpchgen-cli")
        if tool is None:
            raise RuntimeError("tpchgen-cli is not installed (pip install tpchgen-cli)")
        shutil.rmtree(data.parquet, ignore_errors=True)  # an interrupted generation leaves files behind
        data.parquet.mkdir(parents=True)
        log(f"generating TPC-H SF{sf:g} with tpchgen-cli into {data.parquet}")
        subprocess.run([tool, "parquet", "-s", f"{sf:g}", "--output-dir", str(data.parquet)], check=True)
        (data.parquet / ".complete").touch()
    if not (data.csv / ".complete").exists():
        data.csv.mkdir(parents=True, exist_ok=True)
        for table in DOMAINS["reference"]:
            pacsv.write_csv(read(data, table), data.csv / f"{table}.csv")
        (data.csv / ".complete").touch()
    if not data.sqlite.exists():
        write_sqlite(data)
    return data


def read(data: TpchData, table: str) -> pa.Table:
    """A table from the generated Parquet, with classic string columns."""
    loaded = pq.read_table(data.parquet / f"{table}.parquet")
    schema = pa.schema(
        [
            pa.field(f.name, pa.string(), f.nullable) if pa.types.is_string_view(f.type) else f.remove_metadata()
            for f in loaded.schema
        ]
    )
    return loaded.cast(schema)


def column_type(kind: pa.DataType) -> str:
    """The declared SQL type of an Arrow type (the same words for PostgreSQL and SQLite)."""
    if pa.types.is_int64(kind):
        return "BIGINT"
    if pa.types.is_int32(kind):
        return "INTEGER"
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})"
    if pa.types.is_date32(kind):
        return "DATE"
    if pa.types.is_string(kind) or pa.types.is_string_view(kind):
        return "VARCHAR"
    raise ValueError(f"no SQL type for {kind}")


def create_table_sql(table: str, schema: pa.Schema, qualified: str) -> str:
    columns = [f"{f.name} {column_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema]
    if table in PRIMARY_KEYS:
        columns.append(f"PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})")
    return f"CREATE TABLE {qualified} (\n  " + ",\n  ".join(columns) + "\n)"


def write_sqlite(data: TpchData) -> None:
    """part, partsupp and supplier into a SQLite file (built aside, then renamed)."""
    building = data.sqlite.with_suffix(".building")
    building.unlink(missing_ok=True)
    connection = sqlite3.connect(building)
    try:
        for table in DOMAINS["procurement"]:
            arrow = read(data, table)
            log(f"loading {table} ({arrow.num_rows} rows) into SQLite")
            connection.execute(create_table_sql(table, arrow.schema, table))
            placeholders = ", ".join("?" for _ in arrow.schema)
            for batch in arrow.to_batches(max_chunksize=100_000):
                columns = [
                    [str(v) if isinstance(v, decimal.Decimal) else v for v in column.to_pylist()]
                    for column in batch.columns
                ]
                connection.executemany(f"INSERT INTO {table} VALUES ({placeholders})", zip(*columns, strict=True))
            connection.commit()
        connection.execute("ANALYZE")
        connection.commit()
    finally:
        connection.close()
    building.rename(data.sqlite)


def load_postgres(data: TpchData, uri: str, schema: str) -> None:
    """customer and orders into ``schema`` (which exists and is empty)."""
    with pg.connect(uri, autocommit=True) as connection, connection.cursor() as cursor:
        for table in DOMAINS["sales"]:
            arrow = read(data, table)
            log(f"loading {table} ({arrow.num_rows} rows) into PostgreSQL schema {schema}")
            cursor.execute(create_table_sql(table, arrow.schema, f'"{schema}".{table}'))
            cursor.adbc_ingest(table, arrow, mode="append", db_schema_name=schema)
            cursor.execute(f'ANALYZE "{schema}".{table}')


def write_mesh(directory: Path, data: TpchData, pg_uri: str, pg_schema: str) -> Path:
    """The mesh config, one YAML file per domain; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "sales": _domain(
            "sales",
            f"{{type: postgres, uri: {_quote(pg_uri)}}}",
            {t: f"{pg_schema}.{t}" for t in DOMAINS["sales"]},
        ),
        "logistics": _domain(
            "logistics",
            f"{{type: parquet, path: {_quote(str(data.parquet / 'lineitem.parquet'))}}}",
            {"lineitem": "lineitem.parquet"},
        ),
        "procurement": _domain(
            "procurement",
            f"{{type: sqlite, path: {_quote(str(data.sqlite))}}}",
            {t: t for t in DOMAINS["procurement"]},
        ),
        "reference": _domain(
            "reference",
            f"{{type: csv, path: {_quote(str(data.csv))}}}",
            {t: f"{t}.csv" for t in DOMAINS["reference"]},
        ),
    }
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory


def _domain(name: str, connector: str, products: dict[str, str]) -> str:
    lines = ["domains:", f"  - name: {name}", f"    connector: {connector}", "    products:"]
    lines += [f"      - {{name: {product}, source: {_quote(source)}}}" for product, source in products.items()]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
