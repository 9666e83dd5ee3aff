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

import functools
from collections.abc import Callable

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext

from gateway.plan.build_side import Facts, Rows, estimate
from gateway.plan.runtime_filter import Kind
from gateway.plan.same_source import DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    correlated,
    function_names,
    holds_subquery,
    inputs,
    optimized,
    reads_in_expressions,
    root,
    sub_plan,
    subquery_roots,
)

MAX_ROWS = 1_000_000
"""The most rows a sub-plan may be estimated at, and return, to run in the file engine."""

Engine = Callable[[LogicalPlan, int], pa.Table | None]
"""At most so many rows of a plan, run by the file engine; None when it cannot run there (or
refused it: ``Planning.tried_in_engine``)."""


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
    kinds = functools.cache(kind)
    readable = functools.cache(engine_reads)
    done = 0

    def run(rel: algebra_pb2.Rel) -> bool:
        estimated = estimate(rel, rows, functions, facts)
        if estimated is None or estimated > MAX_ROWS or correlated(rel):
            return False
        table = engine(optimized(sub_plan(message, rel), ctx), MAX_ROWS + 1)
        if table is None or table.num_rows > MAX_ROWS:
            return False
        rel.CopyFrom(read_of(derived().add_computed("file_subplan", table), ctx))
        return True

    def visit(rel: algebra_pb2.Rel) -> None:
        nonlocal done
        for candidate in _largest(rel, kinds, readable, holds_subquery(rel))[1]:
            if run(candidate):
                done += 1
            else:
                for child in inputs(candidate):  # the engine cannot take it whole: what is inside may go
                    visit(child)

    visit(root(message))
    for top in subquery_roots(root(message)):  # those kept as expressions are plans of their own
        visit(top)  # (listed after the query's own were run: one run whole is not listed)
    return done


_Summary = tuple[bool, bool, bool]
"""Of a relation: whether it reads only files the engine reads and computed tables, whether it
reads such a file, and whether it joins."""


def _largest(
    rel: algebra_pb2.Rel, kind: Kind, readable: Callable[[tuple[str, ...]], bool], expressions: bool
) -> tuple[_Summary, list[algebra_pb2.Rel]]:
    """``rel``'s summary, and the largest relations in it (itself, if it is one) that join and read
    a file the engine reads and otherwise only such files and computed tables: one walk.
    ``expressions``: whether ``rel`` holds a subquery (else its expressions read nothing)."""

    def read(names: tuple[str, ...] | None) -> tuple[bool, bool]:
        """Whether a read of ``names`` may be in such a relation, and whether it is of such a file."""
        what = kind(names) if names is not None else None
        file = what == "files" and names is not None and readable(names)
        return file or what == "computed", file

    body_kind = rel.WhichOneof("rel_type")
    if body_kind == "read":
        names = tuple(rel.read.named_table.names) if rel.read.HasField("named_table") else None
        return (*read(names), False), []
    own = [read(names) for names in reads_in_expressions(rel)] if expressions else []  # its subqueries' reads
    usable, file = all(may for may, _ in own), any(is_file for _, is_file in own)
    joins = body_kind == "join"
    found: list[algebra_pb2.Rel] = []
    for child in inputs(rel):
        (child_usable, child_file, child_joins), below = _largest(child, kind, readable, expressions)
        usable, file, joins = usable and child_usable, file or child_file, joins or child_joins
        found.extend(below)
    if usable and file and joins:
        return (usable, file, joins), [rel]
    return (usable, file, joins), found
