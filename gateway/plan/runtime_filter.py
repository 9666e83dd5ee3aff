"""Rule: a small join input is computed first, and its keys reach the SQL sources of the other input.

SQL sources are asked before DataFusion knows the other side of a join, so a PostgreSQL
table is fetched whole even when only a few of its rows can match (TPC-H Q18: the 57 order
keys of the big orders would make the orders fetch 1 ms instead of 758 ms). When a hash
join's build input (its left, after ``gateway/plan/build_side.py``) is estimated to hold at
most :data:`TRY_BUILD_ROWS` rows, reads only files (Parquet, CSV: nothing that a source
must be asked for), and its probe input reads a SQL source or aggregates (or a join further up
takes its keys, see below), the build input is run first;
its rows (at most :data:`MAX_BUILD_ROWS`, else the rule gives up) replace it in the plan, so
it is not run twice, and its distinct join keys become a filter above the probe input::

    orders JOIN (SELECT l_orderkey ... HAVING sum(l_quantity) > 300) ON o_orderkey = l_orderkey
    -> the keys (57) are computed; orders' source query gets WHERE o_orderkey IN (...57 keys...)

DataFusion pushes that filter down to the scan that owns the key, and the scan's source
gets it like any other filter (``gateway/pushdown.py``). When the build input runs first for
such an input, the inputs that read only files get the keys too, as a list only (DataFusion's
own run-time filter sends a file scan just the keys' range). At most :data:`MAX_KEYS` distinct
keys are sent as a list; more integer or date keys are sent as their range (``key >= min AND
key <= max``), and up to :data:`MAX_SET_KEYS` integer keys also as a key set to a source that
takes one (``gateway/plan/key_sets.py``); other keys not at all. Only joins whose probe rows that match
nothing change nothing take part (inner and semi joins on an equality, and anti joins whose kept
side is the build input): the answer never changes. Keys also filter the other input of a join
further up that equates them with its own column (:func:`_equated_above`).
The build input runs while the query is planned, within the query's memory limits; EXPLAIN
runs it too, to show the filter.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import LogicalPlan, SessionContext

from gateway.plan import key_sets
from gateway.plan.build_side import Facts, estimate, width_of
from gateway.plan.key_sets import KeySet, register, takes
from gateway.plan.same_source import DERIVED_SCHEMA, DerivedCatalog, read_of
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    all_roots,
    correlated,
    equalities,
    field_of,
    function_names,
    inputs,
    instances,
    named_inputs,
    optimized,
    origin,
    reads,
    root,
    sub_plan,
    to_logical,
)
from meshcore.arrow import is_text

TRY_BUILD_ROWS = 250_000
"""The most rows a build input may be estimated at to be computed first (estimates are rough:
TPC-H Q18's HAVING that keeps 57 of 1.5 million groups is estimated at a third of 600,000)."""
MAX_BUILD_ROWS = 1_000_000
"""The most rows a build input computed first may hold; more, and the rule gives up on it."""
MAX_KEYS = 1_000
"""The most distinct keys sent to a source as a list (``key IN (...)``)."""
MAX_SET_KEYS = 100_000
"""The most distinct integer keys sent, beyond :data:`MAX_KEYS`, as a key set to a source that
takes one (``gateway/plan/key_sets.py``), together with their range."""
SQL_BUILD_ROWS = 40_000
"""The most rows a build input that reads a SQL source may be estimated at: it is asked for
before the rest of the query starts, so only when its keys are likely few enough to be sent
(and its filters keep less than :data:`DENSE` of its tables' rows). TPC-H Q7's customers of two
nations are estimated at 12,149 rows (12,008 in fact; 28,500 by the filter's shares alone).
When the probe input's source takes a key set, :data:`MAX_SET_KEYS` (:func:`_sql_build_rows`)."""
DENSE = 0.5
"""A build input that reads a SQL source runs first only when it is estimated at less than this
share of its largest table (TPC-H's 10,000 suppliers of 25 nations, of which all 25 are asked
for, would be asked for all, first); more keys than :data:`MAX_KEYS` are not sent to an input
when they are as many as this share of its largest table's rows."""
MIN_GAIN = 10.0
"""How many times more rows the probe input must be estimated to hold, or to read from one
table, than the build input."""

_Join = algebra_pb2.JoinRel
# Joins whose probe (right) rows that match no build row change nothing: they are dropped, or
# (a left anti join's, NOT EXISTS) could only have ruled a build row out by matching it.
_FILTERABLE = {_Join.JOIN_TYPE_INNER, _Join.JOIN_TYPE_LEFT_SEMI, _Join.JOIN_TYPE_RIGHT_SEMI, _Join.JOIN_TYPE_LEFT_ANTI}

Kind = Callable[[tuple[str, ...]], str | None]
"""What a Substrait read names: ``"files"``, ``"sql"``, ``"computed"`` (a table the planner holds
already), or None when unknown."""


def send_build_keys(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    rows: Callable[[tuple[str, ...]], float | None],
    kind: Kind,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
    sources: bool = False,
    key_sets: Callable[[tuple[str, ...]], bool] = lambda names: False,
    facts: Facts | None = None,
) -> int:
    """Compute small build inputs of ``message``'s joins and filter their probe inputs; how many joins.

    ``materialize`` runs a build input's plan (at most so many rows of it). Build inputs read
    only files, or with ``sources`` also SQL sources (estimated at :data:`SQL_BUILD_ROWS` rows
    at most: the pass after the files' keys reached the sources, see gateway/plan/rules.py).
    ``key_sets`` says whether a read's source takes a key set (more than :data:`MAX_KEYS` keys);
    ``facts`` are what the sources tell the estimates (``build_side.estimate``).
    """
    functions = function_names(message)
    done = 0

    def visit(rel: algebra_pb2.Rel, path: list[tuple[algebra_pb2.Rel, str]]) -> None:
        nonlocal done
        for slot, child in named_inputs(rel):
            visit(child, [*path, (rel, slot)])
        if rel.WhichOneof("rel_type") == "join" and _filter_probe(
            message,
            rel.join,
            path,
            ctx,
            rows,
            kind,
            derived,
            materialize,
            functions,
            sources,
            key_sets,
            facts,
        ):
            done += 1

    for top in all_roots(message):  # subqueries kept as expressions are plans of their own
        visit(top, [])
    return done


def _filter_probe(
    message: plan_pb2.Plan,
    join: Any,
    path: list[tuple[algebra_pb2.Rel, str]],
    ctx: SessionContext,
    rows: Callable[[tuple[str, ...]], float | None],
    kind: Kind,
    derived: Callable[[], DerivedCatalog],
    materialize: Callable[[LogicalPlan, int], pa.Table],
    functions: dict[int, str],
    sources: bool,
    key_sets: Callable[[tuple[str, ...]], bool],
    facts: Facts | None,
) -> bool:
    if join.type not in _FILTERABLE or join.HasField("post_join_filter"):
        return False
    build_rows, probe_rows = estimate(join.left, rows, functions, facts), estimate(join.right, rows, functions, facts)
    if build_rows is None or probe_rows is None or build_rows > TRY_BUILD_ROWS:
        return False
    # What the keys can save is the probe input's rows, or what it reads: TPC-H Q7's orders
    # (1.5 million rows) in a join input of 126,000 rows, filtered by 12,000 customers' keys.
    if max(probe_rows, _largest_read(join.right, rows, functions, facts)) < MIN_GAIN * build_rows:
        return False
    build_reads = reads(join.left)
    build_kinds = {kind(name) if name is not None else None for name in build_reads}
    asks_sources = "sql" in build_kinds and (not sources or build_rows > _sql_build_rows(join.right, key_sets))
    if not build_reads or None in build_kinds or asks_sources:
        return False
    if "sql" in build_kinds and build_rows >= DENSE * _unfiltered(join.left, rows):
        return False  # nothing much filters a source's input: not worth asking for it first
    if correlated(join.left):
        return False  # a correlated input cannot run on its own
    width = width_of(message, join.left, ctx)
    keys = _key_pair(join.expression, width, functions)
    if keys is None:
        return False

    def listed_only(rel: algebra_pb2.Rel) -> bool | None:
        """None: not a target; True: a target only for a list of keys (see below)."""
        names = reads(rel)
        kinds = {kind(name) if name is not None else None for name in names}
        if kinds == {"computed"}:
            return None  # its rows are in memory already: keys save nothing
        if "sql" in kinds or _aggregates(rel):
            return False
        return True if names else None

    # The probe input, and the other inputs of the joins above that equate its key with theirs.
    # An input that asks a source, or aggregates, takes any keys. One that only reads files takes
    # a list (at most MAX_KEYS keys): DataFusion's own run-time filter already sends such a scan
    # the keys' range, but not the keys, and a scan of TPC-H's lineitem joined with Q17's 204
    # parts took 206 ms, 164 ms with the list (the file's rows are tested against it as read).
    targets = [(join, "right", keys[1] - width), *_equated_above(message, ctx, join, keys, width, path, functions)]
    kinds = [listed_only(getattr(body, side)) for body, side, _ in targets]
    if _keyed_already(join.right, functions):
        kinds[0] = None  # the first pass sent it this input's keys (TPC-H Q12's orders, seen again in the second)
    if False not in kinds and not _only_wait(message, join.left, kinds, build_rows, kind):
        return False
    table = materialize(to_logical(sub_plan(message, join.left), ctx), MAX_BUILD_ROWS + 1)
    if table.num_rows > MAX_BUILD_ROWS:
        return False
    catalog = derived()
    name = catalog.add_computed("join_input", table)  # computed once: its rows replace it
    values = pc.unique(table.column(keys[0])).drop_null()
    keyed = origin(join.left, keys[0])
    if keyed is not None and facts is not None and len(values) == len(table):
        base = facts.base(keyed[0])
        if base is not None and facts.keys(base) == (keyed[1],):
            catalog.subsets[name[-1]] = (table.schema.names[keys[0]], base)  # distinct keys of that table
    join.left.CopyFrom(read_of(name, ctx))
    for (body, side, field), listed in zip(targets, kinds, strict=True):
        target = getattr(body, side)
        if listed is None or (listed and len(values) > MAX_KEYS):
            continue
        if len(values) > MAX_KEYS and len(values) >= DENSE * _unfiltered(target, rows):
            continue  # about as many keys as the other side has rows: such a filter would keep most
        condition = _keys_condition(message, field, values)
        if condition is None:
            continue
        as_set = MAX_KEYS < len(values) <= MAX_SET_KEYS and takes(values.type)
        as_set = as_set and any(read is not None and key_sets(read) for read in reads(target))
        key_set = register(ctx, values) if as_set else None
        filtered = algebra_pb2.Rel()
        filtered.filter.input.CopyFrom(target)
        filtered.filter.condition.CopyFrom(
            condition if key_set is None else _both(message, condition, _key_set(message, field, key_set))
        )
        target.CopyFrom(filtered)
        if key_set is not None and not _lands_on_key_set_reads(message, ctx, key_set.name, key_sets):
            # DataFusion moved the key set to a read that would test each row in Python (a file,
            # or a source that takes no key set): the range alone, as before.
            target.filter.condition.CopyFrom(condition)
    return True


def _only_wait(
    message: plan_pb2.Plan, build: algebra_pb2.Rel, kinds: list[bool | None], build_rows: float, kind: Kind
) -> bool:
    """Whether a build input may run first when only inputs that read files take its keys (as a
    list): when a list is likely and no other part of the query reads a source. Run first, the
    build input delays the whole query, which then cannot read another source meanwhile: TPC-H
    Q21 and Q7 took 15-19 % longer so. With nothing else to wait for, the file is read filtered by
    the keys (or joined with them by the file engine): TPC-H Q19 216 -> 183 ms."""
    if True not in kinds or build_rows > MAX_KEYS:
        return False
    sources = Counter(name for name in reads(root(message)) if name is not None and kind(name) == "sql")
    sources.subtract(name for name in reads(build) if name is not None and kind(name) == "sql")
    return not any(count > 0 for count in sources.values())


def _lands_on_key_set_reads(
    message: plan_pb2.Plan, ctx: SessionContext, name: str, key_sets: Callable[[tuple[str, ...]], bool]
) -> bool:
    """Whether, once DataFusion has optimised ``message``, key set ``name`` filters only reads of
    sources that take key sets and tables computed already (it carries a filter on a join key
    over to the join's other input, which may read a file).

    TPC-H Q7: the 12,008 customers of two nations filter orders (PostgreSQL) by ``o_custkey``,
    in a join input that also reads lineitem (Parquet) and supplier, whose columns the key never
    meets; orders then returns about 120,000 rows instead of 1.5 million.
    """
    plan = optimized(message, ctx)

    def takes_it(table_scan: Any) -> bool:
        names = tuple(str(part) for part in table_scan.fqn() if part is not None)
        return key_sets(names) or (len(names) >= 2 and names[-2] == DERIVED_SCHEMA)

    def fine(node: LogicalPlan) -> bool:
        variant = node.to_variant()
        kind = type(variant).__name__
        if kind == "TableScan":
            return not any(name in str(f) for f in variant.filters()) or takes_it(variant)
        children = node.inputs()
        if kind == "Filter" and name in str(variant.predicate()):
            below = children[0].to_variant()
            if type(below).__name__ != "TableScan" or not takes_it(below):
                return False  # tested row by row above a join or an aggregate, or on a file
        return all(fine(child) for child in children)

    return fine(plan)


def _sql_build_rows(probe: algebra_pb2.Rel, key_sets: Callable[[tuple[str, ...]], bool]) -> int:
    """The most rows a build input that reads a SQL source may be estimated at: :data:`SQL_BUILD_ROWS`,
    or :data:`MAX_SET_KEYS` when the probe input reads a source that takes its keys as a key set.

    TPC-H Q8's lineitem of 1,451 parts (estimated at 45,009 rows, 43,693 in fact) sends the orders
    of 1995-96 its 43,068 order keys: 13,182 rows in 189 ms instead of 457,263 in 405 ms."""
    return MAX_SET_KEYS if any(name is not None and key_sets(name) for name in reads(probe)) else SQL_BUILD_ROWS


def _largest_read(
    rel: algebra_pb2.Rel,
    rows: Callable[[tuple[str, ...]], float | None],
    functions: dict[int, str],
    facts: Facts | None,
) -> float:
    """The most rows one read in ``rel`` (outside subqueries) is estimated to return (0 when none is known)."""
    if rel.WhichOneof("rel_type") == "read":
        return estimate(rel, rows, functions, facts) or 0.0
    return max((_largest_read(child, rows, functions, facts) for child in inputs(rel)), default=0.0)


def _keyed_already(rel: algebra_pb2.Rel, functions: dict[int, str]) -> bool:
    """Whether ``rel`` is a filter by a key set (``gateway/plan/key_sets.py``): an earlier pass's run-time filter."""
    if rel.WhichOneof("rel_type") != "filter":
        return False
    calls = instances(rel.filter.condition, algebra_pb2.Expression.ScalarFunction)
    return any(functions.get(call.function_reference, "").startswith(key_sets.PREFIX) for call in calls)


def _aggregates(rel: algebra_pb2.Rel) -> bool:
    """Whether ``rel`` holds an aggregate (outside subqueries it may hold)."""
    if rel.WhichOneof("rel_type") == "aggregate":
        return True
    return any(_aggregates(child) for child in inputs(rel))


def _unfiltered(rel: algebra_pb2.Rel, rows: Callable[[tuple[str, ...]], float | None]) -> float:
    """The rows of the largest table ``rel`` reads (0 when none is known); infinite when it reads
    only derived tables (a same-source sub-plan is a filtered join by construction)."""
    tables = [name for name in reads(rel) if name is not None and (len(name) < 2 or name[-2] != DERIVED_SCHEMA)]
    if not tables:
        return math.inf
    return max(rows(name) or 0.0 for name in tables)


def _keys_condition(message: plan_pb2.Plan, field: int, values: pa.Array) -> algebra_pb2.Expression | None:
    """``field`` is one of ``values``: a list, or beyond :data:`MAX_KEYS` their range; None when
    the keys cannot be sent."""
    return _in_list(field, values) if len(values) <= MAX_KEYS else _range(message, field, values)


_ROW_DROPPING = ("filter", "sort", "fetch", "project")
"""Relations whose output holds their input's columns at the same places (before an emit)."""


def _equated_above(
    message: plan_pb2.Plan,
    ctx: SessionContext,
    join: Any,
    keys: tuple[int, int],
    width: int,
    path: list[tuple[algebra_pb2.Rel, str]],
    functions: dict[int, str],
) -> list[tuple[Any, str, int]]:
    """``(join, side, field)`` for each inner or semi join above ``join`` (whose ``path`` runs from
    the root down to its parent) that equates ``join``'s probe key with a ``field`` of its other
    ``side``.

    ``keys`` are the build and probe key's fields among ``join``'s inputs' columns (``width`` of
    them in the build input).

    Every row that reaches such a join has a probe key among the build keys (the joins on the
    way only drop rows), so the other side's rows without one can match nothing, and neither an
    inner nor a semi join returns rows that match nothing: TPC-H Q9's part keys, which filter
    lineitem, filter partsupp too (``ps_partkey = l_partkey``); Q17's filter the average
    quantity per part of the correlated subquery, which DataFusion joins as a semi join.
    """
    found: list[tuple[Any, str, int]] = []
    # The columns of the join's output that hold a key: on an inner join both keys (equal on
    # every row); a semi join returns one side's columns only.
    build_key, key = keys
    start = {
        _Join.JOIN_TYPE_INNER: {build_key, key},
        _Join.JOIN_TYPE_RIGHT_SEMI: {key - width},
        _Join.JOIN_TYPE_LEFT_SEMI: {build_key},
        _Join.JOIN_TYPE_LEFT_ANTI: {build_key},
    }[join.type]
    held = {place for place in (_emitted(join, index) for index in start) if place is not None}
    for parent, slot in reversed(path):
        kind = parent.WhichOneof("rel_type")
        body = getattr(parent, kind)
        if not held or not (kind in _ROW_DROPPING or (kind == "join" and body.type in _FILTERABLE)):
            break
        if kind == "join":
            left_width = width_of(message, body.left, ctx)
            combined = {index + (left_width if slot == "right" else 0) for index in held}
            for other in {other for index in combined for other in _equal_to(body.expression, index, functions)}:
                if body.type == _Join.JOIN_TYPE_LEFT_ANTI and slot == "right":
                    break  # the left rows it returns are those that match nothing: none may go
                if other not in combined and (other < left_width) == (slot == "right"):
                    found.append((body, "left", other) if other < left_width else (body, "right", other - left_width))
                    combined.add(other)  # equal to a key on every row the join returns
            # A semi join returns one side: the keys go on up only from that side.
            returned = {_Join.JOIN_TYPE_LEFT_SEMI: "left", _Join.JOIN_TYPE_RIGHT_SEMI: "right"}.get(body.type)
            if returned is not None and returned != slot:
                break
            held = combined if returned is None else held
        if kind == "project":  # DataFusion writes a kept column as an expression that selects it
            below = width_of(message, body.input, ctx)
            held |= {below + at for at, expression in enumerate(body.expressions) if field_of(expression) in held}
        held = {place for place in (_emitted(body, index) for index in held) if place is not None}
    return found


def _emitted(body: Any, index: int) -> int | None:
    """Where field ``index`` of a relation's output before its emit is after it; None if dropped."""
    mapping = list(body.common.emit.output_mapping)
    if not mapping:
        return index
    return mapping.index(index) if index in mapping else None


def _equal_to(expression: Any, field: int, functions: dict[int, str]) -> list[int]:
    """The fields ``expression`` equates with ``field``."""
    return [b for pair in equalities(expression, functions) for a, b in (pair, pair[::-1]) if a == field]


def _key_pair(expression: Any, width: int, functions: dict[int, str]) -> tuple[int, int] | None:
    """``(build column, probe column)`` of the first equality between the inputs in ``expression``."""
    for pair in equalities(expression, functions):
        left, right = sorted(pair)
        if left < width <= right:
            return left, right
    return None


def _in_list(field: int, values: pa.Array) -> algebra_pb2.Expression | None:
    """``field IN (values)`` as a Substrait expression; None for a key type not written here."""
    slot = _slot(values.type)
    if slot is None:
        return None
    if pa.types.is_date32(values.type):
        values = values.cast(pa.int32())
    condition = algebra_pb2.Expression()
    test = condition.singular_or_list
    _select(test.value, field)
    for value in values.to_pylist():
        setattr(test.options.add().literal, slot, value)
    return condition


def _key_set(message: plan_pb2.Plan, field: int, keys: KeySet) -> algebra_pb2.Expression:
    """``field`` is one of ``keys``: a call of the key set's function."""
    condition = algebra_pb2.Expression()
    call = condition.scalar_function
    call.function_reference = _function(message, keys.name)
    call.output_type.bool.SetInParent()
    _select(call.arguments.add().value, field)
    return condition


def _both(message: plan_pb2.Plan, *conditions: algebra_pb2.Expression) -> algebra_pb2.Expression:
    """The conjunction of ``conditions``."""
    condition = algebra_pb2.Expression()
    both = condition.scalar_function
    both.function_reference = _function(message, "and")
    both.output_type.bool.SetInParent()
    for part in conditions:
        both.arguments.add().value.CopyFrom(part)
    return condition


def _range(message: plan_pb2.Plan, field: int, values: pa.Array) -> algebra_pb2.Expression | None:
    """``field >= min(values) AND field <= max(values)``; None for keys other than integers and dates
    (a text range would compare by the source's collation)."""
    slot = _slot(values.type)
    if slot is None or slot == "string" or not len(values):
        return None
    if pa.types.is_date32(values.type):
        values = values.cast(pa.int32())
    bounds = pc.min_max(values)
    compares = []
    for name, bound in (("gte", bounds["min"].as_py()), ("lte", bounds["max"].as_py())):
        condition = algebra_pb2.Expression()
        compare = condition.scalar_function
        compare.function_reference = _function(message, name)
        compare.output_type.bool.SetInParent()
        _select(compare.arguments.add().value, field)
        setattr(compare.arguments.add().value.literal, slot, bound)
        compares.append(condition)
    return _both(message, *compares)


def _slot(kind: pa.DataType) -> str | None:
    """The Substrait literal field a key of ``kind`` is written in; None for other types."""
    if pa.types.is_integer(kind) and not pa.types.is_unsigned_integer(kind):
        return {8: "i8", 16: "i16", 32: "i32", 64: "i64"}[kind.bit_width]
    if is_text(kind):
        return "string"
    if pa.types.is_date32(kind):
        return "date"
    return None


def _select(expression: algebra_pb2.Expression, field: int) -> None:
    expression.selection.direct_reference.struct_field.field = field
    expression.selection.root_reference.SetInParent()


def _function(message: plan_pb2.Plan, name: str) -> int:
    """The anchor of function ``name`` in ``message``'s extensions, declared there if it is not yet."""
    functions = [e.extension_function for e in message.extensions if e.HasField("extension_function")]
    for function in functions:
        if function.name.split(":")[0] == name:
            return int(function.function_anchor)
    anchors = [function.function_anchor for function in functions]
    declared = message.extensions.add().extension_function
    declared.function_anchor = max(anchors, default=0) + 1
    declared.name = name
    return int(declared.function_anchor)
