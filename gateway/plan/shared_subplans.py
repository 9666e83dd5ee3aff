"""Rule: an aggregate the plan computes more than once is computed once.

DataFusion inlines a common table expression wherever it is named, so a CTE read twice is
planned, and run, twice. TPC-H Q15 reads its ``revenue0`` view in the query and again in the
scalar subquery that takes its maximum: two scans of a quarter of ``lineitem``, two
aggregations of them, for one answer::

    WITH revenue0 AS (SELECT l_suppkey AS supplier_no, sum(...) AS total_revenue FROM lineitem ...)
    SELECT ... FROM supplier, revenue0 WHERE ... AND total_revenue = (SELECT max(total_revenue) FROM revenue0)

When the same aggregate (the same relation, byte for byte in Substrait, its inputs included)
appears twice or more anywhere in the plan, subqueries included, and is estimated at no more
than :data:`TRY_ROWS` rows, it is run once while the query is planned (within the query's
memory limits, its source queries by its deadline) and its rows replace every occurrence. An
aggregate that turns out to hold more than :data:`MAX_ROWS` rows or :data:`MAX_BYTES` bytes
is left in place (it then runs as planned), and so is one that refers to an outer query (a
correlated subquery cannot run on its own). The answer is the same; ``EXPLAIN`` runs the aggregate too, to plan.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext

from gateway.plan.build_side import Rows, estimate
from gateway.plan.same_source import DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import all_roots, correlated, function_names, inputs, sub_plan, to_logical

TRY_ROWS = 200_000
"""The most rows a shared aggregate may be estimated at to be computed once, ahead."""
MAX_ROWS = 1_000_000
"""The most rows a shared aggregate computed ahead may hold; more, and the rule gives up on it."""
MAX_BYTES = 256 * 1024 * 1024
"""The most bytes it may hold (wide text groups), likewise."""


def compute_shared_once(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    rows: Rows,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
) -> int:
    """Replace every aggregate that ``message`` holds more than once by its rows; how many were."""
    done = 0
    tried: set[bytes] = set()
    functions = function_names(message)
    while True:
        shared = _outermost_shared(message, tried)
        if shared is None:
            return done
        key, places = shared
        tried.add(key)
        first = places[0]
        guess = estimate(first, rows, functions)
        if guess is None or guess > TRY_ROWS or correlated(first):
            continue
        table = materialize(to_logical(sub_plan(message, first), ctx), MAX_ROWS + 1)
        if table.num_rows > MAX_ROWS or table.nbytes > MAX_BYTES:
            continue
        name = derived().add_computed("shared", table)
        read = read_of(name, ctx)
        for place in places:
            place.CopyFrom(read)
        done += 1


def _outermost_shared(message: plan_pb2.Plan, tried: set[bytes]) -> tuple[bytes, list[algebra_pb2.Rel]] | None:
    """The first aggregate (in pre-order: the outermost) found twice or more and not yet tried,
    with every relation that is it."""
    seen: dict[bytes, list[algebra_pb2.Rel]] = {}
    order: list[bytes] = []

    def walk(rel: algebra_pb2.Rel) -> None:
        if rel.WhichOneof("rel_type") == "aggregate":
            key = rel.SerializeToString(deterministic=True)
            if key not in seen:
                order.append(key)
            seen.setdefault(key, []).append(rel)
        for child in inputs(rel):
            walk(child)

    for top in all_roots(message):
        walk(top)
    for key in order:
        if len(seen[key]) > 1 and key not in tried:
            return key, seen[key]
    return None
