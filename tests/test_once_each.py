"""DataFusion's optimiser gives a Parquet read its filters and keeps them above it as well, and
its unparser writes both into one WHERE; ``gateway.planner.once_each`` keeps each repeated
condition once (what the file engine is sent: ``gateway/plan/file_subplans.py``)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datafusion import SessionContext
from datafusion.unparser import Dialect, Unparser
from sqlglot import parse_one

from gateway.planner import once_each


def once(sql: str) -> str:
    return once_each(parse_one(sql, read="postgres")).sql(dialect="postgres")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT a FROM t WHERE ((a > 1) AND b IN (2, 3)) AND ((a > 1) AND b IN (2, 3))",
            "SELECT a FROM t WHERE a > 1 AND b IN (2, 3)",
        ),
        (
            "SELECT a FROM t WHERE (a = 1 OR b = 2) AND c > 0 AND (a = 1 OR b = 2)",
            "SELECT a FROM t WHERE (a = 1 OR b = 2) AND c > 0",
        ),
        (
            "SELECT a FROM t JOIN u ON (t.a = u.a AND t.b = 1) AND t.a = u.a",
            "SELECT a FROM t JOIN u ON t.a = u.a AND t.b = 1",
        ),
        ("SELECT a FROM t GROUP BY a HAVING SUM(b) > 1 AND SUM(b) > 1", "SELECT a FROM t GROUP BY a HAVING SUM(b) > 1"),
    ],
    ids=["where", "or-group", "join-on", "having"],
)
def test_a_repeated_condition_is_kept_once(sql: str, expected: str) -> None:
    assert once(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t WHERE RANDOM() < 0.5 AND RANDOM() < 0.5",  # two draws, not one
        'SELECT a FROM t WHERE "A" = 1 AND "a" = 1',  # two columns
        "SELECT a FROM t WHERE a = '1' AND a = 1",
        "SELECT a FROM t WHERE a = 1.0 AND a = 1.00",
        "SELECT a FROM t WHERE a > 1 OR a > 1",  # an OR is not taken apart
        "SELECT a FROM t WHERE a > 1",
    ],
    ids=["volatile", "quoted-names", "string-number", "scales", "or", "single"],
)
def test_conditions_that_differ_or_may_answer_differently_are_all_kept(sql: str) -> None:
    assert once(sql) == parse_one(sql, read="postgres").sql(dialect="postgres")


def test_a_filtered_parquet_join_is_unparsed_with_its_filter_twice_and_sent_once(tmp_path: Path) -> None:
    lines = pa.table({"part": [i % 50 for i in range(2_000)], "qty": [i % 37 for i in range(2_000)]})
    keys = pa.table({"k": [7, 11, 13, 17, 19]})
    pq.write_table(lines, tmp_path / "lines.parquet")
    ctx = SessionContext()
    ctx.register_parquet("lines", str(tmp_path / "lines.parquet"))
    ctx.register_record_batches("keys", [keys.to_batches()])
    sql = (
        "SELECT keys.k, lines.qty FROM keys JOIN (SELECT * FROM lines WHERE qty > 30 AND part IN (7, 11, 13, 17, 19))"
        " lines ON lines.part = keys.k"
    )
    plan = ctx.sql(sql).optimized_logical_plan()
    unparsed = str(Unparser(Dialect.postgres()).plan_to_sql(plan))
    # DataFusion 55: the read's (inexact) filters and the filter kept above it, in one WHERE.
    assert unparsed.count('"lines"."part" IN (7, 11, 13, 17, 19)') == 2

    written = once_each(parse_one(unparsed, read="postgres")).sql(dialect="duckdb")
    assert written.count('"lines"."part" IN (7, 11, 13, 17, 19)') == 1
    assert written.count('"lines"."qty" > 30') == 1
    connection = duckdb.connect()
    connection.register("lines", lines)
    connection.register("keys", keys)
    expected = sorted((row["k"], row["qty"]) for row in ctx.sql(sql).to_arrow_table().to_pylist())
    assert sorted(connection.sql(written).fetchall()) == expected
    assert len(expected) == 32
