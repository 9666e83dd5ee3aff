"""Running a rule that computes part of a plan while planning, over a real DataFusion context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext

from gateway.plan.same_source import DerivedCatalog
from gateway.plan.substrait import plan_pb2
from gateway.plan.substrait_plan import to_logical, to_substrait

Materialize = Callable[[LogicalPlan, int], pa.Table]
Rule = Callable[[plan_pb2.Plan, Callable[[], DerivedCatalog], Materialize], int]


def apply_rule(ctx: SessionContext, sql: str, rule: Rule) -> tuple[int, str, list[dict[str, Any]], int]:
    """``rule``'s count for ``sql``'s optimised plan in ``ctx``, the plan after it, its answer
    (checked against the plan's before it, schema too) and how many times it computed a part."""
    derived = DerivedCatalog()
    ctx.register_catalog_provider(derived.name, derived)
    runs: list[int] = []

    def materialize(plan: LogicalPlan, limit: int) -> pa.Table:
        runs.append(limit)
        return ctx.create_dataframe_from_logical_plan(plan).limit(limit).to_arrow_table()

    expected = ctx.sql(sql).to_pylist()
    message = to_substrait(ctx.sql(sql).optimized_logical_plan(), ctx)
    done = rule(message, lambda: derived, materialize)
    frame = ctx.create_dataframe_from_logical_plan(to_logical(message, ctx))
    assert frame.schema() == ctx.sql(sql).schema()
    answer = frame.to_pylist()
    assert answer == expected
    return done, frame.optimized_logical_plan().display_indent(), answer, len(runs)
