"""Rule: a hash join builds its table on the input estimated to be smaller.

DataFusion builds a hash join's table from its left input and probes with the right. It
swaps them when both inputs have statistics, but a SQL source's scan (a Python dataset) has
none, so the order of the query's text decides: TPC-H Q18 builds on six million rows and
probes with 57. This rule estimates each input's rows from the sources' statistics
(``Connector.estimate_rows``) and swaps a join whose left input is estimated at least
:data:`RATIO` times larger than its right::

    ... WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 300)
    LeftSemi Join (build: 6,001,215 rows)   ->   RightSemi Join (build: the 57 keys)

An inner join's output keeps its column order (a Substrait emit mapping puts the columns back);
a semi or anti join becomes its mirror image (left semi: right semi), whose output is the same
side's columns. Estimates are rough, which is why only a clear difference swaps; a join with
an input that cannot be estimated is left as it is. A grouping keeps :data:`GROUPED` of its
input; a filter keeps the product of its conjuncts' shares (:func:`selectivity`: an equality
0.1, a range bound 1/3, an IN list 0.1 a value up to a half ...), the textbook defaults (System
R's) that PostgreSQL also falls back on without statistics. TPC-H Q12's five conjuncts on
lineitem (two ship modes, two column comparisons, a year of receipt dates) are estimated at
14,500 of 6 million rows (31,000 are); one flat share for any filter said 1.5 million. Range
bounds on a Parquet file's columns take the share of the column's span they cover
(:func:`ranged_selectivity`, from the file's statistics) where the planner knows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datafusion import SessionContext

from gateway.plan.late_materialisation import covered_share
from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait_plan import (
    all_roots,
    conjuncts,
    equalities,
    field_of,
    function_names,
    inputs,
    instances,
    origin,
    sub_plan,
    to_logical,
    width,
)

RATIO = 4.0
"""How many times more rows the left input must be estimated to hold for a swap."""
FILTERED = 0.25
"""The share of its input a filter is assumed to keep when its condition is not known."""
EQUAL = 0.1
"""The share an equality (or LIKE) keeps; an IN list keeps as much a value, at most :data:`IN_LIST`."""
IN_LIST = 0.5
BOUND = 1 / 3
"""The share one range bound (``<``, ``>=`` ...) keeps."""
NULL = 0.1
"""The share ``IS NULL`` keeps."""
GROUPED = 0.1
"""The share of its input a grouping is assumed to keep (one row per group)."""

Rows = Callable[[tuple[str, ...]], float | None]
"""The estimated rows of the table a Substrait read names; None when unknown."""
Keys = Callable[[tuple[str, ...]], tuple[str, ...]]
"""The primary key of the table a Substrait read names; empty when it has none, or is not known."""


@dataclass(frozen=True)
class Facts:
    """What the sources tell the estimates beyond their tables' rows."""

    keys: Keys = lambda names: ()
    """Tables' primary keys (:func:`_keyed_join`)."""
    reads: Callable[[algebra_pb2.ReadRel], float | None] = lambda read: None
    """The rows a filtered read returns, as its source estimates them (its statistics of the
    filtered columns); None when it cannot tell, and the filter's shares (:func:`selectivity`) apply."""
    subset: Callable[[tuple[str, ...]], tuple[str, tuple[str, ...]] | None] = lambda names: None
    """For a table the planner computed (a join input run first): its column of distinct values of
    another table's one-column primary key, and that table's names; None when it has none. TPC-H
    Q9's 10,664 keys of green parts are some of the 200,000 of ``part``: lineitem joined with them
    is estimated at 10,664 / 200,000 of lineitem (319,404 rows; 6 million without)."""
    base: Callable[[tuple[str, ...]], tuple[str, ...] | None] = lambda names: names
    """The table whose columns a read's are, under their names: the table itself, or the one product
    a sub-plan pushed to its source reads (its filters and projections keep columns as they are);
    None when unknown."""


