"""The fuzzer's inputs as plain data: they pickle (a failing case is saved and replayed) and print short."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import pyarrow as pa


@dataclass(frozen=True)
class SqlCase:
    """SQL text sent by ``user`` as a statement (GetFlightInfo, DoGet), for its schema (GetSchema), or prepared."""

    sql: str
    user: str = "alice"
    path: str = "statement"


@dataclass(frozen=True)
class ParameterCase:
    """Prepare ``sql``, bind ``batches`` with a raw DoPut, then ``then`` (execute, schema, bind-again, nothing, close).

    ``handle`` replaces the prepared statement's handle in the DoPut when given (a made-up one).
    """

    sql: str
    user: str
    schema: pa.Schema
    batches: tuple[pa.RecordBatch, ...]
    handle: bytes | None = None
    then: str = "execute"


@dataclass(frozen=True)
class ProtocolCase:
    """One raw Flight call: ``payload`` as the command, ticket or action body.

    ``auth`` is ``token`` (the logged-in user's bearer token), ``none``, ``bearer:<text>`` (a
    made-up token) or ``basic:<text>`` (a password header on a call that is not the handshake).
    For ``handshake``, ``user`` and ``payload`` (the password) are what the handshake sends.
    """

    rpc: str
    payload: bytes
    action: str = ""
    auth: str = "token"
    user: str = "alice"
    path: tuple[str, ...] = ()


Case = SqlCase | ParameterCase | ProtocolCase


def shorten(value: object, limit: int = 160) -> str:
    """``repr(value)`` with long runs of one character written as ``'x' * n`` and the rest cut.

    ``"SELECT '" + "x" * 5000 + "'"`` shows as ``"SELECT '" + 'x' * 5000 + "'"``.
    """
    text = value if isinstance(value, (str, bytes)) else repr(value)
    if isinstance(text, (str, bytes)) and len(text) > limit:
        runs = re.finditer(rb"(.)\1{63,}" if isinstance(text, bytes) else r"(.)\1{63,}", text, re.DOTALL)
        parts, last = [], 0
        for run in runs:
            if run.start() > last:
                parts.append(repr(text[last : run.start()]))
            parts.append(f"{run.group(1)!r} * {run.end() - run.start()}")
            last = run.end()
        if parts:
            if last < len(text):
                parts.append(repr(text[last:]))
            joined = " + ".join(parts)
            return joined if len(joined) <= limit * 3 else joined[: limit * 3] + f"... ({len(text)} in all)"
        return repr(text[:limit]) + f"... ({len(text)} characters in all)"
    return repr(text)


def describe(case: Case) -> str:
    """One line per field, long values shortened: what a report shows of a case."""
    lines = [type(case).__name__]
    for field in fields(case):
        value = getattr(case, field.name)
        if isinstance(value, pa.Schema):
            shown = ", ".join(f"{f.name!r}: {f.type}" for f in value) or "(no columns)"
        elif field.name == "batches":
            shown = "; ".join(_batch(b) for b in value) or "(no batches)"
        else:
            shown = shorten(value)
        lines.append(f"  {field.name} = {shown}")
    return "\n".join(lines)


def _batch(batch: pa.RecordBatch) -> str:
    columns = []
    for column in batch.columns:
        buffers = [b.size if b is not None else None for b in column.buffers()]
        data = column.buffers()[-1]
        head = data.to_pybytes()[:24] if data is not None else b""
        columns.append(
            f"{column.type} len={len(column)} nulls={column.null_count} buffers={buffers} data[:24]={head!r}"
        )
    return f"{batch.num_rows} row(s) [{'; '.join(columns)}]"
