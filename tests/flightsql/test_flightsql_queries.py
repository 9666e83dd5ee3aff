"""Queries through the real ADBC Flight SQL driver (which prepares every statement)."""

from __future__ import annotations

import time

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import LARGE_ROWS, NOTES, ORDERS
from datafusion_test_engine import DataFusionEngine

from tests.support.errors import assert_clean

CLASSIC = (pa.string(), pa.binary())
VIEWS = (pa.string_view(), pa.binary_view(), pa.large_string())


def assert_classic(schema: pa.Schema) -> None:
    for field in schema:
        assert field.type not in VIEWS, f"{field.name} arrived as {field.type}"


def test_plain_query_returns_exact_values_and_types(conn) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT * FROM sales.orders ORDER BY id")
        table = cursor.fetch_arrow_table()

    assert table.schema.equals(ORDERS.schema)
    assert table.equals(ORDERS)
    assert table.column("customer").to_pylist()[:3] == ["Zoë Ångström", "O'Brien", 'He said "hi" 👋']


def test_view_typed_data_reaches_the_client_as_classic_string_and_binary(conn) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT *, CAST(text AS VARCHAR) AS text_again, upper(text) AS shout FROM sales.notes")
        table = cursor.fetch_arrow_table()

    assert_classic(table.schema)
    assert table.schema.field("text").type == pa.string()
    assert table.schema.field("blob").type == pa.binary()
    assert table.schema.field("text_again").type == pa.string()
    assert table.column("text").to_pylist() == NOTES.column("text").to_pylist()
    assert table.column("shout").to_pylist() == ["FRAGILE", None, "ÜNÏCÖDÉ"]


def test_fetch_record_batch_and_dbapi_rows(conn) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT id, customer FROM sales.orders WHERE express ORDER BY id")
        assert [column[0] for column in cursor.description] == ["id", "customer"]
        assert cursor.fetchall() == [(1, "Zoë Ångström"), (4, None)]
        cursor.execute("SELECT count(*) AS n FROM hr.employees")
        reader = cursor.fetch_record_batch()
        assert reader.read_all().to_pylist() == [{"n": 2}]


def test_prepared_statement_with_a_parameter(conn, engine: DataFusionEngine) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT id, customer, amount FROM sales.orders WHERE id = $1", (2,))
        rows = cursor.fetchall()

    assert [row[:2] for row in rows] == [(2, "O'Brien")]
    assert engine.executions[-1].parameters == {"1": 2}


def test_prepared_statement_with_a_null_parameter(conn, engine: DataFusionEngine) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM sales.orders WHERE customer IS NOT DISTINCT FROM $1", (None,))
        assert cursor.fetchall() == [(4,)]
        cursor.execute("SELECT id FROM sales.orders WHERE customer = $1", (None,))
        assert cursor.fetchall() == []
    assert engine.executions[-1].parameters == {"1": None}


def test_several_parameter_rows_run_in_order_and_concatenate(conn, engine: DataFusionEngine) -> None:
    parameters = pa.record_batch({"id": [4, 1, 3], "tag": ["a", None, "c"]})
    with conn.cursor() as cursor:
        cursor.execute("SELECT id, $2 AS tag, customer FROM sales.orders WHERE id = $1", parameters)
        table = cursor.fetch_arrow_table()

    assert table.to_pylist() == [
        {"id": 4, "tag": "a", "customer": None},
        {"id": 1, "tag": None, "customer": "Zoë Ångström"},
        {"id": 3, "tag": "c", "customer": 'He said "hi" 👋'},
    ]
    assert [e.parameters for e in engine.executions[-3:]] == [
        {"1": 4, "2": "a"},
        {"1": 1, "2": None},
        {"1": 3, "2": "c"},
    ]
    assert all(e.closed and not e.cancelled for e in engine.executions[-3:])


def test_bad_sql_fails_with_the_engine_message_and_the_connection_keeps_working(conn) -> None:
    with conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.Error) as failure:
            cursor.execute("SELEC 1")
        assert "Expected: an SQL statement, found: SELEC at Line: 1, Column: 1" in str(failure.value)

        with pytest.raises(adbc_driver_manager.Error, match=r"table 'mesh\.sales\.nope' not found"):
            cursor.execute("SELECT * FROM sales.nope")

        cursor.execute("SELECT 41 + 1 AS answer")
        assert cursor.fetchall() == [(42,)]


def test_write_statements_are_refused_as_read_only(conn) -> None:
    # UNKNOWN (OperationalError), not UNIMPLEMENTED: pyarrow sends that only with the traceback.
    with conn.cursor() as cursor:
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"^UNKNOWN: .*read-only") as failure:
            cursor.execute("INSERT INTO sales.orders (id) VALUES (5)")
        assert_clean(str(failure.value))
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"^UNKNOWN: .*read-only") as failure:
            cursor.executemany("SELECT $1", [(1,), (2,)])
        assert_clean(str(failure.value))
        cursor.execute("SELECT count(*) FROM sales.orders")
        assert cursor.fetchall() == [(4,)]


@pytest.mark.slow
def test_a_large_result_streams_batch_by_batch(conn, engine: DataFusionEngine) -> None:
    with conn.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("SELECT n, n * 2 AS doubled FROM bench.numbers")
        reader = cursor.fetch_record_batch()
        first = reader.read_next_batch()
        first_batch_after = time.perf_counter() - started
        produced_at_first_batch = engine.executions[-1].batches

        rows, batches, total = first.num_rows, 1, pc.sum(first.column("n")).as_py()
        for batch in reader:
            rows += batch.num_rows
            batches += 1
            total += pc.sum(batch.column("n")).as_py()
        everything_after = time.perf_counter() - started

    assert rows == LARGE_ROWS
    assert total == LARGE_ROWS * (LARGE_ROWS + 1) // 2
    assert batches == engine.executions[-1].batches > 100
    # The client had its first batch while the engine had produced only a small part.
    assert produced_at_first_batch < batches // 4, (produced_at_first_batch, batches)
    assert first_batch_after < everything_after / 2, (first_batch_after, everything_after)
