"""Whole queries MySQL and MariaDB answer as DataFusion does (:meth:`MysqlConnector.whole_query`).

The gateway sends a query whose products all live in one MySQL database to it whole
(gateway/planner.py), and casts the answer to the types DataFusion planned. Where MySQL would
answer differently, :func:`whole_query` either rewrites the query so that it does not, or
refuses it (None: the query stays federated, and DataFusion computes over the pushed scans):

- **Text** compares by bytes: every text column reaches the query in the binary no-pad
  collation through its product's relation, and every text constant is given it (``'a' COLLATE
  utf8mb4_nopad_bin``; the connection's collation would not do: connectorx prepares the statement
  before it runs the session's settings, and a constant takes the collation of the statement's
  preparation).
- **NULL order**: MySQL sorts NULLs first ascending and last descending, DataFusion last and
  first. A key sorted the other way (ORDER BY and window orders) gets a leading ``key IS NULL``.
- **Intervals** come from DataFusion as ``INTERVAL '3 MONS'``; they are written ``INTERVAL '3'
  MONTH``. Intervals of other forms (fractions, several units) are refused.
- **Offsets** without a limit get MySQL's "all rows" limit; ranking functions lose the window
  frame DataFusion writes (MariaDB refuses a frame there, and it changes nothing).
- **Refused**: ``/``, ``%`` and ``DIV`` (MySQL divides integers into a DECIMAL with 4 more digits,
  DataFusion truncates; MOD by zero is NULL, not an error), ``AVG`` (a DECIMAL with 4 fraction
  digits for integers), bitwise operators (unsigned 64-bit in MySQL), ``ILIKE``, ``FILTER``
  clauses, ``FULL`` joins, ``LATERAL``, grouping sets, ``DISTINCT ON``, ``INTERSECT``/``EXCEPT
  ALL``, an IN subquery with a LIMIT, casts to text, boolean or time (numbers and booleans print
  otherwise), casts to integers of anything but integers (MySQL rounds, DataFusion truncates),
  arithmetic on unsigned columns (MySQL fails where DataFusion goes negative) and on dates and times
  but with an interval (``d + 1`` is a number there), RANGE window frames with offsets, joins on boolean
  columns (a ``BOOLEAN`` holding 2 fails when it is read, as pushed joins never take such keys), ``TRIM`` of other
  characters than spaces (MySQL trims a string, DataFusion a set of characters), an output of
  DataFusion's Null type (``SELECT NULL AS v``: connectorx reads no MySQL NULL column), and every
  function not in :data:`FUNCTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import pyarrow as pa
from sqlglot import exp

FUNCTIONS: tuple[type[exp.Func], ...] = (
    exp.Abs,
    exp.And,  # AND and OR are functions to sqlglot
    exp.Case,
    exp.Cast,
    exp.Coalesce,
    exp.Count,
    exp.DenseRank,
    exp.Exists,
    exp.Extract,
    exp.If,
    exp.Length,  # CHAR_LENGTH in MySQL: characters, as DataFusion counts
    exp.Max,
    exp.Min,
    exp.Nullif,
    exp.Or,
    exp.Rank,
    exp.RowNumber,
    exp.Sum,
    exp.Trim,
)
"""Functions (sqlglot's classes) whose MySQL rendering answers as DataFusion does, with the checks below."""

_RANKING = (exp.RowNumber, exp.Rank, exp.DenseRank)
_REFUSED: tuple[type[exp.Expr], ...] = (
    exp.Div,
    exp.Mod,
    exp.IntDiv,
    exp.BitwiseAnd,
    exp.BitwiseOr,
    exp.BitwiseXor,
    exp.BitwiseNot,
    exp.BitwiseLeftShift,
    exp.BitwiseRightShift,
    exp.ILike,
    exp.Filter,
    exp.Lateral,
    exp.Rollup,
    exp.Cube,
    exp.GroupingSets,
)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Neg)
_EXTRACT_UNITS = frozenset({"YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE"})
# DataFusion's interval units (``'3 MONS'``) -> MySQL's
_INTERVAL_UNITS = {
    "YEAR": "YEAR",
    "YEARS": "YEAR",
    "MON": "MONTH",
    "MONS": "MONTH",
    "MONTH": "MONTH",
    "MONTHS": "MONTH",
    "DAY": "DAY",
    "DAYS": "DAY",
    "HOUR": "HOUR",
    "HOURS": "HOUR",
    "MIN": "MINUTE",
    "MINS": "MINUTE",
    "MINUTE": "MINUTE",
    "MINUTES": "MINUTE",
    "SEC": "SECOND",
    "SECS": "SECOND",
    "SECOND": "SECOND",
    "SECONDS": "SECOND",
}
_INTERVAL = re.compile(r"^\s*(-?\d+)\s+([A-Za-z]+)\s*$")
_CAST_TARGETS = {
    *exp.DataType.INTEGER_TYPES,
    *exp.DataType.REAL_TYPES,
    exp.DType.DATE,
    exp.DType.DATETIME,
    exp.DType.TIMESTAMP,
    exp.DType.TIMESTAMPNTZ,
}
_ALL_ROWS = 18446744073709551615
"""MySQL's LIMIT for "every row" (it has no OFFSET without a LIMIT)."""