_Join = algebra_pb2.JoinRel
# Join types that may be swapped, and what each becomes.
_MIRROR = {
    _Join.JOIN_TYPE_INNER: _Join.JOIN_TYPE_INNER,
    _Join.JOIN_TYPE_LEFT_SEMI: _Join.JOIN_TYPE_RIGHT_SEMI,
    _Join.JOIN_TYPE_LEFT_ANTI: _Join.JOIN_TYPE_RIGHT_ANTI,
}


def estimate(
    rel: algebra_pb2.Rel, rows: Rows, functions: Mapping[int, str] | None = None, facts: Facts | None = None
) -> float | None:
    """The rows ``rel`` is estimated to return; None when an input cannot be estimated.

    ``functions`` names the plan's function anchors (``substrait_plan.function_names``);
    without it a filter keeps :data:`FILTERED`. With ``facts``, a filtered read is estimated by
    its source when it can, and an inner join on a table's primary key as such
    (:func:`_keyed_join`); without, a join is estimated at its larger input.
    """
    kind = rel.WhichOneof("rel_type")
    if kind == "read":
        return _read_estimate(rel.read, rows, functions, facts)[0]
    if (
        kind == "filter"
        and rel.filter.input.WhichOneof("rel_type") == "read"
        and rel.filter.input.read.HasField("filter")
    ):
        # DataFusion hands a scan the filter above it, which stays (Parquet: row groups pruned,
        # rows still filtered): the two are mostly the same conjuncts, not twice the cut. What the
        # source (or the file's statistics) told of the read stands.
        read = rel.filter.input.read
        found, told = _read_estimate(read, rows, functions, facts)
        if found is None or told:
            return found
        whole = rows(tuple(read.named_table.names))
        return min(found, whole * selectivity(rel.filter.condition, functions)) if whole is not None else found
    below = [estimate(child, rows, functions, facts) for child in inputs(rel)]
    if any(value is None for value in below) or not below:
        return None
    known = [value for value in below if value is not None]
    if kind == "filter":
        return known[0] * selectivity(rel.filter.condition, functions)
    if kind == "aggregate":
        grouped = bool(rel.aggregate.grouping_expressions) or any(
            g.expression_references for g in rel.aggregate.groupings
        )
        return known[0] * GROUPED if grouped else 1.0
    if kind == "join":
        left, right = known
        join_type = rel.join.type
        if join_type in (_Join.JOIN_TYPE_LEFT_SEMI, _Join.JOIN_TYPE_LEFT_ANTI):
            return left
        if join_type in (_Join.JOIN_TYPE_RIGHT_SEMI, _Join.JOIN_TYPE_RIGHT_ANTI):
            return right
        keyed = _keyed_join(rel.join, left, right, rows, functions, facts)
        return keyed if keyed is not None else max(left, right)
    if kind == "cross":
        return known[0] * known[1]
    if kind == "set":
        return sum(known)
    if kind in ("project", "sort", "fetch", "window", "exchange"):
        return known[0]
    return None


def _read_estimate(
    read: algebra_pb2.ReadRel, rows: Rows, functions: Mapping[int, str] | None, facts: Facts | None
) -> tuple[float | None, bool]:
    """A read's estimated rows (None when its table's are not known), and whether its source (or
    its files' statistics) told them (``Facts.reads``) rather than its filter's shares."""
    found = rows(tuple(read.named_table.names)) if read.HasField("named_table") else None
    if found is None:
        return None, False
    told = facts.reads(read) if facts is not None and read.HasField("filter") else None
    if told is not None:
        return told, True
    for condition in ("filter", "best_effort_filter"):
        if read.HasField(condition):
            found *= selectivity(getattr(read, condition), functions)
    return found, False


