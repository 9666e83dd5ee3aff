"""Rule: Parquet evaluates a query's filters while decoding only where that pays.

With ``datafusion.execution.parquet.pushdown_filters`` on, a Parquet scan decodes the filter's
columns first and the other columns only for the rows that pass (late materialisation). That
pays when the filter is selective and other columns are left to skip; otherwise it costs more
than it saves (TPC-H SF1, in one run: Q6 157 -> 109 ms, Q15 315 -> 207 ms, Q21 665 -> 526 ms
with it off, against Q19 335 -> 215 ms and point lookups 20,000 times fewer rows with it on).
Selectivity is not known before the scan runs, so the rule reads the plan's shape:

* a file scan whose filter holds a *point* (``column = literal``, ``column IN (literals)``,
  ``column LIKE 'prefix%'``, or a disjunction of such) and that reads other columns too: a
  lookup, TPC-H Q19's ``l_shipinstruct = 'DELIVER IN PERSON'`` (see :func:`_selective_scan`);
* a join of a file scan with a SQL source read filtered by a point on a text column (an
  attribute: a brand, a region): few rows reach the join's build side, and DataFusion's
  run-time filter of their keys then prunes the file while it is decoded (a region's orders
  from a Parquet log; TPC-H Q17's parts of one brand and container). Points on numbers there
  are mostly the planner's own run-time filters of foreign keys (a nation's suppliers), which
  keep too large a share of the file to pay (Q7 706 -> 637 ms, Q21 665 -> 526 ms with it off).

A range counts as a point when the file's statistics show it narrow: its bounds cover at most
:data:`NARROW` of the span between the column's smallest and largest values (the pushdown
benchmark's 10,000 ids in 10 million, a day of a year-long log; TPC-H Q6's year in seven and
Q1's nearly everything stay off; Q14's month in seven years turns it on, at no measured cost).
Without statistics (a CSV file, a text column) a range is not a point.
Joins whose other side is a whole table or another join leave it off. The answer is the same
either way; only the time differs.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow.parquet as pq
from datafusion import Expr, LogicalPlan

from gateway.pushdown import split_conjunction
from meshcore.arrow import is_text

LATE_SETTING = "datafusion.execution.parquet.pushdown_filters"
"""DataFusion's setting that turns late materialisation on for the Parquet scans of DataFrames made after it."""
NARROW = 0.02
"""The largest share of a column's span a range may cover to count as a point."""

Bounds = Callable[[Any, str], tuple[float, float] | None]
"""The smallest and largest value (as numbers, see :func:`number`) of a column of a file scan's
product, from its Parquet statistics; None when unknown."""

Kind = Callable[[Any], str | None]
"""What a TableScan reads: ``"files"`` (Parquet: columnar files), ``"sql"``, or None (CSV, a
system or derived table)."""

# Nodes a read passes through unchanged in what it is (a filtered read of one table).
_THROUGH = {"Projection", "Filter", "SubqueryAlias"}
_POINT_OPERATORS = {"=", "IS NOT DISTINCT FROM"}


def late_materialisation(plan: LogicalPlan, kind: Kind, bounds: Bounds | None = None) -> bool:
    """Whether ``plan``'s Parquet scans should evaluate filters while decoding."""
    known: Bounds = bounds or (lambda table_scan, column: None)
    found = False

    def walk(node: LogicalPlan) -> None:
        nonlocal found
        if found:
            return
        variant = node.to_variant()
        name = type(variant).__name__
        if name == "TableScan" and kind(variant) == "files" and _selective_scan(variant, [], known):
            found = True
            return
        if name == "Filter":
            read = filtered_scan(node)
            if read is not None and kind(read[0]) == "files" and _selective_scan(read[0], read[1], known):
                found = True
                return
        if name == "Join":
            sides = [filtered_scan(child) for child in node.inputs()]
            kinds = [kind(side[0]) if side is not None else None for side in sides]
            for ours, theirs in ((0, 1), (1, 0)):
                other = sides[theirs]
                if kinds[ours] == "files" and kinds[theirs] == "sql" and other is not None and _has_text_point(other):
                    found = True
                    return
        for child in node.inputs():
            walk(child)

    walk(plan)
    return found


