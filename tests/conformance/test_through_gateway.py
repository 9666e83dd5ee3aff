"""The conformance suite through the gateway: every connector, one dataset, a real client.

The dataset of :mod:`tests.conformance.data` is loaded into PostgreSQL, SQLite,
DuckDB, Parquet and CSV, one domain each (named after its kind), and queried through
the ADBC Flight SQL driver. Answers are compared with DataFusion over the expected
Arrow table; for SQL sources, the rows each source returned are compared with the rows
the query selects (the proof that filters reached the source).
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from datafusion import SessionContext

from tests.conformance import data
from tests.support.gateway import query, serve_in_process, source_queries

SQL_KINDS = ("postgres", "sqlite", "duckdb", "mysql")

PREDICATES = {
    "integer_range": "i32 > 0 AND i64 < 100",
    "integer_extremes": "i16 = 32767 OR i64 = -9223372036854775808",
    "float": "f64 >= 1.5",
    "decimal_compare": "amount > 10.00",
    "decimal_equal": "amount = 12.34",
    "boolean": "flag",
    "not_boolean": "NOT flag",
    "null": "name IS NULL",
    "not_null": "amount IS NOT NULL AND tstz IS NOT NULL",
    "quote_in_string": "name = 'it''s'",
    "double_quotes_in_string": "name = 'say \"hi\"'",
    "unicode_equal": "name = 'Zoë Ångström'",
    "unicode_like": "name LIKE '日本%'",
    "emoji": "name LIKE '%rocket'",
    "like_underscore_literal": "name LIKE '100\\% \\_under' ESCAPE '\\'",
    "in_list": "id IN (1, 2, 3, 49)",
    "not_in_list": "id NOT IN (1, 2, 3)",
    "between": "id BETWEEN 10 AND 20",
    "date": "day >= DATE '2000-01-01'",
    "timestamp": "ts < TIMESTAMP '2025-01-01 00:00:00'",
    "or_of_ands": "(i16 > 0 AND flag) OR (i32 < 0 AND NOT flag)",
}
# Predicates a source declares it cannot evaluate as DataFusion does: kept back, still right.
KEPT_BACK = {
    ("sqlite", "timestamp"),  # SQLite stores timestamps as text: compared in DataFusion
}


@pytest.fixture(autouse=True)
def _needs_mysql(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("kind") == "mysql":
        request.getfixturevalue("mysql_server")  # skips with the reason when no server answers


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, postgres_uri: str, pg_schema: str, mysql_or_none: str | None
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("conformance")
    data.load_postgres(postgres_uri, pg_schema)
    data.load_sqlite(folder / "data.sqlite")
    data.load_duckdb(folder / "data.duckdb")
    data.load_parquet(folder / f"{data.TABLE}.parquet")
    data.load_csv(folder / f"{data.TABLE}.csv")
    data.load_delta(folder / "lake" / "delta")
    data.load_iceberg(folder / "lake" / "iceberg")
    sources = {
        "postgres": f"connector: {{type: postgres, uri: '{postgres_uri}'}}\n    products:\n"
        f"      - {{name: items, source: {pg_schema}.{data.TABLE}}}",
        "sqlite": f"connector: {{type: sqlite, path: data.sqlite}}\n    products:\n"
        f"      - {{name: items, source: {data.TABLE}}}",
        "duckdb": f"connector: {{type: duckdb, path: data.duckdb}}\n    products:\n"
        f"      - {{name: items, source: {data.TABLE}}}",
        "parquet": f"connector: {{type: parquet, path: {data.TABLE}.parquet}}\n    products:\n"
        f"      - {{name: items, source: {data.TABLE}.parquet}}",
        "csv": f"connector: {{type: csv, path: {data.TABLE}.csv}}\n    products:\n"
        f"      - {{name: items, source: {data.TABLE}.csv}}",
        "delta": "connector: {type: delta, path: lake}\n    products:\n      - {name: items, source: delta}",
        "iceberg": "connector: {type: iceberg, path: lake}\n    products:\n      - {name: items, source: iceberg}",
    }
    if mysql_or_none is not None:
        data.load_mysql(mysql_or_none)
        sources["mysql"] = (
            f"connector: {{type: mysql, uri: '{mysql_or_none}'}}\n    products:\n      - {{name: items, source: {data.TABLE}}}"
        )
    for kind, body in sources.items():
        (folder / f"{kind}.yaml").write_text(f"domains:\n  - name: {kind}\n    {body}\n")
    with serve_in_process(folder) as uri:
        yield uri


def oracle(kind: str, sql: str) -> pa.Table:
    ctx = SessionContext()
    ctx.from_arrow(data.expected(kind), name="items")
    return ctx.sql(sql).to_arrow_table()


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id").combine_chunks()


@pytest.mark.parametrize("kind", data.KINDS + data.SERVER_KINDS)
def test_types_and_values_round_trip(gateway: str, kind: str) -> None:
    got = by_id(query(gateway, f"SELECT * FROM {kind}.items"))
    expected = data.expected(kind)
    assert got.schema.equals(expected.schema), f"{got.schema}\n!=\n{expected.schema}"
    assert got.equals(by_id(expected))


@pytest.mark.parametrize("kind", data.KINDS + data.SERVER_KINDS)
def test_projection_in_any_order(gateway: str, kind: str) -> None:
    got = by_id(query(gateway, f"SELECT name, tstz, id, amount FROM {kind}.items"))
    expected = data.expected(kind).select(["name", "tstz", "id", "amount"])
    assert got.equals(by_id(expected))


@pytest.mark.parametrize("name", sorted(PREDICATES))
@pytest.mark.parametrize("kind", data.KINDS + data.SERVER_KINDS)
def test_filters_match_datafusion_over_the_same_data(gateway: str, kind: str, name: str) -> None:
    columns = "id, name, amount, flag"
    sql = f"SELECT {columns} FROM {kind}.items WHERE {PREDICATES[name]}"
    got = by_id(query(gateway, sql))
    expected = by_id(oracle(kind, sql.replace(f"{kind}.items", "items")))
    assert got.equals(expected), f"{got.to_pylist()}\n!=\n{expected.to_pylist()}"
    if kind in SQL_KINDS:
        (sent,) = source_queries(gateway, sql)
        if (kind, name) in KEPT_BACK:
            assert "WHERE" not in sent[1] and sent[2] == data.ROWS, sent
            return
        assert "WHERE" in sent[1], sent
        assert sent[2] == expected.num_rows, f"the source returned {sent[2]} rows for {expected.num_rows}: {sent[1]}"


def test_every_kind_is_served(gateway: str, mysql_or_none: str | None) -> None:
    domains = query(gateway, "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = 'items'")
    kinds = [*data.KINDS, *(["mysql"] if mysql_or_none is not None else [])]
    assert sorted(domains.column(0).to_pylist()) == sorted(kinds)
