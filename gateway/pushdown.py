"""Translate DataFusion filter expressions into sqlglot, as far as a source allows.

This is the negotiation at the heart of pushdown: each conjunct of a scan's filter is
either translated into an expression the source evaluates with exactly DataFusion's
result, or kept back for DataFusion. Unknown constructs are never guessed at.

    >>> translate(expr_for("upper(name) = 'A' AND id + 1 > 3"), schema, caps)  # doctest: +SKIP
    Conjuncts(pushed=[UPPER(name) = 'A', id + 1 > 3], kept=[])
"""

from __future__ import annotations

import datetime
import decimal
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import Expr
from sqlglot import exp

from connectors.base import SqlCapabilities
from gateway.plan import key_sets
from meshcore.arrow import is_text

_COMPARISONS: dict[str, type[exp.Binary]] = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
}
_ORDERING = {"<", "<=", ">", ">="}
# Division and modulo are left out on purpose: integer division and the sign of a
# remainder differ between engines (DuckDB's `/` is float division).
_ARITHMETIC: dict[str, type[exp.Binary]] = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul}
_LOGICAL: dict[str, type[exp.Connector]] = {"AND": exp.And, "OR": exp.Or}
# Widening casts between integers, written out so that the source computes in the same width.
_INTEGER_CASTS = {"Int16": ("SMALLINT", 16), "Int32": ("INT", 32), "Int64": ("BIGINT", 64)}


def comparable(kind: pa.DataType) -> bool:
    """Whether sources compare, sort and group values of ``kind`` as DataFusion does.

    Intervals are not (PostgreSQL and DuckDB equate ``1 mon`` with ``30 days``), nor are
    lists and other nested values (each engine has its own rules for NULL elements):
    columns of these types are never pushed into predicates.
    """
    return not (pa.types.is_nested(kind) or kind.id in _INTERVALS or pa.types.is_duration(kind))


_INTERVALS = (pa.lib.Type_INTERVAL_DAY_TIME, pa.lib.Type_INTERVAL_MONTHS, pa.lib.Type_INTERVAL_MONTH_DAY_NANO)


class _Untranslatable(Exception):
    """Raised inside the translator when a node has no faithful equivalent."""


@dataclass
class Conjuncts:
    """The result of splitting a filter: what the source takes and what stays."""

    pushed: list[exp.Expr] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def predicate(self) -> exp.Expr | None:
        """All pushed conjuncts combined with AND (None when nothing was pushed)."""
        if not self.pushed:
            return None
        return exp.and_(*self.pushed) if len(self.pushed) > 1 else self.pushed[0]


def split_conjunction(expr: Expr) -> list[Expr]:
    """``a AND (b AND c)`` -> ``[a, b, c]``."""
    if expr.variant_name() == "BinaryExpr":
        binary = expr.to_variant()
        if binary.op() == "AND":
            return split_conjunction(binary.left()) + split_conjunction(binary.right())
    return [expr]


def translate(filters: list[Expr], schema: pa.Schema, capabilities: SqlCapabilities) -> Conjuncts:
    """Split ``filters`` (implicitly ANDed) into pushed sqlglot conjuncts and kept ones."""
    translator = _Translator(schema, capabilities)
    result = Conjuncts()
    for conjunct in (part for expr in filters for part in split_conjunction(expr)):
        try:
            result.pushed.append(translator.expr(conjunct))
        except _Untranslatable:
            result.kept.append(_display(conjunct))
    return result


def _display(expr: Expr) -> str:
    try:
        return str(expr.canonical_name())
    except Exception:
        return str(expr)