def filtered_scan(node: LogicalPlan) -> tuple[Any, list[Expr]] | None:
    """The TableScan under ``node`` through projections, filters and aliases, with the filters
    met on the way; None when something else (a join, an aggregate) is in between."""
    filters: list[Expr] = []
    while True:
        variant = node.to_variant()
        name = type(variant).__name__
        if name == "TableScan":
            return variant, filters
        if name not in _THROUGH:
            return None
        if name == "Filter":
            filters.append(variant.predicate())
        (node,) = node.inputs()


def _conjuncts(scan: Any, above: list[Expr]) -> list[Expr]:
    """The conjuncts of a scan's own filters and of the filters met above it."""
    return [conjunct for expr in [*scan.filters(), *above] for conjunct in split_conjunction(expr)]


def _has_text_point(read: tuple[Any, list[Expr]]) -> bool:
    return any(_point(conjunct, text=True) for conjunct in _conjuncts(*read))


def _selective_scan(scan: Any, above: list[Expr], bounds: Bounds) -> bool:
    """A point in the scan's filter, and columns left to skip: an equality on one value, a
    narrow range, points on two columns (TPC-H Q20's 412 suppliers and 366 parts, run-time
    filters both), or as many other columns as filter columns for wider points (Q12's two ship
    modes in seven filter 4 of the 5 columns it reads: deciding row by row there costs more than
    it saves)."""
    conjuncts = _conjuncts(scan, above)
    points = [conjunct for conjunct in conjuncts if _point(conjunct)]
    narrow = _narrow_range(conjuncts, lambda column: bounds(scan, column))
    if not points and not narrow:
        return False
    filtered: set[str] = set()
    for conjunct in conjuncts:
        filtered |= _columns(conjunct)
    read = {name for _, name in scan.projection()}
    others = read - filtered
    if not others:
        return False
    single = any(conjunct.variant_name() == "BinaryExpr" and conjunct.to_variant().op() != "OR" for conjunct in points)
    several = len({frozenset(_columns(point)) for point in points}) > 1  # points on two columns: shares multiply
    return narrow or single or several or len(others) >= len(filtered & read)


_LOWER = {">": ">", ">=": ">", "<": "<", "<=": "<"}
_MIRRORED = {">": "<", "<": ">"}


def _narrow_range(conjuncts: list[Expr], span: Callable[[str], tuple[float, float] | None]) -> bool:
    """Whether the conjuncts bound some column to at most :data:`NARROW` of its span."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for conjunct in conjuncts:
        for column, side, value in _bounds_of(conjunct):
            if side == ">":
                low[column] = max(value, low.get(column, value))
            else:
                high[column] = min(value, high.get(column, value))
    for column in low.keys() | high.keys():
        known = span(column)
        if known is None or known[1] <= known[0]:
            continue
        if covered_share(low.get(column), high.get(column), known) <= NARROW:
            return True
    return False


def covered_share(low: float | None, high: float | None, span: tuple[float, float]) -> float:
    """The share (0 to 1) of a column's ``span`` (its smallest and largest value, the first the
    smaller) that the bounds ``low`` to ``high`` cover (None: no bound on that side), its values
    taken as spread evenly."""
    smallest, largest = span
    lower = smallest if low is None else max(low, smallest)
    upper = largest if high is None else min(high, largest)
    return min(1.0, max(upper - lower, 0.0) / (largest - smallest))


def _bounds_of(expr: Expr) -> list[tuple[str, str, float]]:
    """``(column, ">" or "<", value)`` for ``column > value`` and the like, and BETWEEN."""
    kind = expr.variant_name()
    if kind == "Between":
        between = expr.to_variant()
        column = _bare(between.expr())
        low, high = number_of(between.low()), number_of(between.high())
        if between.negated() or column.variant_name() != "Column" or low is None or high is None:
            return []
        name = str(column.to_variant().name())
        return [(name, ">", low), (name, "<", high)]
    if kind != "BinaryExpr":
        return []
    binary = expr.to_variant()
    op = _LOWER.get(binary.op())
    if op is None:
        return []
    left, right = _bare(binary.left()), _bare(binary.right())
    if left.variant_name() == "Literal" and right.variant_name() == "Column":
        left, right, op = right, left, _MIRRORED[op]
    value = number_of(right)
    if left.variant_name() != "Column" or value is None:
        return []
    return [(str(left.to_variant().name()), op, value)]


def number_of(expr: Expr) -> float | None:
    """A literal's value as a number (see :func:`number`), or None."""
    if expr.variant_name() != "Literal":
        return None
    return number(expr.python_value().as_py())