def _keyed_join(
    join: Any, left: float, right: float, rows: Rows, functions: Mapping[int, str] | None, facts: Facts | None
) -> float | None:
    """An inner join's rows when its equalities cover the primary key of a table one input reads;
    else None.

    Each row of the other input then matches at most the rows of that table that input kept,
    the textbook estimate (System R's, PostgreSQL's for a foreign key): ``left * right / rows of
    the table``. TPC-H Q8's lineitem joined with the parts of one type is a tenth of lineitem
    (the parts' filter's share), not all of it.
    """
    if facts is None or functions is None or join.type != _Join.JOIN_TYPE_INNER:
        return None
    left_width = width(join.left)
    if left_width is None:
        return None
    sides: tuple[dict[int, tuple[tuple[str, ...], str] | None], ...] = ({}, {})
    for pair in equalities(join.expression, functions):
        low, high = sorted(pair)
        if low < left_width <= high:
            sides[0][low] = origin(join.left, low)
            sides[1][high - left_width] = origin(join.right, high - left_width)
    tables: list[float] = []
    for found in sides:
        columns = [place for place in found.values() if place is not None]
        names = {table for table, _ in columns}
        if len(names) != 1 or len(columns) != len(found):
            continue
        (table,) = names
        covered = {column for _, column in columns}
        subset = facts.subset(table)
        if subset is not None and subset[0] in covered:
            whole = rows(subset[1])  # the keys' table's rows
        else:
            key = facts.keys(table)
            whole = rows(table) if key and set(key) <= covered else None
        if whole:
            tables.append(whole)
    if not tables:
        return None
    return max(1.0, left * right / max(tables))


def selectivity(condition: algebra_pb2.Expression, functions: Mapping[int, str] | None) -> float:
    """The share of rows ``condition`` is estimated to keep (conjuncts taken as independent)."""
    if functions is None:
        return FILTERED
    kind = condition.WhichOneof("rex_type")
    if kind == "singular_or_list":
        return min(IN_LIST, EQUAL * len(condition.singular_or_list.options))
    if kind == "literal" and condition.literal.HasField("boolean"):
        return 1.0 if condition.literal.boolean else 0.0
    if kind != "scalar_function":
        return FILTERED
    call = condition.scalar_function
    name = functions.get(call.function_reference, "")
    if name in ("and", "or", "not"):
        shares = [selectivity(argument.value, functions) for argument in call.arguments]
        if name == "and":
            return math.prod(shares)
        if name == "or":
            return 1.0 - math.prod(1.0 - share for share in shares)
        return 1.0 - shares[0] if shares else FILTERED
    return _SHARES.get(name, FILTERED)


Spans = Mapping[str, tuple[float, float]]
"""Columns' smallest and largest values, as numbers (``late_materialisation.number``)."""
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal(): Substrait's dates count days from it
_LOW = {"gt": True, "gte": True, "lt": False, "lte": False}
_FLIPPED = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte"}


def ranged_selectivity(
    condition: algebra_pb2.Expression, functions: Mapping[int, str], columns: Sequence[str], spans: Spans
) -> float:
    """The share of rows a read's ``condition`` keeps, its range bounds on columns of known
    ``spans`` (a Parquet file's statistics) taken as a share of the column's span (values taken as
    spread evenly) and its other conjuncts as :func:`selectivity` says. ``columns`` name the
    read's fields.

    TPC-H Q7's two years of ship dates in seven keep 0.29 of lineitem (0.30 do), where the two
    bounds' textbook shares said 1/9.
    """
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    share = 1.0
    for term in conjuncts(condition, functions):
        bound = _bound(term, functions, columns)
        if (
            bound is None
            or not math.isfinite(bound[2])
            or not all(map(math.isfinite, spans.get(bound[0], (math.nan,))))
        ):
            share *= selectivity(term, functions)  # not a bound, or no (finite) span of its column
        elif bound[1]:
            low[bound[0]] = max(bound[2], low.get(bound[0], bound[2]))
        else:
            high[bound[0]] = min(bound[2], high.get(bound[0], bound[2]))
    for column in low.keys() | high.keys():
        smallest, largest = spans[column]
        if largest <= smallest:  # one value: no span to take a share of
            share *= BOUND ** ((column in low) + (column in high))
        else:
            share *= covered_share(low.get(column), high.get(column), (smallest, largest))
    return share


def _bound(
    term: algebra_pb2.Expression, functions: Mapping[int, str], columns: Sequence[str]
) -> tuple[str, bool, float] | None:
    """``(column, whether a lower bound, value)`` for ``column > literal`` and the like (either way
    round); None for any other term."""
    if term.WhichOneof("rex_type") != "scalar_function":
        return None
    call = term.scalar_function
    name = functions.get(call.function_reference, "")
    if name not in _LOW or len(call.arguments) != 2:
        return None
    first, second = (argument.value for argument in call.arguments)
    if field_of(first) is None:
        first, second, name = second, first, _FLIPPED[name]
    field, value = field_of(first), _number(second)
    if field is None or value is None or field >= len(columns):
        return None
    return columns[field], _LOW[name], value


