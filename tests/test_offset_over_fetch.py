"""An OFFSET over a node with its own row limit: DataFusion's optimiser gives the sort or scan below
``LIMIT f OFFSET s`` a limit of ``s + f`` rows, and DataFusion 55's unparser writes that limit
beside the offset. ``gateway.planner.offset_over_fetch`` finds such plans, which are then not
unparsed (an end-to-end case: ``tests/e2e/test_file_engine.py``)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from datafusion import SessionContext
from datafusion.unparser import Dialect, Unparser

from gateway.planner import offset_over_fetch


def context() -> SessionContext:
    ctx = SessionContext()
    ctx.register_record_batches("t", [[pa.record_batch({"a": list(range(20)), "b": [i % 7 for i in range(20)]})]])
    ctx.register_record_batches("u", [[pa.record_batch({"a": list(range(20)), "c": [i % 5 for i in range(20)]})]])
    return ctx


OFFSETS = [
    "SELECT a FROM t ORDER BY b DESC, a LIMIT 5 OFFSET 3",
    "SELECT a FROM t LIMIT 5 OFFSET 3",
    "SELECT s.a, u.c FROM (SELECT a FROM t ORDER BY a DESC LIMIT 6 OFFSET 2) s JOIN u ON s.a = u.a",
    "SELECT b, sum(a) FROM t GROUP BY b ORDER BY 2 DESC LIMIT 3 OFFSET 2",
]
CLEAN = [
    "SELECT a FROM t ORDER BY b DESC, a LIMIT 5",
    "SELECT a FROM t LIMIT 4 OFFSET 0",
    "SELECT s.a, u.c FROM (SELECT a FROM t ORDER BY a DESC LIMIT 6) s JOIN u ON s.a = u.a",
    "SELECT b, sum(a) FROM t GROUP BY b",
]


@pytest.mark.parametrize("sql", OFFSETS)
def test_an_optimised_offset_over_a_limited_node_is_found(sql: str) -> None:
    ctx = context()
    assert offset_over_fetch(ctx.sql(sql).optimized_logical_plan())
    # As planned (a query's own plan, which whole-query routes unparse), nothing below the
    # OFFSET is limited, and the unparsed SQL answers as the query does.
    planned = ctx.sql(sql).logical_plan()
    assert not offset_over_fetch(planned)
    unparsed = str(Unparser(Dialect.postgres()).plan_to_sql(planned))
    assert sorted(map(repr, ctx.sql(unparsed).to_pylist())) == sorted(map(repr, ctx.sql(sql).to_pylist()))


@pytest.mark.parametrize("sql", CLEAN)
def test_a_limit_without_an_offset_is_unparsed_as_before(sql: str) -> None:
    assert not offset_over_fetch(context().sql(sql).optimized_logical_plan())
