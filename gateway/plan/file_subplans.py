"""Rule: a join of Parquet files with tables computed already runs in the file engine.

Once the run-time filters have run their small join inputs first, what is left of many federated
queries is a Parquet file joined with those computed tables: TPC-H Q9's lineitem with the 10,664
keys of green parts. DuckDB's Parquet reader and hash join do that about twice as fast as
DataFusion's here (Q9's: 91-100 ms against 165-277). Each largest sub-plan that joins, reads a
Parquet file the file engine may read (``connectors/file_engine.py``: held unrestricted, one
file, one domain) and otherwise only such files and computed tables, runs ahead in the file
engine, the computed tables registered on its cursor, and its rows replace the sub-plan::

    Join(part keys (computed), Filter(lineitem))  ->  Read(file_subplan)   (DuckDB: 319,404 rows)

The engine takes what the checks that keep answers route-independent let it (the planner writes
its SQL, ``gateway/planner.py``); a sub-plan it cannot take is left to DataFusion, and the rule
looks inside it. Only sub-plans estimated at most :data:`MAX_ROWS` rows run there (their rows are
held in memory, as a run-time filter's build input is); one that returns more is given up.

A grouping of a file alone stays: DataFusion filters its input by the keys of a join above while
it reads it (TPC-H Q20's sums of 1994's lineitem: 909,455 rows read and 543,210 groups made ahead
in DuckDB, against a fraction of those in DataFusion; 187 against 165 ms in process). So do joins
with SQL sources' reads: fetched first so that DuckDB could join them, they lost the overlap of
the source's query with DataFusion's work (Q3 317 -> 339 ms, Q14 129 -> 156 in process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext

from gateway.plan.build_side import Facts, Rows, estimate
from gateway.plan.runtime_filter import Kind
from gateway.plan.same_source import DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    all_roots,
    correlated,
    function_names,
    inputs,
    instances,
    optimized,
    reads,
    sub_plan,
)
from meshcore.errors import MeshgateError

log = logging.getLogger(__name__)

MAX_ROWS = 1_000_000
"""The most rows a sub-plan may be estimated at, and return, to run in the file engine."""

Engine = Callable[[LogicalPlan, int], pa.Table | None]
"""At most so many rows of a plan, run by the file engine; None when it cannot run there."""


def run_file_subplans(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    kind: Kind,
    engine_reads: Callable[[tuple[str, ...]], bool],
    derived: Callable[[], DerivedCatalog],
    engine: Engine,
    rows: Rows,
    facts: Facts | None = None,
) -> int:
    """Run ``message``'s largest joins of files and computed tables in the file engine; how many ran.

    ``engine_reads`` says whether the file engine may read the file a read names.
    """
    functions = function_names(message)
    done = 0

    def visit(rel: algebra_pb2.Rel) -> None:
        nonlocal done
        if _candidate(rel, kind, engine_reads):
            estimated = estimate(rel, rows, functions, facts)
            if estimated is not None and estimated <= MAX_ROWS:
                try:
                    table = engine(optimized(sub_plan(message, rel), ctx), MAX_ROWS + 1)
                except MeshgateError as error:  # DuckDB refused what the checks let through
                    log.warning("the file engine could not run a part of a query, DataFusion does: %s", error)
                    table = None
                if table is not None and table.num_rows <= MAX_ROWS:
                    rel.CopyFrom(read_of(derived().add_computed("file_subplan", table), ctx))
                    done += 1
                    return
        for child in inputs(rel):
            visit(child)

    for top in all_roots(message):  # subqueries kept as expressions are plans of their own
        visit(top)
    return done


def _candidate(rel: algebra_pb2.Rel, kind: Kind, engine_reads: Callable[[tuple[str, ...]], bool]) -> bool:
    """Whether ``rel`` joins and reads files the engine reads, one at least, and computed tables only."""
    if not any(True for _ in instances(rel, algebra_pb2.JoinRel)) or correlated(rel):
        return False
    found = False
    for names in reads(rel):
        what = kind(names) if names is not None else None
        if names is None or what not in ("files", "computed") or (what == "files" and not engine_reads(names)):
            return False
        found = found or what == "files"
    return found
