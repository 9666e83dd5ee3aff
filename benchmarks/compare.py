"""Comparing a query result with a reference answer.

Columns are matched by position (engines name expressions differently); numbers of any
type (decimal, float, integer) compare with a relative tolerance of 1e-6, or within one unit
in the last place of a decimal column (engines differ in the precision of averages and
divisions); everything else compares exactly. Without an
ORDER BY, both sides are sorted first.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from typing import Any

import pyarrow as pa

REL_TOL = 1e-6
ABS_TOL = 1e-9

_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def has_order_by(sql: str) -> bool:
    return bool(_ORDER_BY.search(_strip_comments(sql)))


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [[_normal(v) for v in column.to_pylist()] for column in table.columns]
    return list(zip(*columns, strict=True)) if columns else [() for _ in range(table.num_rows)]


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    key: list[Any] = []
    for value in row:
        if value is None:
            key.append((0, ""))
        elif isinstance(value, float):
            key.append((1, float(f"{value:.6g}") if math.isfinite(value) else value))
        else:
            key.append((2, str(value)))
    return tuple(key)


def _same(a: Any, b: Any, abs_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=abs_tol)
    return bool(a == b)


def _tolerances(*tables: pa.Table) -> list[float]:
    """Per column: one unit in the last place of a decimal column (either side), else ABS_TOL.

    DataFusion's avg of decimal(15,2) is decimal(19,6), rounded at the 6th place; DuckDB's is a double.
    """
    tolerances = [ABS_TOL] * tables[0].num_columns
    for table in tables:
        for index, field in enumerate(table.schema):
            if pa.types.is_decimal(field.type):
                tolerances[index] = max(tolerances[index], 10.0**-field.type.scale)
    return tolerances


def differences(actual: pa.Table, expected: pa.Table, *, ordered: bool) -> str | None:
    """None when ``actual`` matches ``expected``; otherwise what differs, briefly."""
    if actual.num_columns != expected.num_columns:
        return f"{actual.num_columns} columns, expected {expected.num_columns}"
    if actual.num_rows != expected.num_rows:
        return f"{actual.num_rows} rows, expected {expected.num_rows}"
    got, want = _rows(actual), _rows(expected)
    tolerances = _tolerances(actual, expected)
    if not ordered:
        got, want = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    for index, (row, reference) in enumerate(zip(got, want, strict=True)):
        for column, (a, b) in enumerate(zip(row, reference, strict=True)):
            if not _same(a, b, tolerances[column]):
                name = expected.column_names[column]
                detail = f"row {index}, column {column} ({name}): {a!r}, expected {b!r}"
                if ordered and differences(actual, expected, ordered=False) is None:
                    return f"same rows in a different order ({detail})"
                return detail
    return None