class _Refused(Exception):
    pass


def whole_query(
    query: exp.Expr, schemas: Sequence[pa.Schema], output: pa.Schema, collation: str
) -> exp.Expr | None:
    """``query`` rewritten so that MySQL answers it as DataFusion does, or None (see the module doc).

    ``schemas`` are the query's products' schemas: a column is known by its name only, so a
    name that is unsigned in any of them counts as unsigned. ``output`` is the schema DataFusion
    planned for the answer; ``collation`` the server's binary no-pad collation.
    """
    if any(pa.types.is_null(field.type) for field in output):
        return None  # a bare NULL output: connectorx reads no MYSQL_TYPE_NULL column
    unsigned = {f.name for schema in schemas for f in schema if pa.types.is_unsigned_integer(f.type)}
    temporal = {f.name for schema in schemas for f in schema if pa.types.is_temporal(f.type)}
    booleans = {f.name for schema in schemas for f in schema if pa.types.is_boolean(f.type)}
    integer_only = _integer_names(schemas)
    try:
        for node in query.walk():
            _check(node, unsigned, booleans, integer_only)
            _check_dates_and_frames(node, temporal)
        query = query.transform(_interval)
    except _Refused:
        return None
    query = query.transform(partial(_binary_text, collation))
    for order in list(query.find_all(exp.Order)):
        aggregates = _aggregate_outputs(order.parent)
        order.set("expressions", [key for ordered in order.expressions for key in _null_order(ordered, aggregates)])
    for window in list(query.find_all(exp.Window)):
        if isinstance(window.this, _RANKING) and window.args.get("spec") is not None:
            window.set("spec", None)
    for select in list(query.find_all(exp.Select)):
        if select.args.get("offset") is not None and select.args.get("limit") is None:
            select.set("limit", exp.Limit(expression=exp.Literal.number(_ALL_ROWS)))
    return _read_as_text(query, output)


