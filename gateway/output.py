"""How ``meshgate query`` prints a result: an aligned text table, CSV, JSON lines or Parquet.

Every format except ``table`` streams: record batches are written one by one as the
result produces them, so a large result never sits in memory. The text table keeps
only the rows it shows and counts the rest for its footer. An ``EXPLAIN`` result
(columns ``plan_type`` and ``plan``) prints as ``table`` in a readable form: each
plan type as a heading and its plan text below it, whole and indented. On a terminal
the shell draws tables with rich (:func:`rich_table`), fitted to the terminal's width.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from connectors.naming import unique
from meshcore.arrow import is_binary, is_text

if TYPE_CHECKING:
    from rich.table import Table as RichTable

FORMATS = ("table", "csv", "json", "parquet")

ELLIPSIS = "…"
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127]} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


class BatchSource(Protocol):
    """Anything with a schema that yields record batches (a ``QueryResult`` does)."""

    @property
    def schema(self) -> pa.Schema: ...

    def __iter__(self) -> Iterator[pa.RecordBatch]: ...


def format_table(table: pa.Table, *, max_rows: int | None = 100, max_width: int = 40) -> str:
    """Render ``table`` as an aligned text table with a row-count footer.

    Numbers are right-aligned, NULL shows as ``NULL``, values wider than ``max_width``
    columns end in ``…``, and at most ``max_rows`` rows are shown (all when None)::

        >>> print(format_table(pa.table({"id": [1, 22], "name": ["Zoë", None]})))
        id | name
        ---+-----
         1 | Zoë
        22 | NULL
        (2 rows)
    """
    shown = table if max_rows is None else table.slice(0, max_rows)
    return _render(shown, table.num_rows, max_width)


def write_result(
    result: pa.Table | pa.RecordBatchReader | BatchSource,
    fmt: str,
    output: Path | None = None,
    stream: TextIO | None = None,
    *,
    max_rows: int | None = 100,
    max_width: int = 40,
) -> None:
    """Write a query result as ``table``, ``csv``, ``json`` or ``parquet``.

    ``json`` is JSON lines, one object per row: decimals, dates, times and timestamps
    become strings (timestamps ISO 8601 with ``T``), binary base64, NaN and infinities
    strings, and repeated column names get ``_2``, ``_3`` ... The table and CSV show
    binary as ``0x`` hex and nested values as JSON. Text goes to ``output`` (UTF-8)
    when given, else to ``stream`` (``sys.stdout`` at call time); ``parquet`` needs
    ``output``. ``max_rows`` and ``max_width`` apply to ``table`` only.

    Raises:
        ValueError: for an unknown format, or parquet without an output file (before
            anything is read from ``result``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}")
    schema = result.schema
    batches: Iterator[pa.RecordBatch] = iter(result.to_batches() if isinstance(result, pa.Table) else result)
    if fmt == "parquet":
        if output is None:
            raise ValueError("parquet output is binary: give an output file to write it to")
        _write_parquet(schema, batches, output)
        return
    chunks = _TEXT_WRITERS[fmt](schema, batches, max_rows, max_width)
    if output is None:
        _write_chunks(chunks, stream if stream is not None else sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as file:
            _write_chunks(chunks, file)


# --- table -------------------------------------------------------------------------


def _render(shown: pa.Table, total_rows: int, max_width: int) -> str:
    """The text table of ``shown`` and a footer that counts ``total_rows``."""
    if max_width < 1:
        raise ValueError(f"max_width must be at least 1, got {max_width}")
    lines: list[str] = []
    if shown.num_columns:
        columns = [
            [
                _truncate(name.translate(_ESCAPES), max_width),
                *(_truncate(text, max_width) for text in _cell_texts(column)),
            ]
            for name, column in zip(shown.column_names, shown.columns, strict=True)
        ]
        widths = [max(display_width(text) for text in column) for column in columns]
        right = [_is_numeric(field.type) for field in shown.schema]
        rows = list(zip(*columns, strict=True))
        lines.append(_line(rows[0], widths, right))
        lines.append("-+-".join("-" * width for width in widths))
        lines.extend(_line(row, widths, right) for row in rows[1:])
    lines.append(_footer(shown.num_rows, total_rows))
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: list[int], right: list[bool]) -> str:
    padded = (_pad(cell, width, align_right) for cell, width, align_right in zip(cells, widths, right, strict=True))
    return " | ".join(padded).rstrip()


