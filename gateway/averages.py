"""Averages of decimals, written so that a source computes them exactly as DataFusion does.

DataFusion types ``avg`` of ``DECIMAL(p, s)`` as ``DECIMAL(min(38, p + 4), min(38, s + 4))`` and
computes it as the sum divided by the count, truncated (toward zero) to that scale. A source
carries more digits and rounds: PostgreSQL's ``avg`` of 150,000 balances has 16 significant
digits, and a value it rounds up at the 12th would cut to a different 6th. Where the source has
an exact truncating division of decimals (``SqlCapabilities.truncating_division``: PostgreSQL's
``DIV``), the average is sent as::

    DIV(SUM(x) * 10^s', COUNT(x)) * 10^-s'      -- s' = min(38, s + 4)

``SUM(x) * 10^s'`` is the sum in units of the result's last digit (an integer); ``DIV`` truncates
its quotient as DataFusion does; the product by ``10^-s'`` is exact. No rows give NULL, as
DataFusion's ``avg`` does (``SUM`` is NULL, and ``DIV`` of NULL is NULL).
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.schema import MappingSchema

from gateway.bytewise import named_outputs, sql_type

MAX_DIGITS = 38
"""The most digits, and fraction digits, of a 128-bit decimal (DataFusion's ``avg`` stops at them)."""


def average_type(kind: pa.Decimal128Type) -> pa.Decimal128Type:
    """The type of DataFusion's ``avg`` of a decimal of type ``kind``."""
    return pa.decimal128(min(MAX_DIGITS, kind.precision + 4), min(MAX_DIGITS, kind.scale + 4))


def exact_average(argument: exp.Expr, scale: int) -> exp.Expr:
    """``avg(argument)`` of a decimal of ``scale``, exact as DataFusion computes it (see the module doc)."""
    target = min(MAX_DIGITS, scale + 4)
    units = exp.Mul(
        this=exp.Sum(this=argument.copy()),
        expression=exp.Literal.number(10**target),
    )
    quotient = exp.IntDiv(this=units, expression=exp.Count(this=argument.copy()))
    step = exp.cast(exp.Literal.string(f"0.{'0' * (target - 1)}1"), exp.DataType.build(f"DECIMAL(38, {target})"))
    return exp.Mul(this=quotient, expression=step)


def exact_averages(
    tree: exp.Expr, tables: Mapping[str, Mapping[str, pa.Schema]], *, strict: bool = True
) -> exp.Expr | None:
    """``tree`` (a whole query) with every ``AVG`` of a decimal column written by :func:`exact_average`.

    ``strict`` (a query whose result holds decimals): None when an ``AVG`` or ``/`` remains whose
    result DataFusion rounds otherwise (any other average, ``AVG(DISTINCT ...)``, a windowed one, a
    division). Otherwise those are left as they are, and a tree whose types are not known is
    returned unchanged.

    ``tables`` maps each domain to its products' schemas (the query's table names).
    """
    schema = MappingSchema(
        {domain: {name: _columns(s) for name, s in products.items()} for domain, products in tables.items()},
        dialect="postgres",
        normalize=False,
    )
    try:
        annotated = annotate_types(named_outputs(tree.copy()), schema=schema, dialect="postgres")
    except SqlglotError:
        return None if strict else tree
    for average in list(annotated.find_all(exp.Avg)):
        argument = average.this
        kind = argument.type if isinstance(argument, exp.Column) else None
        if (
            kind is None
            or not kind.is_type(exp.DType.DECIMAL)
            or len(kind.expressions) != 2
            or isinstance(average.parent, exp.Window)
        ):
            if strict:
                return None
            continue
        average.replace(exact_average(argument, int(kind.expressions[1].name)))
    if strict and any(True for _ in annotated.find_all(exp.Avg, exp.Div)):
        return None
    return annotated


def _columns(schema: pa.Schema) -> dict[str, str]:
    """Column types for sqlglot, 128-bit decimals with their precision and scale (DataFusion's
    average of a 256-bit one has other bounds: it is not written)."""
    return {
        f.name: f"DECIMAL({f.type.precision}, {f.type.scale})" if pa.types.is_decimal128(f.type) else sql_type(f.type)
        for f in schema
    }