class _Translator:
    def __init__(self, schema: pa.Schema, capabilities: SqlCapabilities) -> None:
        self.schema = schema
        self.caps = capabilities

    # -- dispatch ----------------------------------------------------------------
    def expr(self, expr: Expr) -> exp.Expr:
        kind = expr.variant_name()
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            raise _Untranslatable(kind)
        result: exp.Expr = handler(expr)
        return result

    def _Alias(self, expr: Expr) -> exp.Expr:
        return self.expr(expr.rex_call_operands()[0])

    def _Column(self, expr: Expr) -> exp.Expr:
        name = expr.to_variant().name()
        index = self.schema.get_field_index(name)
        if index < 0:
            raise _Untranslatable(f"column {name}")
        if not comparable(self.schema.field(index).type):
            raise _Untranslatable(f"column {name} of type {self.schema.field(index).type}")
        return exp.column(name, quoted=True)

    def _Literal(self, expr: Expr) -> exp.Expr:
        return self.literal(expr.python_value())

    def _BinaryExpr(self, expr: Expr) -> exp.Expr:
        binary = expr.to_variant()
        op = binary.op()
        left, right = binary.left(), binary.right()
        if op in _LOGICAL:
            return _LOGICAL[op](this=self.expr(left), expression=self.expr(right))
        if op in _COMPARISONS:
            sql_left, sql_right = self.expr(left), self.expr(right)
            if op in _ORDERING and self.compares_text(left, right):
                sql_left = self.binary_collation(sql_left)
            return _COMPARISONS[op](this=sql_left, expression=sql_right)
        if op in _ARITHMETIC:
            return exp.Paren(this=_ARITHMETIC[op](this=self.expr(left), expression=self.expr(right)))
        if op == "||" or op == "StringConcat":
            return exp.DPipe(this=self.expr(left), expression=self.expr(right), safe=False)
        raise _Untranslatable(op)

    def _Not(self, expr: Expr) -> exp.Expr:
        return exp.Not(this=exp.Paren(this=self.expr(expr.rex_call_operands()[0])))

    def _IsNull(self, expr: Expr) -> exp.Expr:
        return exp.Is(this=self.nullable(expr.rex_call_operands()[0]), expression=exp.Null())

    def _IsNotNull(self, expr: Expr) -> exp.Expr:
        return exp.Not(this=exp.Is(this=self.nullable(expr.rex_call_operands()[0]), expression=exp.Null()))

    def nullable(self, expr: Expr) -> exp.Expr:
        """The operand of IS [NOT] NULL: any column qualifies, whatever its type."""
        if expr.variant_name() == "Column" and self.schema.get_field_index(expr.to_variant().name()) >= 0:
            return exp.column(expr.to_variant().name(), quoted=True)
        return self.expr(expr)

    def _Negative(self, expr: Expr) -> exp.Expr:
        return exp.Neg(this=exp.Paren(this=self.expr(expr.rex_call_operands()[0])))

    def _Like(self, expr: Expr) -> exp.Expr:
        like = expr.to_variant()
        operator = expr.rex_call_operator()
        insensitive = operator.lower() in {"ilike", "not ilike"}
        if insensitive and not self.caps.supports_ilike:
            raise _Untranslatable("ILIKE")
        if not insensitive and not self.caps.supports_like:
            raise _Untranslatable("LIKE")
        pattern = like.pattern()
        if pattern.variant_name() != "Literal":
            raise _Untranslatable("LIKE with a computed pattern")
        value = pattern.python_value().as_py()
        escape = like.escape_char()
        if not isinstance(value, str) or (escape is None and "\\" in value):
            # Sources disagree on the default escape character: keep such patterns back.
            raise _Untranslatable("LIKE pattern with backslashes")
        node: exp.Expr = (exp.ILike if insensitive else exp.Like)(
            this=self.expr(like.expr()), expression=exp.Literal.string(value)
        )
        if escape is not None:
            node = exp.Escape(this=node, expression=exp.Literal.string(escape))
        return exp.Not(this=exp.Paren(this=node)) if like.negated() else node

    def _InList(self, expr: Expr) -> exp.Expr:
        in_list = expr.to_variant()
        node = exp.In(this=self.expr(in_list.expr()), expressions=[self.expr(item) for item in in_list.list()])
        return exp.Not(this=exp.Paren(this=node)) if in_list.negated() else node

    def _Between(self, expr: Expr) -> exp.Expr:
        between = expr.to_variant()
        node = exp.Between(this=self.expr(between.expr()), low=self.expr(between.low()), high=self.expr(between.high()))
        if not self.caps.binary_string_order and self.compares_text(between.low(), between.expr()):
            raise _Untranslatable("BETWEEN on text under a non-binary collation")
        return exp.Not(this=exp.Paren(this=node)) if between.negated() else node

    def _Case(self, expr: Expr) -> exp.Expr:
        case = expr.to_variant()
        if case.expr() is not None:
            raise _Untranslatable("simple CASE")
        node = exp.Case(
            ifs=[exp.If(this=self.expr(when), true=self.expr(then)) for when, then in case.when_then_expr()]
        )
        otherwise = case.else_expr()
        if otherwise is not None:
            node.set("default", self.expr(otherwise))
        return node

    def _Cast(self, expr: Expr) -> exp.Expr:
        inner = expr.to_variant().expr()
        source_type = self.arrow_type(inner)
        try:
            target = str(expr.types().friendly_arrow_type_name())
        except NotImplementedError:  # the binding cannot name nested types: not an integer cast
            raise _Untranslatable("CAST to a nested type") from None
        if (
            source_type is not None
            and pa.types.is_integer(source_type)
            and not pa.types.is_uint64(source_type)
            and target in _INTEGER_CASTS
            and _INTEGER_CASTS[target][1] >= source_type.bit_width
        ):
            return exp.Cast(this=self.expr(inner), to=exp.DataType.build(_INTEGER_CASTS[target][0]))
        raise _Untranslatable(f"CAST to {target}")

    def _ScalarFunction(self, expr: Expr) -> exp.Expr:
        name = expr.rex_call_operator().lower()
        keys = key_sets.find(name)
        if keys is not None:  # a run-time filter's keys (gateway/plan/key_sets.py)
            if self.caps.key_sets is None:
                raise _Untranslatable("key set")
            return keys.sql(self.expr(expr.rex_call_operands()[0]), self.caps.key_sets)
        if name not in self.caps.functions:
            raise _Untranslatable(f"function {name}")
        args = [self.expr(arg) for arg in expr.rex_call_operands()]
        return exp.func(name, *args, dialect="postgres")

    # -- literals and types ----------------------------------------------------------
    def literal(self, scalar: pa.Scalar) -> exp.Expr:
        value: Any = scalar.as_py()
        kind = scalar.type
        if value is None:
            return exp.Null()
        if pa.types.is_boolean(kind):
            return exp.Boolean(this=bool(value))
        if pa.types.is_integer(kind):
            return exp.Literal.number(int(value))
        if pa.types.is_floating(kind):
            if not math.isfinite(value):
                raise _Untranslatable("non-finite float")
            return exp.Literal.number(repr(float(value)))
        if pa.types.is_decimal(kind):
            assert isinstance(value, decimal.Decimal)
            return exp.Literal.number(format(value, "f"))
        if is_text(kind):
            return exp.Literal.string(str(value))
        if pa.types.is_date(kind):
            return self.temporal(value.isoformat(), "DATE", is_date=True)
        if pa.types.is_timestamp(kind):
            assert isinstance(value, datetime.datetime)
            if kind.tz is not None:
                text = value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
                return self.temporal(text, "TIMESTAMPTZ", is_date=False)
            return self.temporal(value.strftime("%Y-%m-%d %H:%M:%S.%f"), "TIMESTAMP", is_date=False)
        raise _Untranslatable(f"literal of type {kind}")

    def temporal(self, text: str, sql_type: str, *, is_date: bool) -> exp.Expr:
        style = self.caps.temporal_literals
        if style == "typed":
            return exp.Cast(this=exp.Literal.string(text), to=exp.DataType.build(sql_type))
        if style == "iso_text" and is_date:
            return exp.Literal.string(text)
        raise _Untranslatable(f"{sql_type} literal")

    def binary_collation(self, node: exp.Expr) -> exp.Expr:
        if self.caps.binary_string_order:
            return node
        if self.caps.string_collation is None:
            raise _Untranslatable("text ordering under a non-binary collation")
        return exp.Collate(this=node, expression=exp.Identifier(this=self.caps.string_collation, quoted=True))

    def arrow_type(self, expr: Expr) -> pa.DataType | None:
        kind = expr.variant_name()
        if kind == "Column":
            name = expr.to_variant().name()
            index = self.schema.get_field_index(name)
            return self.schema.field(index).type if index >= 0 else None
        if kind == "Literal":
            return expr.python_value().type
        return None

    def compares_text(self, left: Expr, right: Expr) -> bool:
        """Whether an ordering comparison is between strings (collation matters)."""
        known = [kind for kind in (self.arrow_type(left), self.arrow_type(right)) if kind is not None]
        if not known:
            if self.caps.binary_string_order:
                return False
            raise _Untranslatable("ordering of values of unknown type under a non-binary collation")
        return any(pa.types.is_string(k) or pa.types.is_large_string(k) or pa.types.is_string_view(k) for k in known)