def _footer(shown: int, total: int) -> str:
    if shown < total:
        return f"(showing {shown:,} of {total:,} rows)"
    return "(1 row)" if total == 1 else f"({total:,} rows)"


def _is_numeric(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_))


def _cell_texts(column: pa.ChunkedArray) -> list[str]:
    """One display string per value; NULL for nulls, control characters escaped."""
    return ["NULL" if value is None else value.translate(_ESCAPES) for value in _as_strings(column)]


def _as_strings(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """Values as Arrow renders them (exact decimals, ISO dates), nested ones as JSON."""
    type_ = column.type
    if is_binary(type_):
        return [None if value is None else "0x" + value.hex() for value in column.to_pylist()]
    if pa.types.is_nested(type_):
        return [None if value is None else _json_text(value) for value in column.to_pylist()]
    try:
        strings: list[str | None] = pc.cast(column, pa.string()).to_pylist()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [None if value is None else str(value) for value in column.to_pylist()]
    return strings


def char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2, marks 0."""
    return sum(char_width(char) for char in text)


_display_width = display_width  # the name tests/test_output.py imports


def _truncate(text: str, max_width: int) -> str:
    """``text`` cut to ``max_width`` columns, ending in ``…`` when cut."""
    if display_width(text) <= max_width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        width = char_width(char)
        if used + width > max_width - 1:
            break
        kept.append(char)
        used += width
    return "".join(kept) + ELLIPSIS


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def head_of(schema: pa.Schema, batches: Iterator[pa.RecordBatch], max_rows: int | None) -> tuple[pa.Table, int]:
    """The first ``max_rows`` rows (all when None) and the number of rows in ``batches``."""
    head: list[pa.RecordBatch] = []
    kept = total = 0
    for batch in batches:
        total += batch.num_rows
        if max_rows is None or kept < max_rows:
            take = batch if max_rows is None else batch.slice(0, max_rows - kept)
            head.append(take)
            kept += take.num_rows
    return pa.Table.from_batches(head, schema=schema), total


def _table_chunks(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], max_rows: int | None, max_width: int
) -> Iterator[str]:
    """Keep the first ``max_rows`` rows, count the rest, then yield the rendered table.

    An EXPLAIN result is rendered whole, as :func:`format_explain` does.
    """
    if is_explain(schema):
        table, _ = head_of(schema, batches, None)
        yield format_explain(table) + "\n"
        return
    head, total = head_of(schema, batches, max_rows)
    yield _render(head, total, max_width) + "\n"


# --- EXPLAIN -------------------------------------------------------------------------


def is_explain(schema: pa.Schema) -> bool:
    """Whether ``schema`` is an EXPLAIN result's: text columns ``plan_type`` and ``plan``."""
    return schema.names == ["plan_type", "plan"] and all(is_text(field.type) for field in schema)


def explain_sections(table: pa.Table) -> list[tuple[str, str]]:
    """The (plan type, plan text) rows of an EXPLAIN result; NULL as an empty text."""
    types = _as_strings(table.column("plan_type"))
    plans = _as_strings(table.column("plan"))
    return [(kind or "", plan or "") for kind, plan in zip(types, plans, strict=True)]


def format_explain(table: pa.Table, *, indent: str = "  ") -> str:
    """An EXPLAIN result as text: each plan type a heading, its plan below it, whole and indented.

    >>> print(format_explain(pa.table({"plan_type": ["route"], "plan": ["federated: ...\\n  more"]})))
    route
      federated: ...
        more
    """
    return "\n\n".join(f"{kind}\n{textwrap.indent(plan, indent)}".rstrip() for kind, plan in explain_sections(table))


# --- rich (a terminal) -------------------------------------------------------------


def rich_table(table: pa.Table, total_rows: int, width: int) -> RichTable:
    """``table`` as a rich table ``width`` columns wide at most, for a terminal.

    The values are those of the text table; numbers are right-aligned and NULL is dimmed.
    When the columns do not fit, the widest are narrowed first (cells cut end in ``…``), so
    that narrow columns stay whole. The caption counts ``total_rows`` as the footer does.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rich = Table(
        box=box.ROUNDED,
        caption=_footer(table.num_rows, total_rows),
        caption_justify="left",
        caption_style="dim",
        header_style="bold",
    )
    names = [name.translate(_ESCAPES) for name in table.column_names]
    columns = [_cell_texts(column) for column in table.columns]
    natural = [max(map(display_width, [name, *texts])) for name, texts in zip(names, columns, strict=True)]
    fitted = fit_widths(natural, width - 3 * len(natural) - 1)  # borders and padding: 3 a column, 1 more
    for name, field, column_width in zip(names, table.schema, fitted, strict=True):
        rich.add_column(
            Text(name),
            justify="right" if _is_numeric(field.type) else "left",
            overflow="ellipsis",
            no_wrap=True,
            width=column_width,
        )
    nulls = [column.is_null().to_pylist() if column.null_count else None for column in table.columns]
    for row in range(table.num_rows):
        cells = [
            Text(texts[row], style="dim" if flags is not None and flags[row] else "")
            for texts, flags in zip(columns, nulls, strict=True)
        ]
        rich.add_row(*cells)
    return rich


def fit_widths(widths: list[int], room: int, *, narrowest: int = 4) -> list[int]:
    """Column widths that fit in ``room``: the widest are cut to a common cap, never below ``narrowest``.

    >>> fit_widths([4, 40, 30, 5], 40)
    [4, 16, 15, 5]
    """
    if sum(widths) <= room:
        return list(widths)
    cap = max(widths)
    while cap > narrowest and sum(min(w, cap) for w in widths) > room:
        cap -= 1
    fitted = [min(w, cap) for w in widths]
    # Hand what the common cap leaves unused to the columns it cut, widest first.
    spare = room - sum(fitted)
    for index in sorted(range(len(widths)), key=lambda i: -widths[i]):
        if spare <= 0:
            break
        grow = min(spare, widths[index] - fitted[index])
        fitted[index] += grow
        spare -= grow
    return fitted


# --- csv ---------------------------------------------------------------------------


def _csv_chunks(schema: pa.Schema, batches: Iterator[pa.RecordBatch], *_: Any) -> Iterator[str]:
    """CSV text batch by batch, the header once (also for an empty result)."""
    header = True
    for batch in batches:
        yield _csv_text(batch, header)
        header = False
    if header:
        yield _csv_text(schema.empty_table(), header)


def _csv_text(data: pa.RecordBatch | pa.Table, header: bool) -> str:
    buffer = pa.BufferOutputStream()
    pacsv.write_csv(_csv_ready(data), buffer, pacsv.WriteOptions(include_header=header))
    text: str = buffer.getvalue().to_pybytes().decode("utf-8")
    return text


def _csv_ready(data: pa.RecordBatch | pa.Table) -> pa.Table:
    """Columns the CSV writer cannot write (binary, nested, views) replaced by their text."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type) or is_binary(field.type) or pa.types.is_string_view(field.type):
            text = pa.array(_as_strings(table.column(index)), pa.string())
            table = table.set_column(index, pa.field(field.name, pa.string()), text)
    return table


# --- json --------------------------------------------------------------------------


def _json_chunks(schema: pa.Schema, batches: Iterator[pa.RecordBatch], *_: Any) -> Iterator[str]:
    """JSON lines, one object per row; repeated column names get ``_2``, ``_3`` ..."""
    keys = unique(schema.names)
    for batch in batches:
        columns = [_json_values(column) for column in batch.columns]
        lines = (
            json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False, allow_nan=False) + "\n"
            for row in zip(*columns, strict=True)
        )
        yield "".join(lines)