def _read_as_text(query: exp.Expr, output: pa.Schema) -> exp.Expr | None:
    """The answer's decimals, times and sums as text, which the scan converts back exactly.

    connectorx rounds decimals to 10 fraction digits and fails on some (scans read them as
    text for the same reason), and MySQL's ``SUM`` of integers is a DECIMAL. An ORDER BY that
    names such an output orders by its expression, not by its text. A set operation's
    outputs cannot be told apart that way: a UNION with such outputs is refused (None).
    """
    if not isinstance(query, exp.Select):
        if any(_textual(field.type) for field in output):
            return None
        return query
    items = query.expressions
    if len(items) != len(output) or any(isinstance(item, exp.Star) for item in items):
        return None
    replaced: dict[str, exp.Expr] = {}
    for position, (item, field) in enumerate(zip(items, output, strict=True)):
        inner = item.this if isinstance(item, exp.Alias) else item
        summed = pa.types.is_integer(field.type) and any(True for _ in inner.find_all(exp.Sum))
        if not (_textual(field.type) or summed):
            continue
        name = item.alias_or_name or field.name
        replaced[name] = inner
        text = exp.cast(inner.copy(), exp.DType.CHAR)
        items[position] = exp.alias_(text, name, quoted=True)
    order = query.args.get("order")
    if replaced and order is not None:
        for key in order.expressions:
            target = key.this if isinstance(key, exp.Ordered) else None
            if isinstance(target, exp.Is):
                target = target.this
            if isinstance(target, exp.Column) and not target.table and target.name in replaced:
                target.replace(replaced[target.name].copy())
    return query


def _textual(kind: pa.DataType) -> bool:
    return bool(pa.types.is_decimal(kind) or pa.types.is_time(kind))


def _integer_names(schemas: Sequence[pa.Schema]) -> frozenset[str]:
    """Column names that are an integer in every product that has them."""
    kinds: dict[str, bool] = {}
    for schema in schemas:
        for field in schema:
            kinds[field.name] = kinds.get(field.name, True) and pa.types.is_integer(field.type)
    return frozenset(name for name, integer in kinds.items() if integer)


def _check(node: exp.Expr, unsigned: set[str], booleans: set[str], integer_only: frozenset[str]) -> None:
    """Raise :class:`_Refused` if MySQL would answer ``node`` otherwise than DataFusion."""
    if isinstance(node, _REFUSED):
        raise _Refused
    if isinstance(node, exp.Func) and not isinstance(node, FUNCTIONS):
        raise _Refused
    if isinstance(node, _ARITHMETIC) and any(c.name in unsigned for c in node.find_all(exp.Column)):
        raise _Refused
    if isinstance(node, exp.Cast):
        _check_cast(node, integer_only)
    elif isinstance(node, exp.Extract):
        if node.name.upper() not in _EXTRACT_UNITS:
            raise _Refused
    elif isinstance(node, exp.Trim):
        if node.args.get("expression") is not None or node.args.get("position") is not None:
            raise _Refused
    elif isinstance(node, exp.Join):
        if node.side.upper() == "FULL":
            raise _Refused
        on = node.args.get("on")
        if on is not None and any(c.name in booleans for c in on.find_all(exp.Column)):
            raise _Refused  # a BOOLEAN holding 2 would just not match there, where reading it fails
    elif isinstance(node, exp.Distinct):
        if node.args.get("on") is not None:
            raise _Refused
    elif isinstance(node, (exp.Intersect, exp.Except)):
        if not node.args.get("distinct", True):
            raise _Refused
    elif isinstance(node, exp.In):
        query = node.args.get("query")
        if query is not None and any(True for _ in query.find_all(exp.Limit)):
            raise _Refused  # MySQL: "doesn't yet support 'LIMIT & IN/ALL/ANY/SOME subquery'"


def _check_dates_and_frames(node: exp.Expr, temporal: set[str]) -> None:
    """Raise :class:`_Refused` for arithmetic on a date or time other than with an interval (MySQL
    turns ``d + 1`` into the number 20240201), and for a RANGE frame with offsets (MariaDB fails on
    DataFusion's ``RANGE BETWEEN 1 PRECEDING AND CURRENT ROW`` as sqlglot writes it)."""
    if isinstance(node, _ARITHMETIC) and not any(isinstance(side, exp.Interval) for side in node.args.values()):
        if any(column.name in temporal for column in node.find_all(exp.Column)):
            raise _Refused
    elif isinstance(node, exp.WindowSpec) and str(node.args.get("kind") or "").upper() == "RANGE":
        offsets = isinstance(node.args.get("start"), exp.Expr) or isinstance(node.args.get("end"), exp.Expr)
        if offsets:
            raise _Refused


