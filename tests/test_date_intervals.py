"""Date arithmetic with intervals answers alike on every route (gateway/intervals.py and
``connectors.duckdb.whole_intervals``).

DataFusion adds an interval to a DATE as a DATE, dropping any part shorter than a day;
PostgreSQL and DuckDB make a timestamp of it. Whole queries that would compare or group such a
sum stay federated, as do those that add a BIGINT to a date (an error in PostgreSQL and DuckDB),
print a timestamp (a space between date and time, not DataFusion's ``T``), or return a
difference of timestamps (an interval there, not a duration). DuckDB read no ``INTERVAL '1' MONS`` (how sqlglot wrote DataFusion's
``INTERVAL '1 MONS'``): a whole query adding a month to a Parquet product's date failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from sqlglot import exp, parse_one
from sqlglot.schema import MappingSchema

from connectors.duckdb import whole_intervals
from gateway.api import CallerContext
from gateway.bytewise import TypedQuery
from gateway.config import load_config
from gateway.engine import Engine
from gateway.intervals import date_arithmetic_as_datafusion, shorter_than_a_day
from tests.support.gateway import query_served

ROOT = CallerContext(user="root")
DAYS = pa.table(
    {
        "id": pa.array(range(400), pa.int64()),
        "d": pa.array([dt.date(1995, 1, 1) + dt.timedelta(days=i % 90) for i in range(400)], pa.date32()),
        "ts": pa.array([dt.datetime(1995, 1, 1, i % 24) + dt.timedelta(days=i % 90) for i in range(400)]),
    }
)
SCHEMA = MappingSchema({"s": {"t": {"d": "DATE", "ts": "TIMESTAMP", "id": "BIGINT"}}}, dialect="postgres")


def interval(text: str) -> exp.Interval:
    found = parse_one(f"SELECT INTERVAL {text}", read="postgres").find(exp.Interval)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("written", "short"),
    [
        ("'1 MONS'", False),
        ("'12 MONS'", False),
        ("'-1 MONS'", False),
        ("'2 DAYS'", False),
        ("'1 MONS 2 DAYS'", False),
        ("'3 HOURS'", True),
        ("'1 DAYS 12 HOURS'", True),
        ("'1 HOURS 30 MINS'", True),
        ("'45.000000000 SECS'", True),
        ("'0 DAYS 0.000000000 SECS'", False),
        ("'a fortnight'", True),  # unreadable: taken as short, so never pushed
    ],
)
def test_a_part_shorter_than_a_day_is_found_in_what_datafusion_writes(written: str, short: bool) -> None:
    assert shorter_than_a_day(interval(written)) is short


@pytest.mark.parametrize(
    ("sql", "alike"),
    [
        ("SELECT count(*) FROM s.t WHERE d + INTERVAL '36 HOURS' = DATE '1995-01-02'", False),
        ("SELECT count(*) FROM s.t WHERE d - INTERVAL '3 HOURS' < DATE '1995-01-01'", False),
        ("SELECT d + INTERVAL '3 HOURS' AS x FROM s.t", False),
        ("SELECT count(*) FROM s.t WHERE ts + INTERVAL '36 HOURS' > TIMESTAMP '1995-01-02 00:00:00'", True),
        ("SELECT CAST(d AS TIMESTAMP) + INTERVAL '12 HOURS' AS x FROM s.t", True),
        ("SELECT count(*) FROM s.t WHERE d + INTERVAL '1 DAYS' = DATE '1995-01-02'", True),
        ("SELECT d - INTERVAL '1 MONS' AS x, count(*) FROM s.t GROUP BY 1", True),
        ("SELECT CAST(d + INTERVAL '1 MONS' AS VARCHAR) FROM s.t", False),  # a timestamp prints its time
        ("SELECT count(*) FROM s.t WHERE d > DATE '1995-01-01'", True),
        ("SELECT d + id AS x FROM s.t", False),  # no date + BIGINT in PostgreSQL or DuckDB
        ("SELECT CAST('2024-01-01' AS DATE) - id AS x FROM s.t", False),
        ("SELECT d + 1 AS x, d - d AS y, id + 1 AS z, id - id AS w FROM s.t", True),
    ],
)
def test_a_whole_query_keeps_only_date_arithmetic_a_source_computes_as_datafusion(sql: str, alike: bool) -> None:
    assert date_arithmetic_as_datafusion(TypedQuery(parse_one(sql, read="postgres"), SCHEMA)) is alike


def test_an_interval_of_one_unit_is_written_for_duckdb_as_one_string() -> None:
    tree = parse_one("SELECT d + INTERVAL '1 MONS', d - INTERVAL '1 MONS 2 DAYS' FROM t", read="postgres")
    assert tree.sql("duckdb").count("INTERVAL '1' MONS") == 1  # what DuckDB's parser refused
    written = whole_intervals(tree).sql("duckdb")
    assert "INTERVAL '1 MONS'" in written and "INTERVAL '1 MONS 2 DAYS'" in written
    assert tree.sql("duckdb").count("INTERVAL '1' MONS") == 1  # the query itself is left as it was


QUERIES = [
    "SELECT count(*) AS n FROM {p} WHERE d + INTERVAL '36 hours' = DATE '1995-01-02'",
    "SELECT count(*) AS n FROM {p} WHERE d - INTERVAL '3 hours' < DATE '1995-01-05'",
    "SELECT d + INTERVAL '1 month' AS m, count(*) AS n FROM {p} GROUP BY 1 ORDER BY 1",
    "SELECT count(*) AS n FROM {p} WHERE d - INTERVAL '1 year' > DATE '1994-02-01'",
    "SELECT max(ts + INTERVAL '90 minutes') AS m, count(*) AS n FROM {p} WHERE ts - INTERVAL '2 hours' > d",
    "SELECT d + id AS e, count(*) AS n FROM {p} GROUP BY 1 ORDER BY 1",  # failed in PostgreSQL and DuckDB
    "SELECT CAST(ts AS VARCHAR) AS t, count(*) AS n FROM {p} GROUP BY 1 ORDER BY 1",  # T or a space
    "SELECT max(ts - CAST(d AS TIMESTAMP)) AS m FROM {p}",  # an interval there, not a duration
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str) -> Iterator[Engine]:
    folder: Path = tmp_path_factory.mktemp("date-intervals")
    pq.write_table(DAYS, folder / "days.parquet")
    with duckdb.connect(str(folder / "ware.duckdb")) as database:
        database.register("arrow_days", DAYS)
        database.execute("CREATE TABLE days AS SELECT * FROM arrow_days")
    with pg.connect(postgres_uri, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{pg_schema}".days (id int8, d date, ts timestamp)')
        cursor.adbc_ingest("days", DAYS, mode="append", db_schema_name=pg_schema)
    (folder / "mesh.yaml").write_text(
        "domains:\n"
        f"  - name: lake\n    connector: {{type: parquet, path: {folder}}}\n"
        "    products: [{name: days, source: days.parquet}]\n"
        f'  - name: sales\n    connector: {{type: postgres, uri: "{postgres_uri}"}}\n'
        f"    products: [{{name: days, source: {pg_schema}.days}}]\n"
        f"  - name: ware\n    connector: {{type: duckdb, path: {folder / 'ware.duckdb'}}}\n"
    )
    made = Engine.from_config(load_config(folder))
    yield made
    made.close()


@pytest.mark.parametrize("product", ["sales.days", "lake.days", "ware.days"])
@pytest.mark.parametrize("template", QUERIES)
def test_date_arithmetic_answers_as_datafusion_on_postgresql_parquet_and_duckdb(
    engine: Engine, product: str, template: str
) -> None:
    ctx = SessionContext()
    ctx.register_record_batches("days", [DAYS.to_batches()])
    expected = ctx.sql(template.format(p="days")).to_arrow_table().to_pylist()
    sql = template.format(p=product)
    assert engine.run(sql, ROOT).read_all().to_pylist() == expected
    assert query_served(engine, sql).to_pylist() == expected
