"""Rule: a whole query keeps DataFusion's byte order of text on a source that orders text by locale.

A query routed whole to one source (:func:`gateway.planner.single_source_sql`) must answer as
DataFusion would, and DataFusion orders strings by their bytes. PostgreSQL orders text by the
column's collation (the database's ``en_US.UTF-8``, an ICU locale, ...): ``ORDER BY``, ``min``/
``max``, ``greatest``/``least`` and ``<``/``BETWEEN`` on text would answer differently there. So
every such text operand gets the dialect's byte-order collation, which is exact::

    SELECT max(t.name) FROM t WHERE t.name > 'm' ORDER BY t.name
    -- becomes
    SELECT max(t.name COLLATE "C") FROM t WHERE t.name COLLATE "C" > 'm' ORDER BY t.name COLLATE "C"

Equality, ``IN``, ``LIKE``, grouping, ``DISTINCT`` and joins need nothing here: a deterministic
collation equates only equal bytes, and a column whose collation is not deterministic is
presented in the binary collation by its product's relation (``connectors/sqlbase.py``).

Types come from sqlglot's ``annotate_types`` over the products' schemas. A query this rule cannot
make exact is refused (None: it stays federated): an ordering operand of unknown type, an
``ORDER BY`` of a set operation (only output names may appear there) or by position, a
``SELECT DISTINCT`` ordered by an expression that is not one of its outputs, or a dialect
without a byte-order collation.
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.schema import MappingSchema

_ORDERING = (exp.GT, exp.GTE, exp.LT, exp.LTE)
_BARE = (exp.Column, exp.Paren, exp.Literal, exp.Func, exp.Cast, exp.Subquery)


class _Refused(Exception):
    """The query has an ordering of text this rule cannot make exact."""


def bytewise_ordering(tree: exp.Expr, schema: MappingSchema, collation: str | None) -> exp.Expr | None:
    """``tree`` with ``COLLATE <collation>`` on every text operand that orders; None if that cannot be exact.

    ``schema`` types the tables ``tree`` reads; ``collation`` is the dialect's byte-order
    collation (None: it has none, so any ordering of text refuses). A tree with nothing that
    orders is ``tree`` itself, not typed (typing a copy of a 100,000-constant ``IN`` list took 2 s).
    """
    if tree.find(*_ORDERING, exp.Between, exp.Max, exp.Min, exp.Greatest, exp.Least, exp.Ordered) is None:
        return tree
    try:
        annotated = annotate_types(named_outputs(tree.copy()), schema=schema, dialect="postgres")
        targets = [target for node in list(annotated.walk()) for target in _targets(node)]
    except (_Refused, SqlglotError):
        return None
    if not targets:
        return annotated
    if collation is None:
        return None
    done: set[int] = set()
    for target in reversed(targets):  # innermost first: an outer operand's copy then holds the inner change
        if id(target) in done or isinstance(target, exp.Collate):
            continue
        done.add(id(target))
        operand: exp.Expr = target.copy() if isinstance(target, _BARE) else exp.Paren(this=target.copy())
        target.replace(exp.Collate(this=operand, expression=exp.Identifier(this=collation, quoted=True)))
    return annotated


def named_outputs(tree: exp.Expr) -> exp.Expr:
    """``tree`` with each derived table's column list moved onto its query's outputs, in place.

    ``annotate_types`` types ``c.n`` of ``(SELECT count(x) FROM t) AS c(n)`` only when the
    subquery itself names its output ``n``; the two forms mean the same::

        (SELECT a, count(b) FROM t GROUP BY a) AS c(k, n)
        -- becomes
        (SELECT a AS k, count(b) AS n FROM t GROUP BY a) AS c

    A list this cannot move (a set operation, a star, a count that differs) stays.
    """
    for subquery in list(tree.find_all(exp.Subquery)):
        alias = subquery.args.get("alias")
        inner = subquery.this
        if not isinstance(alias, exp.TableAlias) or not isinstance(inner, exp.Select):
            continue
        names = alias.columns
        if not names or len(names) != len(inner.expressions):
            continue
        if any(output.is_star for output in inner.expressions):
            continue
        inner.set(
            "expressions",
            [
                exp.alias_(output.this if isinstance(output, exp.Alias) else output, name.copy())
                for output, name in zip(inner.expressions, names, strict=True)
            ],
        )
        alias.set("columns", None)
    return tree


def typed_columns(tree: exp.Expr, schema: MappingSchema) -> exp.Expr:
    """A copy of ``tree`` with its columns qualified, so that a derived table's are typed too
    (``sum(CAST(qty AS BIGINT))`` over one), and every node typed by ``schema`` (raises SqlglotError)."""
    qualified = qualify_columns(named_outputs(tree.copy()), schema, dialect="postgres")
    return annotate_types(qualified, schema=schema, dialect="postgres")


class TypedQuery:
    """A whole query with its columns' types, typed (:func:`typed_columns`) once, when a guard first
    needs the types: the guards of :func:`gateway.planner.single_source_sql` share one typed copy."""

    __slots__ = ("_done", "_typed", "schema", "tree")

    def __init__(self, tree: exp.Expr, schema: MappingSchema) -> None:
        self.tree = tree
        self.schema = schema
        self._typed: exp.Expr | None = None
        self._done = False

    def typed(self) -> exp.Expr | None:
        """The typed copy of :attr:`tree`, or None when sqlglot cannot type it. Read it, never change it."""
        if not self._done:
            self._done = True
            try:
                self._typed = typed_columns(self.tree, self.schema)
            except SqlglotError:
                self._typed = None
        return self._typed


def _targets(node: exp.Expr) -> list[exp.Expr]:
    """The operands of ``node`` that need the byte-order collation (raises _Refused)."""
    if isinstance(node, _ORDERING):
        return [node.this] if _orders_text(node.this, node.expression) else []
    if isinstance(node, exp.Between):
        return [node.this] if _orders_text(node.this, node.args["low"], node.args["high"]) else []
    if isinstance(node, (exp.Max, exp.Min)):
        return [node.this] if _orders_text(node.this) else []
    if isinstance(node, (exp.Greatest, exp.Least)):
        return [node.this] if _orders_text(node.this, *node.expressions) else []
    if isinstance(node, exp.Ordered):
        return _ordered(node)
    return []


def _orders_text(*operands: exp.Expr) -> bool:
    """Whether any operand is text; raises _Refused when none is known not to be and one is unknown.

    String constants compared with a value of another known type (``d BETWEEN '1999-01-01' AND
    '2021-01-01'`` of a date) are read as that type, by DataFusion and the sources alike: nothing
    orders text there (a collated date failed in PostgreSQL: "collations are not supported by type
    date")."""
    kinds = [operand.type for operand in operands]
    texts = [
        o
        for o, kind in zip(operands, kinds, strict=True)
        if kind is not None and kind.is_type(*exp.DataType.TEXT_TYPES)
    ]
    others = [
        kind
        for kind in kinds
        if kind is not None
        and not kind.is_type(*exp.DataType.TEXT_TYPES, exp.DataType.Type.UNKNOWN, exp.DataType.Type.NULL)
    ]
    if texts and others and all(isinstance(o, exp.Literal) and o.is_string for o in texts):
        return False
    if texts:
        return True
    if all(kind is None or kind.is_type(exp.DataType.Type.UNKNOWN) for kind in kinds):
        raise _Refused(f"the type of {operands[0].sql()} is unknown")
    return False


def _ordered(node: exp.Ordered) -> list[exp.Expr]:
    """What to collate for one text ``ORDER BY`` key: the key, or the output it names."""
    order = node.parent
    select = order.parent if order is not None else None
    key = node.this
    if isinstance(select, exp.SetOperation):
        first = select
        while isinstance(first, exp.SetOperation):
            first = first.this
        named = [o for o in first.expressions if o.output_name == key.output_name] if key.output_name else []
        if _orders_text(named[0] if len(named) == 1 else key):  # only output names may appear there
            raise _Refused("ORDER BY of a set operation on text")
        return []
    if not isinstance(select, exp.Select) or order is not select.args.get("order"):
        return [key] if _orders_text(key) else []  # a window's or an aggregate's ORDER BY
    if isinstance(key, exp.Literal) and key.is_int:
        raise _Refused("ORDER BY position")
    if not _orders_text(key):
        return []
    if isinstance(key, exp.Column) and not key.table:
        for output in select.expressions:
            if isinstance(output, exp.Alias) and output.alias == key.name:
                return [output.this]  # collated where it is computed; the ORDER BY names it
    distinct = select.args.get("distinct")
    if not distinct:
        return [key]
    # SELECT DISTINCT orders only by its outputs: collate the output and the key alike, and a
    # DISTINCT ON key too (PostgreSQL: "SELECT DISTINCT ON expressions must match initial ORDER BY
    # expressions", when only the ORDER BY's were collated).
    on = distinct.args.get("on")
    keys = [expression for expression in (on.expressions if on is not None else []) if expression == key]
    for output in select.expressions:
        value = output.this if isinstance(output, exp.Alias) else output
        if value == key:
            return [value, key, *keys]
    raise _Refused("SELECT DISTINCT ordered by an expression it does not output")


_TYPES = (
    (pa.types.is_string, "TEXT"),
    (pa.types.is_large_string, "TEXT"),
    (pa.types.is_string_view, "TEXT"),
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "BIGINT"),
    (pa.types.is_floating, "DOUBLE"),
    (pa.types.is_decimal, "DECIMAL"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_time, "TIME"),
    (pa.types.is_timestamp, "TIMESTAMP"),
    (pa.types.is_binary, "BYTEA"),
    (pa.types.is_large_binary, "BYTEA"),
)


def sql_type(kind: pa.DataType) -> str:
    """The sqlglot type name annotate_types works with for an Arrow type (UNKNOWN: none that fits)."""
    return next((name for test, name in _TYPES if test(kind)), "UNKNOWN")
