"""A pyarrow filter that compares floats as DataFusion does: NaN is equal to itself and above every number.

DataFusion hands a product's scan the filters it pushed to it as one pyarrow expression, marked
exact: when the source did not apply them all (a filter with a NaN constant, a product read twice
in one query, a scan the planner could not see), :mod:`gateway.scan` applies that expression to the
rows it read. pyarrow compares floats as IEEE 754 does, where NaN is equal to nothing and neither
above nor below anything; DataFusion, PostgreSQL and DuckDB order NaN above every number and equal
to itself. So ``x = 'NaN'::double`` found no row, and ``x > 0 AND x <> 'inf'::double`` dropped the
NaNs, where the same query sent whole to PostgreSQL or DuckDB found them.

:func:`datafusion_order` rewrites each comparison of floats in such an expression (read as
Substrait, which pyarrow writes and reads) so that pyarrow answers as DataFusion does::

    a = b    ->  (a = b) OR (is_nan(a) AND is_nan(b))
    a <> b   ->  (a <> b) AND NOT (is_nan(a) AND is_nan(b))
    a < b    ->  (a < b) OR (is_nan(b) AND NOT is_nan(a))
    a <= b   ->  (a <= b) OR (is_nan(b) AND a IS NOT NULL)
    a > b    ->  (a > b) OR (is_nan(a) AND NOT is_nan(b))
    a >= b   ->  (a >= b) OR (is_nan(a) AND b IS NOT NULL)

A comparison with NULL stays NULL (``is_nan(NULL)`` is NULL). Zero and negative zero are equal in
both. DataFusion hands a scan no cast (a constant has the column's type), and pyarrow cannot write
a checked cast as Substrait: an expression with one is left as it is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.substrait as pa_substrait
from google.protobuf.unknown_fields import UnknownFieldSet

from gateway.plan.substrait import algebra_pb2
from gateway.plan.substrait.extensions import extensions_pb2
from gateway.plan.substrait_plan import extended_expression

log = logging.getLogger(__name__)

_Term: TypeAlias = pc.Expression | bool
"""A condition, or a constant one (of a constant operand: ``is_nan(0.05)`` is false)."""


def _or(a: _Term, b: _Term) -> _Term:
    if isinstance(a, bool) or isinstance(b, bool):
        return True if a is True or b is True else (b if a is False else a)
    return a | b


def _and(a: _Term, b: _Term) -> _Term:
    if isinstance(a, bool) or isinstance(b, bool):
        return False if a is False or b is False else (b if a is True else a)
    return a & b


def _not(a: _Term) -> _Term:
    return (not a) if isinstance(a, bool) else ~a


@dataclass(frozen=True)
class _Operand:
    value: pc.Expression
    nan: _Term  # is_nan(value)
    valid: _Term  # value IS NOT NULL


_COMPARISONS: dict[str, Callable[[_Operand, _Operand], _Term]] = {
    "equal": lambda a, b: _or(a.value == b.value, _and(a.nan, b.nan)),
    "not_equal": lambda a, b: _and(a.value != b.value, _not(_and(a.nan, b.nan))),
    "lt": lambda a, b: _or(a.value < b.value, _and(b.nan, _not(a.nan))),
    "lte": lambda a, b: _or(a.value <= b.value, _and(b.nan, a.valid)),
    "gt": lambda a, b: _or(a.value > b.value, _and(a.nan, _not(b.nan))),
    "gte": lambda a, b: _or(a.value >= b.value, _and(a.nan, b.valid)),
}
_FLOATS = ("fp32", "fp64")


def datafusion_order(expression: pc.Expression, schema: pa.Schema) -> pc.Expression:
    """``expression`` (a filter over ``schema``) with its comparisons of floats as DataFusion's
    (see the module); ``expression`` itself when it compares no floats or pyarrow cannot write it."""
    if not any(pa.types.is_floating(field.type) for field in schema):
        return expression
    try:
        view: Any = extended_expression().FromString(expression.to_substrait(schema))
    except Exception:  # an expression pyarrow cannot write as Substrait
        return expression
    names = _function_names(view)
    root = view.referred_expr[0].expression

    def floating(node: algebra_pb2.Expression) -> bool:
        kind = node.WhichOneof("rex_type")
        if kind == "literal":
            return node.literal.WhichOneof("literal_type") in _FLOATS
        if kind == "selection":
            position = node.selection.direct_reference.struct_field.field
            return position < len(schema) and pa.types.is_floating(schema.field(position).type)
        if kind == "scalar_function":
            return node.scalar_function.output_type.WhichOneof("kind") in _FLOATS
        if kind == "cast":
            return node.cast.type.WhichOneof("kind") in _FLOATS
        return False

    def compares_floats(node: algebra_pb2.Expression) -> bool:
        if node.WhichOneof("rex_type") != "scalar_function":
            return False
        arguments = [argument.value for argument in node.scalar_function.arguments]
        if names.get(node.scalar_function.function_reference) in _COMPARISONS and any(map(floating, arguments)):
            return True
        return any(map(compares_floats, arguments))

    def operand(node: algebra_pb2.Expression) -> _Operand:
        value = _read(view, node)
        if node.WhichOneof("rex_type") == "literal" and node.literal.WhichOneof("literal_type") in _FLOATS:
            number = getattr(node.literal, node.literal.WhichOneof("literal_type"))
            return _Operand(value, math.isnan(number), True)  # known now: no is_nan over every row
        return _Operand(value, pc.is_nan(value), pc.is_valid(value))

    def as_pyarrow(node: algebra_pb2.Expression) -> pc.Expression:
        """``node`` as pyarrow reads it, its float comparisons rewritten."""
        if not compares_floats(node):
            return _read(view, node)
        call = node.scalar_function
        name = names.get(call.function_reference)
        if name in _COMPARISONS and len(call.arguments) == 2:
            if not any(floating(argument.value) for argument in call.arguments):
                raise _Unchanged  # booleans compared, one of them comparing floats
            compared = _COMPARISONS[name](*(operand(argument.value) for argument in call.arguments))
            return pc.scalar(compared) if isinstance(compared, bool) else compared
        arguments = [as_pyarrow(argument.value) for argument in call.arguments]
        if name == "and":
            return _fold(arguments, lambda a, b: a & b)
        if name == "or":
            return _fold(arguments, lambda a, b: a | b)
        if name == "not" and len(arguments) == 1:
            return ~arguments[0]
        raise _Unchanged

    if not compares_floats(root):
        return expression
    try:
        return as_pyarrow(root)
    except _Unchanged:  # a comparison of floats inside a function this rewrite does not know
        return expression
    except Exception:  # a part pyarrow cannot read back alone: the filter as DataFusion gave it
        log.warning("NaN comparisons of a scan filter left as pyarrow makes them: %s", expression, exc_info=True)
        return expression


class _Unchanged(Exception):
    """The expression is kept as pyarrow wrote it."""


def _fold(
    arguments: list[pc.Expression], combine: Callable[[pc.Expression, pc.Expression], pc.Expression]
) -> pc.Expression:
    combined = arguments[0]
    for argument in arguments[1:]:
        combined = combine(combined, argument)
    return combined


def _function_names(view: Any) -> dict[int, str]:
    """The functions an ``ExtendedExpression`` declares (its field 2), by anchor."""
    names: dict[int, str] = {}
    fields: Any = UnknownFieldSet(view)  # the declarations are not in the view's own fields
    for field in fields:
        if field.field_number == 2:
            declaration = extensions_pb2.SimpleExtensionDeclaration.FromString(field.data)
            if declaration.HasField("extension_function"):
                function = declaration.extension_function
                names[function.function_anchor] = function.name.split(":")[0]
    return names


def _read(view: Any, node: algebra_pb2.Expression) -> pc.Expression:
    """``node`` read back by pyarrow, with the declarations and schema of ``view``."""
    part = type(view)()
    part.CopyFrom(view)
    part.referred_expr[0].expression.CopyFrom(node)
    bound = pa_substrait.deserialize_expressions(part.SerializeToString())
    (read,) = bound.expressions.values()
    return read