def _number(expression: algebra_pb2.Expression) -> float | None:
    """A literal's value as ``late_materialisation.number`` gives a statistic's: dates as their
    ordinal, integers and floats as themselves; None for anything else."""
    if expression.WhichOneof("rex_type") != "literal":
        return None
    literal = expression.literal
    kind = literal.WhichOneof("literal_type")
    if kind == "date":
        return float(literal.date + _EPOCH_ORDINAL)
    if kind in ("i8", "i16", "i32", "i64", "fp32", "fp64"):
        return float(getattr(literal, kind))
    return None


_SHARES = {
    "equal": EQUAL,
    "is_not_distinct_from": EQUAL,
    "like": EQUAL,
    "ilike": EQUAL,
    "not_equal": 1.0 - EQUAL,
    "is_distinct_from": 1.0 - EQUAL,
    "lt": BOUND,
    "lte": BOUND,
    "gt": BOUND,
    "gte": BOUND,
    "between": BOUND * BOUND,
    "is_null": NULL,
    "is_not_null": 1.0 - NULL,
}


def build_smaller(message: plan_pb2.Plan, ctx: SessionContext, rows: Rows, facts: Facts | None = None) -> bool:
    """Swap, in ``message``, every join whose left input is estimated :data:`RATIO` times larger; whether one was."""
    swapped = False
    functions = function_names(message)

    def visit(rel: algebra_pb2.Rel) -> None:
        nonlocal swapped
        for child in inputs(rel):
            visit(child)
        if rel.WhichOneof("rel_type") != "join" or rel.join.type not in _MIRROR or rel.join.common.HasField("emit"):
            return
        left, right = estimate(rel.join.left, rows, functions, facts), estimate(rel.join.right, rows, functions, facts)
        if left is None or right is None or left <= RATIO * max(right, 1.0):
            return
        if _swap(message, rel.join, ctx):
            swapped = True

    for top in all_roots(message):  # subqueries kept as expressions are plans of their own
        visit(top)
    return swapped


def _swap(message: plan_pb2.Plan, join: Any, ctx: SessionContext) -> bool:
    """Swap ``join``'s inputs in place (field references, join type, output order); False if it cannot."""
    conditions = (join.expression, join.post_join_filter)
    if any(True for c in conditions for _ in instances(c, algebra_pb2.Expression.Subquery)):
        return False  # a subquery's references are to its own input, not the join's: leave it
    left_width, right_width = width_of(message, join.left, ctx), width_of(message, join.right, ctx)
    left = algebra_pb2.Rel()
    left.CopyFrom(join.left)
    join.left.CopyFrom(join.right)
    join.right.CopyFrom(left)
    for expression in conditions:
        _remap(expression, left_width, right_width)
    if join.type == _Join.JOIN_TYPE_INNER:  # right's columns come first now: put them back in order
        join.common.emit.output_mapping.extend([*range(right_width, right_width + left_width), *range(right_width)])
    join.type = _MIRROR[join.type]
    return True


def width_of(message: plan_pb2.Plan, rel: algebra_pb2.Rel, ctx: SessionContext) -> int:
    """How many columns ``rel`` (a part of ``message``) returns: read from the plan, else DataFusion's."""
    counted = width(rel)
    if counted is not None:
        return counted
    return len(ctx.create_dataframe_from_logical_plan(to_logical(sub_plan(message, rel), ctx)).schema())


def _remap(expression: Any, left_width: int, right_width: int) -> None:
    """Point ``expression``'s references to the join's columns at their places once the inputs are swapped."""
    for item in list(instances(expression, algebra_pb2.Expression.FieldReference)):
        if item.HasField("root_reference") and item.HasField("direct_reference"):
            field = item.direct_reference.struct_field
            field.field = field.field + right_width if field.field < left_width else field.field - left_width