def _json_values(column: pa.Array) -> list[Any]:
    """JSON-ready values of one column (exact types become strings)."""
    type_ = column.type
    if pa.types.is_decimal(type_) or pa.types.is_temporal(type_):
        strings = pc.cast(column, pa.string())
        if pa.types.is_timestamp(type_):
            strings = pc.replace_substring(strings, pattern=" ", replacement="T", max_replacements=1)
        values: list[Any] = strings.to_pylist()
        return values
    return [_jsonable(value) for value in column.to_pylist()]


def _jsonable(value: Any) -> Any:
    """A Python value from ``to_pylist`` made JSON-serialisable, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


def _json_text(value: Any) -> str:
    return json.dumps(_jsonable(value), ensure_ascii=False, allow_nan=False)


# --- parquet and plumbing ----------------------------------------------------------


def _write_parquet(schema: pa.Schema, batches: Iterator[pa.RecordBatch], output: Path) -> None:
    with pq.ParquetWriter(output, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def _write_chunks(chunks: Iterator[str], stream: TextIO) -> None:
    for chunk in chunks:
        stream.write(chunk)
    stream.flush()


_TEXT_WRITERS: dict[str, Callable[[pa.Schema, Iterator[pa.RecordBatch], int | None, int], Iterator[str]]] = {
    "table": _table_chunks,
    "csv": _csv_chunks,
    "json": _json_chunks,
}
