"""String constants compared with dates and timestamps, which a source may read otherwise than DataFusion.

DataFusion reads a string compared with a DATE as a date: ``d < '2024-02-29 00:00:01'`` is
``d < DATE '2024-02-29'`` (the time dropped), ``d = '2024-2-29'`` is ``d = DATE '2024-02-29'``;
compared with a TIMESTAMP, as a timestamp (``ts = '2024-02-29'`` is midnight). SQLite, which
holds both as text, compares the strings as they are, and MySQL compares a date with a string
holding a time as a DATETIME. Sent whole, ``d < '2024-02-29 00:00:01'`` counted 2024-02-29
itself in both, ``d = '2024-2-29'`` found no row in SQLite, and ``ts = '2024-02-29'`` none of
SQLite's midnights. A whole query goes to such a source (``SqlCapabilities.string_dates`` false)
only when each string constant compared with a date is a date in its canonical form
(``'2024-02-29'``, read alike everywhere) and, where temporals are text
(``temporal_literals="iso_text"``), none is compared with a timestamp, nor a date with a
timestamp (``ts = DATE '2024-02-29'``, or a date given as a parameter: the texts differ at
midnight); a cast of another string to a date keeps it back too (SQLite's ``date('2024-2-29')``
is NULL). Such a query stays
federated: DataFusion reads the constant, and the filter it pushes holds the date in that form.

A string with a UTC offset compared with a timestamp without a zone (``ts = '2024-02-29
10:30:00+02'``) is 08:30 in DataFusion, which converts it to UTC, and 10:30 in PostgreSQL, which
drops the offset: such a whole query stays federated on every source.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlglot import exp

from connectors.base import SqlCapabilities
from gateway.bytewise import TypedQuery

_CANONICAL = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_TIMESTAMPS = (exp.DType.TIMESTAMP, exp.DType.TIMESTAMPTZ, exp.DType.TIMESTAMPNTZ, exp.DType.DATETIME)
_ZONELESS = (exp.DType.TIMESTAMP, exp.DType.TIMESTAMPNTZ, exp.DType.DATETIME)
_ZONED = re.compile(r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*[+-]\d\d?(?::?\d\d)?$")
"""A time with a UTC offset at its end (``10:30:00+02``, ``10:30-05:00``)."""


def canonical_date(text: str) -> bool:
    """Whether ``text`` is a valid date written ``YYYY-MM-DD``."""
    found = _CANONICAL.fullmatch(text)
    if found is None:
        return False
    try:
        dt.date(*(int(part) for part in found.groups()))
    except ValueError:
        return False
    return True


def dates_read_as_datafusion(query: TypedQuery, capabilities: SqlCapabilities, temporals: bool) -> bool:
    """Whether the source reads every string constant ``query`` (a whole query) compares with a
    date or timestamp as DataFusion does (see the module); ``temporals``: whether the query's
    products have a date or timestamp column at all."""
    tree = query.tree
    strings = [literal for literal in tree.find_all(exp.Literal) if literal.is_string] if temporals else []
    zoned = any(_ZONED.search(literal.this) for literal in strings)
    if not strings or (capabilities.string_dates and not zoned):
        return True
    text = capabilities.temporal_literals == "iso_text"  # timestamps are text too
    strict = not capabilities.string_dates
    if strict and not text and not zoned and all(canonical_date(literal.this) for literal in strings):
        return True  # (a constant of a date or a timestamp is a cast of a string)
    for cast in tree.find_all(exp.Cast):
        if strict and cast.to.is_type(exp.DType.DATE) and _odd_string(cast.this):
            return False
    annotated = query.typed()
    if annotated is None:
        return False
    for node in annotated.find_all(*_COMPARISONS, exp.Between, exp.In):
        operands = _operands(node)
        if text and any(_typed(o, exp.DType.DATE) for o in operands) and any(_typed(o, *_TIMESTAMPS) for o in operands):
            return False  # '2024-02-29 00:00:00' = '2024-02-29' is false as text
        if not any(_string(operand) for operand in operands):
            continue
        if zoned and any(_typed(o, *_ZONELESS) for o in operands) and any(_zoned(o) for o in operands):
            return False
        if not strict:
            continue
        if any(_typed(operand, exp.DType.DATE) for operand in operands) and any(map(_odd_string, operands)):
            return False
        if text and any(_typed(operand, *_TIMESTAMPS) for operand in operands):
            return False
    return True


def _operands(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.Between):
        return [node.this, node.args["low"], node.args["high"]]
    if isinstance(node, exp.In):
        return [node.this, *node.expressions]
    return [node.this, node.expression]


def _string(operand: exp.Expr) -> bool:
    return isinstance(operand, exp.Literal) and operand.is_string


def _typed(operand: exp.Expr, *kinds: exp.DType) -> bool:
    return not _string(operand) and operand.type is not None and operand.type.is_type(*kinds)


def _zoned(operand: exp.Expr) -> bool:
    return _string(operand) and _ZONED.search(operand.this) is not None


def _odd_string(operand: exp.Expr) -> bool:
    """Whether ``operand`` is a string constant not in the canonical form of a date."""
    return _string(operand) and not canonical_date(operand.this)
