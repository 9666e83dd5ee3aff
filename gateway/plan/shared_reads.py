"""Rule: a file read twice with the same key list is read once.

After the run-time filters, the same keys may filter two reads of one file: TPC-H Q17's 204
part keys filter ``lineitem`` in the query and again in its correlated subquery (the average
quantity per part), which DataFusion decorrelates into a second scan of the whole file::

    lineitem WHERE l_partkey IN (...204 keys...)              -- l_partkey, l_quantity, l_extendedprice
    lineitem WHERE l_partkey IN (...204 keys...) GROUP BY ...  -- l_partkey, l_quantity

Each scan decodes the key column of all six million rows. When reads of one file product
(Parquet, CSV: nothing a source is asked for) carry the same condition, and that condition holds
a list of keys (so it keeps few rows), the file is read once with the union of their columns
while the query is planned (within its memory limits), and each read becomes a read of those
rows with its own columns. Rows beyond :data:`MAX_ROWS` or :data:`MAX_BYTES` leave the reads
as they were. The answer is the same; ``EXPLAIN`` reads the file too, to plan. TPC-H Q17 at SF1,
in process: 245 -> 150 ms (medians of alternating runs).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext
from datafusion.catalog import Table

from gateway.plan.same_source import DERIVED_SCHEMA, DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    all_roots,
    inputs,
    messages,
    optimized,
    reads,
    sub_plan,
    to_logical,
    to_substrait,
)
from gateway.system_tables import TableDataset

MAX_ROWS = 1_000_000
"""The most rows a shared read may hold; more, and the reads stay as they were."""
MAX_BYTES = 256 * 1024 * 1024
"""The most bytes it may hold, likewise."""

Kind = Callable[[tuple[str, ...]], str | None]
"""What a Substrait read names: ``"files"``, ``"sql"``, or None when unknown."""


def read_shared_once(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    kind: Kind,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
) -> int:
    """Read each file that ``message`` reads twice or more with the same key list once; how many.

    The plan is looked at as DataFusion optimises it, where each filter sits right over the read
    it filters (a key list above a grouping on its key goes below it); when a file is read once
    instead of twice, ``message`` becomes that plan."""
    files = [names for names in reads(message) if names is not None and kind(names) == "files"]
    if len(files) == len(set(files)):
        return 0  # no file is read twice: nothing to optimise the plan for
    reoptimized = to_substrait(optimized(message, ctx), ctx)
    groups: dict[bytes, list[algebra_pb2.Rel]] = {}
    for top in all_roots(reoptimized):
        _collect(top, kind, groups)
    done = 0
    for places in groups.values():
        if len(places) > 1 and _share(reoptimized, places, ctx, derived, materialize):
            done += 1
    if done:
        message.CopyFrom(reoptimized)
    return done


def _collect(rel: algebra_pb2.Rel, kind: Kind, groups: dict[bytes, list[algebra_pb2.Rel]]) -> None:
    """Each filter over a file's read in ``rel``, grouped by the file and its condition."""
    key = _key(rel, kind)
    if key is not None:
        groups.setdefault(key, []).append(rel)
        return
    for child in inputs(rel):
        _collect(child, kind, groups)


def _key(rel: algebra_pb2.Rel, kind: Kind) -> bytes | None:
    """What a filter over a read of a file with a key list in its condition reads, whichever of the
    file's columns it returns (its condition written over the file's columns); None for others."""
    if rel.WhichOneof("rel_type") != "filter" or rel.filter.common.HasField("emit"):
        return None
    read = rel.filter.input
    if read.WhichOneof("rel_type") != "read" or not read.read.HasField("named_table"):
        return None
    body = read.read
    names = tuple(body.named_table.names)
    if len(names) < 2 or names[-2] == DERIVED_SCHEMA or kind(names) != "files":
        return None
    if body.HasField("best_effort_filter") or body.common.HasField("emit"):
        return None
    if len(body.base_schema.names) != len(body.base_schema.struct.types):
        return None  # nested columns: names and fields are not one to one
    condition = rel.filter.condition
    found = list(messages(condition))
    if not any(isinstance(item, algebra_pb2.Expression.SingularOrList) for item in found):
        return None
    if any(isinstance(item, algebra_pb2.Rel) for item in found):
        return None  # a subquery in the condition
    over_file = _remapped(condition, dict(enumerate(_columns(body))))
    if over_file is None:
        return None
    pushed = body.filter.SerializeToString(deterministic=True)  # written over the file's columns already
    return (
        b"\x00".join(name.encode() for name in names)
        + b"\x01"
        + pushed
        + b"\x01"
        + over_file.SerializeToString(deterministic=True)
    )


def _columns(read: algebra_pb2.ReadRel) -> list[int]:
    """The file's columns (positions in its base schema) that ``read`` returns, in order."""
    if read.HasField("projection"):
        return [item.field for item in read.projection.select.struct_items]
    return list(range(len(read.base_schema.names)))


def _remapped(expression: algebra_pb2.Expression, places: dict[int, int]) -> algebra_pb2.Expression | None:
    """A copy of ``expression`` whose references to field ``i`` refer to ``places[i]``; None when it
    refers to something else (an outer query, a nested field)."""
    copy = algebra_pb2.Expression()
    copy.CopyFrom(expression)
    for item in messages(copy):
        if not isinstance(item, algebra_pb2.Expression.FieldReference):
            continue
        segment = item.direct_reference.struct_field
        if not item.HasField("root_reference") or segment.HasField("child") or segment.field not in places:
            return None
        segment.field = places[segment.field]
    return copy


def _share(
    message: plan_pb2.Plan,
    places: list[algebra_pb2.Rel],
    ctx: SessionContext,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
) -> bool:
    """Read the file of ``places`` once with all their columns; whether their reads were replaced."""
    first = places[0].filter
    union = sorted({column for place in places for column in _columns(place.filter.input.read)})
    at = {column: index for index, column in enumerate(union)}
    condition = _remapped(first.condition, {i: at[c] for i, c in enumerate(_columns(first.input.read))})
    if condition is None:
        return False
    merged = algebra_pb2.Rel()
    merged.CopyFrom(places[0])
    merged.filter.condition.CopyFrom(condition)
    projection = merged.filter.input.read.projection.select
    del projection.struct_items[:]
    for column in union:
        projection.struct_items.add().field = column
    # A key list keeps few rows: Parquet tests it as it decodes (late materialisation: lineitem's
    # rows of 204 parts, three columns, medians 90-137 ms against 167-173 ms). The engine keeps this off
    # while it plans and decides for the query after the rules (gateway/plan/late_materialisation.py).
    ctx.sql("SET datafusion.execution.parquet.pushdown_filters = true")
    try:
        table = materialize(to_logical(sub_plan(message, merged), ctx), MAX_ROWS + 1)
    finally:
        ctx.sql("SET datafusion.execution.parquet.pushdown_filters = false")
    if table.num_rows > MAX_ROWS or table.nbytes > MAX_BYTES:
        return False
    name = derived().add("shared_read", Table(TableDataset(table)), table.num_rows)
    file_columns = list(first.input.read.base_schema.names)
    for place in places:
        place.CopyFrom(read_of(name, ctx, [file_columns[column] for column in _columns(place.filter.input.read)]))
    return True