def number(value: object) -> float | None:
    """Dates as days, times as seconds, numbers as themselves; None for anything else (text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=value.tzinfo or datetime.UTC).timestamp()
    if isinstance(value, datetime.date):
        return float(value.toordinal())
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    return None


def _point(expr: Expr, text: bool = False) -> bool:
    """``column = literal``, ``column IN (literals)``, ``column LIKE 'prefix%'``, or an OR of points
    (with ``text``, of text literals only)."""
    kind = expr.variant_name()
    if kind == "BinaryExpr":
        binary = expr.to_variant()
        op = binary.op()
        if op == "OR":
            return _point(binary.left(), text) and _point(binary.right(), text)
        if op == "AND":
            return _point(binary.left(), text) or _point(binary.right(), text)
        sides = sorted([_bare(binary.left()), _bare(binary.right())], key=lambda side: side.variant_name())
        if op not in _POINT_OPERATORS or [side.variant_name() for side in sides] != ["Column", "Literal"]:
            return False
        return not text or is_text(sides[1].python_value().type)
    if kind == "InList":
        in_list = expr.to_variant()
        return (
            not in_list.negated()
            and _bare(in_list.expr()).variant_name() == "Column"
            and all(item.variant_name() == "Literal" for item in in_list.list())
            and (not text or all(is_text(item.python_value().type) for item in in_list.list()))
        )
    if kind == "Like":
        like = expr.to_variant()
        pattern = like.pattern()
        if like.negated() or pattern.variant_name() != "Literal" or _bare(like.expr()).variant_name() != "Column":
            return False
        value = pattern.python_value().as_py()
        return isinstance(value, str) and value[:1] not in ("", "%", "_")
    return False


def _bare(expr: Expr) -> Expr:
    """``expr`` without the casts around it."""
    while expr.variant_name() in ("Cast", "TryCast"):
        expr = expr.to_variant().expr()
    return expr


def _columns(expr: Expr) -> set[str]:
    """The names of the columns ``expr`` reads."""
    kind = expr.variant_name()
    if kind == "Column":
        return {str(expr.to_variant().name())}
    if kind in ("Literal", "Placeholder", "ScalarVariable"):
        return set()
    found: set[str] = set()
    try:
        operands = expr.rex_call_operands()
    except Exception:  # an expression the binding does not open: no columns known
        return found
    own: str | None = None  # its name, to skip an operand that is itself: written once (an IN list's is long)
    for operand in operands:
        if operand.variant_name() in ("Column", "Literal", "Placeholder", "ScalarVariable"):
            found |= _columns(operand)
            continue
        own = own if own is not None else expr.canonical_name()
        if operand.canonical_name() != own:
            found |= _columns(operand)
    return found


def file_spans(footers: Iterable[pq.FileMetaData]) -> dict[str, tuple[float, float]]:
    """Each top-level column's smallest and largest value over Parquet files' footers, where
    every row group of every file has statistics for it (one without them leaves it out)."""
    spans: dict[str, tuple[float, float]] = {}
    missing: set[str] = set()
    for metadata in footers:
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                name = chunk.path_in_schema
                statistics = chunk.statistics
                low = number(statistics.min) if statistics is not None and statistics.has_min_max else None
                high = number(statistics.max) if statistics is not None and statistics.has_min_max else None
                if low is None or high is None or "." in name:
                    missing.add(name)
                    continue
                known = spans.get(name, (low, high))
                spans[name] = (min(known[0], low), max(known[1], high))
    return {name: span for name, span in spans.items() if name not in missing}
