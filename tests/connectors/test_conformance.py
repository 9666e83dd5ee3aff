"""Every connector returns the conformance dataset exactly as DataFusion would see it."""

from __future__ import annotations

import pyarrow as pa
import pytest
from datafusion import SessionContext
from sqlglot import exp

from connectors.base import FileConnector, ScanSpec, SqlConnector
from gateway.scan import classic_types
from tests.conformance import data
from tests.connectors.conftest import Loaded

# Predicates every source evaluates as DataFusion does (the oracle below).
PREDICATES = [
    "amount > 10",
    "i64 < 0 OR i16 = 300",
    "name = 'it''s'",
    "name LIKE '%o%'",
    "name IS NULL",
    "id IN (1, 2, 3, 49)",
    "flag AND f64 >= 1.5",
]


def scan(loaded: Loaded, columns: tuple[str, ...], predicate: str | None = None, limit: int | None = None) -> pa.Table:
    """Rows as the engine would get them: a pushed-down SQL scan, or DataFusion over the files."""
    schema = loaded.connector.schema(loaded.source)
    if isinstance(loaded.connector, SqlConnector):
        spec = ScanSpec(loaded.source, columns, exp.condition(predicate) if predicate else None, limit)
        projected = pa.schema([schema.field(name) for name in columns])
        stream = loaded.connector.execute(loaded.connector.scan_sql(spec), projected)
        return pa.Table.from_batches(list(stream), projected)
    assert isinstance(loaded.connector, FileConnector)
    ctx = SessionContext()
    loaded.connector.register(ctx, "product", loaded.source)
    table = datafusion_select(ctx, columns, predicate, limit)
    return table.cast(classic_types(table.schema))  # DataFusion may read views; clients get classic types


def oracle(expected: pa.Table, columns: tuple[str, ...], predicate: str | None) -> pa.Table:
    """DataFusion's answer over the expected table."""
    ctx = SessionContext()
    ctx.from_arrow(expected, name="product")
    return datafusion_select(ctx, columns, predicate, None)


def datafusion_select(
    ctx: SessionContext, columns: tuple[str, ...], predicate: str | None, limit: int | None
) -> pa.Table:
    quoted = ", ".join(f'"{c}"' for c in columns)
    sql = f"SELECT {quoted} FROM product"
    if predicate:
        sql += f" WHERE {predicate}"
    if limit is not None:
        sql += f" LIMIT {limit}"
    return ctx.sql(sql).to_arrow_table()


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id").combine_chunks()


def test_discover_names_the_product(loaded: Loaded) -> None:
    found = {product.name: product.source for product in loaded.connector.discover()}
    assert loaded.product in found
    assert loaded.connector.schema(found[loaded.product]) == loaded.expected.schema


def test_schema_is_exact(loaded: Loaded) -> None:
    assert loaded.connector.schema(loaded.source) == loaded.expected.schema


def test_every_value_round_trips(loaded: Loaded) -> None:
    expected = loaded.expected
    got = scan(loaded, tuple(expected.column_names))
    assert got.schema == expected.schema
    assert by_id(got).to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("predicate", PREDICATES)
def test_projection_and_predicate_match_datafusion(loaded: Loaded, predicate: str) -> None:
    columns = ("id", "amount", "name")
    got = scan(loaded, columns, predicate)
    want = oracle(loaded.expected, columns, predicate)
    assert want.num_rows > 0
    assert by_id(got).to_pylist() == by_id(want).to_pylist()


def test_limit(loaded: Loaded) -> None:
    assert scan(loaded, ("id", "name"), "id > 10", limit=5).num_rows == 5


def test_no_columns_still_counts_rows(loaded: Loaded) -> None:
    if isinstance(loaded.connector, FileConnector):
        ctx = SessionContext()
        loaded.connector.register(ctx, "product", loaded.source)
        assert ctx.sql("SELECT count(*) AS n FROM product").to_pylist() == [{"n": data.ROWS}]
        return
    assert isinstance(loaded.connector, SqlConnector)
    spec = ScanSpec(loaded.source, ())
    stream = loaded.connector.execute(loaded.connector.scan_sql(spec), pa.schema([("one", pa.int64())]))
    batches = list(stream)
    assert sum(batch.num_rows for batch in batches) == data.ROWS
    assert stream.rows == data.ROWS


@pytest.mark.parametrize("pattern", ["%zoË%", "%upper%", "%ÅNG%", "IT'S"])
def test_ilike_matches_datafusion_where_declared(loaded: Loaded, pattern: str) -> None:
    connector = loaded.connector
    if isinstance(connector, SqlConnector) and not connector.capabilities.supports_ilike:
        pytest.skip(f"{connector.kind} declares no ILIKE")
    predicate = "name ILIKE " + exp.Literal.string(pattern).sql()
    want = oracle(loaded.expected, ("id", "name"), predicate)
    assert want.num_rows > 0
    assert by_id(scan(loaded, ("id", "name"), predicate)).to_pylist() == by_id(want).to_pylist()