def _check_cast(cast: exp.Cast, integer_only: frozenset[str]) -> None:
    target = cast.to.this
    if target not in _CAST_TARGETS:
        raise _Refused
    if target in exp.DataType.INTEGER_TYPES:
        operand = cast.this
        integer = (isinstance(operand, exp.Literal) and operand.is_int) or (
            isinstance(operand, exp.Column) and operand.name in integer_only
        )
        if not integer:
            raise _Refused


def _mysql_interval(interval: exp.Interval) -> exp.Interval | None:
    """DataFusion's ``INTERVAL '3 MONS'`` as ``INTERVAL '3' MONTH``; None for any other form."""
    value, unit = interval.this, interval.args.get("unit")
    if not isinstance(value, exp.Literal):
        return None
    text = value.this if unit is None else f"{value.this} {unit.name}"
    match = _INTERVAL.match(str(text))
    if match is None or match.group(2).upper() not in _INTERVAL_UNITS:
        return None
    return exp.Interval(
        this=exp.Literal.string(match.group(1)), unit=exp.Var(this=_INTERVAL_UNITS[match.group(2).upper()])
    )


def _interval(node: exp.Expr) -> exp.Expr:
    """An interval in MySQL's form; :class:`_Refused` for one it cannot be written in."""
    if not isinstance(node, exp.Interval):
        return node
    rewritten = _mysql_interval(node)
    if rewritten is None:
        raise _Refused
    return rewritten


def _binary_text(collation: str, node: exp.Expr) -> exp.Expr:
    """A text constant in ``collation``; not an interval's amount nor a LIKE's escape character."""
    if not isinstance(node, exp.Literal) or not node.is_string:
        return node
    if isinstance(node.parent, (exp.Interval, exp.Collate)) or (
        isinstance(node.parent, exp.Escape) and node.arg_key == "expression"
    ):
        return node
    return exp.Collate(this=node.copy(), expression=exp.Var(this=collation))


def _aggregate_outputs(select: exp.Expr | None) -> dict[str, exp.Expr]:
    """The outputs of ``select`` that aggregate, by their names."""
    if not isinstance(select, exp.Select):
        return {}
    return {
        item.alias: item.this
        for item in select.expressions
        if isinstance(item, exp.Alias) and item.this.find(exp.AggFunc) is not None
    }


def _null_order(ordered: exp.Expr, aggregates: dict[str, exp.Expr]) -> list[exp.Expr]:
    """An ORDER BY key as MySQL must be given it to place NULLs where DataFusion does.

    MySQL puts NULLs first ascending and last descending; a key asking for the other place
    is preceded by ``key IS NULL`` in the same direction. Both keys are marked with MySQL's
    own NULL order, so that sqlglot adds nothing of its own. A key naming an output that
    aggregates (``aggregates``) is tested by its expression: MySQL refuses ``n IS NULL`` of
    ``COUNT(1) AS n`` ("reference to group function", error 1247).
    """
    if not isinstance(ordered, exp.Ordered):
        return [ordered]
    descending = bool(ordered.args.get("desc"))
    natural = not descending
    if bool(ordered.args.get("nulls_first")) == natural:
        return [ordered]
    tested = ordered.this
    if isinstance(tested, exp.Column) and not tested.table and tested.name in aggregates:
        tested = aggregates[tested.name]
    nulls = exp.Ordered(this=exp.Is(this=tested.copy(), expression=exp.Null()), desc=descending)
    nulls.set("nulls_first", natural)
    key = ordered.copy()
    key.set("nulls_first", natural)
    return [nulls, key]


__all__ = ["FUNCTIONS", "whole_query"]
