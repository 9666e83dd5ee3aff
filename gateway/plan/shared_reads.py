"""Rule: a file or a SQL product read twice with the same key list is read once.

After the run-time filters, the same keys may filter two reads of one product: TPC-H Q17's 204
part keys filter ``lineitem`` in the query and again in its correlated subquery (the average
quantity per part), which DataFusion decorrelates into a second scan of the whole file::

    lineitem WHERE l_partkey IN (...204 keys...)              -- l_partkey, l_quantity, l_extendedprice
    lineitem WHERE l_partkey IN (...204 keys...) GROUP BY ...  -- l_partkey, l_quantity

Each scan decodes the key column of all six million rows. When reads of one product carry the
same condition, and that condition holds a list of keys (so it keeps few rows), the product is read
once with the union of their columns while the query is planned (within its memory limits), and
each read becomes a read of those rows with its own columns. Rows beyond :data:`MAX_ROWS` or
:data:`MAX_BYTES` leave the reads as they were. The answer is the same; ``EXPLAIN`` reads the
product too, to plan. TPC-H Q17 at SF1, in process: 245 -> 150 ms (medians of alternating runs).

A SQL product's reads count as one product's when they are of the same product under the same
guard (a subquery's read has a scan of its own, ``subquery_scans``): TPC-H Q11 reads ``partsupp``
of its 396 German suppliers in the query and in its ``HAVING`` subquery, where SQLite scanned the
table twice.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pyarrow as pa
from datafusion import LogicalPlan, SessionContext

from gateway.plan.late_materialisation import LATE_SETTING
from gateway.plan.same_source import DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    all_roots,
    inputs,
    instances,
    messages,
    optimized,
    reads,
    sub_plan,
    to_logical,
    to_substrait,
)

MAX_ROWS = 1_000_000
"""The most rows a shared read may hold; more, and the reads stay as they were."""
MAX_BYTES = 256 * 1024 * 1024
"""The most bytes it may hold, likewise."""

Identity = Callable[[tuple[str, ...]], Hashable | None]
"""What the table a Substrait read names reads, the same for two reads of the same rows (a file
product, a SQL product under one guard); None for a table that is not read this way."""


def read_shared_once(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    identity: Identity,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
) -> int:
    """Read each product that ``message`` reads twice or more with the same key list once; how many.

    The plan is looked at as DataFusion optimises it, where each filter sits right over the read
    it filters, or in it (a key list above a grouping on its key goes below it); when a product is
    read once instead of twice, ``message`` becomes that plan."""
    read = [identity(names) for names in reads(message) if names is not None]
    products = [product for product in read if product is not None]
    if len(products) == len(set(products)):
        return 0  # no product is read twice: nothing to optimise the plan for
    reoptimized = to_substrait(optimized(message, ctx), ctx)
    groups: dict[tuple[Hashable, bytes], list[algebra_pb2.Rel]] = {}
    for top in all_roots(reoptimized):
        _collect(top, identity, groups)
    done = 0
    for places in groups.values():
        if len(places) > 1 and _share(reoptimized, places, ctx, derived, materialize):
            done += 1
    if done:
        message.CopyFrom(reoptimized)
    return done


def _collect(
    rel: algebra_pb2.Rel, identity: Identity, groups: dict[tuple[Hashable, bytes], list[algebra_pb2.Rel]]
) -> None:
    """Each filter over a product's read in ``rel``, and each read with a filter of its own, grouped
    by the product and the condition."""
    key = _key(rel, identity)
    if key is not None:
        groups.setdefault(key, []).append(rel)
        return
    for child in inputs(rel):
        _collect(child, identity, groups)


def _key(rel: algebra_pb2.Rel, identity: Identity) -> tuple[Hashable, bytes] | None:
    """What a read with a key list in its condition reads, whichever of the product's columns it
    returns: the product, and the read's own filter and the one right above it (written over the
    product's columns). None for other relations."""
    above = rel.filter if rel.WhichOneof("rel_type") == "filter" else None
    read = above.input if above is not None else rel
    if (above is not None and above.common.HasField("emit")) or read.WhichOneof("rel_type") != "read":
        return None
    body = read.read
    if not body.HasField("named_table") or body.HasField("best_effort_filter") or body.common.HasField("emit"):
        return None
    product = identity(tuple(body.named_table.names))
    if product is None:
        return None
    if len(body.base_schema.names) != len(body.base_schema.struct.types):
        return None  # nested columns: names and fields are not one to one
    conditions = [body.filter] if body.HasField("filter") else []
    if above is not None:
        conditions.append(above.condition)
    found = [item for condition in conditions for item in messages(condition)]
    if not any(isinstance(item, algebra_pb2.Expression.SingularOrList) for item in found):
        return None
    if any(isinstance(item, algebra_pb2.Rel) for item in found):
        return None  # a subquery in the condition
    key = body.filter.SerializeToString(deterministic=True)  # written over the product's columns already
    if above is not None:
        over_product = _remapped(above.condition, dict(enumerate(_columns(body))))
        if over_product is None:
            return None
        key += b"\x01" + over_product.SerializeToString(deterministic=True)
    return product, key


def _columns(read: algebra_pb2.ReadRel) -> list[int]:
    """The product's columns (positions in its base schema) that ``read`` returns, in order."""
    if read.HasField("projection"):
        return [item.field for item in read.projection.select.struct_items]
    return list(range(len(read.base_schema.names)))


def _remapped(expression: algebra_pb2.Expression, places: dict[int, int]) -> algebra_pb2.Expression | None:
    """A copy of ``expression`` whose references to field ``i`` refer to ``places[i]``; None when it
    refers to something else (an outer query, a nested field)."""
    copy = algebra_pb2.Expression()
    copy.CopyFrom(expression)
    for item in instances(copy, algebra_pb2.Expression.FieldReference):
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
    """Read the product of ``places`` once with all their columns; whether their reads were replaced."""
    reads = [_read(place) for place in places]
    union = sorted({column for read in reads for column in _columns(read)})
    merged = algebra_pb2.Rel()
    merged.CopyFrom(places[0])
    if merged.WhichOneof("rel_type") == "filter":
        at = {column: index for index, column in enumerate(union)}
        condition = _remapped(places[0].filter.condition, {i: at[c] for i, c in enumerate(_columns(reads[0]))})
        if condition is None:
            return False
        merged.filter.condition.CopyFrom(condition)
    projection = _read(merged).projection.select
    del projection.struct_items[:]
    for column in union:
        projection.struct_items.add().field = column
    # A key list keeps few rows: Parquet tests it as it decodes (late materialisation: lineitem's
    # rows of 204 parts, three columns, medians 90-137 ms against 167-173 ms). The engine keeps this off
    # while it plans and decides for the query after the rules (gateway/plan/late_materialisation.py).
    ctx.sql(f"SET {LATE_SETTING} = true")
    try:
        table = materialize(to_logical(sub_plan(message, merged), ctx), MAX_ROWS + 1)
    finally:
        ctx.sql(f"SET {LATE_SETTING} = false")
    if table.num_rows > MAX_ROWS or table.nbytes > MAX_BYTES:
        return False
    name = derived().add_computed("shared_read", table)
    product_columns = list(reads[0].base_schema.names)
    for place, read in zip(places, reads, strict=True):
        place.CopyFrom(read_of(name, ctx, [product_columns[column] for column in _columns(read)]))
    return True


def _read(place: algebra_pb2.Rel) -> algebra_pb2.ReadRel:
    """The read of a place :func:`_key` found: the relation itself, or the one its filter reads."""
    return place.filter.input.read if place.WhichOneof("rel_type") == "filter" else place.read
