"""DataFusion plans as Substrait messages: written, walked, cut into sub-plans and read back.

DataFusion's Python API cannot change a ``LogicalPlan``, but it writes any plan as Substrait
and reads Substrait back (``datafusion.substrait``). Substrait relations refer to their
inputs' columns by position, so replacing one relation with another that has the same
output columns, in the same order and of the same types, leaves the rest of the plan valid.
That is how the planner's rules rewrite a plan (``gateway/plan/same_source.py``).

The messages are the generated classes of ``gateway/plan/substrait`` (``proto/compile.py``).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from cachetools import LRUCache
from datafusion import LogicalPlan, SessionContext
from datafusion.substrait import Consumer, Producer, Serde
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from gateway.plan.substrait import algebra_pb2, plan_pb2
from gateway.plan.substrait._pool import POOL

# Fields of a relation that hold its inputs (subqueries inside expressions are not inputs).
_INPUT_FIELDS = ("input", "left", "right")

_M = TypeVar("_M", bound=Message)

NotNull = Callable[[tuple[str, ...], str], bool]
"""Whether the table a Substrait read names (its names) declares a column NOT NULL."""


def to_substrait(plan: LogicalPlan, ctx: SessionContext) -> plan_pb2.Plan:
    """``plan`` as a Substrait message (its tables named as ``ctx`` resolves them)."""
    return plan_pb2.Plan.FromString(Producer.to_substrait_plan(plan, ctx).encode())


def to_logical(message: plan_pb2.Plan, ctx: SessionContext) -> LogicalPlan:
    """A Substrait message as a DataFusion plan, its tables resolved in ``ctx``."""
    return Consumer.from_substrait_plan(ctx, Serde.deserialize_bytes(message.SerializeToString()))


def optimized(message: plan_pb2.Plan, ctx: SessionContext) -> LogicalPlan:
    """A Substrait message as DataFusion plans it after its optimiser (filters pushed to the reads)."""
    return ctx.create_dataframe_from_logical_plan(to_logical(message, ctx)).optimized_logical_plan()


def function_names(message: plan_pb2.Plan) -> dict[int, str]:
    """The name (``equal``, without its signature) of each scalar function anchor ``message`` declares."""
    return {
        e.extension_function.function_anchor: e.extension_function.name.split(":")[0]
        for e in message.extensions
        if e.HasField("extension_function")
    }


_JOIN = algebra_pb2.JoinRel
_ONE_SIDE = {
    _JOIN.JOIN_TYPE_LEFT_SEMI: "left",
    _JOIN.JOIN_TYPE_LEFT_ANTI: "left",
    _JOIN.JOIN_TYPE_RIGHT_SEMI: "right",
    _JOIN.JOIN_TYPE_RIGHT_ANTI: "right",
}
_BOTH_SIDES = {_JOIN.JOIN_TYPE_INNER, _JOIN.JOIN_TYPE_OUTER, _JOIN.JOIN_TYPE_LEFT, _JOIN.JOIN_TYPE_RIGHT}


def width(rel: algebra_pb2.Rel) -> int | None:
    """How many columns ``rel`` returns, read from the plan alone; None for a relation this does
    not count (an aggregate, a set, a mark join ...: ask DataFusion for their schema)."""
    kind = rel.WhichOneof("rel_type")
    if kind is None:
        return None
    body = getattr(rel, kind)
    if body.HasField("common") and body.common.WhichOneof("emit_kind") == "emit":
        return len(body.common.emit.output_mapping)  # none, for a projection that keeps no column
    if kind == "read":
        if body.HasField("projection"):
            return len(body.projection.select.struct_items)
        return len(body.base_schema.struct.types)
    if kind in ("filter", "sort", "fetch"):
        return width(body.input)
    if kind == "project":
        below = width(body.input)
        return None if below is None else below + len(body.expressions)
    if kind == "join" and body.type in _ONE_SIDE:
        return width(getattr(body, _ONE_SIDE[body.type]))
    if kind == "join" and body.type in _BOTH_SIDES:
        left, right = width(body.left), width(body.right)
        return None if left is None or right is None else left + right
    return None


def origin(rel: algebra_pb2.Rel, field: int, *, kept: bool = False) -> tuple[tuple[str, ...], str] | None:
    """The table (a read's names) and column that field ``field`` of ``rel``'s output is, passed
    up unchanged through filters, sorts, limits, projections and joins; None when it is computed
    or this cannot tell. With ``kept``, only through the side of an outer join whose rows it keeps
    as they are (a field the join may make NULL is then None)."""
    kind = rel.WhichOneof("rel_type")
    if kind is None:
        return None
    body = getattr(rel, kind)
    if body.HasField("common") and body.common.WhichOneof("emit_kind") == "emit":
        mapping = body.common.emit.output_mapping
        if field >= len(mapping):
            return None
        field = mapping[field]
    if kind == "read":
        if not body.HasField("named_table"):
            return None
        names = body.base_schema.names
        if len(names) != len(body.base_schema.struct.types):
            return None  # nested columns: names and fields are not one to one
        items = body.projection.select.struct_items if body.HasField("projection") else None
        base = (items[field].field if field < len(items) else None) if items is not None else field
        return (tuple(body.named_table.names), names[base]) if base is not None and base < len(names) else None
    if kind in ("filter", "sort", "fetch"):
        return origin(body.input, field, kept=kept)
    if kind == "project":
        below = width(body.input)
        if below is None:
            return None
        if field < below:
            return origin(body.input, field, kept=kept)
        at = field - below
        selected = field_of(body.expressions[at]) if at < len(body.expressions) else None
        return origin(body.input, selected, kept=kept) if selected is not None else None
    if kind == "join" and body.type in _ONE_SIDE:
        return origin(getattr(body, _ONE_SIDE[body.type]), field, kept=kept)
    if kind == "join" and body.type in _BOTH_SIDES:
        left = width(body.left)
        if left is None:
            return None
        if field < left:
            null_made = kept and body.type in (_JOIN.JOIN_TYPE_OUTER, _JOIN.JOIN_TYPE_RIGHT)
            return None if null_made else origin(body.left, field, kept=kept)
        null_made = kept and body.type in (_JOIN.JOIN_TYPE_OUTER, _JOIN.JOIN_TYPE_LEFT)
        return None if null_made else origin(body.right, field - left, kept=kept)
    return None


def equalities(expression: algebra_pb2.Expression, functions: Mapping[int, str]) -> list[tuple[int, int]]:
    """Each ``field = field`` in ``expression`` (ANDs looked into), in its written order."""
    if expression.WhichOneof("rex_type") != "scalar_function":
        return []
    call = expression.scalar_function
    name = functions.get(call.function_reference, "")
    arguments = [argument.value for argument in call.arguments]
    if name == "and":
        return [pair for argument in arguments for pair in equalities(argument, functions)]
    if name != "equal" or len(arguments) != 2:
        return []
    left, right = field_of(arguments[0]), field_of(arguments[1])
    return [] if left is None or right is None else [(left, right)]


def conjuncts(expression: algebra_pb2.Expression, functions: Mapping[int, str]) -> list[algebra_pb2.Expression]:
    """The terms of ``expression`` that ANDs join (itself when it is no AND)."""
    call = expression.scalar_function if expression.WhichOneof("rex_type") == "scalar_function" else None
    if call is None or functions.get(call.function_reference) != "and":
        return [expression]
    return [term for argument in call.arguments for term in conjuncts(argument.value, functions)]


def field_of(expression: algebra_pb2.Expression) -> int | None:
    """The field ``expression`` selects from its input, when it is a plain column reference."""
    if expression.WhichOneof("rex_type") != "selection":
        return None
    selection = expression.selection
    if not selection.HasField("root_reference") or not selection.HasField("direct_reference"):
        return None
    segment = selection.direct_reference.struct_field
    return None if segment.HasField("child") else int(segment.field)


def root(message: plan_pb2.Plan) -> algebra_pb2.Rel:
    """The relation at the root of a one-query plan."""
    return message.relations[0].root.input


def inputs(rel: algebra_pb2.Rel) -> list[algebra_pb2.Rel]:
    """The relations ``rel`` reads directly."""
    return [child for _, child in named_inputs(rel)]


def named_inputs(rel: algebra_pb2.Rel) -> list[tuple[str, algebra_pb2.Rel]]:
    """The relations ``rel`` reads directly, each with the field it is in (``input``, ``left``,
    ``right``, or ``inputs`` for each of a set's)."""
    kind = rel.WhichOneof("rel_type")
    if kind is None:
        return []
    body = getattr(rel, kind)
    found = [
        (name, getattr(body, name))
        for name in _INPUT_FIELDS
        if name in body.DESCRIPTOR.fields_by_name and body.HasField(name)
    ]
    if "inputs" in body.DESCRIPTOR.fields_by_name:
        found.extend(("inputs", child) for child in body.inputs)
    return found


def messages(message: Message) -> Iterator[Message]:
    """``message`` and every message inside it, subqueries in expressions included."""
    yield message
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in value if field.is_repeated else (value,):
            yield from messages(item)


def instances(message: Message, kind: type[_M], *, inside: bool = True) -> Iterator[_M]:
    """Every message of type ``kind`` in ``message`` (itself included), in the order of
    :func:`messages`; those inside one found too unless ``inside`` is false.

    It looks only into the fields whose type can hold a ``kind``: the types, literals and field
    references of a plan's expressions are most of its messages, and hold no relation.
    """
    target = kind.DESCRIPTOR
    pending: list[Message] = [message]  # a stack, not nested generators: a deep plan's items
    while pending:  # would each pass up through every level above them
        item = pending.pop()
        if isinstance(item, kind):
            yield item
            if not inside:
                continue
        toward = _toward(item.DESCRIPTOR, target)
        if not toward:
            continue
        if isinstance(item, algebra_pb2.Expression):
            # Most of a plan's messages are expressions, each of one kind (rex_type): look at that
            # one only (a run-time filter's list of a thousand keys is a thousand literals).
            name = item.WhichOneof("rex_type")
            if name is not None and name in toward:
                pending.append(getattr(item, name))
            continue
        children: list[Message] = []
        for field, value in item.ListFields():
            if field.name in toward:
                if field.is_repeated:
                    children.extend(value)
                else:
                    children.append(value)
        pending.extend(reversed(children))  # the first child is looked at first: messages()' order


@functools.cache
def _toward(descriptor: Descriptor, target: Descriptor) -> frozenset[str]:
    """The names of ``descriptor``'s message fields whose type is ``target`` or can hold one."""
    return frozenset(
        field.name
        for field in descriptor.fields
        if field.message_type is not None and (field.message_type is target or target in _reachable(field.message_type))
    )


@functools.cache
def _reachable(descriptor: Descriptor) -> frozenset[Descriptor]:
    """Every message type a message of ``descriptor`` can hold, at any depth."""
    found: set[Descriptor] = set()
    pending = [descriptor]
    while pending:
        for field in pending.pop().fields:
            if field.message_type is not None and field.message_type not in found:
                found.add(field.message_type)
                pending.append(field.message_type)
    return frozenset(found)


def subquery_roots(rel: algebra_pb2.Rel, nested: bool = True) -> Iterator[algebra_pb2.Rel]:
    """The relation at the root of every subquery in the expressions of ``rel`` or of the
    relations under it (each a plan of its own for the rules), the subqueries nested in those
    too unless ``nested`` is false."""
    if not holds_subquery(rel):
        return iter(())  # most plans hold none
    return _subquery_roots(rel, nested)


_SUBQUERIES: LRUCache[bytes, bool] = LRUCache(maxsize=1024)
_SUBQUERIES_LOCK = threading.Lock()


_NONE_HELD: ContextVar[bool] = ContextVar("no_subqueries", default=False)


@contextmanager
def subquery_free(known: bool) -> Iterator[None]:
    """Within: :func:`holds_subquery` answers False at once if ``known``, the caller's word that the
    plan it works on holds no subquery. Every plan made from such a plan holds none either: the
    rules add none, and DataFusion's optimiser only takes them away."""
    token = _NONE_HELD.set(known)
    try:
        yield
    finally:
        _NONE_HELD.reset(token)


def holds_subquery(rel: algebra_pb2.Rel) -> bool:
    """Whether ``rel`` holds a subquery anywhere in its expressions or its inputs'.

    Walking a plan's every expression for one (field by field) cost up to 37 ms a TPC-H query,
    and the rules ask again and again, of the same relations and of the same plans each time a
    statement is planned: the answer is kept by the relation's serialized form (a 128-bit
    digest of it), which takes microseconds to make. Within :func:`subquery_free` not even that
    (the digests of a planning's new relations, every one a miss, took 1-3 ms of TPC-H Q2, Q7, Q11).
    """
    if _NONE_HELD.get():
        return False
    key = hashlib.blake2b(rel.SerializeToString(deterministic=True), digest_size=16).digest()
    with _SUBQUERIES_LOCK:
        found = _SUBQUERIES.get(key)
    if found is None:
        found = next(instances(rel, algebra_pb2.Expression.Subquery), None) is not None
        with _SUBQUERIES_LOCK:
            _SUBQUERIES[key] = found
    return found


def _subquery_roots(rel: algebra_pb2.Rel, nested: bool) -> Iterator[algebra_pb2.Rel]:
    kind = rel.WhichOneof("rel_type")
    if kind is not None:
        for field, value in getattr(rel, kind).ListFields():
            if field.name in (*_INPUT_FIELDS, "inputs") or field.type != field.TYPE_MESSAGE:
                continue
            for item in value if field.is_repeated else (value,):
                for found in _subqueries(item, nested):
                    body = getattr(found, found.WhichOneof("subquery_type") or "scalar")
                    yield from (v for _, v in body.ListFields() if isinstance(v, algebra_pb2.Rel))
    for child in inputs(rel):
        yield from _subquery_roots(child, nested)


def _subqueries(message: Message, nested: bool) -> Iterator[algebra_pb2.Expression.Subquery]:
    """The subqueries inside ``message`` in pre-order (:func:`messages`), those inside them too if ``nested``."""
    return instances(message, algebra_pb2.Expression.Subquery, inside=nested)


def all_roots(message: plan_pb2.Plan) -> list[algebra_pb2.Rel]:
    """The plan's root relation and every subquery's (:func:`subquery_roots`)."""
    top = root(message)
    return [top, *subquery_roots(top)]


def reads_below(rel: algebra_pb2.Rel) -> tuple[list[list[tuple[str, ...] | None]], list[int]]:
    """:func:`reads` of ``rel`` and of every relation under it through :func:`inputs`, in pre-order
    (``rel`` first), and the size of each one's subtree: one walk instead of one per relation."""
    found: list[list[tuple[str, ...] | None]] = []
    sizes: list[int] = []
    # Without a subquery anywhere below, no expression holds a read: asked once, not of each
    # relation's expressions (TPC-H Q19's disjunction of three filters was walked for every join).
    expressions = holds_subquery(rel)

    def walk(node: algebra_pb2.Rel) -> list[tuple[str, ...] | None]:
        at = len(found)
        found.append([])
        sizes.append(0)
        total = reads_in_expressions(node) if expressions else []  # its own expressions' subqueries
        if node.WhichOneof("rel_type") == "read":
            total.append(tuple(node.read.named_table.names) if node.read.HasField("named_table") else None)
        for child in inputs(node):
            total.extend(walk(child))
        found[at] = total
        sizes[at] = len(found) - at
        return total

    walk(rel)
    return found, sizes


def correlated(rel: algebra_pb2.Rel) -> bool:
    """Whether ``rel`` refers to an outer query's columns (then it cannot run on its own)."""
    return any(item.HasField("outer_reference") for item in instances(rel, algebra_pb2.Expression.FieldReference))


def reads(message: Message) -> list[tuple[str, ...] | None]:
    """Every table read anywhere inside ``message`` (a relation, an expression), subqueries included:
    its names, or None for a read of anything else."""
    if isinstance(message, algebra_pb2.Rel) and not holds_subquery(message):
        found = [rel.read for rel in read_relations(message)]  # its expressions hold no read: its relations only
    else:
        found = list(instances(message, algebra_pb2.ReadRel))
    return [tuple(item.named_table.names) if item.HasField("named_table") else None for item in found]


def read_relations(rel: algebra_pb2.Rel) -> list[algebra_pb2.Rel]:
    """The relations that read, among ``rel`` and the relations under it through :func:`inputs`
    (not in expressions), in pre-order."""
    found: list[algebra_pb2.Rel] = []
    pending = [rel]
    while pending:
        item = pending.pop()
        if item.WhichOneof("rel_type") == "read":
            found.append(item)
        pending.extend(reversed(inputs(item)))
    return found


def reads_in_expressions(rel: algebra_pb2.Rel) -> list[tuple[str, ...] | None]:
    """:func:`reads` of ``rel``'s own expressions (its subqueries'), not of its inputs."""
    kind = rel.WhichOneof("rel_type")
    if kind is None:
        return []
    found: list[tuple[str, ...] | None] = []
    for field, value in getattr(rel, kind).ListFields():
        if field.name in (*_INPUT_FIELDS, "inputs") or field.type != field.TYPE_MESSAGE:
            continue
        for item in value if field.is_repeated else (value,):
            found.extend(reads(item))
    return found


def sub_plan(whole: plan_pb2.Plan, rel: algebra_pb2.Rel) -> plan_pb2.Plan:
    """A plan of its own whose root is ``rel`` (a relation of ``whole``, whose function declarations it keeps)."""
    part = plan_pb2.Plan()
    part.CopyFrom(whole)
    del part.relations[:]
    part.relations.add().root.input.CopyFrom(rel)
    return part


def referenced_columns(expression: pc.Expression, schema: pa.Schema) -> set[str] | None:
    """The columns of ``schema`` a pyarrow expression reads; None when that cannot be told.

    pyarrow writes the expression as a Substrait ``ExtendedExpression`` over ``schema``, in
    which every column is a field reference by position.

    >>> import pyarrow as pa, pyarrow.compute as pc
    >>> schema = pa.schema([("a", pa.int64()), ("b c", pa.string()), ("z", pa.int64())])
    >>> sorted(referenced_columns((pc.field("a") > 3) & (pc.field("b c") == "x"), schema))
    ['a', 'b c']
    """
    try:
        view = extended_expression().FromString(expression.to_substrait(schema))
    except Exception:  # an expression pyarrow cannot write as Substrait
        return None
    found: set[str] = set()
    for item in instances(view, algebra_pb2.Expression.FieldReference):
        if item.HasField("root_reference"):
            position = item.direct_reference.struct_field.field
            if not item.direct_reference.HasField("struct_field") or position >= len(schema):
                return None
            found.add(schema.field(position).name)
    return found


@functools.cache
def extended_expression() -> type[Message]:
    """The part of Substrait's ``ExtendedExpression`` that holds its expressions (field 3, each
    an ``ExpressionReference`` whose field 1 is the expression): all :func:`referenced_columns`
    reads. The other fields parse as unknown ones, and are written back as they came."""
    file = descriptor_pb2.FileDescriptorProto(
        name="meshgate/extended_expression_view.proto",
        package="meshgate",
        dependency=[algebra_pb2.DESCRIPTOR.name],
        syntax="proto3",
    )
    reference = file.message_type.add(name="ExpressionReferenceView")
    reference.field.add(
        name="expression", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".substrait.Expression", label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )  # fmt: skip
    extended = file.message_type.add(name="ExtendedExpressionView")
    extended.field.add(
        name="referred_expr", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".meshgate.ExpressionReferenceView", label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )  # fmt: skip
    POOL.Add(file)
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName("meshgate.ExtendedExpressionView"))
