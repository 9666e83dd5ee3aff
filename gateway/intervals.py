"""Date arithmetic with intervals that a source computes as DataFusion does, or not at all.

DataFusion adds an interval to a DATE as a DATE: its months and days, and nothing of a part
shorter than a day (``DATE '1995-01-01' + INTERVAL '36 hours'`` is 1995-01-02,
``- INTERVAL '3 hours'`` is 1995-01-01 itself). PostgreSQL, DuckDB and MySQL make a timestamp of
it (1995-01-02 12:00, 1994-12-31 21:00), so a comparison or a grouping of such a sum answered
otherwise when the whole query went to the source: ``o_orderdate + INTERVAL '36 hours' =
DATE '1995-01-02'`` counted 0 orders in PostgreSQL and 611 in DataFusion. A whole query with
an interval of hours, minutes or seconds added to anything not known to be a timestamp, or with
such a sum cast to text (a timestamp prints its time), stays federated
(:func:`date_arithmetic_as_datafusion`). Whole days and months give the same day on both routes:
a timestamp at midnight compares with a date as the date does, and the answer is cast to the
type DataFusion planned. A number added to a date goes only as a constant (``d + 1``):
PostgreSQL adds an ``int4`` to a date but no ``BIGINT``, DuckDB neither, and ``d + n`` of a
BIGINT column failed there where DataFusion answers.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from gateway.bytewise import TypedQuery

_PART = re.compile(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z]+)")
_WHOLE_DAYS = frozenset({"YEAR", "YEARS", "MON", "MONS", "MONTH", "MONTHS", "WEEK", "WEEKS", "DAY", "DAYS"})
_TIMESTAMPS = (exp.DType.TIMESTAMP, exp.DType.TIMESTAMPTZ, exp.DType.TIMESTAMPNTZ, exp.DType.DATETIME)


def shorter_than_a_day(interval: exp.Interval) -> bool:
    """Whether ``interval`` (as DataFusion writes one: ``INTERVAL '1 DAYS 12 HOURS'``, or split by
    sqlglot into an amount and a unit) has a part shorter than a day, or cannot be read."""
    value, unit = interval.this, interval.args.get("unit")
    if not isinstance(value, exp.Literal):
        return True
    text = str(value.this) if unit is None else f"{value.this} {unit.name}"
    parts = _PART.findall(text)
    if not parts or _PART.sub("", text).strip():
        return True
    for amount, name in parts:
        try:
            number = Decimal(amount)
        except InvalidOperation:
            return True
        if name.upper() not in _WHOLE_DAYS and number != 0:
            return True
        if name.upper() in ("DAY", "DAYS") and number != number.to_integral_value():
            return True
    return False


def date_arithmetic_as_datafusion(query: TypedQuery) -> bool:
    """Whether every interval or number added to or taken from a date or time in ``query`` (a whole
    query) gives the source's answer DataFusion's (see the module)."""
    tree = query.tree
    sums = list(tree.find_all(exp.Add, exp.Sub))
    if not sums:
        return True
    for cast in tree.find_all(exp.Cast):
        printed = cast.to.is_type(*exp.DataType.TEXT_TYPES)
        if printed and any(_interval_of(node) is not None for node in cast.this.find_all(exp.Add, exp.Sub)):
            return False
    short = any(shorter_than_a_day(interval) for node in sums if (interval := _interval_of(node)) is not None)
    if not short and not any(_may_add_to_a_date(node) for node in sums):
        return True  # intervals of whole days, and numbers added as constants (``d + 1``)
    annotated = query.typed()
    if annotated is None:
        return False
    for node in annotated.find_all(exp.Add, exp.Sub):
        interval = _interval_of(node)
        if interval is not None:
            other = node.expression if node.this is interval else node.this
            if shorter_than_a_day(interval) and (other.type is None or not other.type.is_type(*_TIMESTAMPS)):
                return False
            continue
        dates = [side for side in (node.this, node.expression) if _typed(side, exp.DType.DATE)]
        if len(dates) == 1:
            other = node.expression if dates[0] is node.this else node.this
            if not _constant(other) and not _typed(other, exp.DType.DATE, *_TIMESTAMPS):
                # PostgreSQL adds an int4 to a date but no BIGINT, DuckDB neither: ``d + n`` of a
                # BIGINT column failed there, where DataFusion answers. A constant (``d + 1``) goes.
                return False
    return True


def _may_add_to_a_date(node: exp.Expr) -> bool:
    """Whether ``node`` (a ``+`` or ``-``) may add a number other than a constant to a date."""
    sides = (node.this, node.expression)
    if any(isinstance(side, exp.Interval) or (isinstance(side, exp.Literal) and not side.is_string) for side in sides):
        return False
    return not all(_constant(side) for side in sides)


def _constant(side: exp.Expr) -> bool:
    """Whether ``side`` is a constant: a literal, an interval, or a literal cast."""
    return isinstance(side, (exp.Literal, exp.Interval)) or (
        isinstance(side, exp.Cast) and isinstance(side.this, exp.Literal)
    )


def _typed(side: exp.Expr, *kinds: exp.DType) -> bool:
    return side.type is not None and side.type.is_type(*kinds)


def _interval_of(node: exp.Expr) -> exp.Interval | None:
    """The interval ``node`` (a ``+`` or ``-``) adds or takes, if one of its sides is one."""
    for side in (node.this, node.expression):
        if isinstance(side, exp.Interval):
            return side
    return None
