"""gateway/nan_order.py: a pyarrow filter over floats answers as DataFusion's, NaN included."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datafusion import SessionContext

from gateway.nan_order import datafusion_order

ROWS = pa.table(
    {
        "id": pa.array(range(1, 10), pa.int64()),
        "x": pa.array([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, None, math.nan, 1.0], pa.float64()),
        "y": pa.array([1.0, math.nan, None, 0.0, math.nan, -1.0, 2.0, math.nan, 1.0], pa.float64()),
        "f": pa.array([1.0, math.nan, None, 0.0, math.nan, -1.0, 2.0, math.nan, 1.0], pa.float32()),
        "name": pa.array(["a", "b", None, "d", "e", "f", "g", "h", "i"], pa.string()),
    }
)
x, y, f, name, nan, inf = pc.field("x"), pc.field("y"), pc.field("f"), pc.field("name"), math.nan, math.inf
# DataFusion's SQL, and the pyarrow filter DataFusion would hand a scan for it (a constant of the
# column's type: DataFusion hands a scan no cast)
CASES = [
    ("x = 'NaN'::double", x == nan),
    ("x <> 'NaN'::double", x != nan),
    ("x > 1e308", x > 1e308),
    ("x >= 1", x >= 1.0),
    ("x < 'NaN'::double", x < nan),
    ("x <= 'NaN'::double", x <= nan),
    ("x < 1", x < 1.0),
    ("x <= 0", x <= 0.0),
    ("x = 0", x == 0.0),
    ("x > -0.0", x > -0.0),
    ("x > 0 AND x <> 'inf'::double", (x > 0.0) & (x != inf)),
    ("x = 'NaN'::double OR x = 0", (x == nan) | (x == 0.0)),
    ("NOT (x < 1)", ~(x < 1.0)),
    ("x = y", x == y),
    ("x > y", x > y),
    ("x <= y", x <= y),
    ("f >= 1", f >= pa.scalar(1.0, pa.float32())),
    ("f < 'NaN'::real", f < pa.scalar(nan, pa.float32())),
    ("x IS NULL OR x > 0", x.is_null() | (x > 0.0)),
    ("name > 'c' AND x > 0", (name > "c") & (x > 0.0)),
    ("x BETWEEN 1 AND 'NaN'::double", (x >= 1.0) & (x <= nan)),
]


def oracle(sql: str) -> list[int]:
    ctx = SessionContext()
    ctx.from_arrow(ROWS, name="t")
    return sorted(row["id"] for row in ctx.sql(f"SELECT id FROM t WHERE {sql}").to_pylist())


@pytest.mark.parametrize(("sql", "expression"), CASES, ids=[case[0] for case in CASES])
def test_a_filter_over_floats_keeps_the_rows_datafusion_keeps(sql: str, expression: pc.Expression) -> None:
    kept = ROWS.filter(datafusion_order(expression, ROWS.schema)).column("id").to_pylist()
    assert sorted(kept) == oracle(sql)


def test_pyarrow_alone_drops_what_datafusion_keeps() -> None:
    """Why the rewrite exists: IEEE comparisons in pyarrow, NaN ordered and equal in DataFusion."""
    assert ROWS.filter(x == nan).num_rows == 0 and oracle("x = 'NaN'::double") == [1, 8]
    assert ROWS.filter(x > 1e308).column("id").to_pylist() == [2] and oracle("x > 1e308") == [1, 2, 8]


def test_a_filter_without_floats_is_left_as_it_is() -> None:
    expression = (pc.field("id") > 3) & (name == "e")
    assert datafusion_order(expression, ROWS.schema) is expression
    only_ints = pa.schema([("id", pa.int64())])
    assert datafusion_order(pc.field("id") > 3, only_ints).equals(pc.field("id") > 3)


def test_a_comparison_of_booleans_over_floats_is_left_as_it_is() -> None:
    expression = (x > 0.0) == pc.scalar(True)
    assert datafusion_order(expression, ROWS.schema).equals(expression)
