"""Prepared-statement parameters: ``$1, $2 ...`` (or ``?``) placeholders and the values bound to them.

Values are handed to DataFusion as typed scalars after parsing (``param_values``),
never spliced into SQL text. They arrive from clients as Arrow data, which the IPC reader
does not check in full: a string column may hold bytes that are not UTF-8 (0xff), and
DataFusion reading such a value from Rust has panicked or aborted the whole process. So
every parameter array is validated in full where it enters (:func:`check_parameters`).
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from gateway.errors import InvalidRequestError, PlanningError
from gateway.scan import classic_types
from gateway.tokens import tokens as sql_tokens


def number_placeholders(sql: str) -> str:
    """``?`` placeholders (JDBC, ODBC, the ADBC DB-API's qmark style) numbered ``$1, $2 ...`` in order.

    Only real placeholders change: a ``?`` in a string, a quoted identifier or a comment
    stays. One statement uses one style.

    >>> number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c IN (?, ?) -- ?")
    "SELECT * FROM t WHERE a = $1 AND b = '?' AND c IN ($2, $3) -- ?"
    """
    if "?" not in sql:
        return sql
    try:
        tokens = sql_tokens(sql)
    except SqlglotError:
        return sql  # the parser reports the syntax error, with its position
    marks = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    if not marks:
        return sql
    if any(_PLACEHOLDER.fullmatch(t.text) for t in tokens if t.token_type == TokenType.VAR):
        raise PlanningError("the query mixes ? and $n parameters: use one style ($1, $2 ... or ? in order)")
    for number, mark in reversed(list(enumerate(marks, start=1))):
        sql = f"{sql[: mark.start]}${number}{sql[mark.end + 1 :]}"
    return sql


def parameter_values(parameter_schema: pa.Schema, parameters: pa.RecordBatch | None) -> dict[str, pa.Scalar]:
    """The bound values by placeholder number, checked against the statement's parameters."""
    wanted = len(parameter_schema)
    if parameters is None:
        if wanted:
            raise PlanningError(f"the query has {wanted} parameter(s) ($1..${wanted}) and none were bound")
        return {}
    if parameters.num_rows != 1 or parameters.num_columns != wanted:
        raise PlanningError(
            f"expected one row of {wanted} parameter(s), got {parameters.num_rows} row(s) of {parameters.num_columns}"
        )
    check_parameters(parameters)
    values = {}
    for i in range(wanted):
        value = parameters.column(i)[0]
        # Some clients (flightsql-dbapi) send each parameter as a one-row dense union.
        values[str(i + 1)] = value.value if isinstance(value, pa.UnionScalar) else value
    return values


def plain_unions(parameters: pa.RecordBatch) -> pa.RecordBatch:
    """``parameters`` with each union column of one value type turned into a column of that type.

    Some clients (flightsql-dbapi) bind each parameter as a dense union of the Python values'
    types: rows ``[None, 1]`` arrive as ``union<null, int64>``. Run row by row, the first
    row's NULL would type the result as ``null`` and the next row's ``1`` could not be sent
    in it; as an ``int64`` column with a NULL, every row has the same type. A union of
    several value types (``1`` and ``'a'``) stays as it is.

    >>> u = pa.UnionArray.from_dense(pa.array([0, 1], pa.int8()), pa.array([0, 0], pa.int32()),
    ...                              [pa.nulls(1), pa.array([1])])
    >>> plain_unions(pa.record_batch([u], names=["$1"])).column(0).to_pylist()
    [None, 1]
    """
    columns = []
    for column in parameters.columns:
        kind = column.type
        if pa.types.is_union(kind):
            values = {kind.field(i).type for i in range(kind.num_fields)} - {pa.null()}
            if len(values) == 1:
                column = _of_one_type(column, values.pop())
        columns.append(column)
    return pa.record_batch(columns, names=parameters.schema.names)


def _of_one_type(column: pa.UnionArray, kind: pa.DataType) -> pa.Array:
    """A union column whose children are ``kind`` or null as a column of ``kind``, value for value.

    Arrow to Arrow: not every Arrow value is a Python value (a date 5.8 million years away, a
    duration of 2**63 - 1 seconds), and those failed as an unexpected error when bound.
    """
    union, rows, start = column.type, len(column), column.offset
    buffers = column.buffers()  # type_codes and offsets would ignore a slice's offset
    codes = pa.Array.from_buffers(pa.int8(), rows, [None, buffers[1]], offset=start)
    if union.mode == "dense":
        positions = pa.Array.from_buffers(pa.int32(), rows, [None, buffers[2]], offset=start)
    else:  # a sparse union's children are as long as the union (and field() slices them with it)
        positions = pa.array(range(rows), pa.int32())
    nothing = pa.scalar(None, positions.type)
    try:
        parts = [
            pc.take(column.field(child), pc.if_else(pc.equal(codes, code), positions, nothing))
            for child, code in enumerate(union.type_codes)
            if union.field(child).type == kind
        ]
        return pc.coalesce(*parts) if len(parts) > 1 else parts[0]
    except pa.ArrowNotImplementedError:  # no kernel for the type (binary_view, run-end encoded in pyarrow 26)
        pass
    try:
        return pa.array(column.to_pylist(), type=kind)
    except (pa.ArrowException, ValueError, OverflowError):
        return column  # as it came, like a union of several types


def check_parameters(parameters: pa.RecordBatch) -> None:
    """Reject parameter data that native code must never read.

    Each column is validated in full: offsets and lengths, and UTF-8 in every string
    column, nested ones included. The error names the parameter by position (and by the
    name the client gave its column).

    >>> offsets = pa.array([0, 1], pa.int32()).buffers()[1]
    >>> bad = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\\xff")])
    >>> check_parameters(pa.record_batch([pa.array([1]), bad], names=["id", "name"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    meshcore.errors.InvalidRequestError: parameter $2 ('name') is not valid UTF-8: Invalid UTF8 sequence ...
    """
    for position, column in enumerate(parameters.columns, start=1):
        try:
            column.validate(full=True)
        except pa.ArrowException as error:
            detail = str(error)
            problem = "is not valid UTF-8" if "UTF8" in detail else "is malformed"
            raise InvalidRequestError(f"{_parameter(parameters.schema, position)} {problem}: {detail}") from None


def _parameter(schema: pa.Schema, position: int) -> str:
    """``parameter $2 ('name')``: the position, and the column name the client sent if it differs."""
    try:
        name = schema.field(position - 1).name
    except Exception:  # a column name that is not text
        name = ""
    label = f"parameter ${position}"
    if not name or name == f"${position}":
        return label
    shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
    return f"{label} ('{shown}')" if shown == name else f"{label} ({shown})"


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_PLACEHOLDER = re.compile(r"\$(\d+)")


def parameter_schema(df: Any, sql: str) -> pa.Schema:
    """Placeholders ``$n`` with the types DataFusion inferred (null where the plan hides them),
    view types as their classic ones (what clients bind; DataFusion casts them)."""
    found: dict[int, pa.DataType] = {}
    _collect_placeholders(df.logical_plan(), found)
    in_text = [int(n) for n in _PLACEHOLDER.findall(_QUOTED.sub("", sql))]
    count = max([*found, *in_text], default=0)
    return classic_types(pa.schema([pa.field(f"${n}", found.get(n, pa.null())) for n in range(1, count + 1)]))


def _collect_placeholders(plan: Any, found: dict[int, pa.DataType]) -> None:
    node = plan.to_variant()
    expressions = []
    for accessor in ("projections", "predicate", "group_by_exprs", "aggregate_exprs", "sort_exprs"):
        method = getattr(node, accessor, None)
        if method is not None:
            value = method()
            expressions.extend(value if isinstance(value, list) else [value])
    for expression in expressions:
        _collect_from_expression(expression, found)
    for child in plan.inputs():
        _collect_placeholders(child, found)


def _collect_from_expression(expression: Any, found: dict[int, pa.DataType]) -> None:
    try:
        node = expression.to_variant()
    except Exception:  # expression kinds the Python bindings cannot expose
        return
    kind = type(node).__name__
    if kind == "Placeholder":
        name = str(node.id())
        numbered = _PLACEHOLDER.fullmatch(name)
        if numbered is None:  # DataFusion also reads ``:name`` and ``$name`` as placeholders
            shown = name if len(name) <= 60 else name[:60] + "..."
            raise PlanningError(f"parameter {shown!r} is not supported: number them $1, $2 ... (or write ? in order)")
        try:
            found[int(numbered.group(1))] = node.field().type
        except Exception:  # no type inferred
            found.setdefault(int(numbered.group(1)), pa.null())
        return
    if kind in ("Column", "Literal"):
        return
    try:
        operands = expression.rex_call_operands()
    except Exception:
        return
    for operand in operands:
        _collect_from_expression(operand, found)
